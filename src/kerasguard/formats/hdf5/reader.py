"""HDF5 metadata (links, storage, shapes, attributes): read in pure Python or in a resource-limited child.

Files in the plain layout h5py writes by default (what Keras saves) are described by
:mod:`~kerasguard.formats.hdf5.inprocess` in-process; every other file goes to the h5py child
(:mod:`~kerasguard.formats.hdf5.child_client` runs it, :mod:`~kerasguard.formats.hdf5.child` is the
child). Both give the same answer, and this module decides what it means for the :class:`Artifact`.
The scanning process never imports h5py and never reads dataset data, so the cost of a file follows its
metadata, not its weights.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from kerasguard.findings import Location
from kerasguard.formats.artifact import Artifact, H5File, H5Object
from kerasguard.formats.blob import Blob
from kerasguard.formats.context import ReadContext
from kerasguard.formats.hdf5.child_client import (
    MAX_DESCRIPTION_BYTES,
    POOL,
    H5WorkerProcess,
    ProtocolError,
    WalkResult,
    WorkerFailure,
    parse_response,
    trusted_answer,
)
from kerasguard.formats.hdf5.inprocess import read_plain
from kerasguard.formats.hdf5.values import MAX_GROUP_DEPTH
from kerasguard.formats.json_strict import parse_json_bytes
from kerasguard.policy import Limits

WORKER_KEY = "h5"
MAX_CPU_SECONDS = 24 * 3600  # RLIMIT_CPU backstop; the wall-clock deadline is the real bound
JSON_ROLES = {"model_config": "model_config", "training_config": "training_config"}
# libhdf5 reports a failed malloc as an error on the object, not as a MemoryError.
_ALLOCATION_ERRORS = (
    "memory allocation failed",
    "H5MM_",
    "out of memory",
    "MemoryError",
    "unable to allocate",
)


def attr_location(location: Location, name: str) -> Location:
    """Where a root attribute is reported: ``file.h5:/@model_config``."""
    return location.child(h5path=f"/@{name}")


@dataclass(frozen=True)
class _Lease:
    """A pooled worker lent to one ReadContext; closing the context gives it back."""

    worker: H5WorkerProcess

    def close(self) -> None:
        POOL.release(self.worker)


def worker_for(ctx: ReadContext) -> H5WorkerProcess:
    """The context's worker, taken from the pool on first use (it starts its child lazily)."""
    lease = ctx.workers.get(WORKER_KEY)
    if not isinstance(lease, _Lease):
        lease = _Lease(POOL.acquire(ctx.limits.parser_memory_mb))
        ctx.workers[WORKER_KEY] = lease
    return lease.worker


@contextmanager
def _on_disk(blob: Blob) -> Iterator[tuple[str, int, int | None]]:
    """(path, offset, size) the child can open; in-memory bytes go to a private temp file first.

    ``size`` is None for a whole file on disk, which the child opens natively (faster than a window).
    """
    if blob.data is not None:
        fd, name = tempfile.mkstemp(prefix="kerasguard-", suffix=".h5")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(blob.data)
            yield name, 0, None
        finally:
            os.unlink(name)
        return
    assert blob.path is not None
    path = str(blob.path.absolute())
    whole = blob.offset == 0 and blob.size == os.stat(path).st_size
    yield path, blob.offset, None if whole else blob.size


def max_answer_bytes(limits: Limits) -> int:
    """The largest answer accepted: object descriptions (the child's size estimate can be off by up
    to 3x for escaped text) plus two base64 JSON attributes."""
    return 3 * MAX_DESCRIPTION_BYTES + 3 * limits.max_json_bytes + (1 << 20)


def _read_plain(blob: Blob, limits: Limits) -> WalkResult | WorkerFailure | None:
    """The pure-Python reader's answer (a walk, or a file libhdf5 would refuse to open), in the form
    :func:`parse_answer` gives the child's (``trusted_answer``: this process built it, so it is not
    re-validated as an untrusted child's is); None sends the file to the child."""
    answer = read_plain(blob, limits.h5_max_objects, limits.max_json_bytes, MAX_DESCRIPTION_BYTES)
    if answer is None:
        return None
    try:
        result = trusted_answer(answer)
    except (KeyError, TypeError, ValueError):  # a reader bug must not lose the file: the child reads it
        return None
    if isinstance(result, WorkerFailure) and result.kind != "corrupt":
        return None  # the reader only ever refuses a file as corrupt; anything else is the child's call
    return result


def read_hdf5(blob: Blob, art: Artifact, ctx: ReadContext, role: str) -> None:
    """Describe an HDF5 blob into ``art.h5_files``; every failure becomes a problem, never a raise."""
    loc = blob.location
    timeout = ctx.remaining()
    if timeout <= 0:
        art.problem(
            loc, "timeout", f"no time left (file_timeout_s={ctx.limits.file_timeout_s}) to read HDF5 metadata"
        )
        return
    plain = _read_plain(blob, ctx.limits)
    if isinstance(plain, WorkerFailure):
        art.problem(loc, plain.kind, plain.message)
        return
    if plain is not None:
        record(plain, loc, art, ctx.limits, role)
        return
    worker = worker_for(ctx)
    try:
        with _on_disk(blob) as (path, offset, size):
            request: dict[str, Any] = {
                "op": "read",
                "path": path,
                "offset": offset,
                "size": size,
                "max_objects": ctx.limits.h5_max_objects,
                "max_json_bytes": ctx.limits.max_json_bytes,
                "max_description_bytes": MAX_DESCRIPTION_BYTES,
                "cpu_seconds": min(math.ceil(timeout), MAX_CPU_SECONDS) + 1,
            }
            answer = worker.request(request, timeout, max_answer_bytes(ctx.limits))
    except OSError as exc:
        art.problem(loc, "io", f"cannot prepare HDF5 for reading: {exc.strerror or exc}")
        return
    if isinstance(answer, WorkerFailure):
        art.problem(loc, answer.kind, answer.message)
        return
    try:
        result = parse_response(answer, ctx.limits.h5_max_objects)
    except ProtocolError as exc:
        worker.kill()
        art.problem(loc, "crash", f"HDF5 worker sent an invalid answer: {exc}")
        return
    if isinstance(result, WorkerFailure):
        if result.kind == "limit":
            worker.kill()  # a fresh heap for the next file
        art.problem(loc, result.kind, result.message)
        return
    record(result, loc, art, ctx.limits, role)
    if any(is_allocation_error(e.message) for e in result.errors):
        worker.kill()


def is_allocation_error(message: str) -> bool:
    return any(marker in message for marker in _ALLOCATION_ERRORS)


def record(result: WalkResult, loc: Location, art: Artifact, limits: Limits, role: str) -> H5File:
    """Turn a worker answer into an :class:`H5File`, JSON documents and problems."""
    h5 = H5File(
        location=loc,
        role=detect_role(result.root_attrs, result.objects) if role == "hdf5" else role,
        objects=list(result.objects),
        root_attrs=dict(result.root_attrs),
    )
    art.h5_files.append(h5)
    for err in result.errors:
        where, message = loc.child(h5path=err.path), f"libhdf5 could not read this object: {err.message}"
        if is_allocation_error(err.message):
            art.problem(where, "limit", message)
        else:
            art.problem(where, "corrupt", message)
    if result.truncated == "objects":
        art.problem(
            loc, "limit", f"more than h5_max_objects={limits.h5_max_objects} objects; the rest was not read"
        )
    elif result.truncated == "depth":
        art.problem(
            loc,
            "limit",
            f"groups nested deeper than {MAX_GROUP_DEPTH} levels; the rest was not read "
            "(Keras never nests this deep; such nesting only makes readers slow)",
        )
    elif result.truncated == "bytes":
        art.problem(
            loc, "limit", f"object descriptions exceed {MAX_DESCRIPTION_BYTES} bytes; the rest was not read"
        )
    for name, json_role in JSON_ROLES.items():
        attr = result.json_attrs.get(name)
        if attr is None:
            continue
        where = attr_location(loc, name)
        if attr.data is None:
            art.problem(
                where, "limit", f"{name} of {attr.size} bytes exceeds max_json_bytes={limits.max_json_bytes}"
            )
        else:
            parse_json_bytes(attr.data, where, json_role, limits, art)
    return h5


def detect_role(root_attrs: dict[str, str], objects: tuple[H5Object, ...] | list[H5Object]) -> str:
    """What the file is to Keras, from its layout (the caller's role wins when it knows better)."""
    if "model_config" in root_attrs or "model_config0" in root_attrs:
        return "legacy_model"
    if "layer_names" in root_attrs or "layer_names0" in root_attrs:
        return "legacy_weights"
    if any(o.path in ("/layers", "/vars") and o.kind == "group" for o in objects):
        return "keras_weights"
    return "hdf5"
