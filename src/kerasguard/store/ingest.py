"""Push: claim the version, stream the bytes once (hash, encrypt, private copy), admit, publish.

The order is what makes a crash harmless. The push lock is taken first, then a *pending* row claims
``(namespace, name, version)`` (the unique constraint lets exactly one concurrent push win), then the
ciphertext is written and fsynced, the private plaintext copy is checked (signature, scan), the blob
is moved to its final place, and only then one transaction turns the row admitted or quarantined and
appends the audit entry. Until that commit nothing is listed, shown or pulled; a push killed anywhere
before it leaves a pending row and temporary files that the next start removes.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError as DBIntegrityError
from sqlalchemy.exc import SQLAlchemyError

from kerasguard.errors import KerasGuardError, StoreError, UntrustedSourceError
from kerasguard.store import audit, crypto
from kerasguard.store.admission import Decision, admit, policy_digest, policy_document, signature_name
from kerasguard.store.attachments import FIELD, NewAttachment, check_new, sealed
from kerasguard.store.blobs import Upload
from kerasguard.store.db import ModelDetails, ModelRow, driver_message
from kerasguard.store.perms import create_file
from kerasguard.store.rbac import Principal
from kerasguard.store.records import (
    ADMITTED,
    PENDING,
    QUARANTINED,
    ModelInfo,
    blob_context,
    check_digest,
    check_name,
    details_digest,
    info_from_row,
    ref,
    safe_filename,
    seal,
)
from kerasguard.store.sources import approve
from kerasguard.store.witness import WitnessError

if TYPE_CHECKING:
    from kerasguard.store.parts import StoreParts

PAUSE_ENV = "KERASGUARD_STORE_PAUSE_AT"  # test hook: a push sleeps at this stage (crash tests)
MAX_PROVENANCE = 64 * 1024
MAX_SIGNATURE = 16 * 1024 * 1024


def describe_failure(exc: BaseException) -> str:
    """A one-line reason for the audit log and the error message."""
    if isinstance(exc, KerasGuardError):
        return exc.message
    if isinstance(exc, OSError):
        if exc.errno in (errno.ENOSPC, errno.EFBIG):
            return f"{exc.strerror} (disk full or file size limit); nothing was stored"
        return f"{exc.strerror or exc}"
    if isinstance(exc, SQLAlchemyError):
        return f"database error: {driver_message(exc)}"
    return f"{type(exc).__name__}: {exc}"


def pause(stage: str) -> None:
    """Crash-test hook: with KERASGUARD_STORE_PAUSE_AT=<stage>, announce the stage and sleep."""
    if os.environ.get(PAUSE_ENV) == stage:
        sys.stderr.write(f"kerasguard-store: paused at {stage}\n")
        sys.stderr.flush()
        time.sleep(3600)


def push_model(
    store: StoreParts,
    principal: Principal,
    namespace: str,
    path: str | os.PathLike[str],
    *,
    name: str,
    version: str,
    source: str,
    signature: str | os.PathLike[str] | None = None,
    expect_digest: str | None = None,
    provenance: dict[str, Any] | None = None,
    stage: str | None = None,
    attachments: list[NewAttachment] | None = None,
) -> ModelInfo:
    """Admit a model file: hash, check signature per policy, scan, encrypt; quarantine on failure.

    Raises for what must not be stored at all (denied, untrusted source, bad input, name taken);
    returns the record, with ``status == "quarantined"`` when a check failed.
    """
    event = audit.Event(
        actor=principal.actor, action="push", result="", namespace=namespace, model=name, version=version
    )

    def refuse(exc: KerasGuardError, detail: str | None = None) -> KerasGuardError:
        store.record_event(replace(event, result="refused", detail=detail or exc.message))
        return exc

    try:
        check_name(name, version)
        canonical = approve(source, store.policy.store.sources)
    except UntrustedSourceError as exc:
        raise refuse(exc) from None
    except StoreError as exc:
        raise refuse(exc) from None
    event = replace(event, source=canonical)
    stage = stage or store.policy.store.default_stage
    if stage not in store.policy.store.stages:
        raise refuse(
            StoreError(f"unknown stage {stage!r} (policy stages: {', '.join(store.policy.store.stages)})")
        )
    if expect_digest is not None:
        try:
            expect_digest = check_digest(expect_digest)
        except StoreError as exc:
            raise refuse(exc) from None
    extra = dict(provenance or {})
    try:
        extra_json = json.dumps(extra, sort_keys=True)
    except (TypeError, ValueError):
        raise refuse(StoreError("provenance must be JSON-serialisable")) from None
    if len(extra_json) > MAX_PROVENANCE:
        raise refuse(StoreError("provenance is larger than 64 KiB"))
    try:
        items = check_new(attachments or [], 0, store.policy.store.max_attachment_bytes)
    except StoreError as exc:
        raise refuse(exc) from None
    source_file = Path(path)
    not_a_file = StoreError(
        f"{source_file} is not a regular file; the store holds single-file models "
        "(.keras, .h5, .weights.h5, .npz): pack a model directory into a .keras file first"
    )
    try:
        # O_NONBLOCK: opening a FIFO must not hang before fstat can refuse it.
        fd = os.open(source_file, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise refuse(StoreError(f"cannot read {source_file}: {exc.strerror or exc}")) from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise refuse(not_a_file)
    os.set_blocking(fd, True)
    with open(fd, "rb", buffering=0) as src:
        sig_name, sig_text = read_signature(source_file, signature, refuse)
        filename = safe_filename(source_file.name)
        upload = store.blobs.upload()
        now = audit.now()
        row = ModelRow(
            namespace=namespace,
            name=name,
            version=version,
            status=PENDING,
            stage=stage,
            filename=filename,
            digest=None,
            size=None,
            source=canonical,
            signer=None,
            blob_id=upload.blob_id,
            wrapped_key=None,
            key_id=store.master.key_id,
            created_at=now,
            created_by=principal.actor,
            updated_at=now,
            reason=store.pending_mark,
            details_digest=None,
            revision=0,
            row_mac="",
            list_mac="",
        )
        seal(row, store.master.mac_key)
        try:
            with store.transaction() as s:
                s.add(row)
        except DBIntegrityError:
            upload.abort()
            raise refuse(
                StoreError(f"model {ref(namespace, name, version)} already exists; versions are immutable")
            ) from None
        except BaseException:
            upload.abort()
            raise
        pause("claimed")
        try:
            record = admit_upload(
                store,
                upload,
                src,
                row,
                principal,
                event,
                policy_extra=extra,
                sig_name=sig_name,
                sig_text=sig_text,
                expect_digest=expect_digest,
                attachments=items,
            )
        except WitnessError:  # raised after the commit: the version is stored and its blob referenced
            upload.finish()
            raise
        except BaseException as exc:
            abandon(store, upload, row)
            message = describe_failure(exc)
            with contextlib.suppress(Exception):
                store.record_event(replace(event, result="failed", detail=message))
            if isinstance(exc, KerasGuardError | OSError | SQLAlchemyError):
                raise StoreError(f"push of {ref(namespace, name, version)} failed: {message}") from None
            raise
    upload.finish()
    return record


def read_signature(
    model: Path, signature: str | os.PathLike[str] | None, refuse: Any
) -> tuple[str | None, str | None]:
    sig_path = Path(signature) if signature is not None else model.with_name(signature_name(model.name))
    if signature is None and not sig_path.is_file():
        return None, None
    try:
        with open(sig_path, "rb") as fh:
            data = fh.read(MAX_SIGNATURE + 1)
    except OSError as exc:
        raise refuse(StoreError(f"cannot read signature {sig_path}: {exc.strerror or exc}")) from None
    if len(data) > MAX_SIGNATURE:
        raise refuse(StoreError(f"signature {sig_path} is larger than 16 MiB"))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise refuse(StoreError(f"signature {sig_path} is not UTF-8 text")) from None
    return signature_name(safe_filename(model.name)), text


def snapshot_link(src: IO[bytes], staged: Path) -> bool:
    """Hard-link the open source file into the private staging folder, if the filesystem allows.

    The checks must read exactly the bytes that are encrypted. A hard link to the *open* inode (through
    ``/proc/self/fd``) gives the scanner a private path to it without copying: nobody can swap the path,
    and any write to the inode moves its ctime, which is compared before and after (a write cannot
    avoid that without root). Across filesystems, or without ``/proc``, the caller falls back to a
    private copy written in the same pass as the encryption.
    """
    try:
        # An explicit src_dir_fd makes CPython call linkat(AT_SYMLINK_FOLLOW); plain link(2) would try to
        # link the /proc symlink itself.
        proc_fd = os.open("/proc/self/fd", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        os.link(str(src.fileno()), staged, src_dir_fd=proc_fd, follow_symlinks=True)
    except OSError:
        return False
    finally:
        os.close(proc_fd)
    return True


def _changed(before: os.stat_result, after: os.stat_result) -> bool:
    keys = ("st_dev", "st_ino", "st_size", "st_mtime_ns", "st_ctime_ns")
    return any(getattr(before, k) != getattr(after, k) for k in keys)


def admit_upload(
    store: StoreParts,
    upload: Upload,
    src: IO[bytes],
    row: ModelRow,
    principal: Principal,
    event: audit.Event,
    *,
    policy_extra: dict[str, Any],
    sig_name: str | None,
    sig_text: str | None,
    expect_digest: str | None,
    attachments: list[NewAttachment],
) -> ModelInfo:
    data_key = crypto.new_data_key()
    staged = upload.stage_file(row.filename)
    staged_sig: Path | None = None
    if sig_name is not None and sig_text is not None:
        staged_sig = upload.stage_dir / sig_name
        staged_sig.write_text(sig_text, encoding="utf-8")
    linked = snapshot_link(src, staged)
    before = os.fstat(src.fileno())
    tee = None
    if not linked:
        tee = os.fdopen(create_file(staged, store.modes, private=True), "wb", buffering=1 << 20)
    with upload.open_part() as part, tee if tee is not None else contextlib.nullcontext():
        result = crypto.encrypt_stream(
            src,
            part,
            data_key,
            blob_context(row),
            tee=tee,
            on_chunk=lambda i: pause("encrypting") if i == 0 else None,
        )
        part.flush()
        os.fsync(part.fileno())
    pause("encrypted")
    decision: Decision = admit(
        staged,
        store.policy,
        name=row.name,
        version=row.version,
        digest=result.digest,
        expect_digest=expect_digest,
        signature=staged_sig,
    )
    if linked and _changed(before, os.fstat(src.fileno())):
        raise StoreError(
            "the model file changed while it was being pushed (size, mtime or ctime moved); "
            "push it from a file nobody else writes to"
        )
    upload.publish()
    pause("published")
    document = policy_document(store.policy)
    provenance = {
        "source": row.source,
        "pushed_by": principal.actor,
        "pushed_at": row.created_at,
        "filename": row.filename,
        "client": policy_extra,
    }
    admission = {
        **decision.to_dict(),
        "signature_file": sig_name,
        "policy_digest": policy_digest(document),
    }
    details = ModelDetails(
        provenance=json.dumps(provenance, sort_keys=True),
        signature=sig_text,
        scan_report=json.dumps(decision.report, sort_keys=True) if decision.report is not None else None,
        policy=document,
        admission=json.dumps(admission, sort_keys=True),
    )
    status = ADMITTED if decision.admitted else QUARANTINED
    with (
        sealed(
            store,
            row.namespace,
            row.name,
            row.version,
            attachments,
            actor=principal.actor,
            now=row.created_at,
        ) as entries,
        store.transaction() as s,
    ):
        if entries:
            details.provenance = json.dumps({**provenance, FIELD: entries}, sort_keys=True)
        current = s.get(ModelRow, row.id)
        if current is None or current.status != PENDING or current.blob_id != row.blob_id:
            raise StoreError("the pending record of this push disappeared (removed by recovery?)")
        details.model_id = current.id
        s.add(details)
        current.status = status
        current.digest = result.digest
        current.size = result.size
        current.signer = decision.signer
        current.wrapped_key = crypto.wrap_key(store.master, data_key, upload.blob_id.encode())
        current.reason = None if decision.admitted else "; ".join(decision.reasons)
        current.updated_at = audit.now()
        current.details_digest = details_digest(details)
        current.revision = 1
        seal(current, store.master.mac_key)
        audit.append(
            s,
            replace(
                event,
                result=status,
                digest=result.digest,
                detail="admitted" if decision.admitted else "; ".join(decision.reasons),
                subject=audit.model_subject(current.namespace, current.name, current.version),
                revision=current.revision,
            ),
            store.audit_key,
        )
        for entry in entries:
            audit.append(s, attach_event(event, entry), store.audit_key)
        info = info_from_row(current, details)
    return info


def attach_event(event: audit.Event, entry: dict[str, Any]) -> audit.Event:
    """The audit entry of one attachment (kind, name, digest, size)."""
    return replace(
        event,
        action="attach",
        result="ok",
        digest=entry["digest"],
        detail=f"{entry['kind']} {entry['name']} ({entry['size']} bytes)",
        subject=None,
        revision=None,
    )


def abandon(store: StoreParts, upload: Upload, row: ModelRow) -> None:
    """Undo a failed push; whatever cannot be undone now is removed by the next start's recovery."""
    with contextlib.suppress(Exception), store.transaction() as s:
        s.execute(delete(ModelRow).where(ModelRow.id == row.id, ModelRow.status == PENDING))
    upload.abort()
