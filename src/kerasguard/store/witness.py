"""Witnesses of the audit head: copies of every committed head kept outside the database.

Someone who can write the database can delete the last audit entries and move ``audit_head`` back:
the shorter chain is still consistent, and no key is needed to make it. The store therefore writes
each new head (sequence number, chain MAC, time, store id, key id) to a witness after the commit, and
``store audit verify`` compares the witnessed heads with the database (``audit.check_anchor``).

Two kinds, chosen by URL:

- ``file:/path/witness.jsonl``: one JSON line per head, appended with ``O_APPEND`` (whole lines, one
  ``write`` each, fsynced). The default is ``audit-witness.jsonl`` in the store folder; put it on
  another machine (an append-only NFS export, ``chattr +a``) to survive an attacker on the store host.
- ``redis://[user@]host:port/db?stream=NAME``: one ``XADD`` per head to a Redis stream (default name
  ``kerasguard:audit:<store id>``); the password comes from ``KERASGUARD_WITNESS_PASSWORD`` or the URL.

A witness that cannot be written or read raises :class:`WitnessError`; ``audit verify`` then fails
(exit 2) rather than vouch for a log it could not compare.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from kerasguard.errors import StoreError
from kerasguard.store.urls import redact

DEFAULT_FILE = "audit-witness.jsonl"
MAX_LINE = 4096
_MAC_RE = re.compile(r"^[0-9a-f]{64}$")
_ID_RE = re.compile(r"^[0-9a-f]{1,64}$")
TIMEOUT_S = 5.0


class WitnessError(StoreError):
    """The witness could not be written or read (unreachable, unreadable or malformed)."""


@dataclass(frozen=True)
class Head:
    """One witnessed audit head."""

    seq: int
    mac: str
    time: str
    store: str
    key: str

    def to_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "mac": self.mac, "time": self.time, "store": self.store, "key": self.key}


def parse_head(data: Any) -> Head | None:
    """A head from a decoded record, or None when it is not one (wrong keys or types)."""
    if not isinstance(data, dict) or set(data) != {"seq", "mac", "time", "store", "key"}:
        return None
    seq, mac, time, store, key = (data[k] for k in ("seq", "mac", "time", "store", "key"))
    if isinstance(seq, str) and seq.isdigit() and len(seq) < 20:
        seq = int(seq)
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 1:
        return None
    if not (isinstance(mac, str) and _MAC_RE.match(mac)):
        return None
    if not (isinstance(time, str) and 0 < len(time) <= 40):
        return None
    if not (isinstance(store, str) and _ID_RE.match(store) and isinstance(key, str) and _ID_RE.match(key)):
        return None
    return Head(seq, mac, time, store, key)


class Witness(Protocol):
    url: str  # for messages: never holds a password

    def record(self, head: Head) -> None: ...

    def heads(self) -> Iterator[Head]: ...


class FileWitness:
    """JSON lines appended to a file (``O_APPEND``: concurrent writers never interleave a line)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.url = f"file:{path}"

    def record(self, head: Head) -> None:
        line = (json.dumps(head.to_dict(), sort_keys=True, separators=(",", ":")) + "\n").encode()
        try:
            fd = os.open(
                self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
            )
        except OSError as exc:
            raise WitnessError(f"cannot open the audit witness {self.url}: {exc.strerror or exc}") from None
        try:
            written = os.write(fd, line)
            if written != len(line):
                raise WitnessError(f"short write to the audit witness {self.url} ({written} bytes)")
            os.fsync(fd)
        except OSError as exc:
            raise WitnessError(f"cannot write the audit witness {self.url}: {exc.strerror or exc}") from None
        finally:
            os.close(fd)

    def heads(self) -> Iterator[Head]:
        try:
            fh = open(os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC), "rb")  # noqa: SIM115
        except FileNotFoundError:
            if not self.path.parent.is_dir():
                raise WitnessError(
                    f"cannot read the audit witness {self.url}: its folder does not exist"
                ) from None
            return  # nothing witnessed yet
        except OSError as exc:
            raise WitnessError(f"cannot read the audit witness {self.url}: {exc.strerror or exc}") from None
        with fh:
            number = 0
            while True:
                line = fh.readline(MAX_LINE + 1)
                if not line:
                    return
                number += 1
                if not line.endswith(b"\n"):
                    if len(line) <= MAX_LINE and not fh.read(1):
                        return  # a torn last line (crash in the middle of a write): nothing was committed
                    raise WitnessError(f"the audit witness {self.url} has an over-long line {number}")
                try:
                    head = parse_head(json.loads(line))
                except (ValueError, UnicodeDecodeError):
                    head = None
                if head is None:
                    raise WitnessError(
                        f"the audit witness {self.url} has a malformed line {number}",
                        hint="inspect the file; a witness is written only by the store",
                    )
                yield head


class RedisWitness:
    """Entries of a Redis stream (``XADD``; read with ``XRANGE``)."""

    def __init__(self, url: str, stream: str) -> None:
        self._url = url
        self.stream = stream
        parts = urlsplit(url)
        host = parts.hostname or "localhost"
        port = f":{parts.port}" if parts.port else ""
        self.url = f"{parts.scheme}://{host}{port}{parts.path} stream {stream}"
        self._client: Any = None

    def _redis(self) -> Any:
        if self._client is None:
            try:
                import redis
            except ImportError:
                raise WitnessError(
                    "a Redis audit witness needs the 'redis' package",
                    hint="pip install 'kerasguard[witness]'",
                ) from None
            password = os.environ.get("KERASGUARD_WITNESS_PASSWORD") or None
            extra = {"password": password} if password else {}
            self._client = redis.Redis.from_url(
                self._url, socket_timeout=TIMEOUT_S, socket_connect_timeout=TIMEOUT_S, **extra
            )
        return self._client

    def _fail(self, what: str, exc: Exception) -> WitnessError:
        return WitnessError(f"cannot {what} the audit witness {self.url}: {type(exc).__name__}: {exc}")

    def record(self, head: Head) -> None:
        import redis

        fields = {k: str(v) for k, v in head.to_dict().items()}
        try:
            self._redis().xadd(self.stream, fields)
        except (redis.RedisError, OSError) as exc:
            raise self._fail("write", exc) from None

    def heads(self) -> Iterator[Head]:
        import redis

        start = "-"
        while True:
            try:
                batch = self._redis().xrange(self.stream, min=start, max="+", count=1000)
            except (redis.RedisError, OSError) as exc:
                raise self._fail("read", exc) from None
            for entry_id, raw in batch:
                try:
                    decoded = {k.decode(): v.decode() for k, v in raw.items()}
                except (AttributeError, UnicodeDecodeError):
                    decoded = None
                head = parse_head(decoded)
                if head is None:
                    raise WitnessError(f"the audit witness {self.url} has a malformed entry {entry_id!r}")
                yield head
            if len(batch) < 1000:
                return
            last = batch[-1][0].decode()
            start = "(" + last


@dataclass(frozen=True)
class Witnessed:
    """What a witness says about one store: its highest head, and its highest under the current key."""

    last: Head | None
    anchor: Head | None


def summarize(heads: Iterator[Head], store_id: str, key_id: str) -> Witnessed:
    """One pass over the witness (it holds a line per audit entry, so it is never held in memory)."""
    last: Head | None = None
    anchor: Head | None = None
    for head in heads:
        if head.store != store_id:
            continue
        if last is None or head.seq > last.seq:
            last = head
        if head.key == key_id and (anchor is None or head.seq > anchor.seq):
            anchor = head
    return Witnessed(last, anchor)


def open_witness(url: str | None, root: Path, store_id: str) -> Witness:
    """The witness named by ``url`` (``file:PATH`` or ``redis://...``); None: the store folder's file."""
    if url is None:
        return FileWitness(root / DEFAULT_FILE)
    if url.startswith("file:"):
        path = Path(url[len("file:") :].removeprefix("//"))
        if not path.is_absolute():
            raise StoreError(f"witness file path must be absolute: {url!r}")
        return FileWitness(path)
    if url.startswith(("redis://", "rediss://")):
        parts = urlsplit(url)
        query = parse_qsl(parts.query, keep_blank_values=True)
        streams = [v for k, v in query if k == "stream"]
        stream = streams[-1] if streams else f"kerasguard:audit:{store_id}"
        if not stream or len(stream) > 200:
            raise StoreError(f"invalid witness stream name in {redact(url)!r}")
        rest = urlencode([(k, v) for k, v in query if k != "stream"])
        return RedisWitness(urlunsplit(parts._replace(query=rest)), stream)
    raise StoreError(f"unsupported witness URL {redact(url)!r} (use file:/path or redis://host:port/db)")
