"""Labelled data for the probes: read from ``.npz`` files without pickle, checked against the model.

Every check raises :class:`~kerasguard.errors.ProbeError` with what was wrong and what was expected, so
data that does not fit the model is an error before any computation, never a traceback or a silent result.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kerasguard import npzfile
from kerasguard.errors import ProbeError

MAX_DATA_BYTES = 4 * 1024**3  # arrays declaring more bytes than this are refused before they are read
MAX_SAMPLES = 1_000_000


@dataclass(frozen=True)
class LabelledData:
    """Inputs ``x`` (float32, one row per sample) and integer labels ``y``."""

    x: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def subset(self, index: np.ndarray) -> LabelledData:
        return LabelledData(self.x[index], self.y[index])


def read_npz(path: str | os.PathLike[str], *, what: str = "data") -> LabelledData:
    """Read ``x`` and ``y`` from a ``.npz`` file (headers checked, never unpickled); one-hot ``y`` is
    accepted."""

    def pick(keys: list[str]) -> list[str]:
        missing = [k for k in ("x", "y") if k not in keys]
        if missing:
            raise ProbeError(
                f"{what} {Path(path)} has no array {', '.join(repr(m) for m in missing)}",
                hint="save it with numpy.savez(path, x=inputs, y=labels)",
            )
        return ["x", "y"]

    arrays = npzfile.read_npz(path, pick, ProbeError, limit=MAX_DATA_BYTES, what=what)
    return as_labelled(arrays["x"], arrays["y"], what=what)


def as_labelled(x: object, y: object, *, what: str = "data") -> LabelledData:
    """Validate arrays: numeric finite ``x``, one integer label per row (or one-hot rows)."""
    xa = np.asarray(x)
    ya = np.asarray(y)
    if xa.dtype.kind not in "fiub":
        raise ProbeError(f"{what}: x must be numeric, got dtype {xa.dtype}")
    if xa.ndim < 2:
        raise ProbeError(f"{what}: x must have one row per sample (at least 2 dimensions), got {xa.shape}")
    if xa.shape[0] == 0:
        raise ProbeError(f"{what}: x has no samples")
    if xa.shape[0] > MAX_SAMPLES:
        raise ProbeError(f"{what}: {xa.shape[0]} samples, above the limit of {MAX_SAMPLES}")
    xf = xa.astype(np.float32, copy=False)
    bad = ~np.isfinite(xf)
    if bad.any():
        rows = np.unique(np.nonzero(bad.reshape(len(xf), -1))[0])
        raise ProbeError(
            f"{what}: x holds NaN or infinite values in {len(rows)} sample(s) (first: row {int(rows[0])})"
        )
    if ya.ndim == 2 and ya.shape[1] > 1:
        if ya.dtype.kind not in "fiub" or not np.all(np.isfinite(ya)):
            raise ProbeError(f"{what}: one-hot y must be finite numbers")
        ya = np.argmax(ya, axis=1)
    elif ya.ndim == 2 and ya.shape[1] == 1:
        ya = ya[:, 0]
    if ya.ndim != 1 or ya.shape[0] != xa.shape[0]:
        raise ProbeError(
            f"{what}: y must hold one label per sample: x has {xa.shape[0]}, y has shape {ya.shape}"
        )
    if ya.dtype.kind == "f":
        if not np.all(np.isfinite(ya)) or not np.all(ya == np.round(ya)):
            raise ProbeError(f"{what}: labels in y must be whole numbers")
    elif ya.dtype.kind not in "iub":
        raise ProbeError(f"{what}: labels in y must be integers, got dtype {ya.dtype}")
    return LabelledData(np.ascontiguousarray(xf), ya.astype(np.int64))


def check_fits(data: LabelledData, input_shape: Sequence[int | None], n_classes: int, *, what: str) -> None:
    """The samples have the model's input shape and the labels name its output classes."""
    want = tuple(input_shape)
    got = tuple(data.x.shape[1:])
    fits = len(want) == len(got) and all(w is None or w == g for w, g in zip(want, got, strict=True))
    if not fits:
        shown = "(" + ", ".join("None" if d is None else str(d) for d in want) + ")"
        raise ProbeError(f"{what}: samples have shape {got}, the model expects {shown}")
    lo, hi = int(data.y.min()), int(data.y.max())
    if lo < 0 or hi >= n_classes:
        raise ProbeError(
            f"{what}: labels range from {lo} to {hi}, the model has classes 0 to {n_classes - 1}"
        )


def check_per_class(data: LabelledData, n_classes: int, minimum: int, *, what: str) -> None:
    """Every class has at least ``minimum`` samples (the trigger search and STRIP need each class)."""
    counts = np.bincount(data.y, minlength=n_classes)
    short = [c for c in range(n_classes) if counts[c] < minimum]
    if short:
        listed = ", ".join(f"class {c}: {int(counts[c])}" for c in short[:10])
        raise ProbeError(
            f"{what}: too few clean samples per class (minimum {minimum}): {listed}",
            hint="provide more clean samples, or lower [probe] min_clean_per_class in the policy",
        )
