"""A bounded protobuf wire-format reader for untrusted files, and the message view readers share.

No protobuf library: the scan path must not depend on TensorFlow's protos, and we want every length
checked against what remains before anything is sliced. Length-delimited fields are memoryview slices
of the original buffer (no copies); nested messages are parsed only when a schema walk asks for them,
so depth is bounded by the walk, not by the input. Groups (deprecated wire types 3/4) are rejected.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

VARINT, I64, LEN, SGROUP, EGROUP, I32 = 0, 1, 2, 3, 4, 5
MAX_FIELD_NUMBER = (1 << 29) - 1


class WireError(ValueError):
    """The bytes are not valid protobuf wire format (or not the message type expected)."""


class Msg(Protocol):
    """A message whose fields a schema walk asks for by number (binary) or name (text format)."""

    def messages(self, number: int, name: str) -> Iterator[Msg]: ...

    def strings(self, number: int, name: str) -> list[bytes]: ...

    def ints(self, number: int, name: str) -> list[int]: ...


def read_varint(buf: memoryview, pos: int, end: int) -> tuple[int, int]:
    """A base-128 varint at ``pos``; at most 10 bytes."""
    result = 0
    shift = 0
    while True:
        if pos >= end:
            raise WireError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise WireError("varint longer than 10 bytes")


Value = int | memoryview


def iter_fields(buf: memoryview) -> Iterator[tuple[int, int, Value]]:
    """(field number, wire type, value) of one message, in order, without materialising them."""
    pos, end = 0, len(buf)
    while pos < end:
        key = buf[pos]
        if key < 0x80:
            pos += 1
        else:
            key, pos = read_varint(buf, pos, end)
        number, wire = key >> 3, key & 7
        if number == 0 or number > MAX_FIELD_NUMBER:
            raise WireError(f"invalid field number {number}")
        value: Value
        if wire == LEN:
            length = buf[pos] if pos < end else 0x80
            if length < 0x80:
                pos += 1
            else:
                length, pos = read_varint(buf, pos, end)
            if length > end - pos:
                raise WireError(f"field {number} declares {length} bytes but {end - pos} remain")
            value = buf[pos : pos + length]
            pos += length
        elif wire == VARINT:
            value, pos = read_varint(buf, pos, end)
        elif wire in (I64, I32):
            width = 8 if wire == I64 else 4
            if end - pos < width:
                raise WireError(f"truncated fixed-width field {number}")
            value = int.from_bytes(buf[pos : pos + width], "little")
            pos += width
        elif wire in (SGROUP, EGROUP):
            raise WireError(f"field {number} uses the deprecated group encoding")
        else:
            raise WireError(f"field {number} has invalid wire type {wire}")
        yield number, wire, value


SMALL_MESSAGE = 64 * 1024  # messages up to this size are indexed once; larger ones are streamed


class BinMsg:
    """A binary message. Small ones (a NodeDef) are indexed in one pass; large ones (a GraphDef) are
    scanned per request, so a message with millions of tiny fields never becomes a list of them and
    costs time only for what the walk consumes."""

    __slots__ = ("_buf", "_index")

    def __init__(self, data: bytes | memoryview) -> None:
        self._buf = memoryview(data)
        self._index: dict[int, list[tuple[int, Value]]] | None = None

    def _values(self, number: int) -> list[tuple[int, Value]]:
        """Every occurrence of one field (for large messages, found by one streaming pass)."""
        if len(self._buf) > SMALL_MESSAGE:
            return [(wire, value) for field, wire, value in iter_fields(self._buf) if field == number]
        if self._index is None:
            index: dict[int, list[tuple[int, Value]]] = {}
            for field, wire, value in iter_fields(self._buf):
                index.setdefault(field, []).append((wire, value))
            self._index = index
        return self._index.get(number, [])

    def validate(self) -> None:
        """Scan every field once (wire-format errors surface here)."""
        for _ in iter_fields(self._buf):
            pass

    def messages(self, number: int, name: str) -> Iterator[Msg]:
        """Sub-messages, each reached in turn (what came before an error is kept)."""
        if len(self._buf) > SMALL_MESSAGE:
            found: Iterator[tuple[int, Value]] = (
                (wire, value) for field, wire, value in iter_fields(self._buf) if field == number
            )
        else:
            found = iter(self._values(number))
        for wire, value in found:
            yield BinMsg(_length_delimited(wire, value, number, name))

    def strings(self, number: int, name: str) -> list[bytes]:
        return [bytes(_length_delimited(w, v, number, name)) for w, v in self._values(number)]

    def ints(self, number: int, name: str) -> list[int]:
        out: list[int] = []
        for wire, value in self._values(number):
            if wire == LEN and isinstance(value, memoryview):  # packed repeated
                pos = 0
                while pos < len(value):
                    item, pos = read_varint(value, pos, len(value))
                    out.append(item)
            elif isinstance(value, int):
                out.append(value)
        return out


def _length_delimited(wire: int, value: Value, number: int, name: str) -> memoryview:
    if wire != LEN or not isinstance(value, memoryview):
        raise WireError(f"field {name} ({number}) has wire type {wire}, expected length-delimited")
    return value
