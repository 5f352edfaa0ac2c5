"""NumPy .npy headers (alone or in .npz) read without allocating the array.

The header is a Python dict literal. It is parsed from a bounded string whose nesting is checked
first, then with ``ast.literal_eval`` (literals only, no names, no calls), exactly as numpy does;
the dtype is built by numpy's own ``descr_to_dtype`` so that what we call an object array is what
``numpy.load`` would unpickle. The data of an object array is a pickle and goes to the pickle walker.
The plain descrs ``numpy.save`` writes for weights (``<f4``, ``|u1``, ``|O``, ``<U8``...) are sized here
without importing numpy (~75 ms per scan process); a test checks that table against numpy.
"""

from __future__ import annotations

import ast
import math
import re
import struct
from dataclasses import dataclass

from kerasguard.formats.artifact import Artifact, NpyInfo
from kerasguard.formats.blob import Blob
from kerasguard.formats.context import ReadContext
from kerasguard.formats.pickle.ops import read_pickle

NPY_MAGIC = b"\x93NUMPY"
MAX_HEADER_DEPTH = 32  # structured dtypes nest; anything deeper is not a real header
MAX_DIMS = 64  # numpy's NPY_MAXDIMS (2.x); numpy.load refuses more
HEADER_KEYS = frozenset({"descr", "fortran_order", "shape"})
# Plain descrs: byte order, then a numeric kind and size, object, or a byte / unicode string length.
_PLAIN_DESCR = re.compile(
    r"[<>|=]?(?:(?P<kind>[iufcb])(?P<size>[1-9][0-9]?)|(?P<object>O)|(?P<text>[SU])(?P<chars>[1-9][0-9]{0,5}))"
)
_NUMERIC_SIZES = {"i": (1, 2, 4, 8), "u": (1, 2, 4, 8), "f": (2, 4, 8), "c": (8, 16), "b": (1,)}
_POINTER_SIZE = struct.calcsize("P")


class NpyHeaderError(ValueError):
    """The header is not one ``numpy.load`` would accept."""


class NpyHeaderLimit(Exception):
    """The header is longer than the policy allows us to read."""

    def __init__(self, length: int, limit: int) -> None:
        super().__init__(f".npy header of {length} bytes exceeds max_npy_header_bytes={limit}")


@dataclass(frozen=True)
class NpyHeader:
    descr: str
    shape: tuple[int, ...]
    fortran_order: bool
    itemsize: int
    has_object: bool
    data_offset: int  # bytes from the start of the file to the array data

    @property
    def declared_bytes(self) -> int:
        return math.prod(self.shape) * self.itemsize


def _nesting(text: str, limit: int) -> int:
    """Bracket depth outside quoted strings (Python reprs use both quote styles)."""
    depth = best = 0
    quote = ""
    escaped = False
    for ch in text:
        if quote:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
            best = max(best, depth)
            if best > limit:
                return best
        elif ch in ")]}":
            depth -= 1
    return best


def parse_header_text(text: str) -> tuple[object, tuple[int, ...], bool]:
    """(descr, shape, fortran_order) from the header dict literal; NpyHeaderError otherwise."""
    if _nesting(text, MAX_HEADER_DEPTH) > MAX_HEADER_DEPTH:
        raise NpyHeaderError(f"header nesting deeper than {MAX_HEADER_DEPTH}")
    try:
        value = ast.literal_eval(text.strip())
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError) as exc:
        raise NpyHeaderError(f"header is not a Python literal: {type(exc).__name__}") from None
    if not isinstance(value, dict):
        raise NpyHeaderError(f"header is a {type(value).__name__}, not a dict")
    keys = set(value)
    if keys != HEADER_KEYS:
        raise NpyHeaderError(f"header keys {sorted(map(str, keys))} are not {sorted(HEADER_KEYS)}")
    shape = value["shape"]
    if not isinstance(shape, tuple) or not all(isinstance(d, int) for d in shape):
        raise NpyHeaderError(f"shape {str(shape)[:80]} is not a tuple of integers")
    if len(shape) > MAX_DIMS:
        raise NpyHeaderError(f"shape has {len(shape)} dimensions; numpy allows {MAX_DIMS}")
    if any(d < 0 for d in shape):
        raise NpyHeaderError(f"shape {shape} has a negative dimension")
    fortran = value["fortran_order"]
    if not isinstance(fortran, bool):
        raise NpyHeaderError("fortran_order is not a bool")
    return value["descr"], tuple(int(d) for d in shape), fortran


def plain_dtype(descr: object) -> tuple[int, bool] | None:
    """(itemsize, has_object) of a plain descr string, as numpy sizes it; None for anything else."""
    match = _PLAIN_DESCR.fullmatch(descr) if isinstance(descr, str) else None
    if match is None:
        return None
    if match["kind"]:
        size = int(match["size"])
        return (size, False) if size in _NUMERIC_SIZES[match["kind"]] else None
    if match["object"]:
        return _POINTER_SIZE, True
    return int(match["chars"]) * (4 if match["text"] == "U" else 1), False


def dtype_facts(descr: object) -> tuple[int, bool]:
    """(itemsize, has_object) of a header's descr: the plain ones from the table, the rest from numpy."""
    plain = plain_dtype(descr)
    if plain is not None:
        return plain
    from numpy.lib import format as npformat  # ~75 ms: only for descrs outside the table

    try:
        dtype = npformat.descr_to_dtype(descr)  # type: ignore[arg-type]  # checked by numpy itself
    except Exception as exc:  # numpy raises TypeError, ValueError, KeyError... for bad descrs
        raise NpyHeaderError(f"bad descr {str(descr)[:80]}: {type(exc).__name__}") from None
    return int(dtype.itemsize), bool(dtype.hasobject)


def parse_npy_header(head: bytes, size: int, max_header: int) -> NpyHeader:
    """Parse the magic, version and header dict of an .npy of ``size`` bytes from its first bytes."""
    if not head.startswith(NPY_MAGIC):
        raise NpyHeaderError("missing .npy magic")
    if len(head) < 10:
        raise NpyHeaderError("truncated .npy preamble")
    major, minor = head[6], head[7]
    if major == 1:
        length, start = int.from_bytes(head[8:10], "little"), 10
    elif major in (2, 3):
        if len(head) < 12:
            raise NpyHeaderError("truncated .npy preamble")
        length, start = int.from_bytes(head[8:12], "little"), 12
    else:
        raise NpyHeaderError(f"unsupported .npy format version {major}.{minor}")
    if length > max_header:
        raise NpyHeaderLimit(length, max_header)
    if start + length > size or start + length > len(head):
        raise NpyHeaderError(f"header of {length} bytes runs past the end of the data")
    raw = head[start : start + length]
    try:
        text = raw.decode("utf-8" if major == 3 else "latin-1")
    except UnicodeDecodeError:
        raise NpyHeaderError("version 3 header is not UTF-8") from None
    descr, shape, fortran = parse_header_text(text)
    itemsize, has_object = dtype_facts(descr)
    return NpyHeader(
        descr=str(descr),
        shape=shape,
        fortran_order=fortran,
        itemsize=itemsize,
        has_object=has_object,
        data_offset=start + length,
    )


def _data_blob(blob: Blob, offset: int) -> Blob:
    """The bytes after the header, as a blob in the same place (no copy for files)."""
    name = f"{blob.name} (array data)"
    if blob.data is not None:
        return Blob.from_bytes(blob.data[offset:], blob.location, name)
    return Blob(
        location=blob.location,
        name=name,
        size=blob.size - offset,
        path=blob.path,
        offset=blob.offset + offset,
    )


def read_npy(blob: Blob, art: Artifact, ctx: ReadContext) -> NpyInfo | None:
    """Record an .npy's header; an object array's data is walked as the pickle it is."""
    limit = ctx.limits.max_npy_header_bytes
    try:
        head = blob.head(12 + limit)
    except OSError as exc:
        art.problem(blob.location, "io", f"cannot read .npy: {exc.strerror or exc}")
        return None
    try:
        header = parse_npy_header(head, blob.size, limit)
    except NpyHeaderLimit as exc:
        art.problem(blob.location, "limit", str(exc))
        return None
    except NpyHeaderError as exc:
        art.problem(blob.location, "corrupt", f"invalid .npy: {exc}")
        return None
    stored = blob.size - header.data_offset
    info = NpyInfo(
        location=blob.location,
        descr=header.descr,
        shape=header.shape,
        fortran_order=header.fortran_order,
        declared_bytes=header.declared_bytes,
        stored_bytes=stored,
        has_object=header.has_object,
    )
    art.npy_arrays.append(info)
    if header.has_object:
        read_pickle(_data_blob(blob, header.data_offset), art, ctx, role="npy_object")
    elif stored < header.declared_bytes:
        art.problem(
            blob.location,
            "corrupt",
            f".npy declares {header.declared_bytes} bytes of data but holds {stored}",
        )
    return info
