"""The append-only, keyed and hash-chained audit log.

Each entry's ``hash`` is ``HMAC-SHA256(audit key, prev_hash | canonical JSON of its fields)``, the
audit key being derived from the master key (HKDF, its own label): someone who can write the database
but has no master key can neither edit an entry nor recompute the chain after deleting one. The
sequence number is not MACed because order is what the chain itself protects: a reordered entry still
matches its own MAC but no longer follows the entry before it. ``audit_head`` holds the last sequence
number and MAC, and appending locks that row, which serialises writers on every database.

Entries that change the state of a model or a token name it as their ``subject`` and carry the
row's new ``revision``; a row is only trusted when its revision is the one of the latest entry about
it, so putting back an older copy of a row (with its older, valid row MAC) is refused.

A truncated tail (the last entries deleted and ``audit_head`` moved back) leaves a consistent, shorter
chain that no key is needed to make: only a copy of the head kept outside the database can show it.
Every committed head is therefore also written to a witness (see :mod:`kerasguard.store.witness`), and
:func:`check_anchor` compares the witnessed heads with the database.

Verification walks the chain and names the first bad entry and what happened to it: edited (its
content no longer matches its MAC), deleted (a gap, a missing link or a truncated tail) or reordered
(it links to an entry that is somewhere else in the log).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from kerasguard.errors import StoreError
from kerasguard.store.db import AuditHead, AuditRow
from kerasguard.store.witness import Head, Witnessed, WitnessError

GENESIS = "0" * 64
#: Session.info key under which ``append`` leaves the new head for the store to witness after commit.
NEW_HEAD = "kerasguard.audit.head"


class AuditTampered(StoreError):
    """The audit chain does not verify: an entry was edited, deleted or reordered."""


LEGACY_FIELDS = (
    "time",
    "actor",
    "action",
    "namespace",
    "model",
    "version",
    "digest",
    "source",
    "result",
    "detail",
)
FIELDS = (*LEGACY_FIELDS, "subject", "revision")

Hasher = Callable[[str, dict[str, Any]], str]


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _body(fields: dict[str, Any], names: tuple[str, ...]) -> bytes:
    return json.dumps(
        {k: fields.get(k) for k in names}, sort_keys=True, separators=(",", ":"), ensure_ascii=True
    ).encode()


def entry_mac(key: bytes, prev_hash: str, fields: dict[str, Any]) -> str:
    """The keyed chain value of an entry (format 2)."""
    return hmac.new(key, prev_hash.encode() + b"|" + _body(fields, FIELDS), hashlib.sha256).hexdigest()


def legacy_hash(prev_hash: str, fields: dict[str, Any]) -> str:
    """The unkeyed SHA-256 chain value of format 1, read only to upgrade an old store."""
    return hashlib.sha256(prev_hash.encode() + b"|" + _body(fields, LEGACY_FIELDS)).hexdigest()


def keyed(key: bytes) -> Hasher:
    return lambda prev, fields: entry_mac(key, prev, fields)


def model_subject(namespace: str, name: str, version: str) -> str:
    return f"model:{namespace}/{name}:{version}"


def token_subject(token_id: str) -> str:
    return f"token:{token_id}"


@dataclass(frozen=True)
class Event:
    """What happened, before it is chained. State changes name their subject and its new revision."""

    actor: str
    action: str
    result: str
    namespace: str | None = None
    model: str | None = None
    version: str | None = None
    digest: str | None = None
    source: str | None = None
    detail: str = ""
    subject: str | None = None
    revision: int | None = None


def append(session: Session, event: Event, key: bytes) -> AuditRow:
    """Add ``event`` to the chain inside the caller's transaction (commits with the change it records)."""
    head = session.execute(select(AuditHead).where(AuditHead.id == 1).with_for_update()).scalar_one_or_none()
    if head is None:
        raise StoreError("the audit head row is missing: the audit log was tampered with")
    fields: dict[str, Any] = {
        "time": now(),
        "actor": event.actor[:200],
        "action": event.action,
        "namespace": event.namespace,
        "model": event.model,
        "version": event.version,
        "digest": event.digest,
        "source": event.source,
        "result": event.result,
        "detail": event.detail,
        "subject": event.subject,
        "revision": event.revision,
    }
    digest = entry_mac(key, head.hash, fields)
    row = AuditRow(seq=head.seq + 1, prev_hash=head.hash, hash=digest, **fields)
    session.add(row)
    head.seq = row.seq
    head.hash = digest
    session.flush()
    session.info[NEW_HEAD] = (row.seq, digest)
    return row


def row_fields(row: AuditRow) -> dict[str, Any]:
    return {k: getattr(row, k) for k in FIELDS}


def authentic(key: bytes, row: AuditRow) -> bool:
    """True when the entry's content matches its MAC (it says nothing about the entries around it)."""
    return hmac.compare_digest(entry_mac(key, row.prev_hash, row_fields(row)), row.hash)


def in_place(session: Session, row: AuditRow) -> bool:
    """True when the entry follows the entry before it (its MAC does not cover its number).

    An authentic entry copied to another number (say, after the head, to look like the latest entry
    about its subject) still matches its MAC but not the entry it now follows.
    """
    if row.seq == 1:
        return row.prev_hash == GENESIS
    before = session.execute(select(AuditRow.hash).where(AuditRow.seq == row.seq - 1)).scalar_one_or_none()
    return before is not None and hmac.compare_digest(before, row.prev_hash)


def latest_for(session: Session, subject: str) -> AuditRow | None:
    """The last entry that changed ``subject`` (a model or a token), or None."""
    return session.execute(
        select(AuditRow)
        .where(AuditRow.subject == subject, AuditRow.revision.is_not(None))
        .order_by(AuditRow.seq.desc())
        .limit(1)
    ).scalar_one_or_none()


def latest_revisions(session: Session, namespace: str) -> dict[str, int]:
    """The latest revision of every subject (model or token) that has state changes in ``namespace``.

    ``namespace = ? AND subject IS NOT NULL`` is a range of the (namespace, subject, revision) index:
    only state-change entries are read, never the pulls and denials around them (no LIKE, whose use
    of an index depends on the database's collation).
    """
    query = (
        select(AuditRow.subject, func.max(AuditRow.revision))
        .where(AuditRow.namespace == namespace, AuditRow.subject.is_not(None))
        .group_by(AuditRow.subject)
    )
    return {str(s): int(r or 0) for s, r in session.execute(query)}


def to_json(row: AuditRow) -> dict[str, Any]:
    return {"seq": row.seq, **row_fields(row), "prev_hash": row.prev_hash, "hash": row.hash}


@dataclass(frozen=True)
class AuditProblem:
    seq: int
    kind: str  # edited | deleted | reordered | head
    message: str


@dataclass(frozen=True)
class Verification:
    entries: int
    head_seq: int
    head_hash: str
    witness: str | None = None  # the witness that confirmed the head (redacted URL)
    witnessed_seq: int | None = None


def _span(first: int, last: int) -> str:
    return f"audit entry #{first} was" if first == last else f"audit entries #{first}..#{last} were"


def check_chain(
    rows: Iterable[AuditRow], head_seq: int, head_hash: str, hasher: Hasher
) -> Iterator[AuditProblem]:
    """Every problem in chain order (callers usually report the first)."""
    entries = list(rows)
    by_hash = {r.hash: r.seq for r in entries}
    prev_seq = 0
    prev_hash = GENESIS
    for row in entries:
        if not hmac.compare_digest(hasher(row.prev_hash, row_fields(row)), row.hash):
            yield AuditProblem(
                row.seq,
                "edited",
                f"audit entry #{row.seq} was edited: its content no longer matches its MAC",
            )
        if row.prev_hash != prev_hash:
            if row.prev_hash in by_hash and by_hash[row.prev_hash] != prev_seq:
                yield AuditProblem(
                    row.seq,
                    "reordered",
                    f"audit entry #{row.seq} was reordered: it was written after entry "
                    f"#{by_hash[row.prev_hash]}, not after #{prev_seq}",
                )
            elif row.seq != prev_seq + 1:
                yield AuditProblem(
                    prev_seq + 1,
                    "deleted",
                    f"{_span(prev_seq + 1, row.seq - 1)} deleted "
                    f"(sequence jumps from #{prev_seq} to #{row.seq})",
                )
            else:
                yield AuditProblem(
                    row.seq,
                    "deleted",
                    f"audit entry #{row.seq} does not follow #{prev_seq}: an entry between them was deleted "
                    "and "
                    f"the rest renumbered, or #{prev_seq} was rewritten with a new hash",
                )
        elif row.seq != prev_seq + 1:
            yield AuditProblem(
                row.seq,
                "edited",
                f"audit entry #{row.seq} has a renumbered sequence (expected #{prev_seq + 1})",
            )
        prev_seq = row.seq
        prev_hash = row.hash
    if head_seq > prev_seq:
        yield AuditProblem(
            prev_seq + 1,
            "deleted",
            f"{_span(prev_seq + 1, head_seq)} deleted from the end of the log",
        )
    elif head_seq != prev_seq or head_hash != prev_hash:
        yield AuditProblem(
            prev_seq, "head", f"the audit head (#{head_seq}) does not match the last entry (#{prev_seq})"
        )


def verify(session: Session, key: bytes, batch: int = 5000, *, hasher: Hasher | None = None) -> Verification:
    """Raise AuditTampered naming the first bad entry; return the head when the chain is intact."""
    head = session.execute(select(AuditHead).where(AuditHead.id == 1)).scalar_one_or_none()
    if head is None:
        raise AuditTampered("the audit head row is missing: the audit log was tampered with")
    rows = session.execute(
        select(AuditRow).order_by(AuditRow.seq).execution_options(yield_per=batch)
    ).scalars()
    count = 0

    def counted() -> Iterator[AuditRow]:
        nonlocal count
        for row in rows:
            count += 1
            yield row

    for problem in check_chain(counted(), head.seq, head.hash, hasher or keyed(key)):
        raise AuditTampered(
            f"audit log verification failed: {problem.message}", hint="treat the store as compromised"
        )
    return Verification(entries=count, head_seq=head.seq, head_hash=head.hash)


def rechain(session: Session, hasher: Hasher) -> None:
    """Recompute every entry's chain value with ``hasher`` (key rotation, format upgrade).

    The caller has verified the chain under the old scheme in the same transaction.
    """
    head = session.execute(select(AuditHead).where(AuditHead.id == 1).with_for_update()).scalar_one()
    prev = GENESIS
    for row in session.execute(select(AuditRow).order_by(AuditRow.seq)).scalars():
        row.prev_hash = prev
        row.hash = hasher(prev, row_fields(row))
        prev = row.hash
    head.hash = prev
    session.flush()


def check_anchor(
    session: Session, witnessed: Witnessed, verified: Verification, *, key_id: str, witness: str
) -> Verification:
    """Compare the heads a witness recorded with the (already verified) chain in the database.

    A witnessed head beyond the database's head means the tail was cut off; a witnessed head whose
    MAC differs from the entry at that number means the log was rewritten. Heads are read *before*
    the database, so a head committed meanwhile can only make the database look longer, never shorter.
    """
    last, anchor = witnessed.last, witnessed.anchor
    if last is None:
        raise WitnessError(
            f"the audit witness {witness} holds no head of this store, so a truncated log cannot be "
            "ruled out",
            hint="the witness is written after every change; if it was just set up or replaced, "
            "any store command that changes something fills it (then verify again)",
        )
    if last.seq > verified.head_seq:
        raise AuditTampered(
            f"audit log verification failed: {_span(verified.head_seq + 1, last.seq)} deleted from the "
            f"end of the log: the witness {witness} recorded head #{last.seq} at {last.time}, "
            f"the database ends at #{verified.head_seq}",
            hint="treat the store as compromised; restore the audit table from a backup",
        )
    if anchor is None:
        raise WitnessError(
            f"the audit witness {witness} recorded no head since the master key was rotated "
            f"(key {key_id}), so the rewritten chain cannot be compared with it",
        )
    entry = session.get(AuditRow, anchor.seq)
    if entry is None or not hmac.compare_digest(entry.hash, anchor.mac):
        raise AuditTampered(
            f"audit log verification failed: audit entry #{anchor.seq} is not the one the witness "
            f"{witness} recorded at {anchor.time}: the log was rewritten",
            hint="treat the store as compromised; restore the audit table from a backup",
        )
    return Verification(
        entries=verified.entries,
        head_seq=verified.head_seq,
        head_hash=verified.head_hash,
        witness=witness,
        witnessed_seq=anchor.seq,
    )


def check_witnessed(
    session: Session, heads: Iterable[Head], *, store_id: str, key_id: str, upto: int, witness: str
) -> int:
    """Every head the witness recorded (up to ``upto``, under the current key) must be in the log.

    Checking only the highest head would let a rolled-back database pass again once it has grown past
    that head; every witnessed entry must still be the one that was witnessed. Returns how many were
    compared (in batches, so a long witness is never held in memory).
    """
    compared = 0
    batch: dict[int, Head] = {}

    def flush() -> None:
        query = select(AuditRow.seq, AuditRow.hash).where(AuditRow.seq.in_(list(batch)))
        found = {int(seq): str(mac) for seq, mac in session.execute(query)}
        for seq in sorted(batch):
            head = batch[seq]
            if seq not in found:
                raise AuditTampered(
                    f"audit log verification failed: audit entry #{seq} was deleted: the witness "
                    f"{witness} recorded it at {head.time}",
                    hint="treat the store as compromised; restore the audit table from a backup",
                )
            if not hmac.compare_digest(found[seq], head.mac):
                raise AuditTampered(
                    f"audit log verification failed: audit entry #{seq} is not the one the witness "
                    f"{witness} recorded at {head.time}: the log was rewritten or rolled back",
                    hint="treat the store as compromised; restore the audit table from a backup",
                )
        batch.clear()

    for head in heads:
        if head.store != store_id or head.key != key_id or head.seq > upto:
            continue
        other = batch.get(head.seq)
        if other is not None and other.mac != head.mac:
            raise AuditTampered(
                f"audit log verification failed: the witness {witness} recorded two different entries "
                f"#{head.seq} ({other.time} and {head.time}): the log was rolled back and rewritten",
                hint="treat the store as compromised",
            )
        batch[head.seq] = head
        compared += 1
        if len(batch) >= 2000:
            flush()
    if batch:
        flush()
    return compared
