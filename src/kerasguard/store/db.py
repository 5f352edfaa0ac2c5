"""Store metadata: SQLAlchemy 2 tables, engines for SQLite (default) and PostgreSQL, migrations.

The schema is created and upgraded only by the Alembic migrations in ``migrations/`` (run on ``init``
and on every open), never by ``create_all``, so SQLite and PostgreSQL stores evolve the same way.
SQLite write transactions start with ``BEGIN IMMEDIATE`` so two writers queue on the busy timeout
instead of failing with "database is locked" half-way through.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    Engine,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
)
from sqlalchemy.exc import ArgumentError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

from kerasguard.errors import StoreError
from kerasguard.store.urls import redact

SCHEMA_HEAD = "0002"


class Base(DeclarativeBase):
    pass


class ModelRow(Base):
    """One immutable model version. Only stage and status (with their reasons) change after admission."""

    __tablename__ = "models"
    __table_args__ = (
        UniqueConstraint("namespace", "name", "version", name="uq_models_namespace_name_version"),
        Index("ix_models_digest", "digest"),
        Index("ix_models_namespace_status", "namespace", "status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    namespace: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(128))
    version: Mapped[str] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16))  # pending | admitted | quarantined | deleted
    stage: Mapped[str] = mapped_column(String(64))
    filename: Mapped[str] = mapped_column(String(255))
    digest: Mapped[str | None] = mapped_column(String(80))
    size: Mapped[int | None] = mapped_column(BigInteger)
    source: Mapped[str] = mapped_column(Text)
    signer: Mapped[str | None] = mapped_column(Text)
    blob_id: Mapped[str] = mapped_column(String(32), unique=True)
    wrapped_key: Mapped[bytes | None] = mapped_column(LargeBinary)
    key_id: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[str] = mapped_column(String(40))
    created_by: Mapped[str] = mapped_column(String(128))
    updated_at: Mapped[str] = mapped_column(String(40))
    reason: Mapped[str | None] = mapped_column(Text)  # why quarantined / released / deleted (latest)
    details_digest: Mapped[str | None] = mapped_column(String(80))
    # Raised by every state change and recorded in its audit entry: an older copy of the row is refused.
    revision: Mapped[int] = mapped_column(BigInteger, default=0)
    row_mac: Mapped[str] = mapped_column(String(64))  # MAC of every column above
    list_mac: Mapped[str] = mapped_column(String(64))  # MAC of the columns ``list`` shows


class ModelDetails(Base):
    """Large per-model documents, kept out of ``models`` so ``list`` stays fast; bound by details_digest."""

    __tablename__ = "model_details"

    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"), primary_key=True)
    provenance: Mapped[str] = mapped_column(Text)
    signature: Mapped[str | None] = mapped_column(Text)
    scan_report: Mapped[str | None] = mapped_column(Text)
    policy: Mapped[str] = mapped_column(Text)
    admission: Mapped[str] = mapped_column(Text)


class TokenRow(Base):
    __tablename__ = "tokens"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    salt: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(16))
    namespace: Mapped[str] = mapped_column(String(64))
    label: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[str] = mapped_column(String(40))
    created_by: Mapped[str] = mapped_column(String(128))
    revoked_at: Mapped[str | None] = mapped_column(String(40))
    revision: Mapped[int] = mapped_column(BigInteger, default=0)  # as for models: 1 created, 2 revoked
    row_mac: Mapped[str] = mapped_column(String(64))


class AuditRow(Base):
    __tablename__ = "audit"
    __table_args__ = (
        Index("ix_audit_subject_seq", "subject", "seq"),
        Index("ix_audit_namespace_subject", "namespace", "subject", "revision"),
    )

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    time: Mapped[str] = mapped_column(String(40))
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(32))
    namespace: Mapped[str | None] = mapped_column(String(64))
    model: Mapped[str | None] = mapped_column(String(128))
    version: Mapped[str | None] = mapped_column(String(128))
    digest: Mapped[str | None] = mapped_column(String(80))
    source: Mapped[str | None] = mapped_column(Text)
    result: Mapped[str] = mapped_column(String(32))
    detail: Mapped[str] = mapped_column(Text)
    subject: Mapped[str | None] = mapped_column(String(300))  # model:<ns>/<name>:<version> | token:<id>
    revision: Mapped[int | None] = mapped_column(BigInteger)  # the subject's revision after this entry
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditHead(Base):
    """The last entry's number and hash: a truncated tail is detectable, and appends serialise on it."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(64))


class MetaRow(Base):
    __tablename__ = "store_meta"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


def _sqlite_immediate(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def make_engine(url: str) -> Engine:
    """An engine for ``sqlite:///path`` or ``postgresql+psycopg://...``; anything else is refused."""
    try:
        if url.startswith("sqlite"):
            engine = create_engine(url, connect_args={"timeout": 60}, pool_pre_ping=False)
            _sqlite_immediate(engine)
        elif url.startswith(("postgresql+psycopg://", "postgresql://")):
            if url.startswith("postgresql://"):
                url = "postgresql+psycopg://" + url[len("postgresql://") :]
            engine = create_engine(url, pool_pre_ping=True)
        else:
            raise StoreError(
                f"unsupported database URL scheme in {redact(url)!r} (use sqlite:/// or postgresql://)"
            )
    except (ArgumentError, ImportError, ValueError) as exc:  # ValueError: a port that is not a number
        raise StoreError(f"cannot use database URL {redact(url)!r}: {driver_message(exc)}") from None
    return engine


_BLANKS = re.compile(r"[ \t\f\v]+")
_LINE_BREAKS = re.compile(r"[\r\n]+")


def driver_message(exc: BaseException) -> str:
    """A database error's text on one line, for messages: the driver's own error when there is one
    (``exc.orig``), its lines joined with ``; `` and runs of tabs and spaces collapsed to one space.

    Multi-line driver text (psycopg indents its advice with a tab) would otherwise be printed with the
    tab escaped (``\\x09``) and could start a line of its own; other control characters are left for
    :func:`kerasguard.escaping.printable` to escape when the message is printed.
    """
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc)
    lines = (_BLANKS.sub(" ", line).strip() for line in _LINE_BREAKS.split(text))
    return "; ".join(line for line in lines if line)


def migrate(engine: Engine) -> None:
    """Upgrade the schema to head with the packaged Alembic migrations."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).with_name("migrations")))
    try:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
    except OperationalError as exc:
        raise StoreError(f"cannot reach or migrate the store database: {driver_message(exc)}") from None
    except SQLAlchemyError as exc:
        raise StoreError(f"store database migration failed: {driver_message(exc)}") from None


def sessions(engine: Engine) -> sessionmaker[Any]:
    return sessionmaker(engine, expire_on_commit=False)
