"""The in-memory form every reader produces: numeric feature columns, optional integer labels.

Columns are kept one array per feature (column-major), so a 1M x 50 table costs one float64 copy of
its numeric values and the checks work column by column. Findings met while reading (an unreadable
image, a mixed-type column) travel with the dataset as ``problems``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from kerasguard.errors import DataError
from kerasguard.findings import Finding

FloatArray = npt.NDArray[np.float64]
Array = npt.NDArray[Any]  # model inputs (float32 for Keras)
IntArray = npt.NDArray[np.int64]

#: Upper bound on the numeric values a dataset may hold in memory (2 GiB of float64).
MAX_VALUES = 1 << 28


@dataclass
class Dataset:
    """Numeric features (``columns``), integer labels (or None), and what reading found."""

    source: str
    kind: str
    names: list[str]
    columns: list[FloatArray]
    labels: IntArray | None = None
    class_names: tuple[str, ...] | None = None
    non_numeric: dict[str, str] = field(default_factory=dict)
    problems: list[Finding] = field(default_factory=list)
    sample_names: list[str] | None = None
    matrix_shape: tuple[int, ...] | None = None  # per-sample shape of array and image inputs
    _matrix: FloatArray | None = None

    @property
    def rows(self) -> int:
        if self.columns:
            return len(self.columns[0])
        return 0 if self.labels is None else len(self.labels)

    def matrix(self) -> FloatArray:
        """The features as one (rows, features) array (float64); built once from the columns."""
        if self._matrix is None:
            if not self.columns:
                raise DataError(f"{self.source}: no numeric features")
            self._matrix = np.stack(self.columns, axis=1)
        return self._matrix

    def inputs(self) -> FloatArray:
        """The features shaped as the model's input (images and N-d arrays keep their shape)."""
        m = self.matrix()
        if self.matrix_shape:
            return m.reshape((m.shape[0], *self.matrix_shape))
        return m


def check_size(source: str, rows: int, per_row: int) -> None:
    """Refuse before allocating when the data would exceed MAX_VALUES numeric values."""
    if rows * max(per_row, 1) > MAX_VALUES:
        raise DataError(
            f"{source}: {rows} x {per_row} values is more than kerasguard loads ({MAX_VALUES})",
            hint="check a sample of the data, or split it into shards",
        )


def labels_from(source: str, values: Any) -> tuple[IntArray, tuple[str, ...] | None]:
    """Integer labels from an array: integers (or integral floats) kept, anything else refused."""
    arr = np.asarray(values)
    if arr.ndim == 2 and arr.shape[1] > 1 and arr.dtype.kind in "biuf":
        # one-hot (or probability) rows: the argmax is the label
        return arr.argmax(axis=1).astype(np.int64), None
    if arr.ndim > 1:
        arr = arr.reshape(len(arr), -1)
        if arr.shape[1] != 1:
            raise DataError(f"{source}: labels must be one value per sample, not shape {arr.shape}")
        arr = arr[:, 0]
    if arr.dtype.kind in "biu":
        return arr.astype(np.int64), None
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise DataError(f"{source}: labels are not whole numbers (NaN, infinite or fractional values)")
        return arr.astype(np.int64), None
    raise DataError(f"{source}: labels of dtype {arr.dtype} are not class indices")


def from_arrays(x: Any, y: Any = None, *, source: str = "<arrays>") -> Dataset:
    """A Dataset from in-memory arrays (the Python API); ragged or object input is refused."""
    try:
        arr = np.asarray(x)
    except ValueError as exc:
        raise DataError(f"{source}: inputs are ragged (rows of different lengths): {exc}") from None
    if arr.dtype.hasobject or arr.dtype.kind not in "biuf":
        raise DataError(
            f"{source}: inputs of dtype {arr.dtype} are not numeric",
            hint="ragged rows or Python objects are refused; pass a numeric array",
        )
    if arr.ndim == 0 or len(arr) == 0:
        raise DataError(f"{source}: no samples")
    shape = tuple(int(s) for s in arr.shape[1:])
    flat = arr.reshape(len(arr), -1)
    check_size(source, flat.shape[0], flat.shape[1])
    matrix = np.asarray(flat, dtype=np.float64)
    labels = None
    if y is not None:
        try:
            labels, _ = labels_from(source, y)
        except ValueError as exc:
            raise DataError(f"{source}: labels are ragged: {exc}") from None
        if len(labels) != len(matrix):
            raise DataError(f"{source}: {len(matrix)} samples but {len(labels)} labels")
    return Dataset(
        source=source,
        kind="arrays",
        names=[f"f{i}" for i in range(matrix.shape[1])],
        columns=[matrix[:, j] for j in range(matrix.shape[1])],
        labels=labels,
        matrix_shape=shape if len(shape) > 1 else None,
        _matrix=matrix,
    )
