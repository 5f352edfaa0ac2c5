"""The parent/child protocol: framed JSON control messages plus raw ``.npy`` arrays, over pipes.

A frame is ``MAGIC | u32 json length | u64 payload length | JSON | payload``; the payload is the
concatenation of ``.npy`` blobs whose lengths the JSON lists under ``"arrays"``. Nothing is ever
pickled: arrays are written with ``allow_pickle=False`` and parsed back with a strict header reader
that refuses object dtypes and sizes that do not add up. The pipes are dedicated descriptors, never
stdout, so a model that prints cannot corrupt the protocol. Both sides bound every length before
allocating, because either side may be the one that was compromised: announced lengths are checked
against the limits, and the buffer grows only as data really arrives (a frame that announces 2 GiB
and sends ten bytes costs ten bytes). JSON nesting is capped before parsing, and every way a frame
can fail to decode is a :class:`ProtocolError` (``limit="protocol"``).
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import os
import re
import select
import struct
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias

from kerasguard.errors import SandboxError

# NumPy is imported on first use: the child reads its config before anything may start threads.
if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    Array: TypeAlias = npt.NDArray[Any]
else:
    Array = Any

MAGIC = b"KGS1"
_HEAD = struct.Struct("<4sIQ")
MAX_JSON_BYTES = 4 * 1024 * 1024
MAX_JSON_DEPTH = 32  # the deepest real message (config: limits/layers in a dict) is 3 levels
FIRST_CHUNK = 64 * 1024  # receive buffers start at this and at most double with the data received
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
_JSON_BRACKETS = re.compile(rb"[\[\]{}]")
MAX_NPY_HEADER = 10_000
MAX_SQUEEZED = 4  # squeezed copies one ``serve`` request may carry (feature squeezing sends one or two)
NPY_MAGIC = b"\x93NUMPY"
_NPY_HEADER = re.compile(
    r"\{'descr': '([^'\\]{1,40})', 'fortran_order': (True|False), 'shape': \(([0-9, ]*)\), \} *\n?\Z"
)
ALLOWED_KINDS = frozenset("biufcSU")  # bool, ints, floats, complex, bytes, unicode: no objects, no voids

Message: TypeAlias = tuple[dict[str, Any], list[Array]]


class ProtocolError(SandboxError):
    """The other side sent something that is not a valid frame."""

    def __init__(self, message: str) -> None:
        super().__init__(message, limit="protocol")


class ChannelClosed(SandboxError):
    """The other side closed its end (for the parent: the child died or exited)."""

    def __init__(self, message: str = "the other end of the sandbox channel closed") -> None:
        super().__init__(message, limit=None)


class TruncatedFrame(ProtocolError):
    """The other side closed its end in the middle of a frame."""


class Timeout(SandboxError):
    def __init__(self, message: str) -> None:
        super().__init__(message, limit="wall")


def encode_array(array: Array) -> bytes:
    """One array as ``.npy`` bytes (never pickled)."""
    import numpy as np

    arr = np.asarray(array)
    check_dtype(arr.dtype)
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def check_dtype(dtype: np.dtype[Any]) -> None:
    if dtype.hasobject or dtype.kind not in ALLOWED_KINDS or dtype.fields is not None:
        raise ProtocolError(f"array dtype {dtype} cannot cross the sandbox boundary (no objects or records)")


def decode_array(blob: memoryview) -> Array:
    """Parse one ``.npy`` blob strictly; the result is a read-only view on ``blob``.

    The header is matched against the exact form NumPy writes (no ``literal_eval``): it is the
    other side's, possibly hostile, and this is also several times faster.
    """
    import numpy as np

    prefix = bytes(blob[:12])
    if len(prefix) < 10 or prefix[:6] != NPY_MAGIC:
        raise ProtocolError("bad .npy header: no NumPy magic")
    version = (prefix[6], prefix[7])
    if version == (1, 0):
        start, size = 10, int.from_bytes(prefix[8:10], "little")
    elif version in ((2, 0), (3, 0)) and len(prefix) >= 12:
        start, size = 12, int.from_bytes(prefix[8:12], "little")
    else:
        raise ProtocolError(f"unsupported .npy version {version}")
    if size > MAX_NPY_HEADER or start + size > len(blob):
        raise ProtocolError("bad .npy header: length out of range")
    text = bytes(blob[start : start + size]).decode("utf-8" if version == (3, 0) else "latin-1")
    match = _NPY_HEADER.match(text)
    if match is None:
        raise ProtocolError(f"bad .npy header: {text[:80]!r}")
    descr, fortran, dims = match.groups()
    try:
        dtype = np.dtype(descr)
    except (TypeError, ValueError) as exc:
        raise ProtocolError(f"bad .npy header: dtype {descr!r}: {exc}") from None
    check_dtype(dtype)
    parts = [p.strip() for p in dims.split(",")]
    if parts and parts[-1] == "":
        parts.pop()
    if len(parts) > 64 or not all(p.isdigit() for p in parts):
        raise ProtocolError(f"bad .npy shape ({dims})")
    shape = tuple(int(p) for p in parts)
    count = 1
    for d in shape:
        count *= d
    offset = start + size
    if offset + count * dtype.itemsize != len(blob):
        raise ProtocolError(f".npy declares {count} x {dtype} but carries {len(blob) - offset} bytes of data")
    flat: Array = np.frombuffer(blob, dtype=dtype, count=count, offset=offset)
    return flat.reshape(shape, order="F" if fortran == "True" else "C")


def flatten(value: Any) -> tuple[dict[str, Any], list[Array]]:
    """Split an array, a list/tuple of arrays or a dict of arrays into (structure, arrays)."""
    import numpy as np

    if isinstance(value, Mapping):
        keys = [str(k) for k in value]
        return {"kind": "dict", "keys": keys}, [np.asarray(value[k]) for k in value]
    if isinstance(value, list | tuple):
        return {"kind": "list", "n": len(value)}, [np.asarray(v) for v in value]
    return {"kind": "array"}, [np.asarray(value)]


def unflatten(structure: Any, arrays: Sequence[Array]) -> Any:
    """Rebuild what :func:`flatten` split, validating the structure against the arrays."""
    if not isinstance(structure, dict):
        raise ProtocolError("structure must be an object")
    kind = structure.get("kind")
    if kind == "array" and len(arrays) == 1:
        return arrays[0]
    if kind == "list" and structure.get("n") == len(arrays):
        return list(arrays)
    keys = structure.get("keys")
    if (
        kind == "dict"
        and isinstance(keys, list)
        and len(keys) == len(arrays)
        and all(isinstance(k, str) for k in keys)
        and len(set(keys)) == len(keys)
    ):
        return dict(zip(keys, arrays, strict=True))
    raise ProtocolError(f"structure {structure!r} does not match {len(arrays)} array(s)")


class Channel:
    """One direction pair of pipe descriptors; ``deadline`` arguments are ``time.monotonic()`` values."""

    def __init__(self, read_fd: int, write_fd: int, *, max_payload: int) -> None:
        self.read_fd = read_fd
        self.write_fd = write_fd
        self.max_payload = max_payload

    def send(self, header: Mapping[str, Any], arrays: Sequence[Array] = ()) -> None:
        blobs = [encode_array(a) for a in arrays]
        body = json.dumps({**header, "arrays": [len(b) for b in blobs]}, separators=(",", ":")).encode()
        payload = sum(len(b) for b in blobs)
        if len(body) > MAX_JSON_BYTES or payload > self.max_payload:
            raise ProtocolError(
                f"message too large to send ({payload} bytes of arrays; limit {self.max_payload})"
            )
        parts = [_HEAD.pack(MAGIC, len(body), payload), body, *blobs]
        if payload < 65536:
            parts = [b"".join(parts)]
        try:
            for part in parts:
                view = memoryview(part)
                while view:
                    written = os.write(self.write_fd, view)
                    view = view[written:]
        except BrokenPipeError:
            raise ChannelClosed() from None

    def recv(self, deadline: float | None = None) -> Message:
        """Read one frame. Raises ProtocolError (also for any decode failure), ChannelClosed, Timeout."""
        try:
            return self._recv(deadline)
        except SandboxError:
            raise
        except (ValueError, TypeError, LookupError, OverflowError, RecursionError, MemoryError) as exc:
            raise ProtocolError(f"undecodable frame: {type(exc).__name__}: {str(exc)[:200]}") from None

    def _recv(self, deadline: float | None) -> Message:
        magic, json_len, payload_len = _HEAD.unpack(self._read_exact(_HEAD.size, deadline, first=True))
        if magic != MAGIC:
            raise ProtocolError(f"bad frame magic {magic!r}")
        if json_len > MAX_JSON_BYTES:
            raise ProtocolError(f"control message of {json_len} bytes exceeds {MAX_JSON_BYTES}")
        if payload_len > self.max_payload:
            raise ProtocolError(f"array payload of {payload_len} bytes exceeds the limit {self.max_payload}")
        body = bytes(self._read_exact(json_len, deadline))
        check_json_depth(body)
        try:
            header = json.loads(body)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise ProtocolError(f"control message is not JSON: {str(exc)[:200]}") from None
        if not isinstance(header, dict):
            raise ProtocolError("control message must be a JSON object")
        lengths = header.pop("arrays", [])
        if (
            not isinstance(lengths, list)
            or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in lengths)
            or sum(lengths) != payload_len
        ):
            raise ProtocolError("array lengths do not add up to the payload")
        payload = self._read_exact(payload_len, deadline)
        arrays: list[Array] = []
        offset = 0
        for n in lengths:
            arrays.append(decode_array(payload[offset : offset + n]))
            offset += n
        return header, arrays

    def _read_exact(self, n: int, deadline: float | None, *, first: bool = False) -> memoryview:
        """Read ``n`` bytes into pieces that grow with what has arrived (never ``n`` up front)."""
        pieces: list[bytearray] = []
        got = 0
        while got < n:
            piece = bytearray(min(n - got, max(FIRST_CHUNK, got)))
            view = memoryview(piece)
            filled = 0
            while filled < len(piece):
                if deadline is not None:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0 or not _readable(self.read_fd, remaining):
                        raise Timeout("no answer from the sandboxed child before the wall-clock limit")
                try:
                    k = os.readv(self.read_fd, [view[filled:]])
                except InterruptedError:
                    continue
                if k == 0:
                    if first and got + filled == 0:
                        raise ChannelClosed()
                    raise TruncatedFrame(f"the other end closed after {got + filled} of {n} bytes of a frame")
                filled += k
            pieces.append(piece)
            got += filled
        if len(pieces) == 1:
            return memoryview(pieces[0])
        return memoryview(bytearray().join(pieces))

    def close(self) -> None:
        for fd in (self.read_fd, self.write_fd):
            with contextlib.suppress(OSError):
                os.close(fd)


def check_json_depth(body: bytes, limit: int = MAX_JSON_DEPTH) -> None:
    """Refuse JSON nested deeper than ``limit`` before parsing it (the parser would recurse)."""
    if body.count(b"[") + body.count(b"{") <= limit:
        return  # cannot be deeper: the usual small message costs two counts
    brackets = _JSON_BRACKETS.findall(_JSON_STRING.sub(b'""', body))
    steps = (1 if b in (b"[", b"{") else -1 for b in brackets)
    if max(itertools.accumulate(steps), default=0) > limit:
        raise ProtocolError(f"control message nested deeper than {limit} levels")


def _readable(fd: int, timeout_s: float) -> bool:
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
    return bool(poller.poll(max(0, int(timeout_s * 1000) + 1)))
