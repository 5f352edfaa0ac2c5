"""The HDF5 metadata worker: the only place hostile HDF5 bytes meet libhdf5.

h5py bundles libhdf5, which has memory-safety CVEs of its own, so the scanner never parses HDF5
in-process. This module is the entry point of a long-lived child process (started by
:mod:`kerasguard.formats.hdf5.child_client`) that first drops its resource limits (address space, CPU, no
file writes, few descriptors, no core dumps), then imports h5py and answers one JSON request per
line on stdin with one JSON line on stdout. Nothing is pickled across the boundary.

The walk reads metadata only, never dataset data: shapes, types, storage sizes, layouts, filters,
external files, virtual sources, links and short attribute values. Links are recorded, never
followed. It imports nothing from kerasguard but :class:`~kerasguard.formats.blob.FileWindow` and the
text helpers it shares with the pure-Python reader (:mod:`~kerasguard.formats.hdf5.values`).
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import faulthandler
import io
import json
import os
import resource
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from kerasguard.formats.hdf5.values import (
    JSON_ATTRS,
    MAX_ATTR_READ_BYTES,
    MAX_ATTRS_PER_OBJECT,
    MAX_EXTERNAL_FILES,
    MAX_GROUP_DEPTH,
    MAX_SPLIT_PARTS,
    MAX_VIRTUAL_SOURCES,
    REPR_CHARS,
    as_bytes,
    clip,
    estimate_size,
    short_repr,
    text,
)

PROTOCOL = 1
PR_SET_PDEATHSIG = 1
_STOP = object()


def apply_limits(memory_mb: int, max_open_files: int) -> None:
    """Limits that hold for the worker's whole life; CPU time is re-armed per request."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
    limit = memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    resource.setrlimit(resource.RLIMIT_NOFILE, (max_open_files, max_open_files))


def arm_cpu_limit(seconds: int) -> None:
    """Allow ``seconds`` more CPU time; past it the kernel sends SIGXCPU and the worker dies."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    used = int(usage.ru_utime + usage.ru_stime) + 1
    _soft, hard = resource.getrlimit(resource.RLIMIT_CPU)
    soft = used + max(1, seconds)
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))


def _forbid_new_processes() -> None:
    """No fork, exec or thread creation after start-up (ignored for root, so best effort)."""
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))


def die_with_parent(parent_pid: int) -> None:
    """Ask the kernel to kill this worker when the scanner goes away (Linux), even mid-parse."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: end of input still stops an idle worker
        return
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(0)


def vm_peak_kib() -> int:
    """Peak address space of this process (what RLIMIT_AS bounds), from /proc."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmPeak:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


class Walker:
    """Describes every object of one open file without reading dataset data."""

    def __init__(
        self, h5py: Any, fid: Any, max_objects: int, max_json_bytes: int, max_description_bytes: int
    ) -> None:
        self.h5py = h5py
        self.fid = fid
        self.max_objects = max_objects
        self.max_json_bytes = max_json_bytes
        self.max_description_bytes = max_description_bytes
        self.description_bytes = 0
        self.objects: list[dict[str, Any]] = []
        self.errors: list[dict[str, str]] = []
        self.seen: dict[int, str] = {}
        self.truncated: str | None = None  # why the walk stopped early: "objects" | "depth" | "bytes"

    def run(self) -> dict[str, Any]:
        h5py = self.h5py
        root = h5py.h5g.open(self.fid, b"/")
        try:
            self.seen[h5py.h5o.get_info(root).addr] = "/"
            root_attrs, json_attrs = self._root_attrs(root)
        finally:
            root.close()
        try:
            self.fid.links.visit(self._visit, info=True)
        except Exception as exc:  # a broken index stops the walk; what was read is still reported
            self._error("/", exc)
        return {
            "ok": True,
            "objects": self.objects,
            "root_attrs": root_attrs,
            "json_attrs": json_attrs,
            "errors": self.errors,
            "truncated": self.truncated,
        }

    def _error(self, path: str, exc: BaseException) -> None:
        if isinstance(exc, MemoryError):
            raise exc
        if len(self.errors) < 100:
            self.errors.append({"path": path, "message": clip(f"{type(exc).__name__}: {exc}", 300)})

    def _visit(self, name: bytes, info: Any) -> object | None:
        if len(self.objects) >= self.max_objects:
            self.truncated = "objects"
            return _STOP
        if name.count(b"/") >= MAX_GROUP_DEPTH:
            self.truncated = "depth"
            return _STOP
        path = "/" + text(name)
        try:
            described = self._describe_link(name, path, info)
        except Exception as exc:
            self._error(path, exc)
            return None
        self.description_bytes += estimate_size(described)
        if self.description_bytes > self.max_description_bytes:
            self.truncated = "bytes"
            return _STOP
        self.objects.append(described)
        return None

    def _describe_link(self, name: bytes, path: str, info: Any) -> dict[str, Any]:
        h5l, h5o = self.h5py.h5l, self.h5py.h5o
        if info.type == h5l.TYPE_SOFT:
            return {"path": path, "kind": "soft_link", "target": text(self.fid.links.get_val(name))}
        if info.type == h5l.TYPE_EXTERNAL:
            filename, objpath = self.fid.links.get_val(name)
            return {"path": path, "kind": "external_link", "target": f"{text(filename)}:{text(objpath)}"}
        if info.type != h5l.TYPE_HARD:
            return {"path": path, "kind": "other", "target": f"user-defined link type {info.type}"}
        first = self.seen.get(info.u)
        if first is not None:
            return {"path": path, "kind": "hard_link", "target": first}
        self.seen[info.u] = path
        oid = h5o.open(self.fid, name)
        try:
            return self._describe_object(oid, path)
        finally:
            oid.close()

    def _describe_object(self, oid: Any, path: str) -> dict[str, Any]:
        h5py = self.h5py
        if isinstance(oid, h5py.h5d.DatasetID):
            out = self._describe_dataset(oid, path)
        elif isinstance(oid, h5py.h5g.GroupID):
            out = {"path": path, "kind": "group"}
        elif isinstance(oid, h5py.h5t.TypeID):
            out = {"path": path, "kind": "datatype"}
        else:
            out = {"path": path, "kind": "other"}
        attrs = self._attrs(oid, path)
        if attrs:
            out["attrs"] = attrs
        return out

    def _describe_dataset(self, dsid: Any, path: str) -> dict[str, Any]:
        h5py = self.h5py
        out: dict[str, Any] = {"path": path, "kind": "dataset"}
        space = dsid.get_space()
        extent = space.get_simple_extent_type()
        if extent == h5py.h5s.SIMPLE:
            out["shape"] = list(space.get_simple_extent_dims())
        elif extent == h5py.h5s.SCALAR:
            out["shape"] = []
        else:
            out["shape"] = None
        try:
            dtype = dsid.dtype
            out["dtype"] = clip(str(dtype), 100)
            out["itemsize"] = int(dtype.itemsize)
        except Exception:  # a type numpy cannot express: keep libhdf5's element size
            tid = dsid.get_type()
            out["dtype"] = f"hdf5-class-{tid.get_class()}"
            out["itemsize"] = int(tid.get_size())
        out["stored_bytes"] = int(dsid.get_storage_size())
        dcpl = dsid.get_create_plist()
        layout = dcpl.get_layout()
        h5d = h5py.h5d
        names = {
            h5d.COMPACT: "compact",
            h5d.CONTIGUOUS: "contiguous",
            h5d.CHUNKED: "chunked",
            h5d.VIRTUAL: "virtual",
        }
        out["layout"] = names.get(layout, f"layout-{layout}")
        if layout == h5py.h5d.CHUNKED:
            out["chunks"] = list(dcpl.get_chunk())
        filters = [dcpl.get_filter(i) for i in range(dcpl.get_nfilters())]
        if filters:
            out["filters"] = [text(f[3]) or f"filter-{f[0]}" for f in filters]
        count = dcpl.get_external_count()
        if count:
            out["external"] = [
                [text(n), int(off), int(size)]
                for n, off, size in (dcpl.get_external(i) for i in range(min(count, MAX_EXTERNAL_FILES)))
            ]
        if layout == h5py.h5d.VIRTUAL:
            n = dcpl.get_virtual_count()
            out["virtual_sources"] = [
                f"{text(dcpl.get_virtual_filename(i))}:{text(dcpl.get_virtual_dsetname(i))}"
                for i in range(min(n, MAX_VIRTUAL_SOURCES))
            ]
        return out

    def _attr_names(self, oid: Any) -> list[bytes]:
        names: list[bytes] = []

        def collect(name: bytes) -> object | None:
            names.append(name)
            return _STOP if len(names) >= MAX_ATTRS_PER_OBJECT else None

        self.h5py.h5a.iterate(oid, collect)
        return names

    def _attrs(self, oid: Any, path: str) -> list[list[str]]:
        """[name, short value] of the first MAX_ATTRS_PER_OBJECT attributes (and a note if more)."""
        out: list[list[str]] = []
        try:
            names = self._attr_names(oid)
            total = self.h5py.h5a.get_num_attrs(oid) if len(names) >= MAX_ATTRS_PER_OBJECT else len(names)
        except Exception as exc:
            self._error(path, exc)
            return out
        for raw in names:
            name = text(raw)
            if name in JSON_ATTRS and path == "/":
                continue  # read in full by _root_attrs
            try:
                out.append([clip(name, 100), clip(self._attr_text(oid, raw), REPR_CHARS)])
            except Exception as exc:
                self._error(f"{path}@{name}", exc)
        if total > len(names):
            out.append(["<more>", f"{total - len(names)} more attributes not read"])
        return out

    def _read_attr(self, oid: Any, raw: bytes, cap: int | None = None) -> Any:
        """One attribute's value: a plain low-level read, else h5py's high-level reader (which
        knows every type h5py supports). Strings come back as bytes from the low-level read.
        Over ``cap`` stored bytes, a description replaces the value."""
        import numpy as np  # already loaded by h5py

        h5py = self.h5py
        aid = h5py.h5a.open(oid, raw)
        try:
            if cap is not None:
                try:
                    storage = aid.get_storage_size()
                except RuntimeError:  # h5py reports a size of 0 (an empty attribute) as an error
                    storage = 0
                if storage > cap:
                    return f"<{storage} bytes, shape {aid.shape}>"
            if aid.get_space().get_simple_extent_type() == h5py.h5s.NULL:
                return "<empty>"
            value = np.empty(aid.shape, dtype=aid.dtype)
            aid.read(value)
            return value[()] if value.shape == () else value
        except MemoryError:
            raise
        except Exception:  # noqa: S110 - retried below by the high-level reader
            pass
        finally:
            aid.close()
        if isinstance(oid, h5py.h5d.DatasetID):
            wrapper = h5py.Dataset(oid)
        elif isinstance(oid, h5py.h5t.TypeID):
            wrapper = h5py.Datatype(oid)
        else:
            wrapper = h5py.Group(oid)
        return wrapper.attrs[raw.decode("utf-8")]

    def _attr_text(self, oid: Any, raw: bytes) -> str:
        return short_repr(self._read_attr(oid, raw, MAX_ATTR_READ_BYTES))

    def _json_parts(self, root: Any, key: str) -> list[bytes]:
        """Names holding ``key``: itself, else ``key0``, ``key1``... (looked up by name, as Keras
        does, so attributes sorting before it cannot push it out of the walk)."""
        exists = self.h5py.h5a.exists
        if exists(root, key.encode()):
            return [key.encode()]
        parts: list[bytes] = []
        while exists(root, f"{key}{len(parts)}".encode()):
            if len(parts) >= MAX_SPLIT_PARTS:
                raise ValueError(f"{key} is split into more than {MAX_SPLIT_PARTS} attributes")
            parts.append(f"{key}{len(parts)}".encode())
        return parts

    def _root_attrs(self, root: Any) -> tuple[dict[str, str], dict[str, Any]]:
        """Short values of the root attributes, and the JSON ones (model_config...) in full."""
        short: dict[str, str] = {}
        json_attrs: dict[str, Any] = {}
        for key in JSON_ATTRS:
            try:
                parts = self._json_parts(root, key)
                if not parts:
                    continue
                data = b"".join(as_bytes(self._read_attr(root, raw)) for raw in parts)
            except Exception as exc:
                self._error(f"/@{key}", exc)
                short[key] = "<unreadable>"
                continue
            entry: dict[str, Any] = {"size": len(data), "parts": len(parts)}
            if len(data) <= self.max_json_bytes:
                entry["data"] = base64.b64encode(data).decode("ascii")
            json_attrs[key] = entry
            short[key] = short_repr(data[: REPR_CHARS * 4])
        for name, value in self._attrs(root, "/"):
            short.setdefault(name, value)
        return short, json_attrs


def _open(h5py: Any, request: dict[str, Any]) -> tuple[Any, Callable[[], None]]:
    """A low-level file id: the file opened natively, or a byte window of it (a stored zip member)
    through FileWindow. Returns (file id, close)."""
    from kerasguard.formats.blob import FileWindow

    path = str(request["path"])
    size = request.get("size")
    if size is None:
        fapl = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
        fapl.set_fclose_degree(h5py.h5f.CLOSE_STRONG)
        fid = h5py.h5f.open(path.encode("utf-8", "surrogateescape"), h5py.h5f.ACC_RDONLY, fapl=fapl)
        return fid, fid.close
    window = io.BufferedReader(FileWindow(Path(path), int(request.get("offset", 0)), int(size)), 64 * 1024)
    try:
        f = h5py.File(window, "r", locking=False)
    except BaseException:
        window.close()
        raise

    def close() -> None:
        try:
            f.close()
        finally:
            window.close()

    return f.id, close


def handle(h5py: Any, request: dict[str, Any]) -> dict[str, Any]:
    """Answer one request. Errors become ``{"ok": false, "kind": ...}``; the worker lives on."""
    if request.get("op") != "read":
        return {"ok": False, "kind": "corrupt", "message": f"unknown op {request.get('op')!r}"}
    try:
        arm_cpu_limit(int(request.get("cpu_seconds", 60)))
    except (ValueError, OverflowError, OSError) as exc:
        return {"ok": False, "kind": "corrupt", "message": f"bad cpu_seconds: {exc}"}
    try:
        fid, close = _open(h5py, request)
    except MemoryError:
        return {"ok": False, "kind": "limit", "message": "MemoryError while opening the file"}
    except Exception as exc:
        return {"ok": False, "kind": "corrupt", "message": clip(f"not a readable HDF5 file: {exc}", 300)}
    try:
        walker = Walker(
            h5py,
            fid,
            int(request["max_objects"]),
            int(request["max_json_bytes"]),
            int(request["max_description_bytes"]),
        )
        return walker.run()
    except MemoryError:
        return {"ok": False, "kind": "limit", "message": "MemoryError while reading metadata"}
    except Exception as exc:
        return {"ok": False, "kind": "corrupt", "message": clip(f"{type(exc).__name__}: {exc}", 300)}
    finally:
        with contextlib.suppress(Exception):  # nothing useful to add once the answer is built
            close()


def _send(out: IO[bytes], message: dict[str, Any]) -> None:
    out.write(json.dumps(message, ensure_ascii=True, separators=(",", ":")).encode("ascii") + b"\n")
    out.flush()


def serve(h5py: Any, inp: IO[bytes], out: IO[bytes]) -> None:
    """One response line per request line, until stdin closes."""
    for line in inp:
        try:
            request = json.loads(line)
            if not isinstance(request, dict):
                raise ValueError("request is not an object")
        except ValueError as exc:
            _send(out, {"ok": False, "kind": "corrupt", "message": f"bad request: {exc}"})
            continue
        try:
            response = handle(h5py, request)
        except MemoryError:
            response = {"ok": False, "kind": "limit", "message": "MemoryError"}
        _send(out, response)


def main(config_json: str) -> None:
    """Entry point of the child process (see child_client for how it is started)."""
    config = json.loads(config_json)
    die_with_parent(int(config["parent_pid"]))
    apply_limits(int(config["memory_mb"]), int(config["max_open_files"]))
    # Protocol goes to a private copy of stdout; anything a library prints lands on stderr instead.
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    faulthandler.enable()
    try:
        import h5py
    except MemoryError:
        _send(out, {"hello": False, "kind": "limit", "message": "MemoryError importing h5py"})
        raise SystemExit(3) from None
    except ImportError as exc:
        _send(out, {"hello": False, "kind": "unsupported", "message": f"cannot import h5py: {exc}"})
        raise SystemExit(3) from None
    _forbid_new_processes()
    _send(
        out,
        {
            "hello": True,
            "protocol": PROTOCOL,
            "pid": os.getpid(),
            "h5py": h5py.version.version,
            "hdf5": h5py.version.hdf5_version,
            "vm_peak_kib": vm_peak_kib(),
        },
    )
    serve(h5py, sys.stdin.buffer, out)
