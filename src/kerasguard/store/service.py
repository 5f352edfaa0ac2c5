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
refused with the model named rather than served. Each row also carries a revision that every state
change raises and records in the (keyed) audit log; a row older than its latest audit entry is a
replayed copy and is refused too. Every committed audit head is written to a witness outside the
database, which ``audit verify`` compares with the log to detect a cut-off tail.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import os
import secrets
import shutil
import socket
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, TextIO

from sqlalchemy import Engine, delete, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from kerasguard.errors import KerasGuardError, StoreError
from kerasguard.gcpause import gc_paused
from kerasguard.policy import Policy
from kerasguard.store import attachments, audit, crypto, rbac, upgrade
from kerasguard.store.attachments import Attachment, NewAttachment
from kerasguard.store.blobs import BlobStore
from kerasguard.store.config import (
    CONFIG_NAME,
    StoreConfig,
    default_db_url,
    not_a_store_hint,
    read_config,
    write_config,
)
from kerasguard.store.crypto import CryptoError, MasterKey
from kerasguard.store.db import (
    AuditRow,
    MetaRow,
    ModelDetails,
    ModelRow,
    TokenRow,
    driver_message,
    make_engine,
    migrate,
    sessions,
)
from kerasguard.store.egress import pull_destination, write_model
from kerasguard.store.ingest import push_model
from kerasguard.store.parts import StoreParts
from kerasguard.store.perms import Modes, check_tree, create_file, make_dir
from kerasguard.store.rbac import Action, Principal, Role
from kerasguard.store.records import (
    ADMITTED,
    DELETED,
    LIST_COLUMNS,
    PENDING,
    QUARANTINED,
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
from kerasguard.store.urls import redact
from kerasguard.store.witness import Head, Witness, WitnessError, open_witness, summarize

# What ``init`` creates in the store folder (``store.db`` and its SQLite companions with the default URL).
_INIT_ENTRIES = (CONFIG_NAME, "blobs", "tmp", "store.db", "store.db-wal", "store.db-shm", "store.db-journal")


@contextlib.contextmanager
def _undone_on_failure(path: Path) -> Iterator[None]:
    """Remove what ``init`` created when it fails, so that it can be run again.

    Only what it created: the store folder if it did not exist (else only the entries ``init`` makes
    in it), and the parent folders it had to create. A WitnessError is raised after the commit, when
    the store exists in the database: its folder (with its ``store.toml``) stays.
    """
    existed = path.exists()
    new_parents = []  # deepest first
    parent = path.parent
    while not parent.exists():
        new_parents.append(parent)
        parent = parent.parent
    try:
        yield
    except WitnessError:
        raise
    except BaseException:
        if existed:
            for name in _INIT_ENTRIES:
                entry = path / name
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    with contextlib.suppress(FileNotFoundError):
                        entry.unlink()
        else:
            shutil.rmtree(path, ignore_errors=True)
        for folder in new_parents:
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise


class AccessDenied(StoreError):
    """The token may not do this (or is not a valid token). The attempt is in the audit log."""


class ModelStore:
    """A model store rooted at a local folder (settings, temporary files, and blobs unless remote)."""

    def __init__(
        self,
        root: Path,
        config: StoreConfig,
        engine: Engine,
        master: MasterKey,
        policy: Policy,
        store_id: str,
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
        self.store_id = store_id
        self.witness: Witness = open_witness(config.witness, root, store_id)

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
        witness: str | None = None,
    ) -> tuple[ModelStore, str]:
        """Create a store and return it with its first admin token (for every namespace), shown once.

        ``witness`` (``file:/path`` or ``redis://...``) receives every audit head; by default a file
        in the store folder (see docs/store.md for a witness on another machine).
        """
        path = Path(root).absolute()
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise StoreError(
                f"{path} exists and is not an empty folder; refusing to initialise a store there"
            )
        store_id = secrets.token_hex(16)
        if witness is not None:  # reachable before anything is created: every change will be witnessed
            next(iter(open_witness(witness, path, store_id).heads()), None)
        config = StoreConfig(
            db_url=db_url or default_db_url(path),
            blob_url=blob_url,
            reader_group=reader_group,
            witness=witness,
        )
        modes = config.modes()
        with _undone_on_failure(path):
            path.parent.mkdir(parents=True, exist_ok=True)
            make_dir(path, modes)
            BlobStore.create_layout(path, modes)
            write_config(path, config, modes)
            if db_url is None:
                os.close(create_file(path / "store.db", modes))
            engine = make_engine(config.db_url)
            try:
                migrate(engine)
                store = cls(path, config, engine, master_key, policy or Policy(), store_id)
                token = store._first_admin(admin_label)
            except WitnessError:  # raised after the commit: the store exists, its folder stays
                raise
            except BaseException:
                engine.dispose()
                raise
        return store, token

    def _first_admin(self, admin_label: str) -> str:
        """Claim the (empty) database for this store and create its first admin token."""
        master_key = self.master
        with self.transaction() as s:
            if s.get(MetaRow, "key_id") is not None:
                raise StoreError(
                    f"the database at {redact(self.config.db_url)} already holds a store",
                    hint="`store init` makes a new store and needs a database of its own; to add a node "
                    f"to an existing store, copy {CONFIG_NAME} from one of its nodes into an empty folder "
                    'and use that folder as --store (docs/deployment.md, "Several gateways")',
                )
            s.add(MetaRow(key="key_id", value=master_key.key_id))
            s.add(MetaRow(key="store_id", value=self.store_id))
            s.add(MetaRow(key="created_at", value=audit.now()))
            s.add(MetaRow(key=upgrade.FORMAT_KEY, value=str(upgrade.FORMAT)))
            token, row = rbac.new_token(
                Role.admin, rbac.ALL_NAMESPACES, admin_label, "store init", audit.now(), master_key.mac_key
            )
            s.add(row)
            audit.append(
                s,
                audit.Event(
                    actor="store init",
                    action="init",
                    result="ok",
                    namespace=rbac.ALL_NAMESPACES,
                    detail=f"admin token {row.id}",
                    subject=audit.token_subject(row.id),
                    revision=row.revision,
                ),
                self.audit_key,
            )
        return token

    @classmethod
    def open(
        cls, root: str | os.PathLike[str], master_key: MasterKey, *, policy: Policy | None = None
    ) -> ModelStore:
        """Open an existing store: check permissions, migrate, check the key, clean up dead pushes."""
        path = Path(root).absolute()
        if not path.is_dir():
            raise StoreError(f"{path} is not a kerasguard store folder", hint=not_a_store_hint(path))
        config = read_config(path)
        modes = config.modes()
        check_tree(path, modes)
        BlobStore.create_layout(path, modes)
        engine = make_engine(config.db_url)
        migrate(engine)
        with sessions(engine).begin() as s:
            meta = s.get(MetaRow, "key_id")
            store_id = s.get(MetaRow, "store_id")
            current = s.get(MetaRow, upgrade.FORMAT_KEY) is not None
            if meta is None or store_id is None:
                engine.dispose()
                raise StoreError(
                    f"the database at {redact(config.db_url)} holds no store (was it initialised?)"
                )
            if meta.value != master_key.key_id:
                engine.dispose()
                raise StoreError(
                    f"wrong master key: this store was encrypted under key id {meta.value}, "
                    f"the key given has id {master_key.key_id}",
                    hint="use the store's key file or $KERASGUARD_MASTER_KEY",
                )
            ident = store_id.value
        store = cls(path, config, engine, master_key, policy or Policy(), ident)
        try:
            if not current:  # checked again under the lock: another node may be upgrading it now
                upgrade.ensure_current(store.parts())
            store.recover()
        except BaseException:
            store.close()
            raise
        return store

    @property
    def pending_mark(self) -> str:
        return f"pending on {self.node}"

    def parts(self) -> StoreParts:
        """What push, pull, attachments and upgrades may use (built per call: rotation swaps the key)."""
        return StoreParts(
            blobs=self.blobs,
            master=self.master,
            policy=self.policy,
            modes=self.modes,
            pending_mark=self.pending_mark,
            transaction=self.transaction,
            record_event=self.record_event,
        )

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> ModelStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def audit_key(self) -> bytes:
        return self.master.audit_key

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Session]:
        """One database transaction; database failures become StoreError.

        A transaction that appended to the audit log writes its new head to the witness after the
        commit (a head is witnessed only once it exists).
        """
        try:
            with self._sessions.begin() as session:
                yield session
                head = session.info.pop(audit.NEW_HEAD, None)
                key_id = session.info.pop(upgrade.WITNESS_KEY_ID, self.master.key_id)
        except OperationalError as exc:
            raise StoreError(f"store database error: {driver_message(exc)}") from None
        if head is not None:
            self._witness(head[0], head[1], key_id)

    def _witness(self, seq: int, mac: str, key_id: str) -> None:
        try:
            self.witness.record(Head(seq, mac, audit.now(), self.store_id, key_id))
        except WitnessError as exc:
            raise WitnessError(
                f"the change was committed (audit entry #{seq}), but {exc.message}",
                hint="`store audit verify` cannot vouch for the newest entries until the witness "
                "records a later head: make the witness reachable, then run any store command",
            ) from None

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
                        self.audit_key,
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
            audit.append(s, event, self.audit_key)

    def _authenticate(self, token: str, action: Action) -> Principal:
        parsed = rbac.parse_token(token or "")
        principal: Principal | None = None
        actor = "anonymous"
        replayed: str | None = None
        if parsed is not None:
            actor = f"token:{parsed[0]}"
            with self.transaction() as s:
                row = s.get(TokenRow, parsed[0])
                principal = rbac.authenticate(row, parsed[1], self.master.mac_key)
                if principal is not None and row is not None:
                    replayed = self._token_staleness(s, row)
        if replayed is not None:
            self.record_event(audit.Event(actor=actor, action=action.value, result="denied", detail=replayed))
            raise AccessDenied(f"access denied: {replayed}", hint="treat the store database as compromised")
        if principal is None:
            self.record_event(
                audit.Event(actor=actor, action=action.value, result="denied", detail="invalid token")
            )
            raise AccessDenied("access denied: invalid, unknown or revoked token")
        return principal

    def _token_staleness(self, s: Session, row: TokenRow) -> str | None:
        """Why a token row is not its latest state (None when it is): the audit log decides.

        A revocation in the log wins over whatever the tokens table says.
        """
        entry = audit.latest_for(s, audit.token_subject(row.id))
        if entry is None:
            return f"token {row.id} has no audit record: the tokens table was tampered with"
        if not audit.authentic(self.audit_key, entry):
            return f"audit entry #{entry.seq} of token {row.id} was edited: the audit log was tampered with"
        if not audit.in_place(s, entry):
            return f"audit entry #{entry.seq} of token {row.id} was moved: the audit log was tampered with"
        if entry.action == Action.token_revoke.value and row.revoked_at is None:
            return (
                f"token {row.id} was revoked (audit entry #{entry.seq}); the tokens table was put back "
                "to an older copy of its row"
            )
        if entry.revision != row.revision:
            return (
                f"token {row.id} is at revision {row.revision} in the tokens table but at {entry.revision} "
                f"in the audit log (entry #{entry.seq}): an older copy of its row was put back"
            )
        return None

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
                f"access denied: {rbac.a_role(principal.role)} token for namespace {principal.namespace!r} "
                f"may not {action.value} in namespace {namespace!r}"
            )
        return principal, namespace

    def authenticate_reviewer(self, token: str) -> Principal:
        """The principal of a reader, publisher or admin token (the review console's login).

        A bad token is audited and refused like any other store call; an invoker key is refused too:
        it calls served models and nothing else.
        """
        principal = self._authenticate(token, Action.list)
        if principal.role is Role.invoker:
            self.record_event(
                audit.Event(
                    actor=principal.actor,
                    action="console-login",
                    result="denied",
                    namespace=principal.namespace,
                    detail="invoker keys cannot use the console",
                )
            )
            raise AccessDenied("access denied: invoker keys call served models only")
        return principal

    def namespaces(self, token: str) -> list[str]:
        """The namespaces a token may list: its own, or every namespace holding a model for ``*``."""
        _principal, namespace = self._authorize(token, Action.list, None, default_all=True)
        if namespace != rbac.ALL_NAMESPACES:
            return [namespace]
        with self.transaction() as s:
            rows = s.execute(select(ModelRow.namespace).distinct().order_by(ModelRow.namespace))
            return [str(r[0]) for r in rows]

    def audit_page(
        self, token: str, *, before: int | None = None, limit: int = 50, namespace: str | None = None
    ) -> list[dict[str, Any]]:
        """Audit entries newest first (those with ``seq < before``), for the console's paged view.

        Admins only, like ``audit_export``; a tenant admin sees its own namespace. Reading a page is not
        itself audited (the console would otherwise grow the log with every click).
        """
        _principal, namespace = self._authorize(token, Action.audit_export, namespace, default_all=True)
        query = select(AuditRow).order_by(AuditRow.seq.desc()).limit(max(1, min(limit, 500)))
        if namespace != rbac.ALL_NAMESPACES:
            query = query.where(AuditRow.namespace == namespace)
        if before is not None:
            query = query.where(AuditRow.seq < before)
        with self.transaction() as s:
            return [audit.to_json(row) for row in s.execute(query).scalars()]

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
                    subject=audit.token_subject(row.id),
                    revision=row.revision,
                ),
                self.audit_key,
            )
        return secret

    def revoke_token(self, token: str, token_id: str) -> str:
        """Revoke a token named by its id or given whole (``kgs_<id>_<secret>``); returns its id.

        Messages name the id only, never the secret. Revoking a revoked token changes nothing: its
        revocation time and revision stay what the first revocation made them.
        """
        token_id = rbac.token_id_of(token_id)
        principal = self._authenticate(token, Action.token_revoke)
        with self.transaction() as s:
            row = s.get(TokenRow, token_id)
        namespace = row.namespace if row is not None else principal.namespace
        principal, namespace = self._authorize(token, Action.token_revoke, namespace)
        with self.transaction() as s:
            row = s.get(TokenRow, token_id, with_for_update=True)
            if row is None:
                raise StoreError(
                    f"no token with id {token_id}", hint="`kerasguard store token list` shows the ids"
                )
            self._check_token_row(s, row)
            if row.revoked_at is not None:
                return token_id
            row.revoked_at = audit.now()
            row.revision += 1
            row.row_mac = rbac.token_mac(self.master.mac_key, row)
            audit.append(
                s,
                audit.Event(
                    actor=principal.actor,
                    action=Action.token_revoke.value,
                    result="ok",
                    namespace=namespace,
                    detail=f"token {token_id}",
                    subject=audit.token_subject(row.id),
                    revision=row.revision,
                ),
                self.audit_key,
            )
        return token_id

    def _check_token_row(self, s: Session, row: TokenRow) -> None:
        if not hmac.compare_digest(rbac.token_mac(self.master.mac_key, row), row.row_mac):
            raise StoreError(f"token {row.id} failed its integrity check: the tokens table was tampered with")
        stale = self._token_staleness(s, row)
        if stale is not None:
            raise StoreError(stale, hint="treat the store database as compromised")

    def list_tokens(self, token: str, namespace: str | None = None) -> list[dict[str, Any]]:
        _principal, namespace = self._authorize(token, Action.token_list, namespace, default_all=True)
        with self.transaction() as s:
            query = select(TokenRow).order_by(TokenRow.created_at)
            if namespace != rbac.ALL_NAMESPACES:
                query = query.where(TokenRow.namespace == namespace)
            rows = s.execute(query).scalars().all()
            for r in rows:  # tokens are few: each checked against its own latest audit entry
                self._check_token_row(s, r)
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

    def _check_fresh(self, s: Session, row: RowLike) -> None:
        """Refuse a row that is not the latest state the audit log recorded for it (a replayed copy)."""
        label = ref(row.namespace, row.name, row.version)
        entry = audit.latest_for(s, audit.model_subject(row.namespace, row.name, row.version))
        if entry is None:
            problem = "the audit log has no record of it"
        elif not audit.authentic(self.audit_key, entry):
            problem = f"its latest audit entry #{entry.seq} was edited"
        elif not audit.in_place(s, entry):
            problem = f"its latest audit entry #{entry.seq} was copied there from elsewhere in the log"
        elif entry.revision != row.revision:
            problem = (
                f"the row is revision {row.revision} but the audit log recorded revision {entry.revision} "
                f"(entry #{entry.seq}, {entry.action}): an older copy of the row was put back"
            )
        else:
            return
        raise StoreError(
            f"metadata of model {label} is not its latest state: {problem}; refusing to use it",
            hint="treat the store database as compromised; run `store audit verify`",
        )

    def _load(self, s: Session, namespace: str, name: str, version: str, *, lock: bool = False) -> ModelRow:
        check_name(name, version)
        query = select(ModelRow).where(
            ModelRow.namespace == namespace, ModelRow.name == name, ModelRow.version == version
        )
        row = s.execute(query.with_for_update() if lock else query).scalar_one_or_none()
        if row is None or row.status == PENDING:
            raise StoreError(f"no model {ref(namespace, name, version)}")
        self._verify_row(row)
        self._check_fresh(s, row)
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
        attachments: list[NewAttachment] | None = None,
    ) -> ModelInfo:
        """Admit a model file: hash, check signature per policy, scan, encrypt; quarantine on failure.

        Raises for what must not be stored at all (denied, untrusted source, bad input, name taken);
        returns the record, with ``status == "quarantined"`` when a check failed. ``attachments``
        (built by ``kerasguard.attach``) are sealed as their own blobs in the same push.
        """
        principal, namespace = self._authorize(token, Action.push, namespace, name=name, version=version)
        return push_model(
            self.parts(),
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
            attachments=attachments,
        )

    # ------------------------------------------------------------------ attachments

    def attach(
        self,
        token: str,
        name: str,
        version: str,
        items: list[NewAttachment],
        *,
        namespace: str | None = None,
    ) -> ModelInfo:
        """Attach files to a pushed version (admins only): a state change, audited, revision + 1.

        Each file is sealed as its own blob first; one transaction then records the entries in the
        version's provenance (row MAC through ``details_digest``), raises the revision and appends the
        audit entries. A failure removes the blobs written.
        """
        principal, namespace = self._authorize(token, Action.attach, namespace, name=name, version=version)
        label = ref(namespace, name, version)
        event = audit.Event(
            actor=principal.actor,
            action=Action.attach.value,
            result="",
            namespace=namespace,
            model=name,
            version=version,
        )
        try:
            with self.transaction() as s:
                row = self._load(s, namespace, name, version)
                existing = len(attachments.raw_entries(json.loads(self._details(s, row).provenance)))
            checked = attachments.check_new(items, existing, self.policy.store.max_attachment_bytes)
            if not checked:
                raise StoreError("nothing to attach")
            now = audit.now()
            with (
                attachments.sealed(
                    self.parts(), namespace, name, version, checked, actor=principal.actor, now=now
                ) as entries,
                self.transaction() as s,
            ):
                row = self._load(s, namespace, name, version, lock=True)
                if row.status not in (ADMITTED, QUARANTINED):
                    raise StoreError(f"cannot attach to model {label}: it is {row.status}")
                details = self._details(s, row)
                provenance = json.loads(details.provenance)
                provenance[attachments.FIELD] = attachments.raw_entries(provenance) + entries
                details.provenance = json.dumps(provenance, sort_keys=True)
                row.details_digest = details_digest(details)
                row.updated_at = now
                row.revision += 1
                seal(row, self.master.mac_key)
                audit.append(
                    s,
                    replace(
                        event,
                        result="ok",
                        digest=row.digest,
                        source=row.source,
                        detail="attached "
                        + ", ".join(f"{e['kind']} {e['name']} {e['digest']}" for e in entries),
                        subject=audit.model_subject(namespace, name, version),
                        revision=row.revision,
                    ),
                    self.audit_key,
                )
                info = info_from_row(row, details)
        except StoreError as exc:
            if not isinstance(exc, WitnessError):
                self.record_event(replace(event, result="failed", detail=exc.message))
            raise
        return info

    def read_attachment(
        self,
        token: str,
        name: str,
        version: str,
        *,
        kind: str,
        attachment_name: str | None = None,
        namespace: str | None = None,
    ) -> tuple[Attachment, bytes] | None:
        """The newest attachment of ``kind`` (and ``attachment_name``), decrypted and checked against
        its recorded digest; None when the version has none. Readers may read what they may show.

        An edited, swapped, truncated or missing blob raises :class:`AttachmentError` (audited).
        """
        principal, namespace = self._authorize(token, Action.show, namespace, name=name, version=version)
        with self.transaction() as s:
            row = self._load(s, namespace, name, version)
            if row.status == QUARANTINED and not principal.allowed(Action.show_quarantined, namespace):
                raise StoreError(f"no model {ref(namespace, name, version)}")
            if row.status == DELETED:
                raise StoreError(f"model {ref(namespace, name, version)} was deleted")
            entries = attachments.raw_entries(json.loads(self._details(s, row).provenance))
        chosen = [
            e
            for e in entries
            if e.get("kind") == kind and (attachment_name is None or e.get("name") == attachment_name)
        ]
        if not chosen:
            return None
        entry = chosen[-1]
        try:
            data = attachments.read(self.parts(), namespace, name, version, entry)
        except attachments.AttachmentError as exc:
            self.record_event(
                audit.Event(
                    actor=principal.actor,
                    action="read-attachment",
                    result="failed",
                    namespace=namespace,
                    model=name,
                    version=version,
                    digest=str(entry.get("digest")),
                    detail=exc.message,
                )
            )
            raise
        return attachments.public(entry), data

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
            event = replace(event, digest=row.digest, source=row.source)
            if row.status == DELETED:
                raise StoreError(f"model {label} was deleted")
            if row.status == QUARANTINED and not allow_quarantined:
                raise StoreError(
                    f"model {label} is quarantined and cannot be pulled for serving ({row.reason})",
                    hint="an admin can inspect it with `store show` and release it with a reason",
                )
            if row.status not in (ADMITTED, QUARANTINED) or row.digest is None or row.wrapped_key is None:
                raise StoreError(f"model {label} is in an unexpected state {row.status!r}")
            if expect_digest is not None and expect_digest != row.digest:
                raise StoreError(f"model {label} has digest {row.digest}, not the expected {expect_digest}")
            target = write_model(self.parts(), row, details, pull_destination(dest))
        except KerasGuardError as exc:
            self.record_event(replace(event, result="failed", detail=exc.message))
            raise
        self.record_event(replace(event, result="ok", detail="pulled"))
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
        statuses = [ADMITTED, QUARANTINED] if include_quarantined else [ADMITTED]
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
        with gc_paused(), self.transaction() as s:  # thousands of short-lived rows: no collection passes
            latest = audit.latest_revisions(s, namespace)
            # Core rows straight from the connection: the ORM's per-row bookkeeping is most of the cost
            for row in s.connection().execute(query):
                values: tuple[Any, ...] = tuple(row[:-1])
                if not hmac.compare_digest(list_mac_of(key, values), str(row[-1])):
                    raise StoreError(
                        f"metadata of model {ref(*values[:3])} failed its integrity check: the database row "
                        "was modified outside kerasguard or is corrupted; refusing to list it",
                    )
                recorded = latest.get(audit.model_subject(*values[:3]))
                if recorded != values[-1]:
                    raise StoreError(
                        f"metadata of model {ref(*values[:3])} is not its latest state: the row is revision "
                        f"{values[-1]}, the audit log recorded {recorded}: "
                        "an older copy of the row was put back; refusing to list it",
                        hint="treat the store database as compromised; run `store audit verify`",
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
                    self.audit_key,
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
                row = self._load(s, namespace, name, version, lock=True)
                if row.status not in allowed_from:
                    raise StoreError(f"cannot {action.value} model {label}: it is {row.status}")
                apply(row)
                row.updated_at = audit.now()
                row.revision += 1
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
                        subject=audit.model_subject(namespace, name, version),
                        revision=row.revision,
                    ),
                    self.audit_key,
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
        self,
        token: str,
        name: str,
        version: str,
        stage: str,
        *,
        namespace: str | None = None,
        reason: str | None = None,
    ) -> ModelInfo:
        """Move an admitted model to another stage (e.g. staging -> production); ``reason`` is audited."""
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
            allowed_from=(ADMITTED,),
            detail=f"stage {stage}" if reason is None else f"stage {stage}: {_require_reason(reason)}",
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
            allowed_from=(ADMITTED,),
            detail=reason,
            apply=apply,
        )

    def release(
        self, token: str, name: str, version: str, reason: str, *, namespace: str | None = None
    ) -> ModelInfo:
        """An admin's decision to serve a quarantined model after all; the reason is recorded."""
        reason = _require_reason(reason)

        def apply(row: ModelRow) -> None:
            row.status = ADMITTED
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
            allowed_from=(ADMITTED, QUARANTINED),
            detail=reason,
            apply=apply,
        )
        with self.transaction() as s:
            deleted = s.execute(
                select(ModelRow).where(
                    ModelRow.namespace == info.namespace, ModelRow.name == name, ModelRow.version == version
                )
            ).scalar_one()
            blob_ids = [deleted.blob_id]
            details = s.get(ModelDetails, deleted.id)
            if details is not None:  # the attachments go with the model
                with contextlib.suppress(StoreError, ValueError):
                    blob_ids += attachments.blob_ids(attachments.raw_entries(json.loads(details.provenance)))
        for blob_id in blob_ids:
            self.blobs.final.delete(blob_id)
        return info

    # ------------------------------------------------------------------ audit and keys

    def audit_verify(self, token: str, *, witness: str | None = None) -> audit.Verification:
        """Check the whole keyed chain and compare its head with the witness (``witness``: another URL).

        Raises AuditTampered naming the first edited, deleted or moved entry, or the entries cut off the
        end that the witness saw; WitnessError (never "intact") when the witness cannot be read.
        """
        principal, _ = self._authorize(token, Action.audit_verify, None)
        try:
            source = self.witness if witness is None else open_witness(witness, self.root, self.store_id)
            # The witness first: a head committed while we read can only make the database look longer.
            witnessed = summarize(source.heads(), self.store_id, self.master.key_id)
            with self.transaction() as s:
                chain = audit.verify(s, self.audit_key)
                result = audit.check_anchor(
                    s, witnessed, chain, key_id=self.master.key_id, witness=source.url
                )
                assert witnessed.last is not None  # check_anchor refuses an empty witness
                audit.check_witnessed(
                    s,
                    source.heads(),
                    store_id=self.store_id,
                    key_id=self.master.key_id,
                    upto=witnessed.last.seq,
                    witness=source.url,
                )
        except StoreError as exc:
            with contextlib.suppress(WitnessError):  # the failure is reported either way
                self.record_event(
                    audit.Event(
                        actor=principal.actor, action="audit-verify", result="failed", detail=exc.message
                    )
                )
            raise
        self.record_event(
            audit.Event(
                actor=principal.actor,
                action="audit-verify",
                result="ok",
                detail=f"{result.entries} entries, head {result.head_hash}, "
                f"witnessed #{result.witnessed_seq}",
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
            try:
                audit.verify(s, self.audit_key)
            except audit.AuditTampered as exc:
                raise StoreError(f"cannot rotate: {exc.message}", hint=exc.hint) from None
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
                details = s.get(ModelDetails, row.id)
                entries = attachments.raw_entries(json.loads(details.provenance)) if details else []
                if details is not None and entries:
                    self._details(s, row)  # checked under the old key's row MAC before it is rewritten
                    provenance = json.loads(details.provenance)
                    label = ref(row.namespace, row.name, row.version)
                    try:
                        provenance[attachments.FIELD] = attachments.rewrap(
                            entries, self.master, new_key, label
                        )
                    except attachments.AttachmentError as exc:
                        raise StoreError(f"cannot rotate: {exc.message}") from None
                    details.provenance = json.dumps(provenance, sort_keys=True)
                    row.details_digest = details_digest(details)
                    count += len(entries)
                row.key_id = new_key.key_id
                seal(row, new_key.mac_key)
            for token_row in s.execute(select(TokenRow)).scalars():
                if not hmac.compare_digest(rbac.token_mac(self.master.mac_key, token_row), token_row.row_mac):
                    raise StoreError(f"cannot rotate: token {token_row.id} failed its integrity check")
                token_row.row_mac = rbac.token_mac(new_key.mac_key, token_row)
            meta = s.get(MetaRow, "key_id")
            assert meta is not None
            meta.value = new_key.key_id
            audit.rechain(s, audit.keyed(new_key.audit_key))
            audit.append(
                s,
                audit.Event(
                    actor=principal.actor,
                    action="rotate-key",
                    result="ok",
                    detail=f"{count} data keys rewrapped from {self.master.key_id} to {new_key.key_id}",
                ),
                new_key.audit_key,
            )
            s.info[upgrade.WITNESS_KEY_ID] = new_key.key_id
        self.master = new_key
        return count


def _require_reason(reason: str) -> str:
    cleaned = (reason or "").strip()
    if not cleaned:
        raise StoreError("a reason is required")
    return cleaned[:2000]
