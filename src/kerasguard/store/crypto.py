"""Encryption at rest: streaming AES-256-GCM per blob, data keys wrapped by a master key.

Why streaming: a multi-GB model must never sit whole in memory, so a blob is a sequence of chunks, each
sealed with AES-256-GCM. The construction is the STREAM scheme (Hoang et al.): every chunk's nonce is a
random per-blob prefix, the chunk counter and a "last chunk" flag, and the same counter and flag are in
the chunk's associated data together with the blob header and the caller's context (which model this
blob belongs to). Dropping, reordering, truncating or extending chunks, or moving a blob to another
model, makes a tag check fail.

Blob layout::

    header  = b"KGSB" | version u8 | chunk_size u32 | nonce_prefix (7 bytes)       (16 bytes)
    chunk_i = AES-GCM(data_key, nonce_prefix | i u32 | last u8, plaintext_i,
                      aad = header | i u32 | last u8 | context)  -> ciphertext_i | tag (16 bytes)

Every chunk holds ``chunk_size`` plaintext bytes except the last, which holds 0..chunk_size bytes.

Each blob has its own random 256-bit data key. The data key is wrapped (AES-256-GCM, context in the
associated data) by the master key; only wrapped keys reach the database, so rotating the master key
rewraps 48-byte keys and never rewrites blobs.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import queue
import struct
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import IO, cast

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

MAGIC = b"KGSB"
VERSION = 1
HEADER = struct.Struct(">4sBI7s")
TAG_BYTES = 16
DEFAULT_CHUNK = 1 << 20
MIN_CHUNK = 4096
MAX_CHUNK = 64 << 20
WRAP_VERSION = 1
KEY_BYTES = 32


class CryptoError(Exception):
    """Ciphertext, header or wrapped key failed authentication or is malformed."""


@dataclass(frozen=True)
class MasterKey:
    """The key that wraps data keys. Never written to the database; only its ``key_id`` is."""

    material: bytes

    def __post_init__(self) -> None:
        if len(self.material) != KEY_BYTES:
            raise ValueError(f"a master key is {KEY_BYTES} bytes, got {len(self.material)}")

    def __repr__(self) -> str:  # never print key material
        return f"MasterKey(key_id={self.key_id})"

    def _derive(self, info: bytes) -> bytes:
        return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(self.material)

    @cached_property
    def key_id(self) -> str:
        """A public fingerprint, stored in the database to tell a wrong key from tampering."""
        return self._derive(b"kerasguard store key id v1")[:8].hex()

    @cached_property
    def mac_key(self) -> bytes:
        """Key of the metadata MACs (rows, tokens), derived so it is never the wrapping key itself."""
        return self._derive(b"kerasguard store row mac v1")

    @cached_property
    def audit_key(self) -> bytes:
        """Key of the audit chain's HMACs: rewriting the log needs the master key, not only the database."""
        return self._derive(b"kerasguard store audit chain v1")

    @classmethod
    def generate(cls) -> MasterKey:
        return cls(os.urandom(KEY_BYTES))


def wrap_key(master: MasterKey, data_key: bytes, context: bytes) -> bytes:
    """Wrap a data key; ``context`` (the blob id) must be given again to unwrap."""
    nonce = os.urandom(12)
    sealed = AESGCM(master.material).encrypt(nonce, data_key, _wrap_aad(master, context))
    return bytes([WRAP_VERSION]) + nonce + sealed


def unwrap_key(master: MasterKey, wrapped: bytes, context: bytes) -> bytes:
    if len(wrapped) != 1 + 12 + KEY_BYTES + TAG_BYTES or wrapped[0] != WRAP_VERSION:
        raise CryptoError("wrapped data key is malformed")
    try:
        key = AESGCM(master.material).decrypt(wrapped[1:13], wrapped[13:], _wrap_aad(master, context))
    except InvalidTag:
        raise CryptoError("wrapped data key does not open with this master key") from None
    return key


def _wrap_aad(master: MasterKey, context: bytes) -> bytes:
    return b"kerasguard-dek-v1\0" + master.key_id.encode() + b"\0" + context


_CANONICAL = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), check_circular=False).encode


def mac(key: bytes, fields: list[str | int | None]) -> str:
    """Keyed BLAKE2b (RFC 7693 MAC mode) over the fields as a JSON array.

    JSON makes the encoding unambiguous; keyed BLAKE2b is a standard MAC that costs about half of
    HMAC-SHA256 per call, which matters when ``list`` checks ten thousand rows.
    """
    data = _CANONICAL(fields).encode("utf-8", "surrogatepass")
    return hashlib.blake2b(data, key=key, digest_size=32, person=b"kgstore-mac-v1").hexdigest()


def _chunk_nonce_aad(
    header: bytes, prefix: bytes, index: int, last: bool, context: bytes
) -> tuple[bytes, bytes]:
    if index >= 1 << 32:
        raise CryptoError("blob has too many chunks")
    tail = struct.pack(">IB", index, 1 if last else 0)
    return prefix + tail, header + tail + context


_POLL = 0.02  # seconds a blocked pipeline thread waits before checking whether the other side gave up


class _Stopped(Exception):
    """The other side of a pipeline gave up; unwind quietly."""


class _Pool:
    """A fixed set of chunk buffers handed between threads, so no chunk is allocated per read."""

    def __init__(self, count: int, size: int, stop: threading.Event) -> None:
        self._free: queue.Queue[bytearray] = queue.Queue()
        for _ in range(count):
            self._free.put(bytearray(size))
        self._stop = stop

    def take(self) -> bytearray:
        while True:
            try:
                return self._free.get(timeout=_POLL)
            except queue.Empty:
                if self._stop.is_set():
                    raise _Stopped from None

    def give(self, buf: bytearray) -> None:
        self._free.put(buf)


class _Handoff:
    """A bounded queue between two threads that either side can abandon without a deadlock."""

    _END = object()

    def __init__(self, stop: threading.Event, depth: int = 3) -> None:
        self._q: queue.Queue[object] = queue.Queue(maxsize=depth)
        self._stop = stop
        self.failure: BaseException | None = None

    def put(self, item: object) -> None:
        while True:
            try:
                self._q.put(item, timeout=_POLL)
                return
            except queue.Full:
                if self._stop.is_set():
                    raise _Stopped from None

    def close(self, failure: BaseException | None = None) -> None:
        self.failure = failure
        with contextlib.suppress(_Stopped):
            self.put(self._END)

    def __iter__(self) -> Iterator[object]:
        while True:
            try:
                item = self._q.get(timeout=_POLL)
            except queue.Empty:
                if self._stop.is_set():
                    raise _Stopped from None
                continue
            if item is self._END:
                if self.failure is not None:
                    raise self.failure
                return
            if self._stop.is_set():
                raise _Stopped
            yield item

    def wake(self) -> None:
        """Unblock a consumer waiting for items after the producer gave up."""
        with contextlib.suppress(queue.Full):
            self._q.put_nowait(self._END)


def _run(target: Callable[[], None], handoff: _Handoff, name: str) -> threading.Thread:
    def body() -> None:
        try:
            target()
        except _Stopped:
            return
        except BaseException as exc:
            handoff.close(exc)
            return
        handoff.close()

    thread = threading.Thread(target=body, name=name, daemon=True)
    thread.start()
    return thread


@dataclass(frozen=True)
class StreamResult:
    digest: str  # "sha256:<hex>" of the plaintext
    size: int


def _fill(src: IO[bytes], buf: bytearray) -> int:
    """Read until ``buf`` is full or the stream ends; returns the byte count."""
    view = memoryview(buf)
    got = 0
    while got < len(buf):
        n = src.readinto(view[got:])  # type: ignore[attr-defined]
        if not n:
            break
        got += n
    return got


def _read_full(src: IO[bytes], n: int) -> bytes:
    buf = bytearray(n)
    return bytes(buf[: _fill(src, buf)])


def encrypt_stream(
    src: IO[bytes],
    dst: IO[bytes],
    data_key: bytes,
    context: bytes,
    *,
    tee: IO[bytes] | None = None,
    chunk_size: int = DEFAULT_CHUNK,
    on_chunk: Callable[[int], None] | None = None,
) -> StreamResult:
    """Encrypt ``src`` into ``dst``; also hash the plaintext and copy it to ``tee`` in the same pass.

    A helper thread reads, hashes and copies while this thread encrypts and writes, so the bytes that
    are hashed, copied and encrypted are the same bytes, read once, from a fixed pool of buffers.
    """
    if not MIN_CHUNK <= chunk_size <= MAX_CHUNK:
        raise ValueError(f"chunk size must be within [{MIN_CHUNK}, {MAX_CHUNK}]")
    prefix = os.urandom(7)
    header = HEADER.pack(MAGIC, VERSION, chunk_size, prefix)
    hasher = hashlib.sha256()
    total = 0
    stop = threading.Event()
    pool = _Pool(6, chunk_size, stop)
    handoff = _Handoff(stop)

    def produce() -> None:
        nonlocal total
        current = pool.take()
        size = _fill(src, current)
        while True:
            following: bytearray | None = None
            following_size = 0
            if size == chunk_size:
                following = pool.take()
                following_size = _fill(src, following)
            view = memoryview(current)[:size]
            hasher.update(view)
            if tee is not None:
                tee.write(view)
            total += size
            last = following_size == 0
            handoff.put((current, size, last))
            if last:
                if following is not None:
                    pool.give(following)
                return
            assert following is not None
            current, size = following, following_size

    aead = AESGCM(data_key)
    sealed = bytearray(chunk_size + TAG_BYTES)
    dst.write(header)
    worker = _run(produce, handoff, "kerasguard-store-read")
    try:
        for index, item in enumerate(handoff):
            buf, size, last = cast(tuple[bytearray, int, bool], item)
            nonce, aad = _chunk_nonce_aad(header, prefix, index, last, context)
            out = memoryview(sealed)[: size + TAG_BYTES]
            aead.encrypt_into(nonce, memoryview(buf)[:size], aad, out)
            pool.give(buf)
            dst.write(out)
            if on_chunk is not None:
                on_chunk(index)
    finally:
        stop.set()
        worker.join()
    return StreamResult(f"sha256:{hasher.hexdigest()}", total)


def decrypt_stream(src: IO[bytes], dst: IO[bytes], data_key: bytes, context: bytes) -> StreamResult:
    """Decrypt ``src`` into ``dst``, hashing the plaintext; raises CryptoError on any tampering.

    This thread reads, decrypts and hashes; a helper thread writes. ``dst`` may hold a prefix of the
    plaintext when this raises: callers write to a temporary file and delete it on failure.
    """
    header = _read_full(src, HEADER.size)
    if len(header) != HEADER.size:
        raise CryptoError("blob is shorter than its header")
    magic, version, chunk_size, prefix = HEADER.unpack(header)
    if magic != MAGIC:
        raise CryptoError("blob does not start with the kerasguard blob magic")
    if version != VERSION:
        raise CryptoError(f"unsupported blob version {version}")
    if not MIN_CHUNK <= chunk_size <= MAX_CHUNK:
        raise CryptoError(f"blob header declares an invalid chunk size {chunk_size}")
    aead = AESGCM(data_key)
    hasher = hashlib.sha256()
    stop = threading.Event()
    plain = _Pool(4, chunk_size, stop)
    handoff = _Handoff(stop)
    sealed_size = chunk_size + TAG_BYTES
    total = 0

    def consume() -> None:
        nonlocal total
        for item in handoff:
            buf, size = cast(tuple[bytearray, int], item)
            view = memoryview(buf)[:size]
            dst.write(view)
            total += size
            plain.give(buf)

    done = threading.Event()
    failure: list[BaseException] = []

    def sink() -> None:
        try:
            consume()
        except _Stopped:
            pass
        except BaseException as exc:
            failure.append(exc)
            stop.set()
        finally:
            done.set()

    writer = threading.Thread(target=sink, name="kerasguard-store-write", daemon=True)
    writer.start()
    current, following = bytearray(sealed_size), bytearray(sealed_size)
    try:
        size = _fill(src, current)
        index = 0
        while True:
            if size < TAG_BYTES:
                raise CryptoError(f"blob is truncated (chunk {index} is incomplete)")
            following_size = _fill(src, following) if size == sealed_size else 0
            last = following_size == 0
            nonce, aad = _chunk_nonce_aad(header, prefix, index, last, context)
            out = plain.take()
            try:
                aead.decrypt_into(nonce, memoryview(current)[:size], aad, memoryview(out)[: size - TAG_BYTES])
            except InvalidTag:
                raise CryptoError(
                    f"chunk {index} failed authentication (ciphertext modified, truncated, reordered "
                    "or moved from another blob)"
                ) from None
            hasher.update(memoryview(out)[: size - TAG_BYTES])  # here, so hashing and writing overlap
            handoff.put((out, size - TAG_BYTES))
            if last:
                break
            current, following, size = following, current, following_size
            index += 1
        handoff.close()
        done.wait()
    except _Stopped:
        pass
    finally:
        stop.set()
        handoff.wake()
        writer.join()
    if failure:
        raise failure[0]
    return StreamResult(f"sha256:{hasher.hexdigest()}", total)


def new_data_key() -> bytes:
    return AESGCM.generate_key(bit_length=256)
