"""Zip archives written field by field, for the tricks ``zipfile`` refuses to produce (tests only).

Every header field can be overridden: names that differ between local header and central directory,
sizes that lie, central-directory entries that share one local header, zip64 records, prefixes.
"""

from __future__ import annotations

import bz2
import functools
import io
import struct
import zlib
from dataclasses import dataclass, field

import h5py

U32 = 0xFFFF_FFFF


def compress(data: bytes, method: int) -> bytes:
    if method == 0:
        return data
    if method == 8:
        c = zlib.compressobj(9, zlib.DEFLATED, -15)
        return c.compress(data) + c.flush()
    if method == 12:
        return bz2.compress(data)
    raise ValueError(f"zipcraft cannot compress method {method}")


@dataclass
class Entry:
    name: bytes
    data: bytes = b""
    method: int = 0
    flags: int = 0
    external_attr: int = 0o100644 << 16
    create_system: int = 3
    # Overrides of what the headers say (None: the truth).
    file_size: int | None = None
    compress_size: int | None = None
    crc: int | None = None
    raw: bytes | None = None  # the stored bytes, when not compress(data, method)
    local_name: bytes | None = None
    local_method: int | None = None
    local_flags: int | None = None
    local_sizes: tuple[int, int] | None = None  # (compress_size, file_size) in the local header
    header_offset: int | None = None  # make the central directory point elsewhere
    write_local: bool = True  # False: a central-directory entry only (use header_offset)
    zip64_sizes: bool = False  # put sizes in a zip64 extra field (0xFFFFFFFF in the headers)
    extract_version: int = 20
    extra: bytes = b""  # extra bytes appended to the central-directory extra field
    offset: int = field(default=0, init=False)


def _zip64_extra(fsize: int, csize: int) -> bytes:
    return struct.pack("<HHQQ", 1, 16, fsize, csize)


def local_header(e: Entry, stored: bytes) -> bytes:
    csize, fsize = e.local_sizes or (
        e.compress_size if e.compress_size is not None else len(stored),
        e.file_size if e.file_size is not None else len(e.data),
    )
    extra = b""
    if e.zip64_sizes:
        extra = _zip64_extra(fsize, csize)
        csize = fsize = U32
    name = e.local_name if e.local_name is not None else e.name
    crc = e.crc if e.crc is not None else zlib.crc32(e.data)
    return (
        struct.pack(
            "<4s2B4HL2L2H",
            b"PK\x03\x04",
            e.extract_version,
            0,
            e.local_flags if e.local_flags is not None else e.flags,
            e.local_method if e.local_method is not None else e.method,
            0,
            0x21,
            crc,
            csize,
            fsize,
            len(name),
            len(extra),
        )
        + name
        + extra
    )


def central_entry(e: Entry, stored: bytes) -> bytes:
    csize = e.compress_size if e.compress_size is not None else len(stored)
    fsize = e.file_size if e.file_size is not None else len(e.data)
    offset = e.header_offset if e.header_offset is not None else e.offset
    extra = b""
    if e.zip64_sizes:
        extra = _zip64_extra(fsize, csize)
        csize = fsize = U32
    extra += e.extra
    crc = e.crc if e.crc is not None else zlib.crc32(e.data)
    return (
        struct.pack(
            "<4s4B4HL2L5H2L",
            b"PK\x01\x02",
            20,
            e.create_system,
            e.extract_version,
            0,
            e.flags,
            e.method,
            0,
            0x21,
            crc,
            csize,
            fsize,
            len(e.name),
            len(extra),
            0,
            0,
            0,
            e.external_attr,
            offset,
        )
        + e.name
        + extra
    )


def build(
    entries: list[Entry],
    *,
    prefix: bytes = b"",
    comment: bytes = b"",
    comment_len: int | None = None,
    eocd_entries: int | None = None,
    cd_offset_delta: int = 0,
    zip64: bool = False,
    trailing: bytes = b"",
    relative_offsets: bool = False,
) -> bytes:
    """An archive; offsets count from the start of the file unless ``relative_offsets``."""
    out = bytearray(prefix)
    shift = len(prefix) if relative_offsets else 0  # `cat prefix archive` keeps the archive's offsets
    stored = []
    for e in entries:
        data = e.raw if e.raw is not None else compress(e.data, e.method)
        stored.append(data)
        e.offset = len(out) - shift
        if e.write_local:
            out += local_header(e, data) + data
    cd_start = len(out)
    for e, data in zip(entries, stored, strict=True):
        out += central_entry(e, data)
    cd_size = len(out) - cd_start
    cd_offset = cd_start - shift + cd_offset_delta
    count = eocd_entries if eocd_entries is not None else len(entries)
    if zip64:
        rec_pos = len(out) - shift
        out += struct.pack("<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, count, count, cd_size, cd_offset)
        out += struct.pack("<4sLQL", b"PK\x06\x07", 0, rec_pos, 1)
        out += struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, U32, U32, len(comment))
    else:
        out += struct.pack(
            "<4s4H2LH",
            b"PK\x05\x06",
            0,
            0,
            count,
            count,
            cd_size,
            cd_offset,
            comment_len if comment_len is not None else len(comment),
        )
    out += comment + trailing
    return bytes(out)


CONFIG = b'{"module": "keras", "class_name": "Sequential", "config": {"layers": []}}'
METADATA = b'{"keras_version": "3.15.1"}'


@functools.cache
def empty_weights() -> bytes:
    """A real, minimal (179 bytes) HDF5 weights file: the HDF5 reader judges it, so it must parse."""
    buf = io.BytesIO()
    with h5py.File(buf, "w", libver="latest"):
        pass
    return buf.getvalue()


def keras_entries(**overrides: bytes) -> list[Entry]:
    """A minimal Keras-shaped archive (empty model, minimal real HDF5 weights)."""
    files = {"metadata.json": METADATA, "config.json": CONFIG, "model.weights.h5": empty_weights()}
    files.update({k.replace("__", "."): v for k, v in overrides.items()})
    return [Entry(name.encode(), data) for name, data in files.items()]
