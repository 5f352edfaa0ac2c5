"""Sealed attachments: files that ride with a model version (detectors, training records, probe reports).

Each attachment is its own blob, encrypted exactly like a model blob (a fresh data key, streaming
AES-256-GCM, the key wrapped by the master key and bound to the blob id). The associated data binds the
blob to its model version, kind and name, so a blob moved to another version or attachment does not
decrypt. Its entry (kind, name, SHA-256 digest, size, who attached it and when, a short summary for
``store show``, blob id and wrapped key) sits in the version's provenance document, which the row MAC
covers through ``details_digest``; attaching later raises the row's revision like any state change, so
an older copy of the row (without the new attachment, or with an older one) is refused as a replay.
Reading an attachment decrypts it and compares the digest and size with the entry before returning a
byte: an edited, swapped or truncated blob is an :class:`AttachmentError` naming the model.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import io
import json
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from kerasguard.errors import StoreError
from kerasguard.store import crypto
from kerasguard.store.blobs import BLOB_ID, MISSING_HINT, Upload
from kerasguard.store.crypto import CryptoError, MasterKey
from kerasguard.store.parts import StoreParts
from kerasguard.store.witness import WitnessError

KINDS = ("detector", "strip", "training_record", "probe_report")
MAX_ATTACHMENTS = 32  # per version: the entries live in the provenance document
MAX_SUMMARY_BYTES = 8 * 1024  # per entry, as canonical JSON
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
FIELD = "attachments"  # the provenance key that holds the entries


class AttachmentError(StoreError):
    """An attachment failed its integrity check (edited, swapped, truncated or missing blob)."""


@dataclass(frozen=True)
class NewAttachment:
    """A file to attach: its kind, a name, its bytes and a short summary for ``store show``.

    The caller (``kerasguard.attach``) checks the file with its format's own reader and builds the
    summary; the store checks sizes and seals the bytes.
    """

    kind: str
    name: str
    data: bytes
    summary: dict[str, Any]


@dataclass(frozen=True)
class Attachment:
    """The public record of one attachment (no blob id, no key)."""

    kind: str
    name: str
    digest: str
    size: int
    attached_at: str
    attached_by: str
    summary: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "digest": self.digest,
            "size": self.size,
            "attached_at": self.attached_at,
            "attached_by": self.attached_by,
            "summary": self.summary,
        }


def check_new(items: Iterable[NewAttachment], existing: int, max_bytes: int) -> list[NewAttachment]:
    """Refuse what must not be attached: unknown kind, bad name, over the size cap, too many."""
    checked = list(items)
    if existing + len(checked) > MAX_ATTACHMENTS:
        raise StoreError(f"a model version holds at most {MAX_ATTACHMENTS} attachments")
    names: set[tuple[str, str]] = set()
    for item in checked:
        if item.kind not in KINDS:
            raise StoreError(f"unknown attachment kind {item.kind!r} (kinds: {', '.join(KINDS)})")
        if not NAME_RE.match(item.name):
            raise StoreError(f"invalid attachment name {item.name!r} (letters, digits, '.', '_', '-')")
        if len(item.data) > max_bytes:
            raise StoreError(
                f"the {item.kind} attachment {item.name} is {len(item.data)} bytes, over the store's "
                f"limit of {max_bytes} bytes",
                hint="raise [store] max_attachment_bytes in the policy, or attach a smaller file",
            )
        try:
            summary = json.dumps(item.summary, sort_keys=True, allow_nan=False)
        except (TypeError, ValueError):
            raise StoreError(f"the summary of attachment {item.name} is not JSON") from None
        if len(summary) > MAX_SUMMARY_BYTES:
            raise StoreError(
                f"the summary of attachment {item.name} is larger than {MAX_SUMMARY_BYTES} bytes"
            )
        if (item.kind, item.name) in names:
            raise StoreError(f"two {item.kind} attachments named {item.name}")
        names.add((item.kind, item.name))
    return checked


def ref(namespace: str, name: str, version: str) -> str:
    return f"{namespace}/{name}:{version}"


def context(namespace: str, name: str, version: str, blob_id: str, kind: str, att_name: str) -> bytes:
    """Associated data of an attachment blob: the model version, the blob, the kind and the name."""
    return "\0".join(("kerasguard-attachment-v1", namespace, name, version, blob_id, kind, att_name)).encode()


@contextlib.contextmanager
def sealed(
    parts: StoreParts,
    namespace: str,
    name: str,
    version: str,
    items: list[NewAttachment],
    *,
    actor: str,
    now: str,
) -> Iterator[list[dict[str, Any]]]:
    """Encrypt and publish each item as its own blob; yield their entries for the provenance.

    The blobs are referenced only once the caller's transaction commits inside the ``with``; when the
    body raises, every blob written here is removed (a crash leaves them to recovery's lock check).
    """
    uploads: list[Upload] = []
    try:
        entries = []
        for item in items:
            upload = parts.blobs.upload()
            uploads.append(upload)
            data_key = crypto.new_data_key()
            ctx = context(namespace, name, version, upload.blob_id, item.kind, item.name)
            with upload.open_part() as part:
                result = crypto.encrypt_stream(io.BytesIO(item.data), part, data_key, ctx)
                part.flush()
                os.fsync(part.fileno())
            upload.publish()
            wrapped = crypto.wrap_key(parts.master, data_key, upload.blob_id.encode())
            entries.append(
                {
                    "kind": item.kind,
                    "name": item.name,
                    "digest": result.digest,
                    "size": result.size,
                    "attached_at": now,
                    "attached_by": actor,
                    "summary": item.summary,
                    "blob_id": upload.blob_id,
                    "wrapped_key": base64.b64encode(wrapped).decode("ascii"),
                }
            )
        yield entries
    except WitnessError:  # raised after the commit: the blobs are referenced now
        for upload in uploads:
            upload.finish()
        raise
    except BaseException:
        for upload in uploads:
            upload.abort()
        raise
    for upload in uploads:
        upload.finish()


def raw_entries(provenance: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The attachment entries of a provenance document (none for versions pushed before them)."""
    value = (provenance or {}).get(FIELD)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(e, dict) for e in value):
        raise StoreError("the attachments of this version are malformed")
    return value


def public(entry: dict[str, Any]) -> Attachment:
    summary = entry.get("summary")
    return Attachment(
        kind=str(entry.get("kind")),
        name=str(entry.get("name")),
        digest=str(entry.get("digest")),
        size=int(entry.get("size") or 0),
        attached_at=str(entry.get("attached_at")),
        attached_by=str(entry.get("attached_by")),
        summary=summary if isinstance(summary, dict) else {},
    )


def _unwrap(master: MasterKey, entry: dict[str, Any], label: str) -> tuple[str, bytes]:
    blob_id = entry.get("blob_id")
    wrapped = entry.get("wrapped_key")
    if not isinstance(blob_id, str) or not BLOB_ID.match(blob_id) or not isinstance(wrapped, str):
        raise AttachmentError(f"{label} has no valid blob reference")
    try:
        key = crypto.unwrap_key(master, base64.b64decode(wrapped, validate=True), blob_id.encode())
    except (CryptoError, binascii.Error, ValueError) as exc:
        raise AttachmentError(f"cannot open the data key of {label}: {exc}") from None
    return blob_id, key


def read(parts: StoreParts, namespace: str, name: str, version: str, entry: dict[str, Any]) -> bytes:
    """Decrypt one attachment and check it against its entry (digest and size); raises AttachmentError."""
    kind, att_name = str(entry.get("kind")), str(entry.get("name"))
    label = f"the {kind} attachment {att_name} of model {ref(namespace, name, version)}"
    blob_id, key = _unwrap(parts.master, entry, label)
    where = parts.blobs.final.location
    try:
        blob = parts.blobs.final.open_read(blob_id)
    except FileNotFoundError:
        raise AttachmentError(
            f"{label} is missing from the store (looked in {where})", hint=MISSING_HINT
        ) from None
    except OSError as exc:
        raise AttachmentError(f"cannot read {label} in {where}: {exc.strerror or exc}") from None
    out = io.BytesIO()
    with blob:
        try:
            result = crypto.decrypt_stream(
                blob, out, key, context(namespace, name, version, blob_id, kind, att_name)
            )
        except CryptoError as exc:
            raise AttachmentError(f"{label} is damaged or was tampered with: {exc}") from None
    if result.digest != entry.get("digest") or result.size != entry.get("size"):
        raise AttachmentError(
            f"{label} decrypted to digest {result.digest} ({result.size} bytes), not the recorded "
            f"{entry.get('digest')} ({entry.get('size')} bytes)"
        )
    return out.getvalue()


def rewrap(entries: list[dict[str, Any]], old: MasterKey, new: MasterKey, label: str) -> list[dict[str, Any]]:
    """The entries with every data key wrapped under ``new`` (key rotation; blobs are not rewritten)."""
    out = []
    for entry in entries:
        blob_id, key = _unwrap(old, entry, f"an attachment of model {label}")
        wrapped = crypto.wrap_key(new, key, blob_id.encode())
        out.append({**entry, "wrapped_key": base64.b64encode(wrapped).decode("ascii")})
    return out


def blob_ids(entries: list[dict[str, Any]]) -> list[str]:
    return [
        str(e["blob_id"])
        for e in entries
        if isinstance(e.get("blob_id"), str) and BLOB_ID.match(e["blob_id"])
    ]
