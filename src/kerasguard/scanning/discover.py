"""discover(): expand the paths given to a scan into the artifacts to read (files picked by name or
magic bytes, model directories as one artifact, symlinks kept inside the tree)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from kerasguard.formats.dispatch import artifact_format
from kerasguard.formats.sniff import is_candidate_name, sniff


@dataclass(frozen=True)
class Target:
    """One artifact to scan and how to show its path."""

    path: Path
    display: str


def discover(
    paths: Iterable[str | os.PathLike[str]], *, only_models: bool = False
) -> tuple[list[Target], list[str], list[str]]:
    """Expand paths into artifacts. Returns (targets, skipped, errors).

    Directories are walked without following symlinks out of the tree; a model directory
    (Keras or SavedModel) is one artifact. Files found by walking are picked by name or magic; so are
    explicit files when ``only_models`` (a pre-commit hook passes every staged file: a model renamed
    ``model.bin`` is still picked by its magic bytes), else every explicit file is scanned.
    """
    targets: list[Target] = []
    skipped: list[str] = []
    errors: list[str] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists() and not path.is_symlink():
            errors.append(f"{path}: no such file or directory")
            continue
        if path.is_dir() and artifact_format(path) is None:
            _walk(path, targets, skipped, errors)
        elif only_models and path.is_file() and not path.is_symlink() and not _is_model_file(path):
            skipped.append(f"{path}: not a model file")
        else:
            targets.append(Target(path, str(path)))
    return targets, skipped, errors


def _walk(root: Path, targets: list[Target], skipped: list[str], errors: list[str]) -> None:
    real_root = root.resolve()

    def onerror(exc: OSError) -> None:
        errors.append(f"{exc.filename}: {exc.strerror or exc}")

    for folder, dirs, files in os.walk(root, onerror=onerror, followlinks=False):
        here = Path(folder)
        dirs.sort()
        for d in list(dirs):
            sub = here / d
            if sub.is_symlink():
                dirs.remove(d)
                skipped.append(f"{sub}: directory symlink not followed")
            elif artifact_format(sub) is not None:
                dirs.remove(d)
                targets.append(Target(sub, str(sub)))
        for name in sorted(files):
            file = here / name
            if file.is_symlink():
                try:
                    inside = file.resolve(strict=True).is_relative_to(real_root)
                except (OSError, RuntimeError):
                    inside = False
                if not inside:
                    skipped.append(f"{file}: symlink leads out of the scanned tree")
                    continue
            if _is_model_file(file):
                targets.append(Target(file, str(file)))
            else:
                skipped.append(f"{file}: not a model file")


def _is_model_file(file: Path) -> bool:
    return is_candidate_name(file.name) or _has_model_magic(file)


def _has_model_magic(file: Path) -> bool:
    try:
        with file.open("rb") as fh:
            head = fh.read(4096)
    except OSError:
        return True  # unreadable: scan it so the error is reported, not hidden
    return sniff(head, "") in ("zip", "hdf5", "pickle", "npy")
