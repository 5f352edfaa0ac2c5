"""Blob storage: encrypted model bytes under random ids, written atomically, never partially visible.

Layout of a local store (``root`` is 0700, or 0750 with a reader group)::

    blobs/<blob_id>          finished ciphertext (0600 / 0640)
    tmp/<blob_id>.lock       held (flock) by the pushing process for the whole push
    tmp/<blob_id>.part       ciphertext being written
    tmp/<blob_id>.stage/     private plaintext copy that is scanned and signature-checked

A push holds an exclusive ``flock`` on its lock file until it is done; the kernel drops the lock when
the process dies (even on ``kill -9``), so "lock file present but lockable" means "push died", and the
next start deletes what it left. The lock file is created under a temporary name, locked, then renamed
into place, so no other process can see an unlocked live lock.

Blob ids are random, not digests, so a directory listing does not reveal which known model is stored.
Final blobs can live on an fsspec filesystem (S3-compatible object storage) instead of ``blobs/``;
temporary files are always local.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import secrets
import shutil
from pathlib import Path
from typing import IO, Any, BinaryIO, Protocol

from kerasguard.errors import StoreError
from kerasguard.store.perms import Modes, create_file, make_dir
from kerasguard.store.urls import redact

BLOB_ID = re.compile(r"^[0-9a-f]{32}$")
_TMP_NAME = re.compile(r"^([0-9a-f]{32})\.(lock|part|stage)$")


# The hint of "blob ... is missing": lost blobs, or a node that looks for them in the wrong place.
MISSING_HINT = (
    "restore the blobs from a backup; if this node looks in the wrong place, check blob_url in its "
    "store.toml (without blob_url, blobs are read from blobs/ in the store folder)"
)


def new_blob_id() -> str:
    return secrets.token_hex(16)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _check_id(blob_id: str) -> str:
    if not BLOB_ID.match(blob_id):
        raise StoreError(f"invalid blob id {blob_id!r} in the database (corrupted row?)")
    return blob_id


class FinalBlobs(Protocol):
    """Where finished blobs live: the local ``blobs/`` folder or an fsspec filesystem."""

    location: str  # for messages: the folder, or the blob URL with any password redacted

    def publish(self, blob_id: str, part: Path) -> None: ...
    def open_read(self, blob_id: str) -> BinaryIO: ...
    def delete(self, blob_id: str) -> None: ...
    def exists(self, blob_id: str) -> bool: ...
    def ids(self) -> set[str]: ...


class LocalFinalBlobs:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.location = str(folder)

    def publish(self, blob_id: str, part: Path) -> None:
        os.replace(part, self.folder / _check_id(blob_id))
        _fsync_dir(self.folder)

    def open_read(self, blob_id: str) -> BinaryIO:
        path = self.folder / _check_id(blob_id)
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        return os.fdopen(fd, "rb", buffering=1 << 20)

    def delete(self, blob_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.folder / _check_id(blob_id)).unlink()

    def exists(self, blob_id: str) -> bool:
        return (self.folder / _check_id(blob_id)).exists()

    def ids(self) -> set[str]:
        return {e.name for e in os.scandir(self.folder) if BLOB_ID.match(e.name)}


class FsspecFinalBlobs:
    """Finished blobs on any fsspec filesystem, e.g. ``s3://bucket/prefix`` (needs ``s3fs``).

    Objects are uploaded under their final key only once complete (S3 makes a multipart upload visible
    at completion), and a blob is referenced by the database only after the upload returns.
    """

    def __init__(self, url: str) -> None:
        try:
            import fsspec
        except ImportError:
            raise StoreError(
                f"blob URL {url!r} needs fsspec", hint="pip install 'kerasguard[s3]' (fsspec and s3fs)"
            ) from None
        self.location = redact(url)
        fs, root = fsspec.core.url_to_fs(url)
        self.fs: Any = fs
        self.root = root.rstrip("/")
        self.fs.makedirs(self.root, exist_ok=True)

    def _key(self, blob_id: str) -> str:
        return f"{self.root}/{_check_id(blob_id)}"

    def publish(self, blob_id: str, part: Path) -> None:
        self.fs.put_file(str(part), self._key(blob_id))
        part.unlink()

    def open_read(self, blob_id: str) -> BinaryIO:
        handle: BinaryIO = self.fs.open(self._key(blob_id), "rb", block_size=1 << 20)
        return handle

    def delete(self, blob_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(self._key(blob_id))

    def exists(self, blob_id: str) -> bool:
        return bool(self.fs.exists(self._key(blob_id)))

    def ids(self) -> set[str]:
        names = (str(p).rsplit("/", 1)[-1] for p in self.fs.ls(self.root, detail=False))
        return {n for n in names if BLOB_ID.match(n)}


class Upload:
    """One push's temporary files; holds the push lock until :meth:`finish` or :meth:`abort`."""

    def __init__(self, store: BlobStore, blob_id: str) -> None:
        self.store = store
        self.blob_id = blob_id
        tmp = store.tmp
        self.lock_path = tmp / f"{blob_id}.lock"
        self.part_path = tmp / f"{blob_id}.part"
        self.stage_dir = tmp / f"{blob_id}.stage"
        pending = tmp / f"{blob_id}.lock-{secrets.token_hex(4)}"
        fd = create_file(pending, store.modes, private=True)
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.rename(pending, self.lock_path)
        self._lock_fd: int | None = fd
        self.published = False

    def open_part(self) -> IO[bytes]:
        fd = create_file(self.part_path, self.store.modes)
        return os.fdopen(fd, "wb", buffering=1 << 20)

    def stage_file(self, name: str) -> Path:
        make_dir(self.stage_dir, self.store.modes, private=True)
        return self.stage_dir / name

    def publish(self) -> None:
        """Move the finished ciphertext to its final place (it is referenced only after the DB commit)."""
        self.store.final.publish(self.blob_id, self.part_path)
        self.published = True

    def finish(self) -> None:
        """The database now references the blob: drop temporary files and the lock."""
        shutil.rmtree(self.stage_dir, ignore_errors=True)
        self._release()

    def abort(self) -> None:
        """The push failed: remove everything it wrote, including a published blob."""
        shutil.rmtree(self.stage_dir, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            self.part_path.unlink()
        if self.published:
            self.store.final.delete(self.blob_id)
        self._release()

    def _release(self) -> None:
        if self._lock_fd is not None:
            with contextlib.suppress(FileNotFoundError):
                self.lock_path.unlink()
            os.close(self._lock_fd)
            self._lock_fd = None


class BlobStore:
    """Temporary files (always local) plus the final blob location."""

    def __init__(self, root: Path, modes: Modes, blob_url: str | None = None) -> None:
        self.root = root
        self.modes = modes
        self.tmp = root / "tmp"
        self.final: FinalBlobs = FsspecFinalBlobs(blob_url) if blob_url else LocalFinalBlobs(root / "blobs")

    @staticmethod
    def create_layout(root: Path, modes: Modes) -> None:
        """``blobs/`` and the private ``tmp/``, where missing: a node whose folder was seeded with
        ``store.toml`` alone (another node initialised the store) gets them when it first opens it."""
        for name, private in (("blobs", False), ("tmp", True)):
            if not (root / name).is_dir():
                make_dir(root / name, modes, private=private)

    def upload(self) -> Upload:
        return Upload(self, new_blob_id())

    def is_alive(self, blob_id: str) -> bool:
        """True while a live process holds the push lock of ``blob_id``."""
        try:
            fd = os.open(self.tmp / f"{_check_id(blob_id)}.lock", os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False

    def remove_temporary(self, blob_id: str) -> None:
        """Delete what a dead push left (only call after :meth:`is_alive` said it is dead)."""
        shutil.rmtree(self.tmp / f"{blob_id}.stage", ignore_errors=True)
        for suffix in (".part", ".lock"):
            with contextlib.suppress(FileNotFoundError):
                (self.tmp / f"{blob_id}{suffix}").unlink()

    def stale_temporary(self) -> set[str]:
        """Blob ids with temporary files and no live pushing process."""
        ids: set[str] = set()
        for entry in os.scandir(self.tmp):
            match = _TMP_NAME.match(entry.name)
            if match:
                ids.add(match.group(1))
            elif ".lock-" in entry.name:  # a lock being created when its process died
                with contextlib.suppress(OSError):
                    fd = os.open(entry.path, os.O_RDONLY | os.O_NOFOLLOW)
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        os.unlink(entry.path)
                    finally:
                        os.close(fd)
        return {i for i in ids if not self.is_alive(i)}
