"""Dataset readers: one module per format, one entry point that picks by path."""

from __future__ import annotations

import os
from pathlib import Path

from kerasguard.data.dataset import Dataset
from kerasguard.errors import DataError

TABLE_SUFFIXES = (".csv", ".parquet")


def open_dataset(
    path: str | os.PathLike[str],
    *,
    label: str | None = None,
    x_key: str | None = None,
    y_key: str | None = None,
) -> Dataset:
    """Read ``path`` by its kind: .npy, .npz, .csv, .parquet, or a folder of class sub-folders."""
    target = Path(path)
    try:
        is_dir = target.is_dir()
        exists = target.exists()
    except OSError as exc:
        raise DataError(f"{target}: cannot read: {exc}") from None
    if not exists:
        raise DataError(f"{target}: no such file or folder")
    if is_dir:
        from kerasguard.data.readers.images import read_image_folder

        return read_image_folder(target)
    suffix = target.suffix.lower()
    if suffix == ".npy":
        from kerasguard.data.readers.arrays import read_npy

        return read_npy(target)
    if suffix == ".npz":
        from kerasguard.data.readers.arrays import read_npz

        return read_npz(target, x_key=x_key, y_key=y_key)
    if suffix in TABLE_SUFFIXES:
        from kerasguard.data.readers.tables import read_table

        return read_table(target, label=label)
    raise DataError(
        f"{target}: unknown dataset kind {suffix or '(no suffix)'!r}",
        hint="kerasguard data reads .npy, .npz, .csv, .parquet and folders of class sub-folders",
    )
