"""KG1xx (config part): objects in the model config that carry or fetch code Keras runs.

KG101 Lambda bytecode, KG102 TorchModuleWrapper pickles, KG103 TFSMLayer external SavedModels.
The Lambda facts (where each function is, its decoded bytecode summary) come from
:mod:`kerasguard.formats.lambdas`; bytecode is never unmarshalled. This module only judges them.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator

from kerasguard.findings import Severity
from kerasguard.formats import config_walk as cw
from kerasguard.formats.artifact import Artifact, JsonDocument
from kerasguard.formats.lambdas import lambda_functions
from kerasguard.rules.base import Hit, Rule, RuleContext

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
