"""Route every blob to the reader for what it really is, recursively, with a depth limit.

``open_artifact`` is the entry point for a path; readers call ``read_blob`` for what they find inside.
"""

from __future__ import annotations

import os
from pathlib import Path

from kerasguard.findings import Location
from kerasguard.formats import (
    config_payloads,
    json_strict,
    keras_dir,
    sharded,
    yaml_text,
)
from kerasguard.formats.artifact import Artifact, Member
from kerasguard.formats.blob import Blob
from kerasguard.formats.context import ReadContext
from kerasguard.formats.hdf5 import reader as hdf5
from kerasguard.formats.pickle import ops as pickle_ops
from kerasguard.formats.savedmodel import reader as savedmodel
from kerasguard.formats.sniff import HDF5_MAGIC, sniff
from kerasguard.formats.zip import archive as keras_zip

SNIFF_BYTES = 4096


def read_blob(blob: Blob, art: Artifact, ctx: ReadContext, depth: int, role: str | None = None) -> str:
    """Read ``blob`` as whatever it is; returns the sniffed kind. Never raises on bad bytes."""
    try:
        head = blob.head(SNIFF_BYTES)
    except OSError as exc:
        art.problem(blob.location, "io", f"cannot read: {exc.strerror or exc}")
        return "error"
    kind = sniff(head, blob.name)
    art.members.append(Member(blob.location, blob.name, blob.size, kind))
    if depth > ctx.limits.max_nesting and kind in ("zip", "hdf5", "pickle", "npy", "json"):
        art.problem(
            blob.location,
            "limit",
            f"nested {kind} at depth {depth} exceeds max_nesting={ctx.limits.max_nesting}",
        )
        return kind
    if kind == "zip":
        keras_zip.read_zip(blob, art, ctx, depth, read_blob)
        if any(head[o : o + 8] == HDF5_MAGIC for o in (512, 1024, 2048)):
            hdf5.read_hdf5(blob, art, ctx, role or "hdf5")  # h5py skips a user block: a zip/HDF5 polyglot
    elif kind == "hdf5":
        hdf5.read_hdf5(blob, art, ctx, role or "hdf5")
    elif kind == "pickle":
        pickle_ops.read_pickle(blob, art, ctx)
    elif kind == "npy":
        from kerasguard.formats import npz

        npz.read_npy(blob, art, ctx)
    elif kind == "json":
        json_strict.read_json(blob, art, ctx, role or "json")
    elif kind == "yaml":
        yaml_text.read_yaml(blob, art, ctx)
    elif kind == "protobuf":
        savedmodel.read_graph_blob(blob, art, ctx)
    if kind not in ("zip", "empty") and depth <= ctx.limits.max_nesting and keras_zip.has_trailing_zip(blob):
        # zipfile finds an archive by its end, so Keras opens a .keras that only ends like a zip:
        # read that personality of a polyglot too.
        keras_zip.read_zip(blob, art, ctx, depth, read_blob)
        if kind == "unknown":
            kind = "zip"
    return kind


def artifact_format(path: Path) -> str | None:
    """The artifact format of a directory, or None when it is just a folder to walk."""
    if (path / "saved_model.pb").is_file() or (path / "saved_model.pbtxt").is_file():
        return "savedmodel"
    if (path / "config.json").is_file():
        return "keras_dir"
    return None


def open_artifact(path: Path, ctx: ReadContext, display: str | None = None) -> Artifact:
    """Read one artifact (a model file or a model directory) into an :class:`Artifact`."""
    art = _read_artifact(path, ctx, display)
    config_payloads.extract_payloads(art, ctx, read_blob)
    return art


def _read_artifact(path: Path, ctx: ReadContext, display: str | None) -> Artifact:
    shown = display or str(path)
    loc = Location(shown)
    art = Artifact(path=shown, format="unknown", location=loc)
    try:
        if path.is_dir():
            fmt = artifact_format(path)
            art.format = fmt or "directory"
            if fmt == "savedmodel":
                savedmodel.read_savedmodel(path, art, ctx, read_blob)
            elif fmt == "keras_dir":
                keras_dir.read_keras_dir(path, art, ctx, read_blob)
            else:
                art.problem(loc, "unknown_format", "directory is neither a Keras nor a SavedModel")
            return art
        st = path.stat()
        art.size = st.st_size
        if not path.is_file():
            art.problem(loc, "unknown_format", "not a regular file")
            return art
        if not os.access(path, os.R_OK):
            art.problem(loc, "io", "file is not readable")
            return art
        if path.name.lower().endswith(".weights.json"):
            art.format = "sharded_weights"
            sharded.read_weights_index(path, art, ctx, read_blob)
            return art
        blob = Blob.from_file(path, loc)
        role = _top_level_role(path.name)
        kind = read_blob(blob, art, ctx, depth=0, role=role)
        art.format = _format_name(kind, path.name, art)
        if kind == "empty":
            art.problem(loc, "corrupt", "file is empty (0 bytes)")
        elif kind == "unknown":
            art.problem(loc, "unknown_format", "unrecognised format: not a model kerasguard reads")
    except OSError as exc:
        art.problem(loc, "io", f"cannot read: {exc.strerror or exc}")
    return art


def _top_level_role(name: str) -> str | None:
    lower = name.lower()
    if lower.endswith(".weights.h5"):
        return "keras_weights"
    return None


def _format_name(kind: str, name: str, art: Artifact) -> str:
    lower = name.lower()
    if kind == "zip":
        if art.zips and art.zips[0].kind == "npz":
            return "npz"
        return "keras" if lower.endswith(".keras") or (art.zips and art.zips[0].kind == "keras") else "zip"
    if kind == "hdf5":
        return art.h5_files[0].role if art.h5_files else "hdf5"
    return kind
