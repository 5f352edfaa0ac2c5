"""Blobs: byte ranges to analyse (a file, a stored zip member, decoded bytes), read with bounds.

A stored zip member is analysed in place at its offset, so scan cost follows metadata, not weights.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from kerasguard.findings import Location


class LimitExceeded(Exception):
    """A read would exceed a configured limit; readers turn it into a finding."""

    def __init__(self, what: str, size: int, limit: int) -> None:
        super().__init__(f"{what}: {size} bytes exceeds the limit of {limit} bytes")
        self.what = what
        self.size = size
        self.limit = limit


class FileWindow(io.RawIOBase):
    """A read-only, seekable view of ``size`` bytes at ``offset`` of a file."""

    def __init__(self, path: Path, offset: int, size: int) -> None:
        super().__init__()
        self._fh = open(path, "rb", buffering=0)  # noqa: SIM115 - closed in close()
        self._offset = offset
        self._size = size
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, pos: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            new = pos
        elif whence == io.SEEK_CUR:
            new = self._pos + pos
        elif whence == io.SEEK_END:
            new = self._size + pos
        else:
            raise ValueError(f"bad whence {whence}")
        if new < 0:
            raise OSError("negative seek position")
        self._pos = new
        return new

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        remaining = self._size - self._pos
        if remaining <= 0:
            return 0
        view = memoryview(buffer)
        want = min(len(view), remaining)
        data = os.pread(self._fh.fileno(), want, self._offset + self._pos)
        n = len(data)
        view[:n] = data
        self._pos += n
        return n

    def close(self) -> None:
        if not self.closed:
            self._fh.close()
        super().close()


@dataclass(frozen=True)
class Blob:
    """Bytes to analyse: ``data`` in memory, or ``size`` bytes at ``offset`` of ``path``."""

    location: Location
    name: str
    size: int
    path: Path | None = None
    offset: int = 0
    data: bytes | None = None

    @classmethod
    def from_file(cls, path: Path, location: Location) -> Blob:
        return cls(location=location, name=path.name, size=path.stat().st_size, path=path)

    @classmethod
    def from_bytes(cls, data: bytes, location: Location, name: str) -> Blob:
        return cls(location=location, name=name, size=len(data), data=data)

    def open(self) -> BinaryIO:
        if self.data is not None:
            return io.BytesIO(self.data)
        assert self.path is not None
        return io.BufferedReader(FileWindow(self.path, self.offset, self.size))

    def head(self, n: int) -> bytes:
        if self.data is not None:
            return self.data[:n]
        return self._pread(n)

    def read_all(self, limit: int, what: str = "member") -> bytes:
        """All bytes, refusing (LimitExceeded) anything larger than ``limit``."""
        if self.size > limit:
            raise LimitExceeded(what, self.size, limit)
        if self.data is not None:
            return self.data
        return self._pread(self.size)

    def _pread(self, n: int) -> bytes:
        """Up to ``n`` bytes from the start of a file-backed blob (short at end of file).

        One descriptor and positional reads: ~12 µs less per call than a buffered window, and
        readers call this several times per member.
        """
        assert self.path is not None
        want = min(n, self.size)
        fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            parts: list[bytes] = []
            got = 0
            while got < want:
                data = os.pread(fd, want - got, self.offset + got)
                if not data:
                    break
                parts.append(data)
                got += len(data)
        finally:
            os.close(fd)
        return b"".join(parts)
