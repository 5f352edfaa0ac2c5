"""Unzipped Keras model directories (config.json, metadata.json, model.weights.h5|npz, assets/).

Keras loads such a directory the way it loads a .keras archive, so each file gets the role its name
gives it in an archive. The walk uses lstat only: symlinks are recorded (with their target) and never
followed, special files (FIFOs, devices) are never opened, and the number of entries is bounded.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from kerasguard.formats.artifact import Artifact, DirEntry, DirListing
from kerasguard.formats.blob import Blob
from kerasguard.formats.context import ReadBlob, ReadContext
from kerasguard.formats.zip.archive import KERAS_ROLES, display_name

MAX_DIR_DEPTH = 32
MAX_LINK_TEXT = 4096


def read_keras_dir(path: Path, art: Artifact, ctx: ReadContext, read_blob: ReadBlob) -> None:
    """List the directory without following links, then read every regular file by its role."""
    listing = DirListing(location=art.location, kind="keras_dir")
    art.dirs.append(listing)
    files = _walk(path, listing, art, ctx)
    art.size = sum(size for _, _, size in files)
    for rel, file, size in files:
        if ctx.expired():
            art.problem(art.location, "timeout", "file_timeout_s reached: remaining files not analysed")
            return
        loc = art.location.child(member=display_name(rel))
        blob = Blob(location=loc, name=rel, size=size, path=file)
        read_blob(blob, art, ctx, 1, KERAS_ROLES.get(rel))


def _walk(root: Path, listing: DirListing, art: Artifact, ctx: ReadContext) -> list[tuple[str, Path, int]]:
    """Entries of ``root`` in sorted order; returns the regular files as (relative name, path, size)."""
    limit = ctx.limits.max_members
    files: list[tuple[str, Path, int]] = []
    stack: list[tuple[Path, str, int]] = [(root, "", 0)]
    while stack:
        folder, prefix, level = stack.pop()
        try:
            with os.scandir(folder) as it:
                children = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            art.problem(
                art.location.child(member=display_name(prefix.rstrip("/")) if prefix else None),
                "io",
                f"cannot list directory: {exc.strerror or exc}",
            )
            continue
        subdirs: list[tuple[Path, str, int]] = []
        for entry in children:
            if len(listing.entries) >= limit:
                listing.truncated = True
                art.problem(
                    art.location,
                    "limit",
                    f"directory holds more than max_members={limit} entries; rest not read",
                )
                return files
            rel = prefix + entry.name
            record = _entry(entry, rel, art)
            listing.entries.append(record)
            if record.kind == "dir":
                if level + 1 > MAX_DIR_DEPTH:
                    art.problem(
                        art.location.child(member=display_name(rel)),
                        "limit",
                        f"directory nesting deeper than {MAX_DIR_DEPTH} levels; not read",
                    )
                else:
                    subdirs.append((Path(entry.path), rel + "/", level + 1))
            elif record.kind == "file":
                files.append((rel, Path(entry.path), record.size))
        stack.extend(reversed(subdirs))
    return files


def _entry(entry: os.DirEntry[str], rel: str, art: Artifact) -> DirEntry:
    try:
        st = entry.stat(follow_symlinks=False)
    except OSError as exc:
        art.problem(art.location.child(member=display_name(rel)), "io", f"cannot stat: {exc.strerror or exc}")
        return DirEntry(rel, "other")
    if stat.S_ISLNK(st.st_mode):
        try:
            target = os.readlink(entry.path)[:MAX_LINK_TEXT]
        except OSError:
            target = "?"
        return DirEntry(rel, "symlink", 0, target)
    if stat.S_ISDIR(st.st_mode):
        return DirEntry(rel, "dir")
    if stat.S_ISREG(st.st_mode):
        return DirEntry(rel, "file", st.st_size)
    return DirEntry(rel, "other", st.st_size)
