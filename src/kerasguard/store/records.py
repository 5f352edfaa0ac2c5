"""What the store records about a model: statuses, names, the public ``ModelInfo``, and row integrity.

A model row's MAC covers every column (under a key derived from the master key), so a row edited
outside kerasguard is refused; the MAC covers the row's revision, which every state change raises and
records in the audit log, so an older copy of the row put back is refused too. The large documents
in ``model_details`` are bound to the row by their digest. A blob is bound to its model by the
encryption context (namespace, name, version, blob id).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any, Protocol

from kerasguard.errors import StoreError
from kerasguard.store import crypto
from kerasguard.store.admission import policy_digest
from kerasguard.store.attachments import FIELD, Attachment, public, raw_entries
from kerasguard.store.db import ModelDetails, ModelRow

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")
DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")

ADMITTED = "admitted"
QUARANTINED = "quarantined"
PENDING = "pending"
DELETED = "deleted"


@dataclass(frozen=True)
class ModelInfo:
    """What the store knows about one model version (details only from :meth:`ModelStore.show`)."""

    namespace: str
    name: str
    version: str
    status: str
    stage: str
    digest: str | None
    size: int | None
    source: str
    signer: str | None
    filename: str
    created_at: str
    created_by: str
    updated_at: str
    reason: str | None
    provenance: dict[str, Any] | None = None
    scan_report: dict[str, Any] | None = None
    policy_digest: str | None = None
    admission: dict[str, Any] | None = None
    attachments: tuple[Attachment, ...] = ()

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}:{self.version}"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "namespace": self.namespace,
            "name": self.name,
            "version": self.version,
            "status": self.status,
            "stage": self.stage,
            "digest": self.digest,
            "size": self.size,
            "source": self.source,
            "signer": self.signer,
            "filename": self.filename,
            "created_at": self.created_at,
            "created_by": self.created_by,
            "updated_at": self.updated_at,
            "reason": self.reason,
        }
        if self.admission is not None:
            out.update(
                provenance=self.provenance,
                policy_digest=self.policy_digest,
                admission=self.admission,
                scan_report=self.scan_report,
                attachments=[a.to_dict() for a in self.attachments],
            )
        return out

    def attachment(self, kind: str) -> Attachment | None:
        """The newest attachment of this kind, or None."""
        found = [a for a in self.attachments if a.kind == kind]
        return found[-1] if found else None


def ref(namespace: str, name: str, version: str) -> str:
    return f"{namespace}/{name}:{version}"


class RowLike(Protocol):
    """A model row, as an ORM object or as the column tuple ``list`` selects."""

    namespace: str
    name: str
    version: str
    status: str
    stage: str
    filename: str
    digest: str | None
    size: int | None
    source: str
    signer: str | None
    blob_id: str
    wrapped_key: bytes | None
    key_id: str
    created_at: str
    created_by: str
    updated_at: str
    reason: str | None
    details_digest: str | None
    revision: int
    row_mac: str


# What ``list`` selects: the columns it shows and their MAC (no ORM objects, no documents).
LIST_COLUMNS = (
    ModelRow.namespace,
    ModelRow.name,
    ModelRow.version,
    ModelRow.status,
    ModelRow.stage,
    ModelRow.digest,
    ModelRow.size,
    ModelRow.source,
    ModelRow.created_at,
    ModelRow.reason,
    ModelRow.revision,
    ModelRow.list_mac,
)


@dataclass(frozen=True, slots=True)
class ModelSummary:
    """One line of ``list``: the columns that are covered by the row's list MAC."""

    namespace: str
    name: str
    version: str
    status: str
    stage: str
    digest: str | None
    size: int | None
    source: str
    created_at: str
    reason: str | None
    revision: int  # raised by every change of the row (promote, attach, ...), checked against the audit log

    @property
    def ref(self) -> str:
        return ref(self.namespace, self.name, self.version)

    def to_dict(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in self.__slots__}


def list_mac(key: bytes, row: RowLike) -> str:
    return list_mac_of(
        key,
        (
            row.namespace,
            row.name,
            row.version,
            row.status,
            row.stage,
            row.digest,
            row.size,
            row.source,
            row.created_at,
            row.reason,
            row.revision,
        ),
    )


def list_mac_of(key: bytes, values: tuple[str | int | None, ...]) -> str:
    """The list MAC of values in ``LIST_COLUMNS`` order (without the MAC column itself)."""
    return crypto.mac(key, ["model-list-v2", *values])


def seal(row: ModelRow, key: bytes) -> None:
    """Set both MACs of a row after any change (only holders of the master key can)."""
    row.row_mac = model_mac(key, row)
    row.list_mac = list_mac(key, row)


def model_mac(key: bytes, row: RowLike) -> str:
    return crypto.mac(
        key,
        [
            "model-v2",
            row.namespace,
            row.name,
            row.version,
            row.status,
            row.stage,
            row.filename,
            row.digest,
            row.size,
            row.source,
            row.signer,
            row.blob_id,
            row.wrapped_key.hex() if row.wrapped_key is not None else None,
            row.key_id,
            row.created_at,
            row.created_by,
            row.updated_at,
            row.reason,
            row.details_digest,
            row.revision,
        ],
    )


def details_digest(details: ModelDetails) -> str:
    body = json.dumps(
        [details.provenance, details.signature, details.scan_report, details.policy, details.admission],
        separators=(",", ":"),
    )
    return "sha256:" + hashlib.sha256(body.encode()).hexdigest()


def blob_context(row: ModelRow) -> bytes:
    return "\0".join(("kerasguard-blob-v1", row.namespace, row.name, row.version, row.blob_id)).encode()


def safe_filename(name: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "_", name)[-200:].lstrip("._-")
    return cleaned or "model.bin"


def check_name(name: str, version: str) -> None:
    if not NAME_RE.match(name):
        raise StoreError(f"invalid model name {name!r} (letters, digits, '.', '_', '-'; up to 128)")
    if not VERSION_RE.match(version):
        raise StoreError(f"invalid version {version!r} (letters, digits, '.', '_', '+', '-'; up to 128)")


def check_digest(value: str) -> str:
    lowered = value.strip().lower()
    if not DIGEST_RE.match(lowered):
        raise StoreError(f"invalid digest {value!r} (expected sha256:<64 hex digits>)")
    return lowered


def info_from_row(row: RowLike, details: ModelDetails | None = None) -> ModelInfo:
    """The public record of a row (with its documents when ``details`` is given)."""
    extra: dict[str, Any] = {}
    if details is not None:
        provenance = json.loads(details.provenance)
        entries = raw_entries(provenance)
        provenance.pop(FIELD, None)  # blob ids and wrapped keys stay inside the store
        extra = {
            "provenance": provenance,
            "attachments": tuple(public(e) for e in entries),
            "scan_report": json.loads(details.scan_report) if details.scan_report else None,
            "policy_digest": policy_digest(details.policy),
            "admission": json.loads(details.admission),
        }
    return ModelInfo(
        namespace=row.namespace,
        name=row.name,
        version=row.version,
        status=row.status,
        stage=row.stage,
        digest=row.digest,
        size=row.size,
        source=row.source,
        signer=row.signer,
        filename=row.filename,
        created_at=row.created_at,
        created_by=row.created_by,
        updated_at=row.updated_at,
        reason=row.reason,
        **extra,
    )
