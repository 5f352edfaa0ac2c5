"""Labelled evaluation data: read from ``.npz`` (never a pickle), checked, and fitted to a model.

Accepted keys (the first present wins): inputs ``x``, ``x_test``, ``inputs``, ``images``; labels ``y``,
``y_test``, ``labels``. Labels are class ids (integers, shape ``(n,)``) or one-hot / probability rows
(shape ``(n, classes)``, reduced by argmax). An optional ``range`` array ``[min, max]`` declares the
valid input range; otherwise it comes from the caller or is inferred as the data's own min and max.
An optional ``target`` array of class ids gives the targets of a targeted attack.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kerasguard import npzfile
from kerasguard.robustness.errors import RobustnessError

X_KEYS = ("x", "x_test", "inputs", "images")
Y_KEYS = ("y", "y_test", "labels")
MAX_DATA_BYTES = 4 << 30  # uncompressed bytes of all arrays read from one file
MAX_CLASSES = 100_000


@dataclass(frozen=True)
class Dataset:
    """Inputs (float32), class ids (int64), the valid input range, optional attack targets."""

    x: np.ndarray
    y: np.ndarray
    clip_min: float
    clip_max: float
    target: np.ndarray | None = None
    source: str = ""

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def take(self, limit: int | None) -> Dataset:
        """The first ``limit`` examples (all when ``limit`` is None)."""
        if limit is None or limit >= len(self):
            return self
        target = None if self.target is None else self.target[:limit]
        return Dataset(self.x[:limit], self.y[:limit], self.clip_min, self.clip_max, target, self.source)

    def split(self, fraction: float, seed: int) -> tuple[Dataset, Dataset]:
        """A shuffled (1 - fraction, fraction) split; both parts keep the range."""
        order = np.random.default_rng(seed).permutation(len(self))
        cut = len(self) - max(1, round(len(self) * fraction))
        if cut < 1:
            raise RobustnessError(f"{self.source or 'the data'}: too few examples ({len(self)}) to split")

        def part(idx: np.ndarray) -> Dataset:
            target = None if self.target is None else self.target[idx]
            return Dataset(self.x[idx], self.y[idx], self.clip_min, self.clip_max, target, self.source)

        return part(order[:cut]), part(order[cut:])


def load_dataset(
    path: str | os.PathLike[str],
    *,
    clip_min: float | None = None,
    clip_max: float | None = None,
) -> Dataset:
    """Read and check a labelled ``.npz``; raise RobustnessError with the reason when it is unusable."""
    where = os.fspath(path)
    arrays = _read_npz(Path(where))
    x_key = next((k for k in X_KEYS if k in arrays), None)
    y_key = next((k for k in Y_KEYS if k in arrays), None)
    if x_key is None or y_key is None:
        raise RobustnessError(
            f"{where}: needs an inputs array ({', '.join(X_KEYS)}) and a labels array ({', '.join(Y_KEYS)});"
            f" found {', '.join(sorted(arrays)) or 'nothing'}",
            hint="np.savez(path, x=inputs, y=labels)",
        )
    declared = arrays.get("range")
    if declared is not None:
        if declared.shape != (2,) or declared.dtype.kind not in "iuf":
            raise RobustnessError(f"{where}: 'range' must be two numbers [min, max]")
        low, high = float(declared[0]), float(declared[1])
        clip_min = low if clip_min is None else clip_min
        clip_max = high if clip_max is None else clip_max
    return make_dataset(
        arrays[x_key],
        arrays[y_key],
        clip_min=clip_min,
        clip_max=clip_max,
        target=arrays.get("target"),
        source=where,
    )


def make_dataset(
    x: Any,
    y: Any,
    *,
    clip_min: float | None = None,
    clip_max: float | None = None,
    target: Any = None,
    source: str = "",
) -> Dataset:
    """Check arrays given in memory the same way as a file's (the Python API's entry point)."""
    name = source or "data"
    x_arr, y_arr = np.asarray(x), np.asarray(y)
    if x_arr.dtype.kind not in "iuf" or x_arr.dtype.itemsize > 8:
        raise RobustnessError(f"{name}: inputs must be numbers, got dtype {x_arr.dtype}")
    if x_arr.ndim < 2 or x_arr.shape[0] == 0:
        raise RobustnessError(f"{name}: inputs must be a batch (n, ...) with n >= 1, got shape {x_arr.shape}")
    x_f = x_arr.astype(np.float32)
    if not np.all(np.isfinite(x_f)):
        bad = int(np.count_nonzero(~np.isfinite(x_f).reshape(len(x_f), -1).all(axis=1)))
        raise RobustnessError(f"{name}: {bad} input example(s) contain NaN or infinity")
    labels = _labels(y_arr, len(x_f), name)
    low = float(x_f.min()) if clip_min is None else float(clip_min)
    high = float(x_f.max()) if clip_max is None else float(clip_max)
    if not (math.isfinite(low) and math.isfinite(high)) or low >= high:
        raise RobustnessError(f"{name}: the input range [{low}, {high}] is empty or not finite")
    if float(x_f.min()) < low - 1e-6 or float(x_f.max()) > high + 1e-6:
        raise RobustnessError(
            f"{name}: inputs span [{float(x_f.min())}, {float(x_f.max())}], outside the declared range"
            f" [{low}, {high}]",
            hint="fix --clip-min/--clip-max (or the file's 'range' array)",
        )
    tgt = None if target is None else _labels(np.asarray(target), len(x_f), f"{name} (target)")
    return Dataset(x_f, labels, low, high, tgt, source)


def _labels(y: np.ndarray, n: int, name: str) -> np.ndarray:
    if y.ndim == 2 and y.dtype.kind in "iuf":
        if not np.all(np.isfinite(y)):
            raise RobustnessError(f"{name}: labels contain NaN or infinity")
        y = np.argmax(y, axis=1)
    if y.ndim != 1 or (y.dtype.kind not in "iu" and not (y.dtype.kind == "f" and _integral(y))):
        raise RobustnessError(
            f"{name}: labels must be class ids (n,) or one-hot rows (n, classes); got {y.dtype} {y.shape}"
        )
    if y.shape[0] != n:
        raise RobustnessError(f"{name}: {n} inputs but {y.shape[0]} labels")
    labels = y.astype(np.int64)
    if labels.min() < 0 or labels.max() >= MAX_CLASSES:
        raise RobustnessError(f"{name}: labels must be class ids from 0, got {labels.min()}..{labels.max()}")
    return labels


def _integral(y: np.ndarray) -> bool:
    return bool(np.all(np.isfinite(y)) and np.all(y == np.round(y)))


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """Arrays of an ``.npz`` (:mod:`kerasguard.npzfile`: sizes bounded before reading, no pickle)."""
    wanted = (*X_KEYS, *Y_KEYS, "range", "target")
    return npzfile.read_npz(
        path, lambda keys: [k for k in keys if k in wanted], RobustnessError, limit=MAX_DATA_BYTES
    )


def check_fits_model(
    data: Dataset, input_shape: Sequence[int | None], n_classes: int, *, what: str = "the model"
) -> None:
    """Refuse data whose example shape or labels cannot fit the model (before anything runs)."""
    want = tuple(input_shape)[1:]
    got = tuple(data.x.shape[1:])
    fits = len(want) == len(got) and all(w is None or w == g for w, g in zip(want, got, strict=True))
    if not fits:
        shown = "(n, " + ", ".join("None" if d is None else str(d) for d in want) + ")"
        raise RobustnessError(
            f"{data.source or 'data'}: inputs have shape {data.x.shape}, {what} expects {shown}",
            hint="reshape the inputs the way the model was trained (e.g. x.reshape(n, 8, 8, 1))",
        )
    for name, labels in (("labels", data.y), ("targets", data.target)):
        if labels is not None and int(labels.max()) >= n_classes:
            raise RobustnessError(
                f"{data.source or 'data'}: {name} go up to {int(labels.max())},"
                f" {what} has {n_classes} classes"
            )


def check_eps(eps: float, data: Dataset, norm: str) -> float:
    """Epsilon must be positive, finite and (for L-inf) no larger than the input range."""
    span = data.clip_max - data.clip_min
    limit = span if norm == "linf" else span * math.sqrt(float(np.prod(data.x.shape[1:])))
    if not math.isfinite(eps) or eps <= 0 or eps > limit:
        raise RobustnessError(
            f"epsilon {eps} is out of range for {norm}: it must be > 0 and <= {limit:g}"
            f" (the input range is [{data.clip_min:g}, {data.clip_max:g}])"
        )
    return float(eps)
