"""Streaming decompression of zip members, bounded in output and memory.

Output is produced in chunks of at most ``CHUNK`` bytes and never beyond the size the central
directory declares (zipfile stops there too), so a lying header cannot make us allocate more.
Decompressed bytes go to a :class:`Spool`: memory first, then one temporary file that is deleted
as soon as the member has been analysed.
"""

from __future__ import annotations

import bz2
import lzma
import struct
import tempfile
import zlib
from collections.abc import Generator, Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from kerasguard.findings import Location
from kerasguard.formats.blob import Blob

CHUNK = 1 << 20
SPOOL_MEMORY = 32 << 20  # above this a member goes to a temporary file
LZMA_MAX_DICT = 64 << 20  # our own decoder never allocates a bigger dictionary

METHOD_NAMES = {
    0: "stored",
    1: "shrink",
    6: "implode",
    8: "deflate",
    9: "deflate64",
    12: "bzip2",
    14: "lzma",
    93: "zstandard",
    95: "xz",
    96: "jpeg",
    97: "wavpack",
    98: "ppmd",
    99: "aes-encrypted",
}
DECODED_METHODS = frozenset({0, 8, 12, 14})  # the methods CPython's zipfile can read


def method_name(method: int) -> str:
    return METHOD_NAMES.get(method, f"method {method}")


class InflateError(Exception):
    """The compressed stream is broken, or decodes to more or fewer bytes than declared."""


def _deflate(chunks: Iterable[bytes]) -> Iterator[bytes]:
    d = zlib.decompressobj(-15)
    for data in chunks:
        buf = data
        while buf:
            out = d.decompress(buf, CHUNK)
            if out:
                yield out
            if d.eof:
                return
            buf = d.unconsumed_tail
    tail = d.flush()
    if tail:
        yield tail


def _buffered(decoder: Any, first: bytes, chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Drive a bz2/lzma decompressor with ``max_length`` so no call returns more than CHUNK."""
    pending: bytes | None = first
    while True:
        if pending is None:
            pending = next(chunks, None)
            if pending is None:
                return
        out = decoder.decompress(pending, CHUNK)
        pending = None
        if out:
            yield out
        while not decoder.eof and not decoder.needs_input:
            out = decoder.decompress(b"", CHUNK)
            if out:
                yield out
        if decoder.eof:
            return


def _lzma(chunks: Iterator[bytes], expected_size: int) -> Iterator[bytes]:
    """Zip's LZMA: 2 version bytes, 2-byte properties size, 5 property bytes, then raw LZMA1."""
    head = b""
    for data in chunks:
        head += data
        if len(head) >= 4 and len(head) >= 4 + struct.unpack("<H", head[2:4])[0]:
            break
    if len(head) < 4:
        raise InflateError("LZMA header truncated")
    psize = struct.unpack("<H", head[2:4])[0]
    if psize != 5 or len(head) < 9:
        raise InflateError(f"LZMA properties of {psize} bytes (expected 5)")
    props = head[4]
    lc, rest = props % 9, props // 9
    lp, pb = rest % 5, rest // 5
    if pb > 4:
        raise InflateError("invalid LZMA properties")
    (declared_dict,) = struct.unpack("<I", head[5:9])
    # References never reach further back than the output's length, so a dictionary of that size
    # decodes any valid stream; a huge declared dictionary is a memory bomb for naive decoders.
    dict_size = max(4096, min(declared_dict, expected_size, LZMA_MAX_DICT))
    filters = [{"id": lzma.FILTER_LZMA1, "dict_size": dict_size, "lc": lc, "lp": lp, "pb": pb}]
    decoder = lzma.LZMADecompressor(lzma.FORMAT_RAW, filters=filters)
    yield from _buffered(decoder, head[9:], chunks)


def decompress(chunks: Iterable[bytes], method: int, expected_size: int) -> Generator[bytes, None, None]:
    """Decoded chunks of a member; raises InflateError on a broken stream or a size mismatch."""
    raw = iter(chunks)
    if method == 0:
        stream: Iterator[bytes] = raw
    elif method == 8:
        stream = _deflate(raw)
    elif method == 12:
        stream = _buffered(bz2.BZ2Decompressor(), b"", raw)
    elif method == 14:
        stream = _lzma(raw, expected_size)
    else:
        raise InflateError(f"cannot decode {method_name(method)}")
    total = 0
    try:
        for out in stream:
            total += len(out)
            if total > expected_size:
                raise InflateError(
                    f"decompresses to more than the declared {expected_size} bytes "
                    "(zipfile truncates the data and then fails its CRC check)"
                )
            yield out
    except (zlib.error, lzma.LZMAError, OSError, EOFError, ValueError, MemoryError) as exc:
        raise InflateError(f"{method_name(method)} stream is corrupt: {exc}") from None
    if total < expected_size:
        raise InflateError(f"decompresses to {total} bytes, fewer than the declared {expected_size}")


class Spool:
    """Collects decoded bytes: in memory up to ``memory_limit``, then in one temporary file."""

    def __init__(self, memory_limit: int | None = None) -> None:
        self._memory_limit = SPOOL_MEMORY if memory_limit is None else memory_limit
        self._buf = bytearray()
        self._file: IO[bytes] | None = None
        self.size = 0

    def write(self, data: bytes) -> None:
        self.size += len(data)
        if self._file is not None:
            self._file.write(data)
            return
        self._buf += data
        if len(self._buf) > self._memory_limit:
            self._file = tempfile.NamedTemporaryFile(prefix="kerasguard-", suffix=".member")  # noqa: SIM115
            self._file.write(self._buf)
            self._buf = bytearray()

    @property
    def on_disk(self) -> bool:
        return self._file is not None

    def blob(self, location: Location, name: str) -> Blob:
        if self._file is None:
            return Blob.from_bytes(bytes(self._buf), location, name)
        self._file.flush()
        return Blob(location=location, name=name, size=self.size, path=Path(self._file.name))

    def close(self) -> None:
        self._buf = bytearray()
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> Spool:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
