"""The parent/child protocol over real pipes: round trips, and hostile frames from a compromised child."""

from __future__ import annotations

import io
import json
import os
import struct
import time
from collections.abc import Iterator

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kerasguard.errors import SandboxError
from kerasguard.sandbox.ipc import (
    MAGIC,
    MAX_JSON_BYTES,
    Channel,
    ChannelClosed,
    ProtocolError,
    Timeout,
    decode_array,
    encode_array,
    flatten,
    unflatten,
)


@pytest.fixture
def pipe() -> Iterator[tuple[Channel, Channel]]:
    """(sender, receiver) channels over one real pipe each way."""
    a_r, b_w = os.pipe()
    b_r, a_w = os.pipe()
    sender = Channel(a_r, a_w, max_payload=1 << 20)
    receiver = Channel(b_r, b_w, max_payload=1 << 20)
    yield sender, receiver
    sender.close()
    receiver.close()


def raw_frame(header: dict[str, object], payload: bytes = b"", *, magic: bytes = MAGIC) -> bytes:
    body = json.dumps(header).encode()
    return struct.pack("<4sIQ", magic, len(body), len(payload)) + body + payload


def npy(arr: np.ndarray, *, allow_pickle: bool = False) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=allow_pickle)
    return buf.getvalue()


@pytest.mark.parametrize(
    "value",
    [
        np.arange(12, dtype="float32").reshape(3, 4),
        np.asfortranarray(np.arange(6, dtype="int64").reshape(2, 3)),
        np.array(3.5),
        np.zeros((0, 5), "uint8"),
        np.array([True, False]),
        np.array(["a", "bcd"]),
        [np.ones(3, "float16"), np.arange(4, dtype="int32")],
        {"image": np.ones((1, 2, 2), "float32"), "mask": np.zeros(3, "int8")},
    ],
    ids=["f32", "fortran", "scalar", "empty", "bool", "unicode", "list", "dict"],
)
def test_arrays_round_trip_exactly(pipe: tuple[Channel, Channel], value: object) -> None:
    sender, receiver = pipe
    structure, arrays = flatten(value)
    sender.send({"op": "predict", "structure": structure}, arrays)
    header, got = receiver.recv(time.monotonic() + 5)
    assert header["op"] == "predict"
    back = unflatten(header["structure"], got)
    _, expected = flatten(value)
    _, actual = flatten(back)
    assert type(back) is type(value) or isinstance(value, np.ndarray)
    for a, b in zip(actual, expected, strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)


def test_object_arrays_never_cross(pipe: tuple[Channel, Channel]) -> None:
    sender, receiver = pipe
    with pytest.raises(ProtocolError):
        sender.send({}, [np.array([{"a": 1}], dtype=object)])
    # A child that writes a pickled object array itself is refused before anything is unpickled.
    blob = npy(np.array([1, "x"], dtype=object), allow_pickle=True)
    os.write(receiver.write_fd, raw_frame({"arrays": [len(blob)]}, blob))
    with pytest.raises(ProtocolError, match="cannot cross"):
        sender.recv(time.monotonic() + 5)


def test_structured_dtypes_are_refused() -> None:
    with pytest.raises(ProtocolError):
        encode_array(np.zeros(2, dtype=[("a", "i4"), ("b", "f4")]))


@pytest.mark.parametrize(
    "blob, match",
    [
        (b"not an npy file at all", "bad .npy header"),
        (npy(np.arange(10, dtype="int32"))[:-4], "carries"),
        (npy(np.arange(10, dtype="int32")) + b"extra", "carries"),
        (b"\x93NUMPY\x01\x00" + struct.pack("<H", 20) + b"{'descr': 'zzz'}    ", "bad .npy header"),
        (b"\x93NUMPY\x09\x00rest", "unsupported .npy version"),
    ],
    ids=["garbage", "truncated", "trailing", "bad-descr", "bad-version"],
)
def test_malformed_npy_is_a_protocol_error(blob: bytes, match: str) -> None:
    with pytest.raises(ProtocolError, match=match):
        decode_array(memoryview(blob))


def test_huge_declared_npy_is_refused_without_allocating() -> None:
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000, 1000000000), }"
    header += " " * (118 - len(header)) + "\n"
    blob = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode()
    with pytest.raises(ProtocolError, match="carries"):
        decode_array(memoryview(blob))


@pytest.mark.parametrize(
    "frame, match",
    [
        (raw_frame({"ok": True}, magic=b"EVIL"), "magic"),
        (struct.pack("<4sIQ", MAGIC, MAX_JSON_BYTES + 1, 0), "exceeds"),
        (struct.pack("<4sIQ", MAGIC, 2, 1 << 40), "exceeds the limit"),
        (struct.pack("<4sIQ", MAGIC, 5, 0) + b"{nope", "not JSON"),
        (struct.pack("<4sIQ", MAGIC, 2, 0) + b"[]", "JSON object"),
        (raw_frame({"arrays": [5]}, b"1234"), "add up"),
        (raw_frame({"arrays": ["5"]}, b"12345"), "add up"),
        (raw_frame({"arrays": [-1, 2]}, b"1"), "add up"),
    ],
    ids=["magic", "json-too-big", "payload-too-big", "not-json", "not-object", "short", "type", "negative"],
)
def test_hostile_frames_are_protocol_errors(pipe: tuple[Channel, Channel], frame: bytes, match: str) -> None:
    sender, receiver = pipe
    os.write(receiver.write_fd, frame)
    with pytest.raises(ProtocolError, match=match):
        sender.recv(time.monotonic() + 5)


def test_silence_is_a_wall_clock_timeout(pipe: tuple[Channel, Channel]) -> None:
    sender, _ = pipe
    with pytest.raises(Timeout) as err:
        sender.recv(time.monotonic() + 0.2)
    assert err.value.limit == "wall"


def test_half_a_frame_then_eof_is_a_truncated_frame(pipe: tuple[Channel, Channel]) -> None:
    """EOF inside a frame is a protocol violation; EOF between frames is an ordinary close."""
    sender, receiver = pipe
    os.write(receiver.write_fd, raw_frame({"ok": True})[:10])
    os.close(receiver.write_fd)
    receiver.write_fd = os.open(os.devnull, os.O_WRONLY)
    with pytest.raises(ProtocolError, match="closed after 10 of 16 bytes") as err:
        sender.recv(time.monotonic() + 5)
    assert err.value.limit == "protocol"
    with pytest.raises(ChannelClosed):
        sender.recv(time.monotonic() + 5)


def test_sending_more_than_the_limit_is_refused(pipe: tuple[Channel, Channel]) -> None:
    sender, _ = pipe
    with pytest.raises(ProtocolError, match="too large"):
        sender.send({}, [np.zeros(1 << 19, "float32")])  # 2 MiB > 1 MiB limit


@pytest.mark.parametrize(
    "structure, count",
    [(None, 1), ({"kind": "list", "n": 3}, 2), ({"kind": "dict", "keys": ["a", "a"]}, 2), ({"kind": "?"}, 1)],
)
def test_bad_structures_are_refused(structure: object, count: int) -> None:
    with pytest.raises(ProtocolError):
        unflatten(structure, [np.zeros(1)] * count)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2048))
def test_random_bytes_from_the_child_only_raise_sandbox_errors(data: bytes) -> None:
    a_r, b_w = os.pipe()
    reader = Channel(a_r, b_w, max_payload=1 << 16)
    try:
        os.write(b_w, data)
        os.close(b_w)
        reader.write_fd = os.open(os.devnull, os.O_WRONLY)
        with pytest.raises(SandboxError):
            reader.recv(time.monotonic() + 2)
    finally:
        reader.close()


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=512))
def test_random_npy_blobs_decode_or_raise_protocol_error(data: bytes) -> None:
    try:
        arr = decode_array(memoryview(b"\x93NUMPY" + data))
    except ProtocolError:
        return
    assert not arr.dtype.hasobject
