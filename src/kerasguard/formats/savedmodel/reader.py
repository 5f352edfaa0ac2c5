"""TensorFlow SavedModel directories read from the protobuf wire format (no TensorFlow).

What TensorFlow would run is a graph: ``SavedModel.meta_graphs[].graph_def`` holds top-level
``node``s and a function ``library`` whose functions hold more ``node_def``s. Every node becomes a
:class:`GraphOp` with its op, name, inputs, string attributes and called functions. Keras 2 models
also carry ``keras_metadata.pb``, whose per-object JSON (the model config, Lambdas included) goes to
the strict JSON reader. Field numbers come from tensorflow/core/protobuf/saved_model.proto,
meta_graph.proto, framework/graph.proto, function.proto, node_def.proto, op_def.proto,
attr_value.proto, tensor.proto and tf_keras/protobuf/saved_metadata.proto.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from kerasguard.findings import Location
from kerasguard.formats.artifact import Artifact, GraphOp, Member
from kerasguard.formats.blob import Blob, LimitExceeded
from kerasguard.formats.context import ReadBlob, ReadContext
from kerasguard.formats.json_strict import parse_json_bytes
from kerasguard.formats.savedmodel.pbtext import parse_text
from kerasguard.formats.savedmodel.protowire import VARINT, BinMsg, Msg, WireError, iter_fields

SAVED_MODEL_PB = "saved_model.pb"
SAVED_MODEL_PBTXT = "saved_model.pbtxt"
KERAS_METADATA = "keras_metadata.pb"
FINGERPRINT = "fingerprint.pb"
VARIABLES_DATA = "variables/variables.data-"

MAX_INPUTS = 64
MAX_ATTRS = 32
MAX_ATTR_TEXT = 512
MAX_CONST_STRINGS = 4
MAX_FUNC_DEPTH = 4
CHECK_EVERY = 4096  # nodes between deadline checks


class GraphLimit(Exception):
    """More nodes than ``max_graph_nodes``, or the file timeout passed (``kind``)."""

    def __init__(self, message: str, kind: str = "limit") -> None:
        super().__init__(message)
        self.kind = kind


def _text(data: bytes) -> str:
    return data.decode("utf-8", errors="backslashreplace")


def _clip(data: bytes) -> str:
    text = _text(data[: MAX_ATTR_TEXT + 1])
    return text if len(text) <= MAX_ATTR_TEXT else text[:MAX_ATTR_TEXT] + "..."


def _last(values: list[bytes]) -> str:
    """proto3 semantics: the last occurrence of a singular scalar field wins."""
    return _text(values[-1]) if values else ""


class GraphWalker:
    """Walks SavedModel / GraphDef messages (binary or text) into ``art.graph_ops``."""

    def __init__(self, art: Artifact, location: Location, max_nodes: int, deadline: float = 0.0) -> None:
        self.art = art
        self.location = location
        self.budget = max_nodes
        self.deadline = deadline
        self.nodes = 0

    def saved_model(self, msg: Msg) -> None:
        for meta in msg.messages(2, "meta_graphs"):
            for graph in meta.messages(2, "graph_def"):
                self.graph(graph)

    def graph(self, graph: Msg) -> None:
        for node in graph.messages(1, "node"):
            self.node(node, None)
        for library in graph.messages(2, "library"):
            for function in library.messages(1, "function"):
                names = [n for sig in function.messages(1, "signature") for n in sig.strings(1, "name")]
                fname = _text(names[-1]) if names else "<unnamed function>"
                for node in function.messages(3, "node_def"):
                    self.node(node, fname)

    def node(self, node: Msg, function: str | None) -> None:
        if self.nodes >= self.budget:
            raise GraphLimit(f"graph has more than max_graph_nodes={self.budget} nodes")
        if self.nodes % CHECK_EVERY == 0 and self.deadline and time.monotonic() > self.deadline:
            raise GraphLimit(f"graph walk stopped by the file timeout after {self.nodes} nodes", "timeout")
        attrs: list[tuple[str, str]] = []
        calls: list[str] = []
        for entry in node.messages(5, "attr"):
            key = _last(entry.strings(1, "key"))
            for value in entry.messages(2, "value"):
                self.attr_value(key, value, attrs, calls, 0)
        self.art.graph_ops.append(
            GraphOp(
                location=self.location,
                op=_last(node.strings(2, "op")),
                node=_last(node.strings(1, "name")),
                function=function,
                inputs=tuple(_text(i) for i in node.strings(3, "input")[:MAX_INPUTS]),
                attrs=tuple(attrs[:MAX_ATTRS]),
                calls=tuple(dict.fromkeys(calls)),
            )
        )
        self.nodes += 1

    def attr_value(
        self, key: str, value: Msg, attrs: list[tuple[str, str]], calls: list[str], depth: int
    ) -> None:
        """String values (s, list.s, string tensors) and function references of one AttrValue."""
        if depth > MAX_FUNC_DEPTH:
            raise WireError(f"function attributes nested deeper than {MAX_FUNC_DEPTH}")
        attrs.extend((key, _clip(s)) for s in value.strings(2, "s"))
        for tensor in value.messages(8, "tensor"):
            attrs.extend((key, _clip(s)) for s in tensor.strings(8, "string_val")[:MAX_CONST_STRINGS])
        funcs = list(value.messages(10, "func"))
        for listed in value.messages(1, "list"):
            attrs.extend((key, _clip(s)) for s in listed.strings(2, "s"))
            funcs += listed.messages(9, "func")
        for func in funcs:
            name = _last(func.strings(1, "name"))
            if name:
                calls.append(name)
            for entry in func.messages(2, "attr"):
                inner = _last(entry.strings(1, "key"))
                for sub in entry.messages(2, "value"):
                    self.attr_value(inner, sub, attrs, calls, depth + 1)


def _looks_like_saved_model(data: bytes) -> bool:
    """SavedModel starts with a varint schema version (field 1); a GraphDef's field 1 is a node."""
    seen: set[int] = set()
    for number, wire, _ in iter_fields(memoryview(data)):
        if number == 1:
            return wire == VARINT
        seen.add(number)
    return not seen & {3, 4}


def _walk(art: Artifact, location: Location, ctx: ReadContext, kind: str, data: bytes) -> int:
    """Walk one protobuf document; returns how many nodes were recorded. Problems go to ``art``."""
    walker = GraphWalker(art, location, ctx.limits.max_graph_nodes, ctx.deadline)
    try:
        if kind == "pbtxt":
            if len(data) > ctx.limits.max_pbtxt_bytes:
                limit = ctx.limits.max_pbtxt_bytes
                art.problem(
                    location, "limit", f"text SavedModel of {len(data)} bytes exceeds max_pbtxt_bytes={limit}"
                )
                return 0
            walker.saved_model(parse_text(data))
        elif kind == "saved_model":
            walker.saved_model(BinMsg(data))
        else:
            walker.graph(BinMsg(data))
    except GraphLimit as exc:
        art.problem(location, "timeout" if exc.kind == "timeout" else "limit", str(exc))
    except (WireError, RecursionError) as exc:
        what = "text-format SavedModel" if kind == "pbtxt" else "protobuf"
        art.problem(location, "corrupt", f"invalid {what} after {walker.nodes} nodes: {exc}")
    return walker.nodes


def read_keras_metadata(data: bytes, location: Location, art: Artifact, ctx: ReadContext) -> None:
    """``keras_metadata.pb``: SavedMetadata.nodes[] -> SavedObject.metadata JSON (field 5)."""
    try:
        for index, node in enumerate(BinMsg(data).messages(1, "nodes")):
            path = _last(node.strings(3, "node_path")) or f"nodes[{index}]"
            metadata = node.strings(5, "metadata")
            if not metadata or not metadata[-1]:
                continue
            role = "model_config" if path == "root" else "json"
            parse_json_bytes(metadata[-1], location.child(member=path), role, ctx.limits, art)
    except WireError as exc:
        art.problem(location, "corrupt", f"invalid keras_metadata.pb: {exc}")


def _read_bytes(blob: Blob, art: Artifact, ctx: ReadContext) -> bytes | None:
    try:
        return blob.read_all(ctx.limits.max_protobuf_bytes, "protobuf")
    except LimitExceeded as exc:
        art.problem(blob.location, "limit", f"{exc}; max_protobuf_bytes={ctx.limits.max_protobuf_bytes}")
    except OSError as exc:
        art.problem(blob.location, "io", f"cannot read: {exc.strerror or exc}")
    return None


def read_graph_blob(blob: Blob, art: Artifact, ctx: ReadContext) -> None:
    """A ``.pb`` found alone or inside something: SavedModel, GraphDef or Keras metadata by name/shape."""
    name = blob.name.lower()
    if name == FINGERPRINT:
        art.notes.append(f"{blob.location}: SavedModel fingerprint (hashes only), not analysed")
        return
    data = _read_bytes(blob, art, ctx)
    if data is None:
        return
    if name == KERAS_METADATA:
        read_keras_metadata(data, blob.location, art, ctx)
        return
    if name == SAVED_MODEL_PB:
        kind = "saved_model"
    else:
        try:
            kind = "saved_model" if _looks_like_saved_model(data) else "graph"
        except WireError as exc:
            _not_a_graph(blob.location, art, f"not a protobuf: {exc}", corrupt=True)
            return
    if _walk(art, blob.location, ctx, kind, data) == 0 and not _has_problem(art, blob.location):
        _not_a_graph(blob.location, art, "protobuf holds no TensorFlow graph nodes", corrupt=False)


def _has_problem(art: Artifact, location: Location) -> bool:
    return any(p.location == location for p in art.problems)


def _not_a_graph(location: Location, art: Artifact, why: str, *, corrupt: bool) -> None:
    """A top-level .pb the user asked about must not pass silently; inside a model it is only data."""
    if location.member is None:
        art.problem(location, "corrupt" if corrupt else "unknown_format", why)
    else:
        art.notes.append(f"{location}: {why}")


def _files(root: Path, art: Artifact, ctx: ReadContext) -> list[str]:
    """Relative paths of regular files under ``root``; symlinks are reported, never followed."""
    found: list[str] = []
    for folder, dirs, names in os.walk(root, followlinks=False):
        here = Path(folder)
        dirs.sort()
        for entry in [*dirs, *sorted(names)]:
            path = here / entry
            rel = path.relative_to(root).as_posix()
            if path.is_symlink():
                target = os.readlink(path)
                art.problem(
                    art.location.child(member=rel),
                    "unsupported",
                    f"symbolic link to {target!r} not followed: TensorFlow would read its target",
                )
                if entry in dirs:
                    dirs.remove(entry)
            elif entry in names:
                found.append(rel)
        if len(found) > ctx.limits.max_members:
            art.problem(
                art.location, "limit", f"SavedModel has more than max_members={ctx.limits.max_members} files"
            )
            return found[: ctx.limits.max_members]
    return found


def read_savedmodel(path: Path, art: Artifact, ctx: ReadContext, read_blob: ReadBlob) -> None:
    """A SavedModel directory: the graph (pb and/or pbtxt), Keras metadata, variables and assets."""
    graphs = 0
    for rel in _files(path, art, ctx):
        file = path / rel
        loc = art.location.child(member=rel)
        try:
            size = file.stat().st_size
        except OSError as exc:
            art.problem(loc, "io", f"cannot read: {exc.strerror or exc}")
            continue
        art.size += size
        blob = Blob(location=loc, name=file.name, size=size, path=file)
        if rel in (SAVED_MODEL_PB, SAVED_MODEL_PBTXT, KERAS_METADATA):
            # parsed as TensorFlow parses them, whatever their first bytes look like
            art.members.append(Member(loc, rel, size, "protobuf"))
            data = _read_bytes(blob, art, ctx)
            if data is None:
                continue
            if rel == KERAS_METADATA:
                read_keras_metadata(data, loc, art, ctx)
            else:
                graphs += 1
                kind = "pbtxt" if rel == SAVED_MODEL_PBTXT else "saved_model"
                if _walk(art, loc, ctx, kind, data) == 0 and not _has_problem(art, loc):
                    art.problem(loc, "corrupt", "SavedModel holds no graph nodes")
        elif rel == FINGERPRINT:
            art.members.append(Member(loc, rel, size, "protobuf"))
        elif rel.startswith(VARIABLES_DATA):
            # raw tensor bytes TensorFlow reads by offset from the index; never parsed as anything
            art.members.append(Member(loc, rel, size, "data"))
        else:
            read_blob(blob, art, ctx, depth=1)
    if graphs == 0:
        art.problem(art.location, "corrupt", "SavedModel directory has no readable saved_model.pb(txt)")
