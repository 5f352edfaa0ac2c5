"""KG1xx (config part): objects in the model config that carry or fetch code Keras runs.

KG101 Lambda bytecode, KG102 TorchModuleWrapper pickles, KG103 TFSMLayer external SavedModels.
Bytecode is never unmarshalled: :mod:`kerasguard.formats.marshal_safe` lists the names it uses.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from kerasguard.findings import Severity
from kerasguard.formats.artifact import Artifact, JsonDocument
from kerasguard.formats.marshal_safe import MarshalSummary, summarize
from kerasguard.rules import config_walk as cw
from kerasguard.rules.base import Hit, Rule, RuleContext
from kerasguard.rules.config_walk import ObjRef

# Base64 text decoded per Lambda for evidence; real lambdas are a few KB.
MAX_CODE_CHARS = 4 * 1024 * 1024
LEGACY_H5_FORMATS = frozenset({"legacy_model", "hdf5", "h5"})


@dataclass(frozen=True)
class LambdaCode:
    pointer: str  # where the code lives
    owner: str  # what carries it, for the message
    code: Any  # the base64 text (or whatever the config holds there)


def decode_code(code: Any) -> bytes | None:
    """The bytes ``python_utils.func_load`` would unmarshal: base64, or raw text when that fails."""
    if isinstance(code, list | tuple) and code:
        code = code[0]
    if not isinstance(code, str):
        return None
    text = code[:MAX_CODE_CHARS]
    try:
        return binascii.a2b_base64(text.encode("ascii"))
    except (UnicodeEncodeError, binascii.Error):
        return text.encode("raw_unicode_escape", "replace")


def lambda_codes(ref: ObjRef, owner: ObjRef | None = None) -> Iterator[LambdaCode]:
    """Bytecode carried by ``ref``: a Keras 3 ``__lambda__`` or a Keras 2 Lambda config.

    ``owner`` is the object holding a ``__lambda__`` (its layer), named in the message.
    """
    cfg = ref.config
    if ref.kind == "lambda":
        inner = cfg if isinstance(cfg, dict) else {}
        code = inner.get("code", inner.get("value"))
        key = ref.pointer.rsplit("/", 1)[-1]
        where = f"{owner.class_name} {owner.layer_name or ''!r} {key}" if owner else "object"
        yield LambdaCode(ref.pointer, f"{where} (__lambda__)", code)
        return
    if ref.kind != "class" or not isinstance(cfg, dict):
        return
    function = unwrap_tuple(cfg.get("function"))
    if isinstance(function, list) or (isinstance(function, str) and cfg.get("function_type") == "lambda"):
        name = ref.layer_name or ref.class_name
        yield LambdaCode(f"{ref.pointer}/config/function", f"{ref.class_name} {name!r} function", function)
    elif is_lambda_layer(ref) and not _judged_elsewhere(function, cfg.get("function_type")):
        # A function in an encoding this scanner does not know: Keras may still decode it. Code.
        name = ref.layer_name or ref.class_name
        yield LambdaCode(f"{ref.pointer}/config/function", f"{ref.class_name} {name!r} function", function)
    if cfg.get("output_shape_type") != "lambda":  # most layers: no output_shape function
        return
    output_shape = unwrap_tuple(cfg.get("output_shape"))
    if isinstance(output_shape, list | str):
        name = ref.layer_name or ref.class_name
        yield LambdaCode(
            f"{ref.pointer}/config/output_shape", f"{ref.class_name} {name!r} output_shape", output_shape
        )


def unwrap_tuple(value: Any) -> Any:
    """tf.keras 2.x metadata writes tuples as ``{"class_name": "__tuple__", "items": [...]}``."""
    if (
        isinstance(value, dict)
        and value.get("class_name") == "__tuple__"
        and isinstance(value.get("items"), list)
    ):
        return value["items"]
    return value


def is_lambda_layer(ref: ObjRef) -> bool:
    """A Lambda layer of any Keras (``Lambda``, ``keras.layers.Lambda``, a registered ``pkg>Lambda``)."""
    return ref.class_name.rsplit(">", 1)[-1].rsplit(".", 1)[-1] == "Lambda"


def _judged_elsewhere(function: Any, function_type: Any) -> bool:
    """Lambda functions other rules judge: a named function (Keras 2 ``function_type: function``, KG2xx),
    a Keras 3 reference or ``__lambda__`` (a ref of its own), a raw value that is not code, or none."""
    if function is None:
        return True
    if isinstance(function, str):
        return function_type in ("function", "raw", None)
    return cw.as_ref(function) is not None


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
    for doc, ref in cw.refs(art):
        owner = cw.index(doc).enclosing(ref.pointer) if ref.kind == "lambda" else None
        for found in lambda_codes(ref, owner):
            data = decode_code(found.code)
            summary = summarize(data) if data else MarshalSummary(layout=None, problem="no code string")
            cves = ("CVE-2025-9905",) if is_legacy_h5(art, doc) else ()
            carries = (
                "carries Python bytecode"
                if data
                else "holds a function in an encoding this scanner cannot decode, so it is treated as code "
                f"({type(found.code).__name__}); Python bytecode"
            )
            yield Hit(
                cw.at(doc, found.pointer),
                f"{found.owner} {carries} that runs when the model is loaded with "
                "safe_mode=False, by Keras < 2.13, by legacy .h5 loading before 3.11.3, by tf-keras, or by "
                f"direct from_config calls before 3.12.3/3.15.0 ({_size(data)})",
                evidence=summary.describe(),
                cves=cves,
            )


def _size(data: bytes | None) -> str:
    return "no decodable code" if not data else f"{len(data)} bytes of marshal data"


# --- KG102 -----------------------------------------------------------------------------------------


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
)
