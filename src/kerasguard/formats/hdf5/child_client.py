"""Parent side of the HDF5 worker: start it, talk JSON lines under deadlines, read answers strictly.

The worker (:mod:`kerasguard.formats.hdf5.child`) is long-lived: one per :class:`ReadContext`, started
lazily, reused across files, and replaced after any failure. The parent never imports h5py. Every
way the child can fail maps to a problem kind: killed by a signal -> ``crash``; MemoryError or
an rlimit -> ``limit``; out of time -> ``timeout``; an h5py error -> ``corrupt``. An answer that does
not follow the protocol is treated as a crash: the child may have been subverted.
"""

from __future__ import annotations

import atexit
import base64
import binascii
import contextlib
import json
import math
import os
import selectors
import signal
import subprocess
import sys
import threading
import time
from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from typing import Any

from kerasguard.formats.artifact import H5Object, ProblemKind
from kerasguard.sigpipe import no_sigpipe

STARTUP_TIMEOUT_S = 30.0
MAX_OPEN_FILES = 16
MAX_DESCRIPTION_BYTES = 64 * 1024 * 1024
STDERR_TAIL_BYTES = 4096
MAX_RANK = 1024  # libhdf5 allows 32; anything past this is not an answer but an attack on the parser
_READ_CHUNK = 1 << 20

# The child must not run kerasguard/__init__ (it imports the whole scanner): it registers a bare
# package so that only the child and the small modules it needs are loaded.
_BOOTSTRAP = (
    "import sys, types\n"
    "pkg = types.ModuleType('kerasguard')\n"
    "pkg.__path__ = [sys.argv[1]]\n"
    "sys.modules['kerasguard'] = pkg\n"
    "from kerasguard.formats.hdf5.child import main\n"
    "main(sys.argv[2])\n"
)

# No PYTHON* variables (-I ignores them anyway), no HDF5 plugins, no file locks, one BLAS thread.
_CHILD_ENV = {
    "PATH": os.defpath,
    "LC_ALL": "C.UTF-8",
    "HDF5_PLUGIN_PRELOAD": "::",
    "HDF5_USE_FILE_LOCKING": "FALSE",
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}


class ProtocolError(Exception):
    """The worker's answer does not follow the protocol."""


@dataclass(frozen=True)
class WorkerFailure:
    """No usable answer for one request, and why."""

    kind: ProblemKind
    message: str


@dataclass(frozen=True)
class JsonAttr:
    """A root attribute holding JSON (model_config...); ``data`` is None when over max_json_bytes."""

    size: int
    parts: int
    data: bytes | None


@dataclass(frozen=True)
class ObjectError:
    """libhdf5 could not describe one object (or the walk stopped at it)."""

    path: str
    message: str


@dataclass(frozen=True)
class WalkResult:
    """What the worker learned about one HDF5 file."""

    objects: tuple[H5Object, ...]
    root_attrs: dict[str, str]
    json_attrs: dict[str, JsonAttr]
    errors: tuple[ObjectError, ...]
    truncated: str | None


# ---------------------------------------------------------------- strict response parsing


def _expect(cond: bool, what: str) -> None:
    if not cond:
        raise ProtocolError(what)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _req_str(obj: dict[str, Any], key: str) -> str:
    value = obj.get(key)
    _expect(isinstance(value, str), f"{key!r} must be a string")
    return str(value)


def _opt_str(obj: dict[str, Any], key: str) -> str | None:
    return None if obj.get(key) is None else _req_str(obj, key)


def _req_int(obj: dict[str, Any], key: str, minimum: int = 0) -> int:
    value = obj.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ProtocolError(f"{key!r} must be an integer >= {minimum}")
    return value


def _opt_int(obj: dict[str, Any], key: str) -> int | None:
    return None if obj.get(key) is None else _req_int(obj, key)


def _ints(value: Any, key: str) -> tuple[int, ...]:
    """Dimensions: at most MAX_RANK of them, each fitting libhdf5's 64-bit hsize_t."""
    _expect(
        isinstance(value, list)
        and len(value) <= MAX_RANK
        and all(_is_int(v) and abs(v) < 1 << 64 for v in value),
        f"{key!r} must be a list of at most {MAX_RANK} 64-bit integers",
    )
    return tuple(int(v) for v in value)


def _list(obj: dict[str, Any], key: str) -> list[Any]:
    value = obj.get(key, [])
    _expect(isinstance(value, list), f"{key!r} must be a list")
    return list(value)


def _strs(value: Any, key: str) -> tuple[str, ...]:
    _expect(isinstance(value, list) and all(isinstance(v, str) for v in value), f"{key!r} must list strings")
    return tuple(value)


_KINDS = frozenset({"group", "dataset", "soft_link", "external_link", "hard_link", "datatype", "other"})
_OBJECT_KEYS = frozenset(
    {
        "path",
        "kind",
        "target",
        "shape",
        "dtype",
        "itemsize",
        "stored_bytes",
        "layout",
        "chunks",
        "filters",
        "external",
        "virtual_sources",
        "attrs",
    }
)


def parse_object(raw: Any) -> H5Object:
    """One object description -> :class:`H5Object`; declared bytes computed here, exactly."""
    _expect(isinstance(raw, dict), "object must be a JSON object")
    _expect(set(raw) <= _OBJECT_KEYS, f"unknown object keys {sorted(set(raw) - _OBJECT_KEYS)}")
    path = _req_str(raw, "path")
    _expect(path.startswith("/"), "object path must start with '/'")
    kind = _req_str(raw, "kind")
    _expect(kind in _KINDS, f"unknown object kind {kind!r}")
    shape = None if raw.get("shape") is None else _ints(raw["shape"], "shape")
    itemsize = _opt_int(raw, "itemsize")
    declared = None
    if kind == "dataset":
        declared = 0 if shape is None else math.prod(shape) * (itemsize or 0)
    chunks = None if raw.get("chunks") is None else _ints(raw["chunks"], "chunks")
    external: list[tuple[str, int, int]] = []
    for entry in _list(raw, "external"):
        _expect(
            isinstance(entry, list)
            and len(entry) == 3
            and isinstance(entry[0], str)
            and _is_int(entry[1])
            and _is_int(entry[2]),
            "'external' entries must be [name, offset, size]",
        )
        external.append((entry[0], int(entry[1]), int(entry[2])))
    attrs: list[tuple[str, str]] = []
    for entry in _list(raw, "attrs"):
        _expect(
            isinstance(entry, list) and len(entry) == 2 and all(isinstance(v, str) for v in entry),
            "'attrs' entries must be [name, text]",
        )
        attrs.append((entry[0], entry[1]))
    sources = _strs(raw.get("virtual_sources", []), "virtual_sources")
    layout = _opt_str(raw, "layout")
    return H5Object(
        path=path,
        kind=kind,
        link_target=_opt_str(raw, "target"),
        shape=shape,
        dtype=_opt_str(raw, "dtype"),
        itemsize=itemsize,
        declared_bytes=declared,
        stored_bytes=_opt_int(raw, "stored_bytes"),
        external=tuple(external),
        is_virtual=layout == "virtual" or bool(sources),
        virtual_sources=sources,
        chunks=chunks,
        filters=_strs(raw.get("filters", []), "filters"),
        attrs=tuple(attrs),
        layout=layout,
    )


def _json_attr(raw: Any, key: str) -> JsonAttr:
    _expect(isinstance(raw, dict), f"json attr {key!r} must be an object")
    size = _req_int(raw, "size")
    parts = _req_int(raw, "parts", minimum=1)
    data = None
    if raw.get("data") is not None:
        _expect(isinstance(raw["data"], str), f"json attr {key!r} data must be base64 text")
        try:
            data = base64.b64decode(raw["data"], validate=True)
        except (binascii.Error, ValueError):
            raise ProtocolError(f"json attr {key!r} data is not base64") from None
        _expect(len(data) == size, f"json attr {key!r} size does not match its data")
    return JsonAttr(size=size, parts=parts, data=data)


_FAILURE_KINDS: dict[str, ProblemKind] = {
    "corrupt": "corrupt",
    "limit": "limit",
    "unsupported": "unsupported",
}


def parse_response(line: bytes, max_objects: int) -> WalkResult | WorkerFailure:
    """Validate one response line; raises :class:`ProtocolError` on anything unexpected."""
    try:
        msg = json.loads(line)
    except (ValueError, RecursionError) as exc:
        raise ProtocolError(f"response is not JSON: {exc}") from None
    return parse_answer(msg, max_objects)


def parse_answer(msg: Any, max_objects: int) -> WalkResult | WorkerFailure:
    """Validate one decoded answer (the child's, or the pure-Python reader's in the same form)."""
    _expect(isinstance(msg, dict), "response must be a JSON object")
    ok = msg.get("ok")
    _expect(isinstance(ok, bool), "'ok' must be true or false")
    if not ok:
        kind = msg.get("kind")
        _expect(isinstance(kind, str) and kind in _FAILURE_KINDS, f"unknown failure kind {kind!r}")
        return WorkerFailure(kind=_FAILURE_KINDS[str(kind)], message=_req_str(msg, "message"))
    objects_raw = msg.get("objects")
    _expect(isinstance(objects_raw, list), "'objects' must be a list")
    _expect(len(objects_raw) <= max_objects, "more objects than requested")
    objects = tuple(parse_object(o) for o in objects_raw)
    root_raw = msg.get("root_attrs")
    _expect(
        isinstance(root_raw, dict) and all(isinstance(v, str) for v in root_raw.values()),
        "'root_attrs' must map names to strings",
    )
    json_raw = msg.get("json_attrs")
    _expect(isinstance(json_raw, dict), "'json_attrs' must be an object")
    json_attrs = {str(k): _json_attr(v, str(k)) for k, v in json_raw.items()}
    errors_raw = msg.get("errors")
    _expect(isinstance(errors_raw, list), "'errors' must be a list")
    errors = []
    for e in errors_raw:
        _expect(isinstance(e, dict), "each error must be an object")
        errors.append(ObjectError(_req_str(e, "path"), _req_str(e, "message")))
    truncated = msg.get("truncated")
    _expect(
        truncated in (None, "objects", "depth", "bytes"),
        "'truncated' must be null, 'objects', 'depth' or 'bytes'",
    )
    return WalkResult(
        objects=objects,
        root_attrs=dict(root_raw),
        json_attrs=json_attrs,
        errors=tuple(errors),
        truncated=truncated,
    )


def trusted_answer(msg: dict[str, Any]) -> WalkResult | WorkerFailure:
    """The in-process reader's answer (:mod:`~kerasguard.formats.hdf5.inprocess`) as :func:`parse_answer`
    returns it, without re-checking: that reader builds every field itself, of the right type, within
    its own limits (objects, depth, bytes), so the checks that guard against a subverted child would
    only repeat its work. The differential tests compare the two results on every answer they read."""
    if not msg["ok"]:
        return WorkerFailure(kind=_FAILURE_KINDS[msg["kind"]], message=msg["message"])
    json_attrs = {
        key: JsonAttr(
            size=raw["size"],
            parts=raw["parts"],
            data=None if raw.get("data") is None else base64.b64decode(raw["data"], validate=True),
        )
        for key, raw in msg["json_attrs"].items()
    }
    return WalkResult(
        objects=tuple(map(_trusted_object, msg["objects"])),
        root_attrs=dict(msg["root_attrs"]),
        json_attrs=json_attrs,
        errors=tuple(ObjectError(e["path"], e["message"]) for e in msg["errors"]),
        truncated=msg["truncated"],
    )


def _trusted_object(raw: dict[str, Any]) -> H5Object:
    """One object of the in-process reader, as :func:`parse_object` builds it, but without the frozen
    dataclass's ``__init__`` (one ``object.__setattr__`` per field; a file holds thousands of objects):
    the same fields in the same order, the same frozen object (as ``config_walk.as_ref`` builds refs)."""
    kind = raw["kind"]
    attrs = raw.get("attrs")
    values = _group_fields(raw["path"], kind, raw.get("target"), tuple(map(tuple, attrs)) if attrs else ())
    if kind == "dataset":
        shape = raw.get("shape")
        shape = None if shape is None else tuple(shape)
        itemsize = raw.get("itemsize")
        chunks = raw.get("chunks")
        sources = raw.get("virtual_sources", ())
        layout = raw.get("layout")
        values["shape"] = shape
        values["dtype"] = raw.get("dtype")
        values["itemsize"] = itemsize
        values["declared_bytes"] = 0 if shape is None else math.prod(shape) * (itemsize or 0)
        values["stored_bytes"] = raw.get("stored_bytes")
        values["external"] = tuple((name, offset, size) for name, offset, size in raw.get("external", ()))
        values["is_virtual"] = layout == "virtual" or bool(sources)
        values["virtual_sources"] = tuple(sources)
        values["chunks"] = None if chunks is None else tuple(chunks)
        values["filters"] = tuple(raw.get("filters", ()))
        values["layout"] = layout
    obj = _new_object(H5Object)
    _set_attribute(obj, "__dict__", values)
    return obj


def _group_fields(path: str, kind: str, target: str | None, attrs: tuple[Any, ...]) -> dict[str, Any]:
    """The fields of an :class:`H5Object` that is not a dataset: the dataclass's own defaults."""
    return {**_DEFAULTS, "path": path, "kind": kind, "link_target": target, "attrs": attrs}


# every field in declaration order (path and kind have no default: always set above)
_DEFAULTS: dict[str, Any] = {f.name: None if f.default is MISSING else f.default for f in fields(H5Object)}
_new_object, _set_attribute = object.__new__, object.__setattr__


# ---------------------------------------------------------------- the child process


def _package_dir() -> str:
    """The kerasguard package folder this process runs from (the child runs the same code)."""
    return str(Path(__file__).resolve().parents[2])


def _describe_exit(returncode: int) -> tuple[ProblemKind, str]:
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        if -returncode == signal.SIGXCPU:
            return "limit", f"HDF5 worker exceeded its CPU time limit ({name})"
        return "crash", f"HDF5 worker was killed by {name}"
    return "crash", f"HDF5 worker exited with status {returncode}"


class H5WorkerProcess:
    """One child process running :func:`kerasguard.formats.hdf5.child.main`."""

    def __init__(self, memory_mb: int) -> None:
        self.memory_mb = memory_mb
        self.hello: dict[str, Any] = {}
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr_tail = b""
        self.requests = 0
        self.restarts = 0

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def _spawn(self) -> WorkerFailure | None:
        config = json.dumps(
            {"memory_mb": self.memory_mb, "max_open_files": MAX_OPEN_FILES, "parent_pid": os.getpid()}
        )
        self._stderr_tail = b""
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-I", "-B", "-c", _BOOTSTRAP, _package_dir(), config],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=dict(_CHILD_ENV),
                cwd="/",
                close_fds=True,
                start_new_session=True,
            )
        except OSError as exc:
            return WorkerFailure("unsupported", f"cannot start the HDF5 worker: {exc}")
        outcome = self._read_line(time.monotonic() + STARTUP_TIMEOUT_S, 64 * 1024)
        if isinstance(outcome, WorkerFailure):
            self.kill()
            if outcome.kind == "timeout":
                return WorkerFailure("timeout", f"HDF5 worker did not start within {STARTUP_TIMEOUT_S:.0f} s")
            return self._startup_failure(outcome)
        try:
            hello = json.loads(outcome)
        except ValueError:
            hello = None
        if not isinstance(hello, dict) or hello.get("hello") is not True:
            kind = hello.get("kind") if isinstance(hello, dict) else None
            self.kill()
            message = hello.get("message") if isinstance(hello, dict) else None
            return WorkerFailure(
                "limit" if kind == "limit" else "unsupported",
                f"HDF5 worker failed to start: {message or 'no greeting'}"
                + (f" (parser_memory_mb={self.memory_mb})" if kind == "limit" else ""),
            )
        self.hello = hello
        return None

    def _startup_failure(self, failure: WorkerFailure) -> WorkerFailure:
        if b"MemoryError" in self._stderr_tail:
            return WorkerFailure(
                "limit", f"HDF5 worker cannot start within parser_memory_mb={self.memory_mb}"
            )
        return WorkerFailure("unsupported", f"HDF5 worker failed to start: {failure.message}")

    def _read_line(self, deadline: float, max_bytes: int) -> bytes | WorkerFailure:
        """One line from the child's stdout, draining stderr meanwhile; failures are classified."""
        proc = self._proc
        assert proc is not None and proc.stdout is not None and proc.stderr is not None
        out_fd, err_fd = proc.stdout.fileno(), proc.stderr.fileno()
        buf = bytearray()
        with selectors.DefaultSelector() as sel:
            sel.register(out_fd, selectors.EVENT_READ)
            sel.register(err_fd, selectors.EVENT_READ)
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return WorkerFailure("timeout", "out of time")
                for key, _ in sel.select(min(remaining, 3600.0)):
                    data = os.read(key.fd, _READ_CHUNK)
                    if key.fd == err_fd:
                        if not data:
                            sel.unregister(err_fd)
                        self._stderr_tail = (self._stderr_tail + data)[-STDERR_TAIL_BYTES:]
                        continue
                    if not data:
                        return self._died()
                    buf += data
                    end = buf.find(b"\n", len(buf) - len(data))
                    if end >= 0:
                        if end != len(buf) - 1:
                            return WorkerFailure("crash", "HDF5 worker wrote more than one answer")
                        return bytes(buf[:end])
                    if len(buf) > max_bytes:
                        return WorkerFailure("limit", f"HDF5 metadata answer exceeds {max_bytes} bytes")

    def _died(self) -> WorkerFailure:
        assert self._proc is not None
        try:
            returncode = self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            return WorkerFailure("crash", "HDF5 worker closed its output and hung")
        kind, message = _describe_exit(returncode)
        if returncode > 0 and b"MemoryError" in self._stderr_tail:
            kind, message = "limit", f"HDF5 worker ran out of memory (parser_memory_mb={self.memory_mb})"
        tail = self._stderr_tail.decode("utf-8", "replace").strip().splitlines()
        if tail and kind == "crash":
            message += f"; last output: {tail[-1][:200]}"
        return WorkerFailure(kind, message)

    def request(self, request: dict[str, Any], timeout: float, max_bytes: int) -> bytes | WorkerFailure:
        """Send one request; the answer line, or why there is none. Restarts the child as needed."""
        if self._proc is None or self._proc.poll() is not None:
            if self._proc is not None:  # died while idle: not this file's fault
                self._reap()
                self.restarts += 1
            failure = self._spawn()
            if failure is not None:
                return failure
        proc = self._proc
        assert proc is not None and proc.stdin is not None
        self.requests += 1
        deadline = time.monotonic() + timeout
        try:
            with no_sigpipe():
                proc.stdin.write(json.dumps(request).encode("utf-8") + b"\n")
                proc.stdin.flush()
        except (BrokenPipeError, OSError):
            failure = self._died()
            self.kill()
            return failure
        outcome = self._read_line(deadline, max_bytes)
        if isinstance(outcome, WorkerFailure):
            self.kill()
            if outcome.kind == "timeout":
                return WorkerFailure("timeout", f"reading HDF5 metadata took longer than {timeout:.1f} s")
            return WorkerFailure(outcome.kind, f"{outcome.message} (while reading this file's metadata)")
        return outcome

    def kill(self) -> None:
        """Stop the child now (after a failure); the next request starts a fresh one."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.kill()
        self._reap()

    def _reap(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def close(self) -> None:
        """End of the run: let the child exit on end of input, kill it if it lingers."""
        proc = self._proc
        if proc is None:
            return
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()
        try:
            proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            proc.kill()
        self._reap()


class _WorkerPool:
    """Idle workers kept between runs, so repeated ``kerasguard.scan`` calls do not pay a child start.

    A worker is reused only by the process that started it (never across fork) and only with the same
    memory limit; a dead one is dropped. Idle children exit with this process (atexit) or when it dies.
    """

    MAX_IDLE = 4

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: list[tuple[int, H5WorkerProcess]] = []
        atexit.register(self.close_all)

    def acquire(self, memory_mb: int) -> H5WorkerProcess:
        with self._lock:
            for i, (owner, worker) in enumerate(self._idle):
                if owner == os.getpid() and worker.memory_mb == memory_mb:
                    del self._idle[i]
                    return worker
        return H5WorkerProcess(memory_mb)

    def release(self, worker: H5WorkerProcess) -> None:
        if worker.pid is not None:
            with self._lock:
                if len(self._idle) < self.MAX_IDLE:
                    self._idle.append((os.getpid(), worker))
                    return
        worker.close()

    def close_all(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for owner, worker in idle:
            if owner == os.getpid():
                worker.close()


POOL = _WorkerPool()
