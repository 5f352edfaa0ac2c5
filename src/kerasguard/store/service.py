"""``ModelStore``: the model store API behind ``kerasguard store``.

Every call takes an API token, is checked against the permission matrix (deny by default, denials
audited) and records what it did in the hash-chained audit log in the same transaction as the change.

A push claims ``(namespace, name, version)`` with a *pending* row first: the unique constraint makes
exactly one of two concurrent pushes win, and a pending row is never listed, shown or pulled. Only
after the ciphertext is complete, checked and in its final place does the row become admitted or
quarantined. A push killed at any point leaves a pending row and temporary files that the next start
removes (it can tell a dead push from a live one by the push's file lock).

Model rows and tokens carry a MAC under a key derived from the master key, and each blob is bound to
its model by the encryption's associated data, so an edited row, a swapped blob or a wrong key is
refused with the model named rather than served.
"""

from __future__ import annotations

import contextlib
import gc
import hmac
import json
import os
import secrets
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from sqlalchemy import Engine, delete, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from kerasguard.errors import KerasGuardError, StoreError
from kerasguard.policy import Policy
from kerasguard.store import audit, crypto, rbac
from kerasguard.store.blobs import BlobStore
from kerasguard.store.config import StoreConfig, default_db_url, read_config, write_config
from kerasguard.store.crypto import CryptoError, MasterKey
from kerasguard.store.db import (
    AuditRow,
    MetaRow,
    ModelDetails,
    ModelRow,
    TokenRow,
    make_engine,
    migrate,
    redact,
    sessions,
)
from kerasguard.store.egress import write_model
from kerasguard.store.ingest import push_model, with_
from kerasguard.store.perms import Modes, check_tree, create_file, make_dir
from kerasguard.store.rbac import Action, Principal, Role
from kerasguard.store.records import (
    DELETED,
    LIST_COLUMNS,
    PENDING,
    QUARANTINED,
    SERVABLE,
    ModelInfo,
    ModelSummary,
    RowLike,
    check_digest,
    check_name,
    details_digest,
    info_from_row,
    list_mac_of,
    model_mac,
    ref,
    seal,
)


class AccessDenied(StoreError):
    """The token may not do this (or is not a valid token). The attempt is in the audit log."""


class ModelStore:
    """A model store rooted at a local folder (settings, temporary files, and blobs unless remote)."""

    def __init__(
        self, root: Path, config: StoreConfig, engine: Engine, master: MasterKey, policy: Policy
    ) -> None:
        self.root = root
        self.config = config
        self.engine = engine
        self.modes: Modes = config.modes()
        self.blobs = BlobStore(root, self.modes, config.blob_url)
        self.master = master
        self.policy = policy
        self._sessions = sessions(engine)
        # Pending pushes are recorded with the node that runs them: only that node can tell (by its local
        # push locks) whether they are still alive, so recovery never touches another node's pushes.
        self.node = f"{socket.gethostname()}:{root}"

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    def init(
        cls,
        root: str | os.PathLike[str],
        master_key: MasterKey,
        *,
        db_url: str | None = None,
        blob_url: str | None = None,
        reader_group: str | None = None,
        policy: Policy | None = None,
        admin_label: str = "initial admin",
    ) -> tuple[ModelStore, str]:
        """Create a store and return it with its first admin token (for every namespace), shown once."""
        path = Path(root).absolute()
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise StoreError(
                f"{path} exists and is not an empty folder; refusing to initialise a store there"
            )
        config = StoreConfig(
            db_url=db_url or default_db_url(path), blob_url=blob_url, reader_group=reader_group
        )
        modes = config.modes()
        path.parent.mkdir(parents=True, exist_ok=True)
        make_dir(path, modes)
        BlobStore.create_layout(path, modes)
        write_config(path, config, modes)
        if db_url is None:
            os.close(create_file(path / "store.db", modes))
        engine = make_engine(config.db_url)
        migrate(engine)
        store = cls(path, config, engine, master_key, policy or Policy())
        with store.transaction() as s:
            if s.get(MetaRow, "key_id") is not None:
                raise StoreError(f"the database at {redact(config.db_url)} already holds a store")
            s.add(MetaRow(key="key_id", value=master_key.key_id))
            s.add(MetaRow(key="store_id", value=secrets.token_hex(16)))
            s.add(MetaRow(key="created_at", value=audit.now()))
            token, row = rbac.new_token(
                Role.admin, rbac.ALL_NAMESPACES, admin_label, "store init", audit.now(), master_key.mac_key
            )
            s.add(row)
            audit.append(
                s, audit.Event(actor="store init", action="init", result="ok", detail=f"admin token {row.id}")
            )
        return store, token

    @classmethod
    def open(
        cls, root: str | os.PathLike[str], master_key: MasterKey, *, policy: Policy | None = None
    ) -> ModelStore:
        """Open an existing store: check permissions, migrate, check the key, clean up dead pushes."""
        path = Path(root).absolute()
        if not path.is_dir():
            raise StoreError(f"{path} is not a kerasguard store folder", hint=f"kerasguard store init {path}")
        config = read_config(path)
        modes = config.modes()
        check_tree(path, modes)
        engine = make_engine(config.db_url)
        migrate(engine)
        store = cls(path, config, engine, master_key, policy or Policy())
        with store.transaction() as s:
            meta = s.get(MetaRow, "key_id")
            if meta is None:
                raise StoreError(
                    f"the database at {redact(config.db_url)} holds no store (was it initialised?)"
                )
            if meta.value != master_key.key_id:
                raise StoreError(
                    f"wrong master key: this store was encrypted under key id {meta.value}, "
                    f"the key given has id {master_key.key_id}",
                    hint="use the store's key file or $KERASGUARD_MASTER_KEY",
                )
        store.recover()
        return store

    @property
    def pending_mark(self) -> str:
        return f"pending on {self.node}"

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> ModelStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Session]:
        """One database transaction; database failures become StoreError."""
        try:
            with self._sessions.begin() as session:
                yield session
        except OperationalError as exc:
            raise StoreError(f"store database error: {exc.orig}") from None

    def recover(self) -> list[str]:
        """Remove what dead pushes left (pending rows, temporary files) and blobs of deleted models."""
        cleaned: list[str] = []
        for blob_id in self.blobs.stale_temporary():
            self.blobs.remove_temporary(blob_id)
        with self.transaction() as s:
            pending = (
                s.execute(
                    select(ModelRow).where(ModelRow.status == PENDING, ModelRow.reason == self.pending_mark)
                )
                .scalars()
                .all()
            )
            deleted = s.execute(select(ModelRow.blob_id).where(ModelRow.status == DELETED)).scalars().all()
        for row in pending:
            if self.blobs.is_alive(row.blob_id):
                continue
            with self.transaction() as s:
                gone = s.execute(
                    delete(ModelRow).where(ModelRow.id == row.id, ModelRow.status == PENDING)
                ).rowcount  # type: ignore[attr-defined]
                if gone:
                    audit.append(
                        s,
                        audit.Event(
                            actor="store recovery",
                            action="push",
                            result="abandoned",
                            namespace=row.namespace,
                            model=row.name,
                            version=row.version,
                            source=row.source,
                            detail="the pushing process died; its partial upload was removed",
                        ),
                    )
            if gone:
                self.blobs.final.delete(row.blob_id)
                self.blobs.remove_temporary(row.blob_id)
                cleaned.append(ref(row.namespace, row.name, row.version))
        if deleted:  # a delete interrupted between its commit and removing the blob
            for blob_id in set(deleted) & self.blobs.final.ids():
                self.blobs.final.delete(blob_id)
        return cleaned

    # ------------------------------------------------------------------ access control

    def record_event(self, event: audit.Event) -> None:
        """Append one audit entry in its own transaction (denials, failures)."""
        with self.transaction() as s:
            audit.append(s, event)

    def _authenticate(self, token: str, action: Action) -> Principal:
        parsed = rbac.parse_token(token or "")
        principal: Principal | None = None
        actor = "anonymous"
        if parsed is not None:
            actor = f"token:{parsed[0]}"
            with self.transaction() as s:
                principal = rbac.authenticate(s.get(TokenRow, parsed[0]), parsed[1], self.master.mac_key)
        if principal is None:
            self.record_event(
                audit.Event(actor=actor, action=action.value, result="denied", detail="invalid token")
            )
            raise AccessDenied("access denied: invalid, unknown or revoked token")
        return principal

    def _authorize(
        self,
        token: str,
        action: Action,
        namespace: str | None,
        *,
        name: str | None = None,
        version: str | None = None,
        default_all: bool = False,
    ) -> tuple[Principal, str]:
        """The principal and the namespace it acts in; denials are audited and raise AccessDenied."""
        principal = self._authenticate(token, action)
        if namespace is None:
            if principal.namespace == rbac.ALL_NAMESPACES:
                if action not in rbac.GLOBAL_ACTIONS and not default_all:
                    raise StoreError("this token covers every namespace: say which one (--namespace)")
                namespace = rbac.ALL_NAMESPACES
            else:
                namespace = principal.namespace
        else:
            rbac.check_namespace(namespace, allow_all=True)
        if not principal.allowed(action, namespace):
            self.record_event(
                audit.Event(
                    actor=principal.actor,
                    action=action.value,
                    result="denied",
                    namespace=namespace,
                    model=name,
                    version=version,
                    detail=f"{principal.role} token for namespace {principal.namespace!r}",
                )
            )
            raise AccessDenied(
                f"access denied: a {principal.role} token for namespace {principal.namespace!r} "
                f"may not {action.value} in namespace {namespace!r}"
            )
        return principal, namespace

    def authenticate_invoker(self, key: str) -> Principal | None:
        """The principal of an ``invoker`` key, or None (unknown, wrong secret, revoked, another role).

        For the serving gateway, which calls this for every request it has not cached: neither success
        nor failure is written to the audit chain (the gateway logs every request itself), so a flood
        of bad keys cannot grow the audit log or contend for its head row. Only invoker keys count: an
        admin, publisher or reader token sent to the data plane is refused like a bad key.
        """
        parsed = rbac.parse_token(key or "")
        if parsed is None:
            return None
        with self.transaction() as s:
            principal = rbac.authenticate(s.get(TokenRow, parsed[0]), parsed[1], self.master.mac_key)
        if principal is None or principal.role is not Role.invoker:
            return None
        return principal if principal.allowed(Action.invoke, principal.namespace) else None

    def create_token(self, token: str, role: Role | str, namespace: str, label: str = "") -> str:
        """A new token (returned once; only its salted hash is stored)."""
        role = Role(role)
        principal, namespace = self._authorize(token, Action.token_create, namespace)
        if (
            role is Role.admin
            and principal.namespace != rbac.ALL_NAMESPACES
            and namespace == rbac.ALL_NAMESPACES
        ):
            raise AccessDenied("access denied: only an admin of every namespace may create such a token")
        with self.transaction() as s:
            secret, row = rbac.new_token(
                role, namespace, label or role.value, principal.actor, audit.now(), self.master.mac_key
            )
            s.add(row)
            audit.append(
                s,
                audit.Event(
                    actor=principal.actor,
                    action=Action.token_create.value,
                    result="ok",
                    namespace=namespace,
                    detail=f"token {row.id} role {role.value}",
                ),
            )
        return secret

    def revoke_token(self, token: str, token_id: str) -> None:
        principal = self._authenticate(token, Action.token_revoke)
        with self.transaction() as s:
            row = s.get(TokenRow, token_id)
        namespace = row.namespace if row is not None else principal.namespace
        principal, namespace = self._authorize(token, Action.token_revoke, namespace)
        with self.transaction() as s:
            row = s.get(TokenRow, token_id)
            if row is None:
                raise StoreError(f"no token {token_id!r}")
            row.revoked_at = audit.now()
            row.row_mac = rbac.token_mac(self.master.mac_key, row)
            audit.append(
                s,
                audit.Event(
                    actor=principal.actor,
                    action=Action.token_revoke.value,
                    result="ok",
                    namespace=namespace,
                    detail=f"token {token_id}",
                ),
            )

    def list_tokens(self, token: str, namespace: str | None = None) -> list[dict[str, Any]]:
        _principal, namespace = self._authorize(token, Action.token_list, namespace, default_all=True)
        with self.transaction() as s:
            query = select(TokenRow).order_by(TokenRow.created_at)
            if namespace != rbac.ALL_NAMESPACES:
                query = query.where(TokenRow.namespace == namespace)
            rows = s.execute(query).scalars().all()
        return [
            {
                "id": r.id,
                "role": r.role,
                "namespace": r.namespace,
                "label": r.label,
                "created_at": r.created_at,
                "revoked": r.revoked_at is not None,
            }
            for r in rows
        ]

    # ------------------------------------------------------------------ reading rows

    def _verify_row(self, row: RowLike) -> None:
        if not hmac.compare_digest(model_mac(self.master.mac_key, row), row.row_mac):
            raise StoreError(
                f"metadata of model {ref(row.namespace, row.name, row.version)} failed its integrity check: "
                "the database row was modified outside kerasguard or is corrupted; refusing to use it",
                hint="restore the row from a backup or delete the model",
            )

    def _load(self, s: Session, namespace: str, name: str, version: str) -> ModelRow:
        check_name(name, version)
        row = s.execute(
            select(ModelRow).where(
                ModelRow.namespace == namespace, ModelRow.name == name, ModelRow.version == version
            )
        ).scalar_one_or_none()
        if row is None or row.status == PENDING:
            raise StoreError(f"no model {ref(namespace, name, version)}")
        self._verify_row(row)
        return row

    def _details(self, s: Session, row: ModelRow) -> ModelDetails:
        details = s.get(ModelDetails, row.id)
        if details is None or not hmac.compare_digest(details_digest(details), row.details_digest or ""):
            raise StoreError(
                f"details of model {ref(row.namespace, row.name, row.version)} (report, provenance, "
                "signature or policy) failed their integrity check: modified outside kerasguard or corrupted"
            )
        return details

    # ------------------------------------------------------------------ push

    def push(
        self,
        token: str,
        path: str | os.PathLike[str],
        *,
        name: str,
        version: str,
        source: str,
        namespace: str | None = None,
        signature: str | os.PathLike[str] | None = None,
        expect_digest: str | None = None,
        provenance: dict[str, Any] | None = None,
        stage: str | None = None,
    ) -> ModelInfo:
        """Admit a model file: hash, check signature per policy, scan, encrypt; quarantine on failure.

        Raises for what must not be stored at all (denied, untrusted source, bad input, name taken);
        returns the record, with ``status == "quarantined"`` when a check failed.
        """
        principal, namespace = self._authorize(token, Action.push, namespace, name=name, version=version)
        return push_model(
            self,
            principal,
            namespace,
            path,
            name=name,
            version=version,
            source=source,
            signature=signature,
            expect_digest=expect_digest,
            provenance=provenance,
            stage=stage,
        )

    # ------------------------------------------------------------------ pull

    def pull(
        self,
        token: str,
        name: str,
        version: str,
        dest: str | os.PathLike[str],
        *,
        namespace: str | None = None,
        expect_digest: str | None = None,
        allow_quarantined: bool = False,
    ) -> Path:
        """Decrypt a model to ``dest`` (a file, or a folder to put it in), verifying its digest first.

        The file appears at ``dest`` only complete and verified (temporary name, fsync, rename).
        """
        action = Action.pull_quarantined if allow_quarantined else Action.pull
        principal, namespace = self._authorize(token, action, namespace, name=name, version=version)
        event = audit.Event(
            actor=principal.actor,
            action=action.value,
            result="",
            namespace=namespace,
            model=name,
            version=version,
        )
        try:
            if expect_digest is not None:
                expect_digest = check_digest(expect_digest)
            with self.transaction() as s:
                row = self._load(s, namespace, name, version)
                details = self._details(s, row)
            label = ref(namespace, name, version)
            event = with_(event, digest=row.digest, source=row.source)
            if row.status == DELETED:
                raise StoreError(f"model {label} was deleted")
            if row.status == QUARANTINED and not allow_quarantined:
                raise StoreError(
                    f"model {label} is quarantined and cannot be pulled for serving ({row.reason})",
                    hint="an admin can inspect it with `store show` and release it with a reason",
                )
            if row.status not in (SERVABLE, QUARANTINED) or row.digest is None or row.wrapped_key is None:
                raise StoreError(f"model {label} is in an unexpected state {row.status!r}")
            if expect_digest is not None and expect_digest != row.digest:
                raise StoreError(f"model {label} has digest {row.digest}, not the expected {expect_digest}")
            target = write_model(self, row, details, Path(dest))
        except KerasGuardError as exc:
            self.record_event(with_(event, result="failed", detail=exc.message))
            raise
        self.record_event(with_(event, result="ok", detail="pulled"))
        return target

    # ------------------------------------------------------------------ list / show

    def list(
        self,
        token: str,
        *,
        namespace: str | None = None,
        name: str | None = None,
        stage: str | None = None,
        digest: str | None = None,
        include_quarantined: bool = False,
    ) -> list[ModelSummary]:
        """Servable models (and quarantined ones for admins who ask), newest first within a name.

        Every line is checked against its row's list MAC; a tampered row stops the listing, named.
        """
        action = Action.list_quarantined if include_quarantined else Action.list
        _principal, namespace = self._authorize(token, action, namespace)
        statuses = [SERVABLE, QUARANTINED] if include_quarantined else [SERVABLE]
        query = select(*LIST_COLUMNS).where(ModelRow.namespace == namespace, ModelRow.status.in_(statuses))
        if name is not None:
            query = query.where(ModelRow.name == name)
        if stage is not None:
            query = query.where(ModelRow.stage == stage)
        if digest is not None:
            query = query.where(ModelRow.digest == check_digest(digest))
        query = query.order_by(ModelRow.name, ModelRow.created_at.desc())
        key = self.master.mac_key
        out = []
        with _gc_paused(), self.transaction() as s:  # thousands of short-lived rows: no collection passes
            # Core rows straight from the connection: the ORM's per-row bookkeeping is most of the cost
            for row in s.connection().execute(query):
                values: tuple[Any, ...] = tuple(row[:-1])
                if not hmac.compare_digest(list_mac_of(key, values), str(row[-1])):
                    raise StoreError(
                        f"metadata of model {ref(*values[:3])} failed its integrity check: the database row "
                        "was modified outside kerasguard or is corrupted; refusing to list it",
                    )
                out.append(ModelSummary(*values))
        return out

    def show(self, token: str, name: str, version: str, *, namespace: str | None = None) -> ModelInfo:
        """One model with its provenance, admission decision, scan report and policy digest."""
        principal, namespace = self._authorize(token, Action.show, namespace, name=name, version=version)
        with self.transaction() as s:
            row = self._load(s, namespace, name, version)
            if row.status == QUARANTINED and not principal.allowed(Action.show_quarantined, namespace):
                audit.append(
                    s,
                    audit.Event(
                        actor=principal.actor,
                        action=Action.show_quarantined.value,
                        result="denied",
                        namespace=namespace,
                        model=name,
                        version=version,
                        detail="quarantined models are for admins",
                    ),
                )
                # Not an AccessDenied raised inside the transaction: the audit entry must commit.
                denied = True
            else:
                denied = False
                details = self._details(s, row)
        if denied:
            raise StoreError(f"no model {ref(namespace, name, version)}")
        return info_from_row(row, details)

    # ------------------------------------------------------------------ state changes

    def _change(
        self,
        token: str,
        action: Action,
        name: str,
        version: str,
        namespace: str | None,
        *,
        allowed_from: tuple[str, ...],
        detail: str,
        apply: Any,
    ) -> ModelInfo:
        principal, namespace = self._authorize(token, action, namespace, name=name, version=version)
        label = ref(namespace, name, version)
        try:
            with self.transaction() as s:
                row = self._load(s, namespace, name, version)
                if row.status not in allowed_from:
                    raise StoreError(f"cannot {action.value} model {label}: it is {row.status}")
                apply(row)
                row.updated_at = audit.now()
                seal(row, self.master.mac_key)
                audit.append(
                    s,
                    audit.Event(
                        actor=principal.actor,
                        action=action.value,
                        result="ok",
                        namespace=namespace,
                        model=name,
                        version=version,
                        digest=row.digest,
                        source=row.source,
                        detail=detail,
                    ),
                )
                info = info_from_row(row)
        except StoreError as exc:
            self.record_event(
                audit.Event(
                    actor=principal.actor,
                    action=action.value,
                    result="failed",
                    namespace=namespace,
                    model=name,
                    version=version,
                    detail=exc.message,
                )
            )
            raise
        return info

    def promote(
        self, token: str, name: str, version: str, stage: str, *, namespace: str | None = None
    ) -> ModelInfo:
        """Move an admitted model to another stage (e.g. staging -> production)."""
        if stage not in self.policy.store.stages:
            raise StoreError(
                f"unknown stage {stage!r} (policy stages: {', '.join(self.policy.store.stages)})"
            )

        def apply(row: ModelRow) -> None:
            row.stage = stage

        return self._change(
            token,
            Action.promote,
            name,
            version,
            namespace,
            allowed_from=(SERVABLE,),
            detail=f"stage {stage}",
            apply=apply,
        )

    def quarantine(
        self, token: str, name: str, version: str, reason: str, *, namespace: str | None = None
    ) -> ModelInfo:
        """Stop serving a model; it stays for investigation."""
        reason = _require_reason(reason)

        def apply(row: ModelRow) -> None:
            row.status = QUARANTINED
            row.reason = reason

        return self._change(
            token,
            Action.quarantine,
            name,
            version,
            namespace,
            allowed_from=(SERVABLE,),
            detail=reason,
            apply=apply,
        )

    def release(
        self, token: str, name: str, version: str, reason: str, *, namespace: str | None = None
    ) -> ModelInfo:
        """An admin's decision to serve a quarantined model after all; the reason is recorded."""
        reason = _require_reason(reason)

        def apply(row: ModelRow) -> None:
            row.status = SERVABLE
            row.reason = f"released: {reason}"

        return self._change(
            token,
            Action.release,
            name,
            version,
            namespace,
            allowed_from=(QUARANTINED,),
            detail=reason,
            apply=apply,
        )

    def delete(
        self, token: str, name: str, version: str, reason: str, *, namespace: str | None = None
    ) -> ModelInfo:
        """Delete a model: its data key is destroyed, then its blob; the name and version stay taken."""
        reason = _require_reason(reason)

        def apply(row: ModelRow) -> None:
            row.status = DELETED
            row.wrapped_key = None
            row.reason = f"deleted: {reason}"

        info = self._change(
            token,
            Action.delete,
            name,
            version,
            namespace,
            allowed_from=(SERVABLE, QUARANTINED),
            detail=reason,
            apply=apply,
        )
        with self.transaction() as s:
            blob_id = s.execute(
                select(ModelRow.blob_id).where(
                    ModelRow.namespace == info.namespace, ModelRow.name == name, ModelRow.version == version
                )
            ).scalar_one()
        self.blobs.final.delete(blob_id)
        return info

    # ------------------------------------------------------------------ audit and keys

    def audit_verify(self, token: str) -> audit.Verification:
        """Check the whole audit chain; raises StoreError naming the first edited, deleted or moved entry."""
        principal, _ = self._authorize(token, Action.audit_verify, None)
        try:
            with self.transaction() as s:
                result = audit.verify(s)
        except StoreError as exc:
            self.record_event(
                audit.Event(actor=principal.actor, action="audit-verify", result="failed", detail=exc.message)
            )
            raise
        self.record_event(
            audit.Event(
                actor=principal.actor,
                action="audit-verify",
                result="ok",
                detail=f"{result.entries} entries, head {result.head_hash}",
            )
        )
        return result

    def audit_export(self, token: str, out: TextIO, *, namespace: str | None = None) -> int:
        """Write audit entries as JSON lines (a tenant admin sees its own namespace only)."""
        principal, namespace = self._authorize(token, Action.audit_export, namespace, default_all=True)
        query = select(AuditRow).order_by(AuditRow.seq)
        if namespace != rbac.ALL_NAMESPACES:
            query = query.where(AuditRow.namespace == namespace)
        count = 0
        with self.transaction() as s:
            for row in s.execute(query.execution_options(yield_per=5000)).scalars():
                out.write(json.dumps(audit.to_json(row), sort_keys=True) + "\n")
                count += 1
        self.record_event(
            audit.Event(
                actor=principal.actor,
                action="audit-export",
                result="ok",
                namespace=namespace,
                detail=f"{count} entries",
            )
        )
        return count

    def rotate_key(self, token: str, new_key: MasterKey) -> int:
        """Rewrap every data key (and re-MAC every row) under ``new_key``; blobs are not rewritten."""
        principal, _ = self._authorize(token, Action.rotate_key, None)
        if new_key.key_id == self.master.key_id:
            raise StoreError("the new master key is the current one")
        count = 0
        with self.transaction() as s:
            for row in s.execute(select(ModelRow)).scalars():
                self._verify_row(row)
                if row.wrapped_key is not None:
                    try:
                        data_key = crypto.unwrap_key(self.master, row.wrapped_key, row.blob_id.encode())
                    except CryptoError as exc:
                        raise StoreError(
                            f"cannot rotate: data key of {ref(row.namespace, row.name, row.version)}: {exc}"
                        ) from None
                    row.wrapped_key = crypto.wrap_key(new_key, data_key, row.blob_id.encode())
                    count += 1
                row.key_id = new_key.key_id
                seal(row, new_key.mac_key)
            for token_row in s.execute(select(TokenRow)).scalars():
                if not hmac.compare_digest(rbac.token_mac(self.master.mac_key, token_row), token_row.row_mac):
                    raise StoreError(f"cannot rotate: token {token_row.id} failed its integrity check")
                token_row.row_mac = rbac.token_mac(new_key.mac_key, token_row)
            meta = s.get(MetaRow, "key_id")
            assert meta is not None
            meta.value = new_key.key_id
            audit.append(
                s,
                audit.Event(
                    actor=principal.actor,
                    action="rotate-key",
                    result="ok",
                    detail=f"{count} data keys rewrapped from {self.master.key_id} to {new_key.key_id}",
                ),
            )
        self.master = new_key
        return count


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _require_reason(reason: str) -> str:
    cleaned = (reason or "").strip()
    if not cleaned:
        raise StoreError("a reason is required")
    return cleaned[:2000]
