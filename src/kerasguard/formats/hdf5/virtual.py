"""The source list of a virtual dataset, as libhdf5 decodes it when the dataset is opened.

A virtual dataset's layout message (version 4, class 3) names a global heap object holding its
mapping: an encoding version (0), an entry count, per entry the source file and dataset names
(NUL-terminated) and two serialized selections (in the source, in the virtual dataset), then a
Jenkins lookup3 checksum of everything before it. :func:`virtual_sources` returns the
``"file:dataset"`` strings the h5py child prints, or raises :class:`Decline` where libhdf5 would refuse
the dataset (the child then reports an error for it) or might decode it otherwise than this module:
other encoding versions, point selections (libhdf5 refuses them in a mapping), unlimited or empty
hyperslabs, ``%`` in a name (printf-style source names), names that are not UTF-8, a virtual selection
of another rank than the dataset or reaching outside it. Split from
:mod:`~kerasguard.formats.hdf5.storage` because it decodes a different structure (selections); it only
reads the bytes it is given, and every count is checked against the bytes left before it is used.
"""

from __future__ import annotations

import struct

from kerasguard.formats.hdf5.storage import Decline, need
from kerasguard.formats.hdf5.values import MAX_RANK, MAX_VIRTUAL_SOURCES

MAX_ENTRIES = 4096  # mappings per dataset decoded before declining (h5py writes one per source slice)
MAX_BLOCKS = 65536  # hyperslab blocks per dataset, likewise
MAX_NAME = 1024
_LIMIT = 2**63  # selection bounds past this decline (libhdf5 computes them in 64-bit arithmetic)
SEL_NONE, SEL_POINTS, SEL_HYPERSLABS, SEL_ALL = 0, 1, 2, 3
_ENC = {2: "H", 4: "I", 8: "Q"}


def lookup3(data: bytes, initval: int = 0) -> int:
    """Bob Jenkins' lookup3 ``hashlittle``, which libhdf5 uses for metadata checksums."""
    mask = 0xFFFFFFFF

    def rot(x: int, k: int) -> int:
        return ((x << k) | (x >> (32 - k))) & mask

    length = len(data)
    a = b = c = (0xDEADBEEF + length + initval) & mask
    pos = 0
    while length - pos > 12:
        x, y, z = struct.unpack_from("<III", data, pos)
        a, b, c = (a + x) & mask, (b + y) & mask, (c + z) & mask
        a = (a - c) & mask ^ rot(c, 4)
        c = (c + b) & mask
        b = (b - a) & mask ^ rot(a, 6)
        a = (a + c) & mask
        c = (c - b) & mask ^ rot(b, 8)
        b = (b + a) & mask
        a = (a - c) & mask ^ rot(c, 16)
        c = (c + b) & mask
        b = (b - a) & mask ^ rot(a, 19)
        a = (a + c) & mask
        c = (c - b) & mask ^ rot(b, 4)
        b = (b + a) & mask
        pos += 12
    tail = data[pos:]
    if not tail:
        return c
    x, y, z = struct.unpack("<III", tail.ljust(12, b"\x00"))
    a, b, c = (a + x) & mask, (b + y) & mask, (c + z) & mask
    c = (c ^ b) - rot(b, 14) & mask
    a = (a ^ c) - rot(c, 11) & mask
    b = (b ^ a) - rot(a, 25) & mask
    c = (c ^ b) - rot(b, 16) & mask
    a = (a ^ c) - rot(c, 4) & mask
    b = (b ^ a) - rot(a, 14) & mask
    c = (c ^ b) - rot(b, 24) & mask
    return int(c)


class _Cursor:
    def __init__(self, raw: bytes, end: int) -> None:
        self.raw = raw
        self.pos = 0
        self.end = end  # the checksum is not part of the entries

    def take(self, n: int) -> bytes:
        need(0 <= n <= self.end - self.pos, "a virtual mapping field past its end")
        self.pos += n
        return self.raw[self.pos - n : self.pos]

    def u32(self) -> int:
        return int(struct.unpack("<I", self.take(4))[0])

    def name(self) -> str:
        stop = self.raw.find(b"\x00", self.pos, self.end)
        need(stop > self.pos and stop - self.pos <= MAX_NAME, "a virtual source name empty or unterminated")
        raw = self.take(stop - self.pos + 1)[:-1]
        need(b"%" not in raw, "a printf-style virtual source name")
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise Decline("a virtual source name that is not UTF-8") from None


class _Budget:
    def __init__(self) -> None:
        self.blocks = 0


def _selection(cur: _Cursor, budget: _Budget) -> tuple[int, int, tuple[int, ...] | None]:
    """(type, rank, last selected index per dimension) of one serialized selection; rank and bounds
    are 0 and None for "all" and "none" (libhdf5 gives them the extent they are used with)."""
    kind, version = cur.u32(), cur.u32()
    if kind in (SEL_ALL, SEL_NONE):
        need(version == 1 and cur.take(8) == bytes(8), "an unusual all/none selection")
        return kind, 0, None
    need(kind == SEL_HYPERSLABS, "a point or unknown selection in a virtual mapping")
    if version == 1:
        need(cur.u32() == 0, "reserved hyperslab selection bytes set")
        flags, enc, length = 0, 4, cur.u32()
    elif version == 2:
        flags, enc, length = cur.take(1)[0], 8, cur.u32()
    elif version == 3:
        flags, enc, length = cur.take(1)[0], cur.take(1)[0], -1
    else:
        raise Decline(f"hyperslab selection version {version}")
    need(flags in (0, 1) and enc in _ENC, "unknown hyperslab selection flags or sizes")
    start_pos = cur.pos
    rank = cur.u32()
    need(0 < rank <= MAX_RANK, "a hyperslab selection rank out of range")
    sentinel = (1 << (8 * enc)) - 1  # libhdf5 reads it as "unlimited": declined
    if flags:  # regular: start, stride, count, block per dimension
        values = struct.unpack(f"<{4 * rank}{_ENC[enc]}", cur.take(4 * rank * enc))
        ends = []
        for d in range(rank):
            start, stride, count, block = values[4 * d : 4 * d + 4]
            need(sentinel not in (start, stride, count, block), "an unlimited hyperslab")
            need(stride > 0 and count > 0 and block > 0, "an empty or zero-stride hyperslab")
            need(count == 1 or stride >= block, "overlapping hyperslab blocks")
            ends.append(start + stride * (count - 1) + block - 1)
        budget.blocks += 1
    else:  # irregular: a block count, then the first and last index of each block
        blocks = int(struct.unpack(f"<{_ENC[enc]}", cur.take(enc))[0])
        need(0 < blocks <= (cur.end - cur.pos) // (2 * rank * enc), "a hyperslab block count past the end")
        budget.blocks += blocks
        need(budget.blocks <= MAX_BLOCKS, "too many hyperslab blocks")
        values = struct.unpack(f"<{2 * rank * blocks}{_ENC[enc]}", cur.take(2 * rank * blocks * enc))
        ends = [0] * rank
        for i in range(blocks):
            corner = values[2 * rank * i : 2 * rank * (i + 1)]
            for d in range(rank):
                first, last = corner[d], corner[rank + d]
                need(first <= last < sentinel, "a hyperslab block that ends before it starts")
                ends[d] = max(ends[d], last)
    need(budget.blocks <= MAX_BLOCKS and max(ends) < _LIMIT, "hyperslab bounds out of range")
    need(length < 0 or length == cur.pos - start_pos, "a hyperslab selection length that differs")
    return kind, rank, tuple(ends)


def virtual_sources(blob: bytes, shape: tuple[int, ...]) -> list[str]:
    """The first :data:`MAX_VIRTUAL_SOURCES` ``"file:dataset"`` strings of a VDS mapping heap object, every
    entry decoded and checked as libhdf5 checks it on open (``shape``: the virtual dataset's)."""
    need(0 < len(shape) <= MAX_RANK, "a virtual dataset without a rank")
    need(len(blob) >= 13 and blob[0] == 0, "not a version 0 virtual mapping")
    stored = struct.unpack_from("<I", blob, len(blob) - 4)[0]
    need(lookup3(blob[:-4]) == stored, "virtual mapping checksum mismatch")
    cur = _Cursor(blob, len(blob) - 4)
    cur.take(1)
    count = int(struct.unpack("<Q", cur.take(8))[0])
    # each entry takes at least 4 name bytes and two 16-byte selections
    need(0 < count <= min(MAX_ENTRIES, (cur.end - cur.pos) // 36), "a virtual mapping count out of range")
    budget = _Budget()
    sources: list[str] = []
    for _ in range(count):
        filename, dataset = cur.name(), cur.name()
        _selection(cur, budget)  # the source selection: its extent is the source dataset's, unchecked
        _kind, rank, ends = _selection(cur, budget)
        if ends is not None:  # libhdf5 checks the dataset holds each hyperslab (H5D_virtual_check_min_dims)
            need(rank == len(shape), "a virtual selection of another rank than the dataset")
            need(all(e < n for e, n in zip(ends, shape, strict=True)), "a virtual selection past the dataset")
        if len(sources) < MAX_VIRTUAL_SOURCES:
            sources.append(f"{filename}:{dataset}")
    need(cur.pos == cur.end, "bytes left over in a virtual mapping")
    return sources
