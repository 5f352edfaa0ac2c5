"""Bring a store written by an older kerasguard to the current integrity format, on open, with the key.

Format 1 (kerasguard before row revisions): row and token MACs without a revision, an unkeyed SHA-256
audit chain. Format 2: MACs over a revision, a keyed (HMAC) chain, and one audit entry per model and
token that records its revision. The schema columns come from the Alembic migration 0002; computing
MACs needs the master key, which migrations never see, so the first ``ModelStore.open`` does the rest
in one transaction, after checking everything under the old format: a store that was tampered with
before the upgrade is refused, not blessed.
"""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING

from sqlalchemy import select

from kerasguard.errors import StoreError
from kerasguard.store import audit, crypto
from kerasguard.store.db import AuditHead, MetaRow, ModelRow, TokenRow
from kerasguard.store.rbac import token_mac
from kerasguard.store.records import PENDING, ref, seal

if TYPE_CHECKING:
    from kerasguard.store.parts import StoreParts

FORMAT_KEY = "integrity_format"
FORMAT = 2
#: Session.info key: the master key id a transaction's new audit head was made under (key rotation).
WITNESS_KEY_ID = "kerasguard.witness.key_id"


def _legacy_model_mac(key: bytes, row: ModelRow) -> str:
    return crypto.mac(
        key,
        [
            "model-v1",
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
        ],
    )


def _legacy_token_mac(key: bytes, row: TokenRow) -> str:
    return crypto.mac(
        key,
        [
            "token-v1",
            row.id,
            row.salt,
            row.hash,
            row.role,
            row.namespace,
            row.label,
            row.created_at,
            row.revoked_at,
        ],
    )


def ensure_current(store: StoreParts) -> bool:
    """Upgrade the store's integrity format if it is older; True when it did."""
    with store.transaction() as s:
        # Lock the head first: two nodes opening an old store at once upgrade it once.
        s.execute(select(AuditHead).where(AuditHead.id == 1).with_for_update()).scalar_one_or_none()
        meta = s.get(MetaRow, FORMAT_KEY)
        if meta is not None:
            if meta.value != str(FORMAT):
                raise StoreError(
                    f"this store has integrity format {meta.value!r}; this kerasguard knows {FORMAT}",
                    hint="upgrade kerasguard",
                )
            return False
        try:
            audit.verify(s, b"", hasher=audit.legacy_hash)
        except audit.AuditTampered as exc:
            raise StoreError(
                f"cannot upgrade the store: {exc.message}",
                hint="the store was tampered with before this upgrade (or the integrity format marker "
                "was deleted); restore the database from a backup",
            ) from None
        key = store.master.mac_key
        subjects: list[tuple[str | None, str | None, str | None, str, int]] = []
        for row in s.execute(select(ModelRow).order_by(ModelRow.id)).scalars():
            if not hmac.compare_digest(_legacy_model_mac(key, row), row.row_mac):
                label = ref(row.namespace, row.name, row.version)
                raise StoreError(
                    f"cannot upgrade the store: metadata of model {label} failed its integrity check",
                    hint="restore the row from a backup or delete it, then open the store again",
                )
            row.revision = 0 if row.status == PENDING else 1
            seal(row, key)
            if row.status != PENDING:
                subject = audit.model_subject(row.namespace, row.name, row.version)
                subjects.append((row.namespace, row.name, row.version, subject, row.revision))
        for token in s.execute(select(TokenRow).order_by(TokenRow.id)).scalars():
            if not hmac.compare_digest(_legacy_token_mac(key, token), token.row_mac):
                raise StoreError(f"cannot upgrade the store: token {token.id} failed its integrity check")
            token.revision = 1
            token.row_mac = token_mac(key, token)
            subjects.append((token.namespace, None, None, audit.token_subject(token.id), 1))
        audit.rechain(s, audit.keyed(store.audit_key))
        for namespace, name, version, subject, revision in subjects:
            audit.append(
                s,
                audit.Event(
                    actor="store upgrade",
                    action="upgrade",
                    result="ok",
                    namespace=namespace,
                    model=name,
                    version=version,
                    detail=f"integrity format {FORMAT}: revision {revision}",
                    subject=subject,
                    revision=revision,
                ),
                store.audit_key,
            )
        s.add(MetaRow(key=FORMAT_KEY, value=str(FORMAT)))
        audit.append(
            s,
            audit.Event(
                actor="store upgrade",
                action="upgrade",
                result="ok",
                detail=f"integrity format 1 -> {FORMAT}: keyed audit chain, revisions of "
                f"{len(subjects)} models and tokens",
            ),
            store.audit_key,
        )
    return True
