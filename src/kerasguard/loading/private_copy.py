"""A private copy of the model: the exact bytes that are hashed, verified, scanned and loaded.

The source is read once through one descriptor; the bytes are hashed as they are written into a
fresh 0700 directory, and the copy is made read-only. Everything after this step (digest and
signature checks, the scan, the sandboxed load) uses only the copy, so a file swapped or edited at
its source after the check cannot be what gets loaded.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from kerasguard.errors import KerasGuardError
from kerasguard.loading.sources import OpenedSource
from kerasguard.tempdirs import private_dir

CHUNK = 1 << 20


@dataclass(frozen=True)
class PrivateCopy:
    """The copied model file and the SHA-256 of exactly its bytes."""

    directory: Path
    path: Path
    sha256: str
    size: int

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


def make_private_copy(source: OpenedSource, *, max_bytes: int, tmpdir: str | None = None) -> PrivateCopy:
    """Copy ``source`` (from its open descriptor) into a new private directory, hashing as it goes."""
    if source.size > max_bytes:
        raise KerasGuardError(
            f"model is {source.size} bytes, over the policy limit max_file_bytes={max_bytes}"
        )
    directory = private_dir("model", base=tmpdir)
    path = directory / source.canonical.name  # same name: signatures cover file names
    digest = hashlib.sha256()
    total = 0
    try:
        out = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            buf = bytearray(CHUNK)
            view = memoryview(buf)
            os.lseek(source.fd, 0, os.SEEK_SET)
            while True:
                n = os.readv(source.fd, [buf])
                if n == 0:
                    break
                total += n
                if total > max_bytes:
                    raise KerasGuardError(f"model grew past max_file_bytes={max_bytes} while being copied")
                digest.update(view[:n])
                written = 0
                while written < n:
                    written += os.write(out, view[written:n])
            os.fchmod(out, 0o400)
        finally:
            os.close(out)
    except OSError as exc:
        shutil.rmtree(directory, ignore_errors=True)
        raise KerasGuardError(
            f"cannot copy the model into a private directory: {exc.strerror or exc}"
        ) from None
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    return PrivateCopy(directory=directory, path=path, sha256=digest.hexdigest(), size=total)
