"""Reader pass over parsed model configs: payloads embedded in them become nested blobs.

A TorchModuleWrapper stores ``torch.save`` output as base64 in its config (CVE-2025-49655). Decoding
it (bounded) and handing it to the dispatcher gets its pickle opcodes reported like any pickle in the
archive. This pass also checks that each config is small enough for the config rules to walk whole,
so a truncated walk makes the scan incomplete instead of silently partial.
"""

from __future__ import annotations

import base64
import binascii

from kerasguard.findings import Location
from kerasguard.formats import config_walk as cw
from kerasguard.formats.artifact import Artifact, JsonDocument
from kerasguard.formats.blob import Blob
from kerasguard.formats.context import ReadBlob, ReadContext

PAYLOAD_NAME = "torch_module.pt"


def extract_payloads(art: Artifact, ctx: ReadContext, read_blob: ReadBlob) -> None:
    """Scan payloads embedded in every config of ``art``. Never raises for bad input."""
    for doc in cw.config_documents(art):
        try:
            _one_document(doc, art, ctx, read_blob)
        except Exception as exc:  # a bug here must not discard what was already read
            art.problem(doc.location, "internal", f"config payload pass failed: {type(exc).__name__}: {exc}")


def _one_document(doc: JsonDocument, art: Artifact, ctx: ReadContext, read_blob: ReadBlob) -> None:
    limit = ctx.limits.max_config_nodes
    walked = cw.index(doc, limit)
    if walked.truncated:
        art.problem(
            doc.location,
            "limit",
            f"config has more than max_config_nodes={limit} nested objects; only the first were analysed",
        )
    for ref in walked.refs:
        cfg = ref.config
        if ref.class_name != "TorchModuleWrapper" or not isinstance(cfg, dict):
            continue
        text = cfg.get("module")
        if not isinstance(text, str) or not text.strip():
            continue
        pointer = f"{ref.pointer}/config/module"
        location = doc.location.child(member=f"base64:{pointer}")
        data = decode_payload(text, ctx.limits.max_pickle_bytes, art, location)
        if data is not None:
            read_blob(Blob.from_bytes(data, location, PAYLOAD_NAME), art, ctx, 1)


def decode_payload(text: str, limit: int, art: Artifact, location: Location) -> bytes | None:
    """Base64-decode like Keras (``base64.b64decode``, non-validating) within ``limit`` bytes."""
    max_chars = (limit + 2) // 3 * 4
    compact = "".join(text.split())
    if len(compact) > max_chars + 4:
        art.problem(
            location,
            "limit",
            f"embedded payload of about {len(compact) * 3 // 4} bytes exceeds max_pickle_bytes={limit}",
        )
        return None
    try:
        return base64.b64decode(compact.encode("ascii"))
    except (UnicodeEncodeError, binascii.Error, ValueError) as exc:
        art.problem(location, "corrupt", f"embedded payload is not valid base64: {exc}")
        return None
