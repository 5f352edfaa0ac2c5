"""A pure-Python reader for the HDF5 layouts h5py writes with its default ``libver="earliest"``.

Why: starting the h5py child costs ~0.1-0.2 s and each request milliseconds, more than the rest of a
scan. This reader answers in the child's own format (see :mod:`~kerasguard.formats.hdf5.child`) for files
built from: a version 0 superblock, version 1 object headers, symbol-table groups (hard links and
soft links) and groups with compact link storage (Link Info, Group Info and Link messages: hard, soft
and external links, what libhdf5 converts a group to when it receives an external link), datasets
that are compact, contiguous, stored in external files, or chunked with a version 1 B-tree index and a
filter pipeline (storage read by :mod:`~kerasguard.formats.hdf5.storage`), virtual datasets (layout
version 4: the source mapping in a global heap object, decoded and checked as libhdf5 checks it on
open by :mod:`~kerasguard.formats.hdf5.virtual`), and attributes of plain numeric and string types. Size
bombs, host files, soft and external links and virtual sources are therefore described in-process,
field for field as the child describes them; the rules judge them, not this reader. One file it
refuses itself, as libhdf5 does at open: a file shorter than its superblock's end-of-file address (a
truncated download or member) is answered "corrupt", in its own words, without starting the child.

Anything else (another version, flag or message type, dense link storage, creation-order indexes,
unlimited or point-selected virtual mappings, resizable dataspaces, a filter libhdf5 might not name, a
read outside the file, names out of order, a B-tree loop, a limit reached) makes it *decline*, and the
file goes to the h5py child.
So it never has to guess: it is exact about what it accepts, which the differential tests and the
mutation fuzz (``scripts/fuzz_hdf5_inprocess.py``) check against h5py, and declines the rest.
"""

from __future__ import annotations

import base64
import functools
import math
import os
import stat
import struct
from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from kerasguard.formats.blob import Blob
from kerasguard.formats.hdf5.storage import UNDEF, Decline, Storage, need, storage
from kerasguard.formats.hdf5.values import (
    JSON_ATTRS,
    MAX_ATTR_READ_BYTES,
    MAX_ATTRS_PER_OBJECT,
    MAX_GROUP_DEPTH,
    MAX_RANK,
    MAX_SPLIT_PARTS,
    REPR_CHARS,
    as_bytes,
    clip,
    estimate_object_size,
    short_repr,
    text,
)
from kerasguard.formats.hdf5.virtual import virtual_sources

SIGNATURE = b"\x89HDF\r\n\x1a\n"
VLEN_STRING_BASE = struct.pack("<B3sIHH", 0x10, b"", 1, 0, 8)  # unsigned 8-bit, little-endian
FREE_LIST_END = 1  # libhdf5's "no next free block" in a local heap
MAX_READS = 200_000  # metadata reads per file before declining (bounds time on any input)
MAX_READ_BYTES = 16 * 1024 * 1024  # one structure (a heap, a header chunk); legitimate ones are tiny
MAX_TOTAL_BYTES = 64 * 1024 * 1024  # asked for per file (bounds the time spent copying bytes)
MAX_CACHED_BLOCKS = 256
# Variable-length strings read per file before declining: a larger model_config goes to the child,
# whose memory is capped, so this process's peak stays small.
MAX_HEAP_BYTES = 8 * 1024 * 1024
_BLOCK = 16 * 1024

# Object header message types accepted; any other type declines.
NIL, DATASPACE, LINK_INFO, DATATYPE, FILL_OLD, FILL, LINK, EXTERNAL, LAYOUT = (
    0x0,
    0x1,
    0x2,
    0x3,
    0x4,
    0x5,
    0x6,
    0x7,
    0x8,
)
GROUP_INFO, FILTERS, ATTRIBUTE, CONTINUATION, SYMBOL_TABLE, MTIME = 0xA, 0xB, 0xC, 0x10, 0x11, 0x12
_DATASET_MESSAGES = frozenset(
    {DATASPACE, DATATYPE, FILL_OLD, FILL, LAYOUT, FILTERS, EXTERNAL, ATTRIBUTE, MTIME}
)
_GROUP_MESSAGES = frozenset({SYMBOL_TABLE, ATTRIBUTE, MTIME})
_COMPACT_GROUP_MESSAGES = frozenset({LINK_INFO, GROUP_INFO, LINK, ATTRIBUTE, MTIME})
_KNOWN_MESSAGES = _DATASET_MESSAGES | _GROUP_MESSAGES | _COMPACT_GROUP_MESSAGES | {NIL, CONTINUATION}
_CONSTANT_FLAG = 0x01  # the only message flag accepted ("constant"); "shared" and the rest decline

_MESSAGE_HEAD = struct.Struct("<HHB3s")
_OBJECT_HEADER = struct.Struct("<BBHIII")
_ENTRY = struct.Struct("<QQII")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_FLOAT_LAYOUT = {  # size: (exponent location, exponent size, mantissa size, bias) of IEEE 754
    2: (10, 5, 10, 15),
    4: (23, 8, 23, 127),
    8: (52, 11, 52, 1023),
}


class Refused(Exception):
    """The file is one libhdf5 refuses to open, for a reason read here as exactly as libhdf5 reads it."""


@dataclass(frozen=True)
class DType:
    """An element type: its numpy spelling (as h5py reports it), size and how to decode one element."""

    name: str
    size: int
    decode: Callable[[bytes], Any]


class Array:
    """An attribute value with more than one element, shaped like the numpy array h5py returns."""

    def __init__(self, shape: tuple[int, ...], dtype: str, items: list[Any]) -> None:
        self.shape = shape
        self.dtype = dtype
        self.size = len(items)
        self._items = items

    def tolist(self) -> list[Any]:
        def nest(items: list[Any], dims: tuple[int, ...]) -> list[Any]:
            if len(dims) <= 1:
                return items
            step = len(items) // dims[0] if dims[0] else 0
            return [nest(items[i * step : (i + 1) * step], dims[1:]) for i in range(dims[0])]

        return nest(self._items, self.shape)


class _TooDeep(Exception):
    """A link deeper than MAX_GROUP_DEPTH: the walk stops there, as the child's does."""


class Source:
    """Bounded random reads from a blob: every read outside it declines."""

    def __init__(self, blob: Blob) -> None:
        self.size = blob.size
        self._data = blob.data
        self._fd = -1
        self._offset = blob.offset
        self._blocks: dict[int, bytes] = {}
        self.reads = 0
        self.bytes_read = 0
        if self._data is None:
            assert blob.path is not None
            # Never blocks (a FIFO swapped in would); only a regular file long enough is read here.
            flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
            self._fd = os.open(blob.path, flags)
            info = os.fstat(self._fd)
            if not stat.S_ISREG(info.st_mode) or info.st_size < blob.offset + blob.size:
                self.close()
                raise Decline("not a regular file of the expected size")

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def read(self, addr: int, n: int) -> bytes:
        self.reads += 1
        if self.reads > MAX_READS:
            raise Decline("too many metadata reads")
        if addr < 0 or n < 0 or addr + n > self.size:
            raise Decline(f"read of {n} bytes at {addr} is outside the file")
        self.bytes_read += n
        if n > MAX_READ_BYTES or self.bytes_read > MAX_TOTAL_BYTES:
            raise Decline("metadata reads over the byte budget")
        if self._data is not None:
            return self._data[addr : addr + n]
        first = addr // _BLOCK
        start = addr - first * _BLOCK
        if start + n <= _BLOCK:  # within one block: most metadata reads
            block = self._blocks.get(first)
            if block is None:
                block = self._block(first)
            return block[start : start + n]
        last = (addr + n - 1) // _BLOCK
        if n > 4 * _BLOCK:  # a large read (a global heap): straight from the file
            return self._pread(addr, n)
        joined = b"".join(self._block(i) for i in range(first, last + 1))
        return joined[start : start + n]

    def _block(self, index: int) -> bytes:
        block = self._blocks.get(index)
        if block is None:
            if len(self._blocks) >= MAX_CACHED_BLOCKS:
                self._blocks.clear()
            block = self._pread(index * _BLOCK, min(_BLOCK, self.size - index * _BLOCK))
            self._blocks[index] = block
        return block

    def _pread(self, addr: int, n: int) -> bytes:
        data = os.pread(self._fd, n, self._offset + addr)
        if len(data) != n:
            raise Decline("the file is shorter than it was")
        return data


_need = need


class Header:
    """The messages of one object header (NIL and continuations dropped), checked for the plain layout:
    attributes and links may repeat, any other message appears at most once (filled by
    ``PlainReader._header``)."""

    __slots__ = ("attributes", "links", "single")

    def __init__(self) -> None:
        self.single: dict[int, bytes] = {}
        self.attributes: list[bytes] = []
        self.links: list[bytes] = []

    def one(self, kind: int) -> bytes | None:
        return self.single.get(kind)

    def only(self, allowed: frozenset[int], why: str) -> None:
        _need(self.single.keys() <= allowed and (not self.links or LINK in allowed), why)


class PlainReader:
    """Reads one file; :meth:`answer` gives the h5py child's answer for it, or raises :class:`Decline`."""

    def __init__(
        self, src: Source, max_objects: int, max_json_bytes: int, max_description_bytes: int
    ) -> None:
        self.src = src
        self.max_objects = max_objects
        self.max_json_bytes = max_json_bytes
        self.max_description_bytes = max_description_bytes
        self.description_bytes = 0
        self.objects: list[dict[str, Any]] = []
        self.seen: dict[int, str] = {}
        self.heaps = GlobalHeaps(src)
        self.leaf_k = 0
        self.internal_k = 0
        self._shapes: dict[bytes, tuple[int, ...] | None] = {}
        self._dtypes: dict[bytes, DType] = {}
        self._fills: set[tuple[int, bytes, int]] = set()

    # ------------------------------------------------------------------ structure

    def answer(self) -> dict[str, Any]:
        root = self._superblock()
        root_header = self._group_header(root, self._header(root.header))
        self.seen[root.header] = "/"
        root_attrs, json_attrs = self._root_attrs(root_header)
        truncated = None
        try:
            self._walk(root_header, "/", 0)
        except _TooDeep:  # the child stops at the same link (MAX_GROUP_DEPTH, in visit order)
            truncated = "depth"
        return {
            "ok": True,
            "objects": self.objects,
            "root_attrs": root_attrs,
            "json_attrs": json_attrs,
            "errors": [],
            "truncated": truncated,
        }

    def _superblock(self) -> Entry:
        raw = self.src.read(0, 96)
        _need(raw[:8] == SIGNATURE, "no HDF5 signature at offset 0")
        # superblock, free-space, root entry and shared-header versions; offset and length sizes
        _need(raw[8:16] == b"\x00\x00\x00\x00\x00\x08\x08\x00", "not a v0 superblock with 8-byte fields")
        self.leaf_k, self.internal_k = _U16.unpack_from(raw, 16)[0], _U16.unpack_from(raw, 18)[0]
        _need(0 < self.leaf_k <= 1024 and 0 < self.internal_k <= 1024, "unusual B-tree parameters")
        flags, base, free_space, eof, driver = struct.unpack_from("<IQQQQ", raw, 20)
        _need(flags == 0 and base == 0, "consistency flags or a base address set")
        _need(free_space == UNDEF and driver == UNDEF, "a free-space or driver block")
        if eof > self.src.size:  # libhdf5 refuses these at open ("truncated file"), before reading more
            raise Refused(f"truncated: {self.src.size} bytes where the superblock declares {eof}")
        _need(eof == self.src.size, "end-of-file address before the end of the file")
        return Entry.parse(raw, 56)

    def _header(self, addr: int) -> Header:
        if addr == UNDEF:
            raise Decline("object header at an undefined address")
        read, head, known = self.src.read, _MESSAGE_HEAD.unpack_from, _KNOWN_MESSAGES
        version, reserved, count, _refs, size, pad = _OBJECT_HEADER.unpack(read(addr, 16))
        if version != 1 or reserved or pad:
            raise Decline("not a version 1 object header")
        chunks = [(addr + 16, size)]
        header = Header()
        single, attributes, links = header.single, header.attributes, header.links
        visited: set[int] = set()
        while chunks:
            start, length = chunks.pop(0)
            if start in visited or len(visited) >= 64:
                raise Decline("object header continuations loop")
            visited.add(start)
            chunk = read(start, length)
            pos = 0
            while pos < length:
                if pos + 8 > length:
                    raise Decline("object header chunk ends inside a message")
                kind, size, flags, reserved3 = head(chunk, pos)
                end = pos + 8 + size
                if size % 8 or end > length:
                    raise Decline("message size out of bounds")
                if reserved3 != b"\x00\x00\x00" or flags & ~_CONSTANT_FLAG:
                    raise Decline("message flags")
                if kind not in known:
                    raise Decline("a message type outside the plain layout")
                if kind == ATTRIBUTE:
                    attributes.append(chunk[pos + 8 : end])
                elif kind == LINK:
                    links.append(chunk[pos + 8 : end])
                elif kind == CONTINUATION:
                    _need(size == 16, "bad continuation message")
                    chunks.append(struct.unpack_from("<QQ", chunk, pos + 8))
                elif kind != NIL:
                    if kind in single:
                        raise Decline("a message appears twice")
                    single[kind] = chunk[pos + 8 : end]
                count -= 1
                pos = end
        if count:
            raise Decline("object header message count does not match")
        mtime = single.get(MTIME)  # libhdf5 opens no object whose time has another version
        if mtime is not None and (len(mtime) < 8 or mtime[0] != 1):
            raise Decline("a modification time message of another version")
        return header

    def _group_header(self, entry: Entry, header: Header) -> Header:
        """``header`` (of ``entry``), checked to be a group: a symbol-table group whose cached addresses
        agree, or a group with compact link storage (whose entry's cache libhdf5 never reads)."""
        stab = header.single.get(SYMBOL_TABLE)
        if entry.cache_type not in (0, 1):
            raise Decline("a link that is not a hard link")
        if stab is None:
            _need(header.one(LINK_INFO) is not None, "not a group")
            header.only(_COMPACT_GROUP_MESSAGES, "a group with unexpected messages")
            return header
        _need(len(stab) >= 16, "not a symbol-table group")
        if entry.cache_type == 1:
            _need(entry.scratch == stab[:16], "cached group addresses differ from the object header")
        header.only(_GROUP_MESSAGES, "a group with unexpected messages")
        return header

    def _links(self, header: Header) -> list[Entry]:
        """The links of a group in name order, as ``H5Lvisit`` lists them."""
        if header.one(SYMBOL_TABLE) is not None:
            return self._children(header)
        return compact_links(header)

    def _children(self, header: Header) -> list[Entry]:
        stab = header.one(SYMBOL_TABLE)
        assert stab is not None
        btree, heap = struct.unpack_from("<QQ", stab, 0)
        names = LocalHeap.read(self.src, heap)
        by_level: dict[int, list[tuple[int, int, int]]] = {}
        entries = self._subtree(btree, None, names, by_level, set())
        for row in by_level.values():  # each level is one chain of sibling links, as libhdf5 expects
            for i, (_addr, left, right) in enumerate(row):
                want_left = row[i - 1][0] if i else UNDEF
                want_right = row[i + 1][0] if i + 1 < len(row) else UNDEF
                _need(left == want_left and right == want_right, "group B-tree sibling links disagree")
        for a, b in pairwise(entries):
            _need(a.name < b.name, "link names out of order or repeated")
        return entries

    def _subtree(
        self,
        addr: int,
        level: int | None,
        names: LocalHeap,
        by_level: dict[int, list[tuple[int, int, int]]],
        visited: set[int],
    ) -> list[Entry]:
        """The entries under one group B-tree node, left to right. Every name must lie between the
        keys around its child, or libhdf5's lookup by name would not find it."""
        if addr in visited:
            raise Decline("group B-tree loops")
        visited.add(addr)
        capacity = 2 * self.internal_k
        if addr + 24 + 8 * (capacity + 1) + 8 * capacity > self.src.size:
            raise Decline("B-tree node past the end")
        head = self.src.read(addr, 24)
        if head[:5] != b"TREE\x00":
            raise Decline("not a group B-tree node")
        node_level, used = head[5], _U16.unpack_from(head, 6)[0]
        left, right = struct.unpack_from("<QQ", head, 8)
        if (level is not None and node_level != level) or used > capacity:
            raise Decline("B-tree levels are inconsistent or a node is over capacity")
        by_level.setdefault(node_level, []).append((addr, left, right))
        body = self.src.read(addr + 24, 8 + 16 * used)
        # key, child, key, child, ..., key: 8 bytes each
        fields = struct.unpack_from(f"<{2 * used + 1}Q", body)
        keys = [names.name(offset, allow_empty=True) for offset in fields[::2]]
        out: list[Entry] = []
        for i in range(used):
            child = fields[2 * i + 1]
            if node_level == 0:
                below = self._symbol_node(child, names)
            else:
                below = self._subtree(child, node_level - 1, names, by_level, visited)
            # Every name between the keys around it: its first and last suffice, since the caller
            # checks that all the group's names are in strictly increasing order (or declines).
            if below and not (keys[i] < below[0].name and below[-1].name <= keys[i + 1]):
                raise Decline("a link name outside its B-tree keys")
            out += below
        return out

    def _symbol_node(self, addr: int, names: LocalHeap) -> list[Entry]:
        if addr + 8 + 80 * self.leaf_k > self.src.size:
            raise Decline("symbol table node past the end")
        head = self.src.read(addr, 8)
        count = _U16.unpack_from(head, 6)[0]
        if head[:6] != b"SNOD\x01\x00" or count > 2 * self.leaf_k:
            raise Decline("not a symbol table node, or one over capacity")
        raw = self.src.read(addr + 8, 40 * count)
        out = []
        parse, name = Entry.parse, names.name
        for i in range(count):
            entry = parse(raw, 40 * i)
            entry.name = name(entry.name_offset)
            if entry.cache_type == 2:  # a soft link: its value is in the group's heap
                value = struct.unpack_from("<I", entry.scratch)[0]
                _need(entry.header == UNDEF and entry.scratch[4:] == bytes(12), "a malformed soft link entry")
                entry.soft = names.string(value)
            out.append(entry)
        return out

    def _walk(self, header: Header, path: str, depth: int) -> None:
        prefix = "/" if path == "/" else path + "/"
        for entry in self._links(header):
            child = prefix + text(entry.name)
            if len(self.objects) >= self.max_objects:
                raise Decline("more objects than max_objects")
            if depth + 1 > MAX_GROUP_DEPTH:
                raise _TooDeep
            if entry.soft is not None:
                self._add({"path": child, "kind": "soft_link", "target": text(entry.soft)})
                continue
            if entry.external is not None:
                filename, objpath = entry.external
                self._add(
                    {"path": child, "kind": "external_link", "target": f"{text(filename)}:{text(objpath)}"}
                )
                continue
            first = self.seen.get(entry.header)
            if first is not None:
                self._add({"path": child, "kind": "hard_link", "target": first})
                continue
            self.seen[entry.header] = child
            if entry.cache_type not in (0, 1):
                raise Decline("a link that is not a hard link")
            obj_header = self._header(entry.header)
            if SYMBOL_TABLE in obj_header.single or LINK_INFO in obj_header.single:
                group = self._group_header(entry, obj_header)
                described: dict[str, Any] = {"path": child, "kind": "group"}
                self._add_attrs(described, group)
                self._add(described, None if "attrs" in described else group_size(child))
                self._walk(group, child, depth + 1)
            else:
                if entry.cache_type:
                    raise Decline("a dataset cached as a group")
                described = self._dataset(obj_header, child)
                self._add_attrs(described, obj_header)
                self._add(described)

    def _add(self, described: dict[str, Any], size: int | None = None) -> None:
        """Appends ``described``, counting ``size`` (its ``estimate_object_size``, if known) to the budget."""
        self.description_bytes += estimate_object_size(described) if size is None else size
        _need(self.description_bytes <= self.max_description_bytes, "descriptions over the byte budget")
        self.objects.append(described)

    def _dataset(self, header: Header, path: str) -> dict[str, Any]:
        header.only(_DATASET_MESSAGES, "a dataset with unexpected messages")
        get = header.single.get
        space, dtype_raw, layout = get(DATASPACE), get(DATATYPE), get(LAYOUT)
        _need(space is not None and dtype_raw is not None and layout is not None, "not a plain dataset")
        assert space is not None and dtype_raw is not None and layout is not None
        shape = self._shapes.get(space)
        if shape is None:  # pure functions of the message bytes: decoded once per distinct message
            shape = self._shapes[space] = dataspace(space)[0]
        dtype = self._dtypes.get(dtype_raw)
        if dtype is None:
            dtype = self._dtypes[dtype_raw] = datatype(dtype_raw, 0, allow_vlen=False)[0]
        for kind in (FILL, FILL_OLD):
            raw = get(kind)
            if raw is not None and (kind, raw, dtype.size) not in self._fills:
                fill_value(kind, raw, dtype.size)
                self._fills.add((kind, raw, dtype.size))
        _need(shape is not None, "a dataset with a null dataspace")
        assert shape is not None
        if layout[:2] == b"\x04\x03":  # version 4, virtual: the mapping is a global heap object
            stored = self._virtual(header, layout, shape)
        else:
            filters, external = get(FILTERS), get(EXTERNAL)
            stored = storage(self.src, layout, shape, dtype.size, filters, external, self._heap_string)
        return {
            "path": path,
            "kind": "dataset",
            "shape": list(shape),
            "dtype": dtype.name,
            "itemsize": dtype.size,
            "stored_bytes": stored.stored_bytes,
            "layout": stored.layout,
            **stored.extra,
        }

    def _virtual(self, header: Header, layout: bytes, shape: tuple[int, ...]) -> Storage:
        _need(header.one(FILTERS) is None and header.one(EXTERNAL) is None, "a virtual dataset with storage")
        _need(len(layout) >= 14, "short virtual layout")
        addr, index = struct.unpack_from("<QI", layout, 2)
        _need(addr != UNDEF, "a virtual dataset without a mapping")
        sources = virtual_sources(self.heaps.object(addr, index), shape)
        # stored_bytes 0: what H5Dget_storage_size reports for a virtual dataset
        return Storage("virtual", 0, {"virtual_sources": sources})

    def _heap_string(self, heap: int, offset: int) -> bytes:
        return LocalHeap.read(self.src, heap).string(offset)

    # ------------------------------------------------------------------ attributes

    def _attributes(self, header: Header) -> list[Attribute]:
        """In name order, as h5py lists them."""
        if len(header.attributes) == 1:  # Keras's groups hold one ("name") or none
            return [Attribute.parse(header.attributes[0])]
        attrs = sorted((Attribute.parse(raw) for raw in header.attributes), key=lambda a: a.name)
        _need(all(a.name < b.name for a, b in pairwise(attrs)), "two attributes share a name")
        return attrs

    def _add_attrs(self, described: dict[str, Any], header: Header) -> None:
        if not header.attributes:
            return
        listed = self._attr_list(header, ())
        if listed:
            described["attrs"] = listed

    def _attr_list(self, header: Header, skip: tuple[str, ...]) -> list[list[str]]:
        attrs = self._attributes(header)
        out: list[list[str]] = []
        for attr in attrs[:MAX_ATTRS_PER_OBJECT]:
            name = text(attr.name)
            if name in skip:
                continue
            value = short_repr(self._value(attr, MAX_ATTR_READ_BYTES))
            out.append([clip(name, 100), clip(value, REPR_CHARS)])
        if len(attrs) > MAX_ATTRS_PER_OBJECT:
            out.append(["<more>", f"{len(attrs) - MAX_ATTRS_PER_OBJECT} more attributes not read"])
        return out

    def _value(self, attr: Attribute, cap: int | None) -> Any:
        """The value h5py returns for ``attr``: scalars as Python values, arrays as :class:`Array`."""
        if attr.shape is None:
            return "<empty>"
        count = math.prod(attr.shape)
        storage = count * attr.dtype.size
        if cap is not None and storage > cap:
            return f"<{storage} bytes, shape {attr.shape}>"
        size = attr.dtype.size
        items = [self._element(attr.dtype, attr.data[i * size : (i + 1) * size]) for i in range(count)]
        if attr.shape == ():
            return items[0]
        return Array(attr.shape, attr.dtype.name, items)

    def _element(self, dtype: DType, raw: bytes) -> Any:
        if dtype.name != "object":
            return dtype.decode(raw)
        length, collection, index = struct.unpack("<IQI", raw)
        if length == collection == index == 0:  # a null string
            return b""
        data = self.heaps.object(collection, index)  # read even for "", as libhdf5 does
        _need(len(data) == length, "a variable-length string differs from its heap object")
        return data.split(b"\x00", 1)[0]  # h5py reads it as a C string: a NUL ends it

    def _root_attrs(self, header: Header) -> tuple[dict[str, str], dict[str, Any]]:
        attrs = {a.name: a for a in self._attributes(header)}
        short: dict[str, str] = {}
        json_attrs: dict[str, Any] = {}
        for key in JSON_ATTRS:
            parts = _json_parts(attrs, key)
            if not parts:
                continue
            data = b"".join(_string_bytes(self._value(attrs[p], None)) for p in parts)
            entry: dict[str, Any] = {"size": len(data), "parts": len(parts)}
            if len(data) <= self.max_json_bytes:
                entry["data"] = base64.b64encode(data).decode("ascii")
            json_attrs[key] = entry
            short[key] = short_repr(data[: REPR_CHARS * 4])
        for name, value in self._attr_list(header, JSON_ATTRS):
            short.setdefault(name, value)
        return short, json_attrs


def group_size(path: str) -> int:
    """``estimate_size({"path": path, "kind": "group"})``, the description of most groups, in closed form:
    braces 2, each key 2 * 4 + 2 quotes + 2, ``path`` 2 * len + 2, ``"group"`` 2 * 5 + 2."""
    return 2 * len(path) + 40


def _json_parts(attrs: dict[bytes, Attribute], key: str) -> list[bytes]:
    if key.encode() in attrs:
        return [key.encode()]
    parts: list[bytes] = []
    while f"{key}{len(parts)}".encode() in attrs:
        _need(len(parts) < MAX_SPLIT_PARTS, "an attribute split into too many parts")
        parts.append(f"{key}{len(parts)}".encode())
    return parts


def _string_bytes(value: Any) -> bytes:
    _need(isinstance(value, bytes | Array), "a JSON attribute that is not a string")
    try:
        return as_bytes(value)
    except TypeError:
        raise Decline("a JSON attribute that is not a string") from None


# ---------------------------------------------------------------------- on-disk records


@dataclass
class Entry:
    """A link: a symbol table entry (a link name's heap offset, an object header address and its
    cache) or a link message of a compact group (no cache); soft and external links carry their value."""

    name_offset: int
    header: int
    cache_type: int
    scratch: bytes
    name: bytes = b""
    soft: bytes | None = None  # a soft link's target path
    external: tuple[bytes, bytes] | None = None  # an external link's (file name, object path)

    @classmethod
    def parse(cls, raw: bytes, pos: int) -> Entry:
        name_offset, header, cache_type, reserved = _ENTRY.unpack_from(raw, pos)
        if reserved:
            raise Decline("reserved symbol table entry bytes set")
        if cache_type not in (0, 1, 2):  # libhdf5 stops there
            raise Decline("unknown symbol table entry cache type")
        return cls(name_offset, header, cache_type, bytes(raw[pos + 24 : pos + 40]))


@dataclass(frozen=True)
class LocalHeap:
    """A group's local heap: where its link names live."""

    segment: bytes

    @classmethod
    def read(cls, src: Source, addr: int) -> LocalHeap:
        head = src.read(addr, 32)
        _need(head[:8] == b"HEAP\x00\x00\x00\x00", "not a version 0 local heap")
        size, free, data = struct.unpack_from("<QQQ", head, 8)
        heap = cls(src.read(data, size))
        heap.check_free_list(free)
        return heap

    def check_free_list(self, offset: int) -> None:
        """The free-block list libhdf5 reads with the heap: in bounds, no loops."""
        seen: set[int] = set()
        while offset != FREE_LIST_END:
            _need(offset not in seen and offset + 16 <= len(self.segment), "bad local heap free list")
            seen.add(offset)
            following, size = struct.unpack_from("<QQ", self.segment, offset)
            _need(following != 0 and offset + size <= len(self.segment), "bad local heap free list")
            offset = following

    def string(self, offset: int) -> bytes:
        """A NUL-terminated string at ``offset`` (a link value or a file name: slashes allowed)."""
        end = self.segment.find(b"\x00", offset)
        _need(0 <= offset < len(self.segment) and end > offset, "a string outside its heap")
        return self.segment[offset:end]

    def name(self, offset: int, allow_empty: bool = False) -> bytes:
        segment = self.segment
        end = segment.find(b"\x00", offset)
        if not (0 <= offset < len(segment) and end >= offset + (0 if allow_empty else 1)):
            raise Decline("a name outside its heap")
        name = segment[offset:end]
        if b"/" in name:
            raise Decline("a link name with a slash")
        return name


class GlobalHeaps:
    """The global heap collections of one file (where variable-length strings live), each read once."""

    def __init__(self, src: Source) -> None:
        self.src = src
        self.collections: dict[int, dict[int, bytes]] = {}
        self.bytes_read = 0

    def object(self, addr: int, index: int) -> bytes:
        collection = self.collections.get(addr)
        if collection is None:
            collection = self.collections[addr] = self._read(addr)
        found = collection.get(index)
        _need(found is not None, "a variable-length string not in its heap")
        assert found is not None
        return found

    def _read(self, addr: int) -> dict[int, bytes]:
        head = self.src.read(addr, 16)
        _need(head[:8] == b"GCOL\x01\x00\x00\x00", "not a version 1 global heap collection")
        size = _U64.unpack_from(head, 8)[0]
        self.bytes_read += size
        _need(size > 16 and self.bytes_read <= MAX_HEAP_BYTES, "global heaps over the in-process budget")
        body = memoryview(self.src.read(addr, size))
        objects: dict[int, bytes] = {}
        pos, free = 16, False
        while pos + 16 <= size:  # every object, to the end, as libhdf5 reads the collection
            index, _refs, reserved, obj_size = struct.unpack_from("<HHIQ", body, pos)
            _need(reserved == 0 and index not in objects, "a malformed global heap")
            if index == 0:  # free space, its size counting its own header
                _need(not free and 16 <= obj_size <= size - pos, "a malformed global heap")
                free, pos = True, pos + obj_size
                continue
            _need(pos + 16 + obj_size <= size, "a malformed global heap")
            objects[index] = bytes(body[pos + 16 : pos + 16 + obj_size])
            pos += 16 + ((obj_size + 7) & ~7)
        _need(pos == size or (pos < size and not free), "a malformed global heap")  # a tail is free space
        return objects


@dataclass(frozen=True)
class Attribute:
    name: bytes
    dtype: DType
    shape: tuple[int, ...] | None
    data: bytes

    @classmethod
    def parse(cls, raw: bytes) -> Attribute:
        _need(len(raw) >= 8, "short attribute message")
        version, flags, name_size, type_size, space_size = struct.unpack_from("<BBHHH", raw, 0)
        _need(flags == 0, "a shared attribute type or space")
        if version == 1:
            pos, pad = 8, 8
        elif version == 3:
            _need(raw[8] in (0, 1), "unknown attribute name encoding")
            pos, pad = 9, 1
        else:
            raise Decline(f"attribute message version {version}")

        def take(n: int) -> bytes:
            nonlocal pos
            _need(pos + n <= len(raw), "attribute message fields out of bounds")
            out = raw[pos : pos + n]
            pos += (n + pad - 1) // pad * pad
            return out

        name = take(name_size)
        _need(name_size > 1 and name.find(b"\x00") == name_size - 1, "a malformed attribute name")
        type_raw, space_raw = take(type_size), take(space_size)
        if len(type_raw) + len(space_raw) <= _TYPE_CACHE_BYTES:  # the few kinds a file repeats
            dtype, shape = _attribute_type_and_space(type_raw, space_raw)
        else:
            dtype, shape = _attribute_type_and_space.__wrapped__(type_raw, space_raw)
        data = raw[pos:]
        _need(len(data) >= (0 if shape is None else math.prod(shape)) * dtype.size, "attribute data missing")
        return cls(name[:-1], dtype, shape, data)


_TYPE_CACHE_BYTES = 256


@functools.lru_cache(maxsize=256)
def _attribute_type_and_space(type_raw: bytes, space_raw: bytes) -> tuple[DType, tuple[int, ...] | None]:
    """An attribute's element type and shape from their messages: pure functions of the bytes, so the
    same few kinds (a name string, a scalar) are decoded once; a message that declines is not kept."""
    dtype, used = datatype(type_raw, 0, allow_vlen=True)
    _need(used == len(type_raw), "attribute datatype size mismatch")
    shape, used = dataspace(space_raw)
    _need(used <= len(space_raw), "attribute dataspace size mismatch")
    return dtype, shape


def compact_links(header: Header) -> list[Entry]:
    """The links of a group stored in its object header (Link Info, Group Info and Link messages),
    sorted by name as ``H5Lvisit`` sorts them. Dense storage (a fractal heap and name index) and
    creation-order tracking decline."""
    info, group_info = header.one(LINK_INFO), header.one(GROUP_INFO)
    _need(info is not None and group_info is not None, "a group without link and group info")
    assert info is not None and group_info is not None
    _need(len(info) >= 18 and info[:2] == b"\x00\x00", "link info tracks creation order or has a version")
    _need(struct.unpack_from("<QQ", info, 2) == (UNDEF, UNDEF), "dense link storage")
    _need(len(group_info) >= 2 and group_info[0] == 0 and group_info[1] & ~0x03 == 0, "group info message")
    _need(len(group_info) >= 2 + 4 * bin(group_info[1]).count("1"), "short group info message")
    links = sorted((link_message(raw) for raw in header.links), key=lambda e: e.name)
    for a, b in pairwise(links):
        _need(a.name < b.name, "two links share a name")
    return links


def link_message(raw: bytes) -> Entry:
    """One Link message (version 1): a hard, soft or external link."""
    _need(len(raw) >= 2 and raw[0] == 1 and raw[1] & ~0x1F == 0, "link message version or flags")
    flags, pos = raw[1], 2

    def take(n: int) -> bytes:
        nonlocal pos
        _need(pos + n <= len(raw), "link message fields out of bounds")
        pos += n
        return raw[pos - n : pos]

    kind = take(1)[0] if flags & 0x08 else 0
    _need(kind in (0, 1, 64), "a user-defined link type")
    if flags & 0x04:
        take(8)  # creation order
    if flags & 0x10:
        _need(take(1)[0] in (0, 1), "unknown link name character set")
    width = 1 << (flags & 0x03)
    name = take(int.from_bytes(take(width), "little"))
    _need(len(name) > 0 and b"/" not in name and b"\x00" not in name, "a malformed link name")
    entry = Entry(0, UNDEF, 0, b"", name)
    if kind == 0:
        entry.header = struct.unpack("<Q", take(8))[0]
        return entry
    value = take(struct.unpack("<H", take(2))[0])
    if kind == 1:
        _need(len(value) > 0 and b"\x00" not in value, "a malformed soft link")
        entry.soft = value
        return entry
    # external: a version/flags byte (0), then the file name and the object path, each NUL-terminated
    parts = value[1:].split(b"\x00")
    _need(value[:1] == b"\x00" and len(parts) == 3 and parts[2] == b"", "a malformed external link")
    _need(len(parts[0]) > 0 and len(parts[1]) > 0, "an external link without a file or object")
    entry.external = (parts[0], parts[1])
    return entry


# ---------------------------------------------------------------------- messages


def dataspace(raw: bytes) -> tuple[tuple[int, ...] | None, int]:
    """(shape, bytes used) of a dataspace message; None is the null dataspace."""
    _need(len(raw) >= 4, "short dataspace message")
    version, rank, flags = raw[0], raw[1], raw[2]
    _need(flags in (0, 1) and rank <= MAX_RANK, "an unusual dataspace")
    if version == 1:
        _need(len(raw) >= 8 and raw[3:8] == b"\x00" * 5, "reserved dataspace bytes set")
        pos, null = 8, False
    elif version == 2:
        _need(raw[3] in (0, 1, 2), "unknown dataspace type")
        pos, null = 4, raw[3] == 2
        _need((raw[3] == 1) == (rank > 0), "dataspace type and rank disagree")
    else:
        raise Decline(f"dataspace version {version}")
    end = pos + 8 * rank * (2 if flags else 1)
    _need(end <= len(raw), "dataspace dimensions out of bounds")
    dims = struct.unpack_from(f"<{rank}Q", raw, pos)
    if flags:
        _need(struct.unpack_from(f"<{rank}Q", raw, pos + 8 * rank) == dims, "an extendible dataspace")
    return (None if null else tuple(dims)), end


def datatype(raw: bytes, pos: int, *, allow_vlen: bool) -> tuple[DType, int]:
    """(type, bytes used) of a datatype message at ``pos``: fixed-point, IEEE float, fixed or vlen string."""
    _need(pos + 8 <= len(raw), "short datatype message")
    head = raw[pos]
    cls, version = head & 0x0F, head >> 4
    bits = int.from_bytes(raw[pos + 1 : pos + 4], "little")
    size = _U32.unpack_from(raw, pos + 4)[0]
    _need(version == 1, f"datatype version {version}")
    if cls == 0:
        _need(pos + 12 <= len(raw) and size in (1, 2, 4, 8), "an unusual integer type")
        _need(bits & ~0x09 == 0, "an unusual integer type")
        _need(raw[pos + 8 : pos + 12] == struct.pack("<HH", 0, 8 * size), "integer with padding bits")
        big, signed = bits & 1, bits & 8
        code = ("i" if signed else "u") + str(size)
        fmt = (">" if big else "<") + {1: "b", 2: "h", 4: "i", 8: "q"}[size]
        name = f"{'int' if signed else 'uint'}{8 * size}"
        if not signed:
            fmt = fmt.upper()
        if big and size > 1:
            name = f">{code}"
        unpack = struct.Struct(fmt).unpack
        return DType(name, size, lambda b: unpack(b)[0]), 12
    if cls == 1:
        _need(pos + 20 <= len(raw) and size in _FLOAT_LAYOUT, "an unusual float type")
        exp_loc, exp_size, mant_size, bias = _FLOAT_LAYOUT[size]
        big = bits & 1
        _need(bits & ~0x01 == 0x20 | ((8 * size - 1) << 8), "a float that is not IEEE 754")
        expected = struct.pack("<HHBBBBI", 0, 8 * size, exp_loc, exp_size, 0, mant_size, bias)
        _need(raw[pos + 8 : pos + 20] == expected, "a float that is not IEEE 754")
        fmt = (">" if big else "<") + {2: "e", 4: "f", 8: "d"}[size]
        name = f">f{size}" if big else f"float{8 * size}"
        unpack = struct.Struct(fmt).unpack
        return DType(name, size, lambda b: unpack(b)[0]), 20
    if cls == 3:
        _need(size > 0 and bits in (0x01, 0x11), "a string that is not null-padded")
        return DType(f"|S{size}", size, lambda b: b.rstrip(b"\x00")), 8
    if cls == 9 and allow_vlen:
        _need(bits in (0x0001 | 0x0000, 0x0001 | 0x0100), "a variable-length type that is not a string")
        _need(size == 16, "an unusual variable-length string")
        return DType("object", size, lambda b: b), 8 + _vlen_base(raw, pos + 8)
    raise Decline(f"datatype class {cls}")


def _vlen_base(raw: bytes, pos: int) -> int:
    """Bytes used by the base type of a variable-length string: the unsigned byte h5py writes."""
    _need(raw[pos : pos + 12] == VLEN_STRING_BASE, "unusual variable-length string base type")
    return 12


def fill_value(kind: int, raw: bytes, element_size: int) -> None:
    """Checks a fill value message is well formed (its value plays no part in the scan)."""
    if kind == FILL_OLD:
        _need(len(raw) >= 4 and 4 + _U32.unpack_from(raw, 0)[0] <= len(raw), "bad old fill value")
        return
    _need(len(raw) >= 4 and raw[0] in (1, 2), "fill value message version")
    _need(raw[1] in (1, 2, 3) and raw[2] in (0, 1, 2) and raw[3] in (0, 1), "fill value message fields")
    if raw[0] == 2 and raw[3]:
        _need(len(raw) >= 8, "short fill value")
        size = _U32.unpack_from(raw, 4)[0]
        _need(size in (0, element_size) and 8 + size <= len(raw), "fill value of another size")


def read_plain(
    blob: Blob, max_objects: int, max_json_bytes: int, max_description_bytes: int
) -> dict[str, Any] | None:
    """The h5py child's answer for ``blob`` if it is in the plain layout, else None (ask the child)."""
    try:
        src = Source(blob)
    except (OSError, Decline):
        return None
    try:
        return PlainReader(src, max_objects, max_json_bytes, max_description_bytes).answer()
    except Refused as exc:  # the child's answer for a file libhdf5 cannot open, in our words
        return {"ok": False, "kind": "corrupt", "message": f"not a readable HDF5 file: {exc}"}
    except Exception:  # Decline, or any surprise on odd bytes: the child reads the file, nothing is lost
        return None
    finally:
        src.close()
