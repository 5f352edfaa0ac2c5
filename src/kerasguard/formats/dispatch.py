"""Route every blob to the reader for what it really is, recursively, with a depth limit.

``open_artifact`` is the entry point for a path; readers call ``read_blob`` for what they find inside.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import assert_never

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
from kerasguard.formats.sniff import BLOB_KINDS, HDF5_MAGIC, BlobKind, sniff
from kerasguard.formats.zip import archive as zip_archive

SNIFF_BYTES = 4096


# A reader for one sniffed kind: (blob, its first SNIFF_BYTES, artifact, context, depth, role).
Reader = Callable[[Blob, bytes, Artifact, ReadContext, int, "str | None"], None]


def _read_zip(blob: Blob, head: bytes, art: Artifact, ctx: ReadContext, depth: int, role: str | None) -> None:
    zip_archive.read_zip(blob, art, ctx, depth, read_blob)
    if any(head[o : o + 8] == HDF5_MAGIC for o in (512, 1024, 2048)):
        hdf5.read_hdf5(blob, art, ctx, role or "hdf5")  # h5py skips a user block: a zip/HDF5 polyglot


def _read_hdf5(
    blob: Blob, head: bytes, art: Artifact, ctx: ReadContext, depth: int, role: str | None
) -> None:
    hdf5.read_hdf5(blob, art, ctx, role or "hdf5")


def _read_pickle(
    blob: Blob, head: bytes, art: Artifact, ctx: ReadContext, depth: int, role: str | None
) -> None:
    pickle_ops.read_pickle(blob, art, ctx)


def _read_npy(blob: Blob, head: bytes, art: Artifact, ctx: ReadContext, depth: int, role: str | None) -> None:
    from kerasguard.formats import npz

    npz.read_npy(blob, art, ctx)


def _read_json(
    blob: Blob, head: bytes, art: Artifact, ctx: ReadContext, depth: int, role: str | None
) -> None:
    json_strict.read_json(blob, art, ctx, role or "json")


def _read_yaml(
    blob: Blob, head: bytes, art: Artifact, ctx: ReadContext, depth: int, role: str | None
) -> None:
    yaml_text.read_yaml(blob, art, ctx)


def _read_protobuf(
    blob: Blob, head: bytes, art: Artifact, ctx: ReadContext, depth: int, role: str | None
) -> None:
    savedmodel.read_graph_blob(blob, art, ctx)


def _nothing_to_read(
    blob: Blob, head: bytes, art: Artifact, ctx: ReadContext, depth: int, role: str | None
) -> None:
    """Empty and unrecognised blobs: the caller records the problem (a top-level file) or the member
    list keeps them (inside an archive); a trailing zip is still looked for."""


def reader_for(kind: BlobKind) -> Reader:
    """The reader of one sniffed kind. mypy proves every :data:`BlobKind` is handled (``assert_never``)."""
    match kind:
        case "zip":
            return _read_zip
        case "hdf5":
            return _read_hdf5
        case "pickle":
            return _read_pickle
        case "npy":
            return _read_npy
        case "json":
            return _read_json
        case "yaml":
            return _read_yaml
        case "protobuf":
            return _read_protobuf
        case "empty" | "unknown":
            return _nothing_to_read
        case _:
            assert_never(kind)


# The reader table, built once from the complete list of kinds.
READERS: Mapping[BlobKind, Reader] = MappingProxyType({kind: reader_for(kind) for kind in BLOB_KINDS})
# Kinds whose nesting counts against max_nesting (containers and parsed documents).
_NESTING_KINDS: frozenset[BlobKind] = frozenset({"zip", "hdf5", "pickle", "npy", "json"})


def read_blob(blob: Blob, art: Artifact, ctx: ReadContext, depth: int, role: str | None = None) -> str:
    """Read ``blob`` as whatever it is; returns the sniffed kind. Never raises on bad bytes."""
    try:
        head = blob.head(SNIFF_BYTES)
    except OSError as exc:
        art.problem(blob.location, "io", f"cannot read: {exc.strerror or exc}")
        return "error"
    kind: BlobKind = sniff(head, blob.name)
    art.members.append(Member(blob.location, blob.name, blob.size, kind))
    if depth > ctx.limits.max_nesting and kind in _NESTING_KINDS:
        art.problem(
            blob.location,
            "limit",
            f"nested {kind} at depth {depth} exceeds max_nesting={ctx.limits.max_nesting}",
        )
        return kind
    READERS[kind](blob, head, art, ctx, depth, role)
    if (
        kind not in ("zip", "empty")
        and depth <= ctx.limits.max_nesting
        and zip_archive.has_trailing_zip(blob)
    ):
        # zipfile finds an archive by its end, so Keras opens a .keras that only ends like a zip:
        # read that personality of a polyglot too.
        zip_archive.read_zip(blob, art, ctx, depth, read_blob)
        if kind == "unknown":
            return "zip"
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
