"""NumPy ``.npy`` and ``.npz`` datasets: headers judged first, never unpickled.

Each array's header (magic, dtype, shape) is read with numpy's own literal parser and checked before
a byte of data is read: object and structured dtypes are refused (an object array is a pickle), and
the declared size must fit both the file and kerasguard's limit, so a 40-byte member that declares a
terabyte allocates nothing. Data is then read with ``allow_pickle=False``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kerasguard import npzfile
from kerasguard.data.dataset import MAX_VALUES, Dataset, from_arrays
from kerasguard.errors import DataError

X_KEYS = ("x", "inputs", "features", "data", "x_train", "images")
Y_KEYS = ("y", "labels", "label", "targets", "target", "y_train")


def read_npy(path: Path) -> Dataset:
    """An .npy file of samples (first axis) without labels."""
    name = str(path)
    try:
        with path.open("rb") as fp:
            shape, dtype, offset = npzfile.npy_header(fp, name, DataError, max_values=MAX_VALUES)
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
    chosen: dict[str, str | None] = {}

    def pick(keys: list[str]) -> list[str]:
        xk = _pick(keys, x_key, X_KEYS, "inputs", name)
        if xk is None:
            raise DataError(
                f"{name}: no inputs array (looked for {', '.join(X_KEYS)}; arrays: {', '.join(keys[:20])})",
                hint="name the arrays x and y, or pass --x-key / --y-key",
            )
        chosen["x"], chosen["y"] = xk, _pick(keys, y_key, Y_KEYS, "labels", name)
        return [k for k in (chosen["x"], chosen["y"]) if k is not None]

    arrays = npzfile.read_npz(path, pick, DataError, limit=MAX_VALUES * 8, max_values=MAX_VALUES)
    yk = chosen["y"]
    dataset = from_arrays(arrays[str(chosen["x"])], arrays[yk] if yk is not None else None, source=name)
    dataset.kind = "npz"
    return dataset
