"""Payload rules: pickles, numpy object arrays and bombs, TensorFlow graph ops.

These judge what readers recorded about embedded executable payloads: the imports of pickle streams
(walked by opcode, never unpickled), .npy headers, and the ops of SavedModel graphs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator

from packaging.version import InvalidVersion, Version

from kerasguard.findings import Severity
from kerasguard.formats.artifact import Artifact, GraphOp, PickleGlobal, PickleInfo
from kerasguard.rules.base import Hit, Rule, RuleContext, allowance
from kerasguard.rules.pickle_safety import canonical, danger_reason, safe_reason
from kerasguard.rules.tf_ops import PY_CALLBACK_OPS, Graph, file_or_network_use, is_python_callback
from kerasguard.suppressions import allowlist_may_clear

PICKLE_GLOBALS_RULE, PICKLE_GLOBALS_SEVERITY = "KG104", Severity.CRITICAL  # check_pickle_globals's rule
KERAS_NPZ_PICKLE_FIXED = Version("3.9.0")  # 57c94f305c: NpzIOStore stopped using allow_pickle=True


def keras_older_than(ctx: RuleContext, fixed: Version) -> bool:
    """Whether the Keras that will load the file predates ``fixed``; unknown counts as older."""
    if ctx.keras_version is None:
        return True
    try:
        return Version(ctx.keras_version) < fixed
    except InvalidVersion:
        return True


def _where(info: PickleInfo) -> str:
    return "the object array's pickled data" if info.role == "npy_object" else "the pickle"


def _pickle_hit(info: PickleInfo, glob: PickleGlobal, full: str, count: int) -> Hit:
    where = _where(info)
    times = f" ({count} times)" if count > 1 else ""
    evidence = f"{glob.opcode} at byte {glob.position}: {full}{times}"
    if not glob.resolved:
        return Hit(
            info.location,
            f"{where} builds an import from values computed while unpickling ({glob.opcode} operands "
            f"{glob.module!r}, {glob.name!r} are not constants): what it imports cannot be known "
            "before it runs",
            evidence,
        )
    reason = danger_reason(full)
    if reason is not None:
        message = f"{where} imports {full}, which {reason}; unpickling can call it with chosen arguments"
    else:
        message = (
            f"{where} imports {full}, which is not on the safe list of data-rebuilding functions; "
            "unpickling imports it and can call it"
        )
    return Hit(info.location, message, evidence)


def check_pickle_globals(art: Artifact, ctx: RuleContext) -> Iterator[Hit]:
    allow = ctx.policy.allow
    for info in art.pickles:
        # one finding per distinct import (and one for all unresolved ones), with a count
        seen: dict[str, tuple[PickleGlobal, int]] = {}
        for glob in info.globals:
            full = canonical(glob.module, glob.name) if glob.resolved else ""
            if glob.resolved and safe_reason(full):
                continue
            first, count = seen.get(full, (glob, 0))
            seen[full] = (first, count + 1)
        for full, (glob, count) in seen.items():
            hit = _pickle_hit(info, glob, full, count)
            if _keras_own_npz_pickle(info, full, ctx):
                hit = Hit(
                    hit.location,
                    hit.message + "; the Keras that will load this file reads npz weights with "
                    "allow_pickle=False, so only other numpy.load(allow_pickle=True) readers would run it",
                    hit.evidence,
                    severity=Severity.MEDIUM,
                )
            entry = allow.allows("pickle_globals", full) if full else None
            if entry is not None:
                # Recorded, never silent: cleared (and shown as allowed) or, for a found policy and a
                # high or critical import, kept (decision 37).
                severity = hit.severity or PICKLE_GLOBALS_SEVERITY
                applied = allowlist_may_clear(ctx.policy, PICKLE_GLOBALS_RULE, severity)
                hit = dataclasses.replace(hit, allowance=allowance(ctx.policy, entry, applied))
            yield hit


# What Keras itself pickles into object arrays when it saves npz weights (variables, jax arrays).
KERAS_NPZ_PICKLE_PACKAGES = ("keras", "jax")


def _keras_own_npz_pickle(info: PickleInfo, full: str, ctx: RuleContext) -> bool:
    """An object-array pickle of the kind Keras writes, judged for a Keras (>= 3.9) that refuses to load it.

    Anything else (os, subprocess, builtins, unresolved imports) keeps its full severity.
    """
    return (
        info.role == "npy_object"
        and full.split(".", 1)[0] in KERAS_NPZ_PICKLE_PACKAGES
        and not keras_older_than(ctx, KERAS_NPZ_PICKLE_FIXED)
    )


def check_numpy_pickles(art: Artifact, ctx: RuleContext) -> Iterator[Hit]:
    # Keras >= 3.9 loads npz weights with allow_pickle=False: the pickle then only endangers other readers.
    severity = Severity.CRITICAL if keras_older_than(ctx, KERAS_NPZ_PICKLE_FIXED) else Severity.MEDIUM
    for npy in art.npy_arrays:
        if npy.has_object:
            yield Hit(
                npy.location,
                f"object-dtype array (descr {npy.descr}): its data is a pickle that "
                "numpy.load(allow_pickle=True) unpickles, as Keras 3.0-3.8 does for model.weights.npz",
                f"descr={npy.descr} shape={npy.shape}",
                severity=severity,
            )
    for info in art.pickles:
        if info.role == "pickle" and info.name.lower().endswith((".npz", ".npy")):
            yield Hit(
                info.location,
                f"{info.name} is neither a zip nor an .npy but a raw pickle: numpy.load(allow_pickle=True) "
                "unpickles it, as Keras 3.0-3.8 does for model.weights.npz",
                f"pickle protocol {info.protocol}, {len(info.globals)} imports, {info.calls} calls",
                severity=severity,
            )


def _grouped(ops: Iterable[tuple[GraphOp, str]]) -> list[tuple[GraphOp, str, int]]:
    """One entry per (op type, function, reason) with a count: a graph can repeat an op a million times."""
    groups: dict[tuple[str, str | None, str], tuple[GraphOp, str, int]] = {}
    for op, why in ops:
        key = (op.op, op.function, why)
        first, _, count = groups.get(key, (op, why, 0))
        groups[key] = (first, why, count + 1)
    return list(groups.values())


def _scope(op: GraphOp, count: int) -> str:
    where = f"function {op.function}" if op.function else "the top-level graph"
    return where + (f" ({count} nodes)" if count > 1 else "")


def check_python_callback_ops(art: Artifact, ctx: RuleContext) -> Iterator[Hit]:
    found = ((op, PY_CALLBACK_OPS.get(op.op, "a Python callback op")) for op in art.graph_ops)
    for op, api, count in _grouped((op, api) for op, api in found if is_python_callback(op.op)):
        tokens = [v for k, v in op.attrs if k == "token"]
        yield Hit(
            op.location,
            f"graph op {op.op} ({api}) in {_scope(op, count)} calls back into Python in the loading process",
            f"node={op.node}" + (f" token={tokens[0]}" if tokens else ""),
        )


def check_file_network_ops(art: Artifact, ctx: RuleContext) -> Iterator[Hit]:
    if not art.graph_ops:
        return
    graph = Graph.of(art.graph_ops)
    flagged = ((op, file_or_network_use(graph, op)) for op in graph.ops)
    for op, why, count in _grouped((op, why) for op, why in flagged if why is not None):
        consts = graph.const_strings(op)
        evidence = f"node={op.node}" + (f" constant inputs={consts[:3]}" if consts else "")
        yield Hit(op.location, f"graph op {op.op} in {_scope(op, count)} {why}", evidence)


def check_npy_bombs(art: Artifact, ctx: RuleContext) -> Iterator[Hit]:
    limits = ctx.policy.limits
    for npy in art.npy_arrays:
        if npy.has_object:
            continue  # an object array's size is pointers; its data is a pickle (KG104/KG105)
        declared, stored = npy.declared_bytes, npy.stored_bytes
        if declared > limits.npy_bomb_floor and declared > limits.npy_bomb_ratio * max(stored, 1):
            yield Hit(
                npy.location,
                f".npy declares {declared} bytes of {npy.descr} data (shape {npy.shape}) but holds only "
                f"{stored}: loading allocates the declared size first",
                f"declared={declared} stored={stored} ratio>{limits.npy_bomb_ratio} "
                f"floor={limits.npy_bomb_floor}",
            )


RULES: tuple[Rule, ...] = (
    Rule(
        id="KG104",
        name="pickle-unsafe-import",
        title="Pickle imports a callable outside the safe list",
        severity=Severity.CRITICAL,
        cwe="CWE-502",
        rationale=(
            "Unpickling runs code: GLOBAL, INST and STACK_GLOBAL import any name, and REDUCE, BUILD and "
            "NEWOBJ call it with arguments from the file. A pickle that only rebuilds data needs a handful "
            "of names (numpy array and dtype reconstruction, built-in containers, collections.OrderedDict, "
            "torch tensor rebuild functions and storages). Any other import, such as os.system, "
            "subprocess, builtins.eval or getattr, runpy or importlib, lets the file run commands when it "
            "is loaded. An import whose module or name is computed while unpickling cannot be checked "
            "statically and is treated the same way. kerasguard walks the opcodes and never unpickles."
        ),
        remediation=(
            "Do not load the file. Re-export the weights in a format without code (.keras with "
            "model.weights.h5, safetensors). If a specific import is legitimate for your pipeline, add it "
            "to [tool.kerasguard.allow] pickle_globals with a reason."
        ),
        check=check_pickle_globals,
        example=(
            "`cos\\nsystem\\n(S'id'\\ntR.`: a protocol 0 pickle that runs `os.system('id')` when loaded."
        ),
        references=(
            "https://docs.python.org/3/library/pickle.html#restricting-globals",
            "https://github.com/trailofbits/fickling",
        ),
    ),
    Rule(
        id="KG105",
        name="numpy-pickle",
        title="NumPy data that is unpickled on load",
        severity=Severity.CRITICAL,
        cwe="CWE-502",
        rationale=(
            "An object-dtype .npy stores its data as a pickle, and numpy.load treats any file that is "
            "neither a zip nor an .npy as a pickle. Keras 3.0-3.8 loads model.weights.npz with "
            "numpy.load(allow_pickle=True), so such a member runs code at load time even with "
            "safe_mode=True (no CVE; modelscan PR #262). Keras never writes object arrays into weights. "
            "Critical when the Keras that will load the file is older than 3.9 (or unknown); high "
            "otherwise, because any other tool that loads it with allow_pickle=True is exposed."
        ),
        remediation=(
            "Do not load the file. Upgrade Keras to 3.9 or later, and re-save the weights from a trusted "
            "model as model.weights.h5."
        ),
        check=check_numpy_pickles,
        references=(
            "https://github.com/protectai/modelscan/pull/262",
            "https://github.com/keras-team/keras/commit/57c94f305c",
            "https://numpy.org/doc/stable/reference/generated/numpy.load.html",
        ),
    ),
    Rule(
        id="KG106",
        name="savedmodel-python-callback",
        title="SavedModel graph calls back into Python",
        severity=Severity.CRITICAL,
        cwe="CWE-94",
        rationale=(
            "PyFunc, PyFuncStateless and EagerPyFunc (tf.numpy_function, tf.py_func, tf.py_function) run a "
            "Python callable of the loading process, chosen by a token in the graph, with tensors from the "
            "model. The code itself is not in the file, so what runs depends on what the loading process "
            "registered; a model that needs it cannot be verified and is not portable."
        ),
        remediation=(
            "Do not serve the model. Ask the publisher for a graph without Python callbacks, or run it only "
            "inside a sandbox with no network and no secrets."
        ),
        check=check_python_callback_ops,
        references=("https://www.tensorflow.org/api_docs/python/tf/py_function",),
    ),
    Rule(
        id="KG208",
        name="savedmodel-file-network-op",
        title="SavedModel graph reads or writes files or uses the network",
        severity=Severity.HIGH,
        cwe="CWE-73",
        rationale=(
            "TensorFlow ops such as ReadFile, WriteFile, MatchingFiles, the file-backed dataset and reader "
            "ops, ImmutableConst (maps a file), PrintV2 to a file, Debug* ops with dump URLs, RPC and "
            "tf.data service ops let a model read host files into its outputs, write files, or talk to "
            "the network when it is loaded or called. The checkpoint ops (SaveV2, RestoreV2, "
            "MergeV2Checkpoints, ShardedFilename, StringJoin...) are part of every SavedModel's saver and "
            "are not flagged where TensorFlow puts them; they are flagged when anything else in the graph "
            "reaches them."
        ),
        remediation=(
            "Do not serve the model with access to sensitive files or the network. Ask the publisher why "
            "the graph needs these ops, or run it in a sandbox without file system or network access."
        ),
        check=check_file_network_ops,
        references=(
            "https://github.com/ZJU-SEC/TensorAbuse",
            "https://www.tensorflow.org/guide/saved_model",
        ),
    ),
    Rule(
        id="KG409",
        name="npy-declared-size-bomb",
        title=".npy declares far more data than it holds",
        severity=Severity.HIGH,
        cwe="CWE-789",
        rationale=(
            "An .npy header declares a shape and dtype; numpy allocates the declared size before reading. "
            "A few bytes can declare terabytes. Keras refuses an npz member declaring more than 4 GiB and "
            "100x its compressed size only since 3.12.3/3.15.0; anything under 4 GiB is still allocated. "
            "kerasguard flags any array declaring more than npy_bomb_floor (64 MiB) and more than "
            "npy_bomb_ratio (100) times the bytes it stores."
        ),
        remediation=(
            "Do not load the file. If the array is legitimately sparse or truncated, obtain a complete "
            "copy; tune [tool.kerasguard.limits] npy_bomb_floor / npy_bomb_ratio only with a reason."
        ),
        check=check_npy_bombs,
        references=("https://github.com/keras-team/keras/pull/23016",),
    ),
)
