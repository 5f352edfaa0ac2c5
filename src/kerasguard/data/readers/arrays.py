"""NumPy ``.npy`` and ``.npz`` datasets: headers judged first, never unpickled.

Each array's header (magic, dtype, shape) is read with numpy's own literal parser and checked before
a byte of data is read: object and structured dtypes are refused (an object array is a pickle), and
the declared size must fit both the file and kerasguard's limit, so a 40-byte member that declares a
terabyte allocates nothing. Data is then read with ``allow_pickle=False``.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import IO, Any

import numpy as np

from kerasguard.data.dataset import MAX_VALUES, Dataset, from_arrays
from kerasguard.errors import DataError

X_KEYS = ("x", "inputs", "features", "data", "x_train", "images")
Y_KEYS = ("y", "labels", "label", "targets", "target", "y_train")
_MAX_HEADER = 10_000


def _header(fp: IO[bytes], name: str) -> tuple[tuple[int, ...], np.dtype[Any], int]:
    """(shape, dtype, header length) of an .npy stream; refuse what is not a plain numeric array."""
    fmt = np.lib.format
    try:
        version = fmt.read_magic(fp)
        if version == (1, 0):
            shape, _fortran, dtype = fmt.read_array_header_1_0(fp, max_header_size=_MAX_HEADER)
        elif version == (2, 0):
            shape, _fortran, dtype = fmt.read_array_header_2_0(fp, max_header_size=_MAX_HEADER)
        else:
            raise DataError(f"{name}: .npy format version {version} is not supported (1.0 and 2.0 are)")
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(f"{name}: not a valid .npy array: {exc}") from None
    if dtype.hasobject:
        raise DataError(
            f"{name}: object dtype ({dtype}): an object array is a pickle; refused, never unpickled",
            hint="save the data as a numeric array (numpy.save with a float or int dtype)",
        )
    if dtype.kind not in "biuf" or dtype.fields is not None:
        raise DataError(f"{name}: dtype {dtype} is not a plain numeric type")
    count = 1
    for dim in shape:
        count *= int(dim)
    if count > MAX_VALUES:
        raise DataError(
            f"{name}: declares {shape} = {count} values, more than kerasguard loads ({MAX_VALUES})"
        )
    return tuple(int(d) for d in shape), dtype, fp.tell()


def read_npy(path: Path) -> Dataset:
    """An .npy file of samples (first axis) without labels."""
    name = str(path)
    try:
        with path.open("rb") as fp:
            shape, dtype, offset = _header(fp, name)
        size = path.stat().st_size
    except OSError as exc:
        raise DataError(f"{name}: cannot read: {exc.strerror or exc}") from None
    count = 1
    for dim in shape:
        count *= dim
    if size < offset + count * dtype.itemsize:
        raise DataError(f"{name}: truncated: header declares {shape} {dtype} but the file is {size} bytes")
    array = np.load(path, mmap_mode="r", allow_pickle=False)
    dataset = from_arrays(array, source=name)
    dataset.kind = "npy"
    return dataset


def _pick(
    keys: list[str], wanted: str | None, candidates: tuple[str, ...], what: str, name: str
) -> str | None:
    if wanted is not None:
        if wanted not in keys:
            raise DataError(f"{name}: no array named {wanted!r} (arrays: {', '.join(keys[:20])})")
        return wanted
    lowered = {k.lower(): k for k in keys}
    for c in candidates:
        if c in lowered:
            return lowered[c]
    if what == "inputs" and len(keys) == 1:
        return keys[0]
    return None


def read_npz(path: Path, *, x_key: str | None = None, y_key: str | None = None) -> Dataset:
    """An .npz archive with an inputs array (x) and optionally a labels array (y)."""
    name = str(path)
    try:
        archive = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as exc:
        raise DataError(f"{name}: not a readable .npz (zip) archive: {exc}") from None
    with archive:
        members = {i.filename[:-4]: i for i in archive.infolist() if i.filename.endswith(".npy")}
        keys = sorted(members)
        xk = _pick(keys, x_key, X_KEYS, "inputs", name)
        if xk is None:
            raise DataError(
                f"{name}: no inputs array (looked for {', '.join(X_KEYS)}; arrays: {', '.join(keys[:20])})",
                hint="name the arrays x and y, or pass --x-key / --y-key",
            )
        yk = _pick(keys, y_key, Y_KEYS, "labels", name)
        arrays: dict[str, Any] = {}
        for key in (k for k in (xk, yk) if k is not None):
            info = members[key]
            label = f"{name}!/{info.filename}"
            try:
                with archive.open(info) as fp:
                    shape, dtype, offset = _header(fp, label)
                    count = 1
                    for dim in shape:
                        count *= dim
                    if info.file_size < offset + count * dtype.itemsize:
                        raise DataError(f"{label}: truncated: header declares {shape} {dtype}")
                with archive.open(info) as fp:
                    arrays[key] = np.lib.format.read_array(fp, allow_pickle=False)
            except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
                raise DataError(f"{label}: cannot read: {exc}") from None
    dataset = from_arrays(arrays[xk], arrays[yk] if yk is not None else None, source=name)
    dataset.kind = "npz"
    return dataset
