"""TensorFlow ops that reach outside the tensor computation, and how to tell benign uses apart.

A SavedModel is a program: any op in its graph or function library may run when the model is loaded
(initialisers, restore) or called. Most ops only compute on tensors. The ops below call back into
Python, touch the file system or the network. The checkpoint ops are special: every SavedModel
contains SaveV2 / RestoreV2 / MergeV2Checkpoints in its saver, which TensorFlow runs with a path the
*loader* chooses. Those are benign where TensorFlow puts them and suspicious anywhere else.
"""

from __future__ import annotations

import functools
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from kerasguard.formats.artifact import GraphOp

PY_CALLBACK_OPS: dict[str, str] = {
    "PyFunc": "tf.numpy_function / tf.py_func",
    "PyFuncStateless": "tf.numpy_function / tf.py_func (stateless)",
    "EagerPyFunc": "tf.py_function",
}

READS = "reads host files"
WRITES = "writes host files"
LISTS = "lists host directories"
NETWORK = "talks to the network"
FS_CONFIG = "reconfigures TensorFlow's file systems"

ALWAYS_FLAGGED: dict[str, str] = {
    **dict.fromkeys(
        (
            "ReadFile",
            "FixedLengthRecordDataset",
            "FixedLengthRecordDatasetV2",
            "TextLineDataset",
            "TFRecordDataset",
            "TFRecordDatasetV2",
            "CSVDataset",
            "CSVDatasetV2",
            "ExperimentalCSVDataset",
            "LMDBDataset",
            "ExperimentalLMDBDataset",
            "SqlDataset",
            "ExperimentalSqlDataset",
            "LoadDataset",
            "SnapshotDatasetReader",
            "SnapshotNestedDatasetReader",
            "SnapshotChunkDataset",
            "ListSnapshotChunksDataset",
            "WholeFileReader",
            "WholeFileReaderV2",
            "TextLineReader",
            "TextLineReaderV2",
            "FixedLengthRecordReader",
            "FixedLengthRecordReaderV2",
            "TFRecordReader",
            "TFRecordReaderV2",
            "LMDBReader",
            "LoadAndRemapMatrix",
            "GenerateVocabRemapping",
            "ImmutableConst",
        ),
        READS,
    ),
    **dict.fromkeys(
        (
            "WriteFile",
            "SaveDataset",
            "SaveDatasetV2",
            "DatasetToTFRecord",
            "ExperimentalDatasetToTFRecord",
            "SnapshotDataset",
            "SnapshotDatasetV2",
            "CreateSummaryFileWriter",
            "CreateSummaryDbWriter",
        ),
        WRITES,
    ),
    **dict.fromkeys(("MatchingFiles", "MatchingFilesDataset", "ExperimentalMatchingFilesDataset"), LISTS),
    **dict.fromkeys(
        (
            "RpcCall",
            "RpcClient",
            "RpcServer",
            "RpcServerRegister",
            "RpcServerStart",
            "RpcCheckStatus",
            "RpcGetValue",
            "Rpc",
            "TryRpc",
            "DataServiceDataset",
            "DataServiceDatasetV2",
            "DataServiceDatasetV3",
            "DataServiceDatasetV4",
            "RegisterDataset",
            "RegisterDatasetV2",
            "DistributedSave",
            "GcsConfigureCredentials",
            "GcsConfigureBlockCache",
            "BigQueryReader",
            "RemoteCall",
        ),
        NETWORK,
    ),
    "FileSystemSetConfiguration": FS_CONFIG,
}

# Checkpoint I/O: benign inside TensorFlow's saver, file I/O at a chosen path anywhere else.
CHECKPOINT_OPS: dict[str, str] = {
    "SaveV2": WRITES,
    "MergeV2Checkpoints": WRITES,
    "Save": WRITES,
    "SaveSlices": WRITES,
    "RestoreV2": READS,
    "Restore": READS,
    "RestoreSlice": READS,
}

PRINT_STREAMS = frozenset({"stderr", "stdout", "log(info)", "log(warning)", "log(error)"})
DEBUG_OPS = frozenset(
    {"DebugIdentity", "DebugIdentityV2", "DebugIdentityV3", "DebugNanCount", "DebugNumericSummary"}
)
TABLE_FROM_FILE_OPS = frozenset({"InitializeTableFromTextFile", "InitializeTableFromTextFileV2"})
PROTO_DESCRIPTOR_OPS = frozenset({"DecodeProtoV2", "EncodeProto"})
CACHE_OPS = frozenset({"CacheDataset", "CacheDatasetV2"})

TF2_CHECKPOINT_FUNCTION = re.compile(r"__inference__traced_(save|restore)_\d+")
TF1_SAVER_SCOPE = re.compile(r"save(_\d+)?/")


def is_python_callback(op: str) -> bool:
    return op in PY_CALLBACK_OPS or "PyFunc" in op


def _node_of(inp: str) -> str:
    """``^ctrl`` / ``node:out:0`` / ``node:0`` -> ``node``."""
    return inp.lstrip("^").split(":", 1)[0]


@dataclass
class Graph:
    """Lookups over an artifact's graph ops that the rules need: constants and call edges."""

    ops: list[GraphOp]
    functions: set[str] = field(default_factory=set)
    nodes: dict[tuple[str | None, str], GraphOp] = field(default_factory=dict)
    callers: dict[str, set[str | None]] = field(default_factory=lambda: defaultdict(set))
    saver_functions: dict[str, bool] = field(default_factory=dict)

    @classmethod
    def of(cls, ops: Iterable[GraphOp]) -> Graph:
        graph = cls(list(ops))
        graph.functions = {op.function for op in graph.ops if op.function is not None}
        for op in graph.ops:
            graph.nodes[(op.function, op.node)] = op
            callees = set(op.calls)
            if op.op in graph.functions:
                callees.add(op.op)
            for callee in callees:
                graph.callers[callee].add(op.function)
        return graph

    def const_strings(self, op: GraphOp) -> list[str]:
        """String constants feeding ``op`` directly (paths, URLs), for evidence and judgement."""
        out: list[str] = []
        for inp in op.inputs:
            if inp.startswith("^"):
                continue
            src = self.nodes.get((op.function, _node_of(inp)))
            if src is not None and src.op == "Const":
                out += [v for k, v in src.attrs if k == "value"]
        return out

    def attr(self, op: GraphOp, key: str) -> list[str]:
        return [v for k, v in op.attrs if k == key]

    def in_checkpoint_saver(self, op: GraphOp) -> bool:
        """Whether a checkpoint op sits where TensorFlow's saver puts it, and nothing else reaches it."""
        if op.function is not None:
            return self._clean_saver_function(op.function)
        return bool(TF1_SAVER_SCOPE.match(op.node)) and not self.saver_wired

    def _clean_saver_function(self, function: str) -> bool:
        """A TF2 saver function called only from the top level or other saver functions (cached)."""
        if function not in self.saver_functions:
            self.saver_functions[function] = bool(TF2_CHECKPOINT_FUNCTION.fullmatch(function)) and all(
                caller is None or TF2_CHECKPOINT_FUNCTION.fullmatch(caller)
                for caller in self.callers.get(function, ())
            )
        return self.saver_functions[function]

    @functools.cached_property
    def saver_wired(self) -> bool:
        """A TF1 saver is benign when no model node depends on it (the loader runs it, the model never)."""
        return any(
            other.function is None
            and not TF1_SAVER_SCOPE.match(other.node)
            and any(TF1_SAVER_SCOPE.match(_node_of(i)) for i in other.inputs)
            for other in self.ops
        )


def file_or_network_use(graph: Graph, op: GraphOp) -> str | None:
    """Why ``op`` reaches outside the computation, or None when it does not (or is benign here)."""
    name = op.op
    if name in ALWAYS_FLAGGED:
        return ALWAYS_FLAGGED[name]
    if name in CHECKPOINT_OPS:
        if graph.in_checkpoint_saver(op):
            return None
        return f"{CHECKPOINT_OPS[name]} (checkpoint op outside TensorFlow's saver)"
    if name == "PrintV2":
        streams = [s for s in graph.attr(op, "output_stream") if s not in PRINT_STREAMS]
        return f"{WRITES} (prints to {streams[0]})" if streams else None
    if name in DEBUG_OPS:
        urls = [u for u in graph.attr(op, "debug_urls") if u]
        return f"{WRITES} or {NETWORK} (debug dumps to {urls[0]})" if urls else None
    if name in TABLE_FROM_FILE_OPS:
        # Keras lookups read their vocabulary asset through a function argument; a constant path
        # is a file the model chose on its own.
        paths = graph.const_strings(op)
        return f"{READS} (table from {paths[0]})" if paths else None
    if name in PROTO_DESCRIPTOR_OPS:
        sources = [s for s in graph.attr(op, "descriptor_source") if s not in ("", "local://")]
        return f"{READS} (proto descriptors from {sources[0]})" if sources else None
    if name in CACHE_OPS:
        paths = graph.const_strings(op)
        if paths and all(p == "" for p in paths):
            return None  # in-memory cache
        return f"{WRITES} (dataset cache file)"
    return None


def group_ops(ops: Iterable[tuple[GraphOp, str]]) -> list[tuple[GraphOp, str, int]]:
    """One entry per (op type, function, reason) with a count: a graph can repeat an op a million times."""
    groups: dict[tuple[str, str | None, str], tuple[GraphOp, str, int]] = {}
    for op, why in ops:
        key = (op.op, op.function, why)
        first, _, count = groups.get(key, (op, why, 0))
        groups[key] = (first, why, count + 1)
    return list(groups.values())


def op_scope(op: GraphOp, count: int) -> str:
    where = f"function {op.function}" if op.function else "the top-level graph"
    return where + (f" ({count} nodes)" if count > 1 else "")
