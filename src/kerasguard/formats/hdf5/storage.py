"""Where a dataset's bytes are, as libhdf5 reports it: the layout, filter pipeline and external file
list messages, and the version 1 B-tree that indexes a chunked dataset's chunks.

Split from :mod:`~kerasguard.formats.hdf5.inprocess` (the reader that walks groups and attributes) because
this is the part that meets hostile storage declarations (size bombs, host files, chunk indexes), and
it has one job: turn those messages into the child's ``layout``/``stored_bytes``/``chunks``/``filters``/
``external`` fields, exactly, or raise :class:`Decline`. It reads the file only through a ``read``
callable with the reader's budgets, and every loop here has its own bound.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from kerasguard.formats.hdf5.values import MAX_EXTERNAL_FILES, MAX_RANK

UNDEF = 0xFFFFFFFFFFFFFFFF
UNLIMITED = UNDEF  # H5F_UNLIMITED: an external file without a size limit
MAX_FILTERS = 32  # H5Z_MAX_NFILTERS
MAX_FILTER_NAME = 200  # h5py reads at most 255 characters of a name; longer ones decline
MAX_EXTERNAL_NAME = 200
CHUNK_BTREE_K = 32  # a version 0 superblock has no field for it: libhdf5's default (64 entries a node)
MAX_CHUNK_NODES = 4096  # B-tree nodes visited per dataset before declining
MAX_CHUNK_LEVEL = 8  # 64**9 chunks would be needed to fill a tree this deep
MAX_CHUNK_BYTES = 2**32  # libhdf5 refuses chunks of 4 GiB or more
# The names libhdf5 reports for a library filter stored without a name (filter pipeline version 2).
# szip (4) is only registered when libhdf5 is built with it, so it declines with every other id.
LIBRARY_FILTERS = {1: "deflate", 2: "shuffle", 3: "fletcher32", 5: "nbit", 6: "scaleoffset"}


class Decline(Exception):
    """The file is not in a layout this reader knows exactly; the h5py child must read it."""


def need(ok: bool, why: str) -> None:
    if not ok:
        raise Decline(why)


class Reader(Protocol):
    size: int

    def read(self, addr: int, n: int) -> bytes: ...


@dataclass
class Storage:
    """The storage fields of one dataset, in the child's spelling."""

    layout: str
    stored_bytes: int
    extra: dict[str, Any] = field(default_factory=dict)


def storage(
    src: Reader,
    layout: bytes,
    shape: tuple[int, ...],
    element_size: int,
    filters: bytes | None,
    external: bytes | None,
    heap_string: Callable[[int, int], bytes],
) -> Storage:
    """The storage of a dataset from its layout, filter pipeline and external file list messages.

    ``heap_string(heap, offset)`` reads a NUL-terminated string from a local heap."""
    if len(layout) < 2 or layout[0] != 3:
        raise Decline("not a version 3 layout message")
    declared = math.prod(shape) * element_size
    kind = layout[1]
    if filters is not None and kind != 2:
        raise Decline("a filter pipeline on a dataset that is not chunked")
    if external is not None and kind != 1:
        raise Decline("external storage on a dataset that is not contiguous")
    if kind == 0:  # compact: the data is in the message
        need(len(layout) >= 4, "short compact layout")
        size = struct.unpack_from("<H", layout, 2)[0]
        need(4 + size <= len(layout) and size == declared, "compact data differs from its declared size")
        return Storage("compact", size)
    if kind == 1:  # contiguous: address, size
        if len(layout) < 18:
            raise Decline("short contiguous layout")
        addr, size = struct.unpack_from("<QQ", layout, 2)
        if size != declared:
            raise Decline("stored size differs from the declared size")
        if external is not None:
            need(addr == UNDEF, "external storage with an address in the file")
            files = external_files(external, heap_string)
            need(declared <= external_capacity(files), "external files smaller than the dataset")
            return Storage("contiguous", size, {"external": [list(f) for f in files[:MAX_EXTERNAL_FILES]]})
        if addr == UNDEF:
            return Storage("contiguous", 0)
        if addr + size > src.size:
            raise Decline("dataset storage outside the file")
        return Storage("contiguous", size)
    need(kind == 2, "not a compact, contiguous or chunked layout")
    chunk = chunk_dims(layout, shape, element_size)
    addr = struct.unpack_from("<Q", layout, 3)[0]
    stored = 0 if addr == UNDEF else ChunkIndex(src, chunk, shape, element_size).stored_bytes(addr)
    extra: dict[str, Any] = {"chunks": list(chunk)}
    if filters is not None:
        names = filter_names(filters)
        if names:
            extra["filters"] = names
    return Storage("chunked", stored, extra)


def chunk_dims(layout: bytes, shape: tuple[int, ...], element_size: int) -> tuple[int, ...]:
    """The chunk shape of a version 3 chunked layout: one dimension per dataset dimension, then the
    element size (dropped here, as libhdf5 drops it)."""
    need(len(layout) >= 3, "short chunked layout")
    ndims = layout[2]
    need(ndims == len(shape) + 1 and 2 <= ndims <= MAX_RANK + 1, "chunk rank differs from the dataset's")
    need(len(layout) >= 11 + 4 * ndims, "short chunked layout")
    dims = struct.unpack_from(f"<{ndims}I", layout, 11)
    need(dims[-1] == element_size, "chunk element size differs from the datatype")
    chunk = tuple(int(d) for d in dims[:-1])
    need(all(0 < c <= n for c, n in zip(chunk, shape, strict=True)), "a chunk larger than its dataset")
    need(math.prod(chunk) * element_size < MAX_CHUNK_BYTES, "a chunk of 4 GiB or more")
    return chunk


class ChunkIndex:
    """A version 1 B-tree of chunks (node type 1): the sum of the chunk sizes in its leaves is what
    libhdf5's ``H5Dget_storage_size`` reports. Cycles, inconsistent levels or siblings, keys outside
    the dataset and chunks outside the file decline."""

    def __init__(
        self, src: Reader, chunk: tuple[int, ...], shape: tuple[int, ...], element_size: int
    ) -> None:
        self.src = src
        self.chunk = (*chunk, element_size)  # keys have one more offset: 0, or the size in the last key
        self.shape = shape
        self.key_size = 8 + 8 * len(self.chunk)
        self.visited: set[int] = set()
        self.by_level: dict[int, list[tuple[int, int, int]]] = {}

    def stored_bytes(self, root: int) -> int:
        total = self._node(root, None)
        for row in self.by_level.values():  # each level is one chain of sibling links
            for i, (_addr, left, right) in enumerate(row):
                want_left = row[i - 1][0] if i else UNDEF
                want_right = row[i + 1][0] if i + 1 < len(row) else UNDEF
                need(left == want_left and right == want_right, "chunk B-tree sibling links disagree")
        return total

    def _node(self, addr: int, level: int | None) -> int:
        need(
            addr not in self.visited and len(self.visited) < MAX_CHUNK_NODES, "chunk B-tree loops or is huge"
        )
        self.visited.add(addr)
        two_k = 2 * CHUNK_BTREE_K
        need(addr + 24 + (two_k + 1) * self.key_size + 8 * two_k <= self.src.size, "B-tree node past the end")
        head = self.src.read(addr, 24)
        need(head[:5] == b"TREE\x01", "not a chunk B-tree node")
        node_level, used = head[5], struct.unpack_from("<H", head, 6)[0]
        need(node_level <= MAX_CHUNK_LEVEL and (level is None or node_level == level), "B-tree levels")
        need(used <= two_k, "chunk B-tree node over capacity")
        left, right = struct.unpack_from("<QQ", head, 8)
        self.by_level.setdefault(node_level, []).append((addr, left, right))
        step = self.key_size + 8
        body = self.src.read(addr + 24, used * step + self.key_size)
        total = 0
        for i in range(used + 1):
            nbytes, offsets = self._key(body, i * step)
            if i == used:
                break
            child = struct.unpack_from("<Q", body, i * step + self.key_size)[0]
            if node_level == 0:
                need(nbytes > 0 and child != UNDEF, "a malformed chunk entry")
                need(child + nbytes <= self.src.size, "a chunk outside the file")
                need(offsets[-1] == 0, "a chunk key with an element offset")
                need(
                    all(o < n for o, n in zip(offsets, self.shape, strict=False)),
                    "a chunk outside the dataset",
                )
                total += nbytes
            else:
                total += self._node(child, node_level - 1)
        return total

    def _key(self, body: bytes, pos: int) -> tuple[int, tuple[int, ...]]:
        nbytes, _mask = struct.unpack_from("<II", body, pos)
        offsets = struct.unpack_from(f"<{len(self.chunk)}Q", body, pos + 8)
        need(all(o % c == 0 for o, c in zip(offsets, self.chunk, strict=True)), "a chunk key off the grid")
        return int(nbytes), tuple(int(o) for o in offsets)


def filter_names(raw: bytes) -> list[str]:
    """The filter names of a filter pipeline message, as h5py's ``get_filter`` gives them."""
    need(len(raw) >= 2 and raw[0] in (1, 2), "filter pipeline message version")
    version, count = raw[0], raw[1]
    need(0 < count <= MAX_FILTERS, "filter count out of bounds")
    pos = 8 if version == 1 else 2
    names: list[str] = []

    def take(n: int) -> bytes:
        nonlocal pos
        need(pos + n <= len(raw), "filter pipeline fields out of bounds")
        out = raw[pos : pos + n]
        pos += n
        return out

    for _ in range(count):
        ident = struct.unpack("<H", take(2))[0]
        name_length = struct.unpack("<H", take(2))[0] if version == 1 or ident >= 256 else 0
        _flags, values = struct.unpack("<HH", take(4))
        need(version == 2 or name_length % 8 == 0, "filter name length not a multiple of eight")
        if name_length:
            stored = take(name_length)
            end = stored.find(b"\x00")
            need(0 < end <= MAX_FILTER_NAME, "a filter name that is empty, long or not terminated")
            names.append(stored[:end].decode("utf-8", "backslashreplace"))
        else:
            known = LIBRARY_FILTERS.get(ident)
            need(known is not None, "a filter without a name that libhdf5 may not know")
            assert known is not None
            names.append(known)
        take(4 * values + (4 if version == 1 and values % 2 else 0))
    return names


def external_files(raw: bytes, heap_string: Callable[[int, int], bytes]) -> list[tuple[str, int, int]]:
    """[name, offset, size] of each slot of an External Data Files message (names from its heap)."""
    need(len(raw) >= 16 and raw[0] == 1 and raw[1:4] == b"\x00\x00\x00", "external files message version")
    allocated, used, heap = struct.unpack_from("<HHQ", raw, 4)
    need(0 < used <= allocated and len(raw) >= 16 + 24 * used, "external file slots out of bounds")
    files: list[tuple[str, int, int]] = []
    for i in range(used):
        name_offset, offset, size = struct.unpack_from("<QqQ", raw, 16 + 24 * i)  # offset: an off_t
        name = heap_string(heap, name_offset)
        need(0 < len(name) <= MAX_EXTERNAL_NAME, "an external file name that is empty or long")
        files.append((name.decode("utf-8", "backslashreplace"), int(offset), int(size)))
    return files


def external_capacity(files: list[tuple[str, int, int]]) -> int:
    """The bytes the external files can hold, as libhdf5 sums them (only the last may be unlimited;
    an unlimited one elsewhere, or a sum past 2**64, declines)."""
    if files[-1][2] == UNLIMITED:
        need(all(size != UNLIMITED for _n, _o, size in files[:-1]), "an unlimited external file not last")
        return UNLIMITED
    total = sum(size for _n, _o, size in files)
    need(total < UNLIMITED, "external file sizes overflow")
    return total
