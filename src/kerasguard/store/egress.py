"""Pull: decrypt a blob into a private temporary file, verify digest and signature, then rename.

The model appears at its destination only complete and verified: decryption authenticates every
chunk, the SHA-256 of the plaintext must equal the recorded digest (and the caller's pin), a stored
signature is checked again, and only then is the file fsynced and renamed into place. Any failure
deletes the temporary folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from kerasguard.errors import KerasGuardError, StoreError
from kerasguard.store import crypto
from kerasguard.store.admission import signature_name, verify_signature
from kerasguard.store.blobs import MISSING_HINT
from kerasguard.store.crypto import CryptoError
from kerasguard.store.db import ModelDetails, ModelRow
from kerasguard.store.perms import Modes, create_file
from kerasguard.store.records import blob_context, ref

if TYPE_CHECKING:
    from kerasguard.store.parts import StoreParts


def pull_destination(dest: str | os.PathLike[str]) -> Path:
    """Where ``pull`` writes: inside ``dest`` when it is a folder, or written as one (``./serving/``:
    created if missing), else the file ``dest`` itself."""
    text = os.fspath(dest)
    path = Path(text)
    if text.endswith(("/", os.sep)) and not path.is_dir():
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the folder {text}: {exc.strerror or exc}") from None
    return path


def write_model(store: StoreParts, row: ModelRow, details: ModelDetails, dest: Path) -> Path:
    name = ref(row.namespace, row.name, row.version)
    target = dest / row.filename if dest.is_dir() else dest
    assert row.wrapped_key is not None
    try:
        data_key = crypto.unwrap_key(store.master, row.wrapped_key, row.blob_id.encode())
    except CryptoError as exc:
        raise StoreError(f"cannot open the data key of model {name}: {exc}") from None
    where = store.blobs.final.location
    try:
        blob = store.blobs.final.open_read(row.blob_id)
    except FileNotFoundError:
        raise StoreError(
            f"the encrypted blob of model {name} is missing from the store (looked in {where})",
            hint=MISSING_HINT,
        ) from None
    except OSError as exc:
        raise StoreError(f"cannot read the blob of model {name} in {where}: {exc.strerror or exc}") from None
    try:
        work = Path(tempfile.mkdtemp(prefix=f".{target.name}.kgpull-", dir=target.parent))
    except OSError as exc:
        blob.close()
        raise StoreError(f"cannot write model {name} to {target}: {exc.strerror or exc}") from None
    try:
        staged = work / row.filename
        with blob, os.fdopen(create_file(staged, Modes(), private=True), "wb", buffering=1 << 20) as out:
            try:
                result = crypto.decrypt_stream(blob, out, data_key, blob_context(row))
            except CryptoError as exc:
                raise StoreError(f"the blob of model {name} is damaged or was tampered with: {exc}") from None
            out.flush()
            os.fsync(out.fileno())
        if result.digest != row.digest or result.size != row.size:
            raise StoreError(
                f"model {name} decrypted to digest {result.digest} ({result.size} bytes), "
                f"not the recorded {row.digest} ({row.size} bytes)"
            )
        admission = json.loads(details.admission)
        if details.signature is not None and admission.get("checks", {}).get("signature") == "ok":
            sig_path = work / signature_name(row.filename)
            sig_path.write_text(details.signature, encoding="utf-8")
            try:
                verify_signature(staged, sig_path, store.policy, row.name, row.version)
            except KerasGuardError as exc:
                raise StoreError(f"signature of model {name} no longer verifies: {exc.message}") from None
        os.replace(staged, target)
        with contextlib.suppress(OSError):
            fd = os.open(target.parent, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    except OSError as exc:
        raise StoreError(f"cannot write model {name} to {target}: {exc.strerror or exc}") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target
