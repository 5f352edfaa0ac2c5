"""Evasion attacks: FGSM, PGD (L-inf and L2, random restarts, targeted or not) and Square Attack.

FGSM and PGD (Madry et al. 2018) follow the input gradient of the cross-entropy; they need a
:class:`~kerasguard.robustness.engines.Classifier` with gradients. Square Attack (Andriushchenko et
al. 2020, L-inf) needs only predictions: it changes one random square window per step to a corner
of the epsilon box and keeps the change when the margin of the true class shrinks, so it works on a
sandboxed model and on models that mask their gradients.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Literal

import numpy as np

from kerasguard.robustness.data import Dataset
from kerasguard.robustness.engines import (
    Classifier,
    Norm,
    StepConfig,
    log_probabilities,
    pad_batch,
    predict_batched,
)
from kerasguard.robustness.errors import RobustnessError

AttackName = Literal["fgsm", "pgd", "square"]
TargetMode = Literal["random", "next"]
ATTACKS: tuple[str, ...] = ("fgsm", "pgd", "square")
GRADIENT_ATTACKS = ("fgsm", "pgd")
MAX_STEPS = 10_000
MAX_RESTARTS = 100


@dataclass(frozen=True)
class AttackSpec:
    """What to run. ``steps`` is the number of gradient steps (PGD) or of queries (Square)."""

    name: AttackName
    eps: float
    norm: Norm = "linf"
    steps: int = 20
    step_size: float | None = None  # PGD default: 2.5 * eps / steps
    restarts: int = 1
    targeted: bool = False
    random_start: bool = True
    p_init: float = 0.05  # Square Attack: first fraction of the pixels a window covers

    def __post_init__(self) -> None:
        if self.name not in ATTACKS:
            raise RobustnessError(f"unknown attack {self.name!r}; choose from {', '.join(ATTACKS)}")
        if self.norm not in ("linf", "l2"):
            raise RobustnessError(f"unknown norm {self.norm!r}; choose linf or l2")
        if self.name == "square" and self.norm != "linf":
            raise RobustnessError("the Square Attack is implemented for the L-inf norm only")
        if not 1 <= self.steps <= MAX_STEPS:
            raise RobustnessError(f"steps must be between 1 and {MAX_STEPS}, got {self.steps}")
        if not 1 <= self.restarts <= MAX_RESTARTS:
            raise RobustnessError(f"restarts must be between 1 and {MAX_RESTARTS}, got {self.restarts}")
        if self.step_size is not None and not (math.isfinite(self.step_size) and self.step_size > 0):
            raise RobustnessError(f"the step size must be a positive number, got {self.step_size}")
        if not 0 < self.p_init <= 1:
            raise RobustnessError(f"p_init must be in (0, 1], got {self.p_init}")

    @property
    def label(self) -> str:
        if self.name == "fgsm":
            return "fgsm"
        if self.name == "square":
            return f"square-{self.steps}q"
        return f"pgd-{self.steps}" + (f"x{self.restarts}" if self.restarts > 1 else "")

    def step_config(self) -> StepConfig:
        if self.name == "fgsm":
            return StepConfig(self.eps, self.eps, 1, self.norm, self.targeted, random_start=False)
        step = self.step_size if self.step_size is not None else 2.5 * self.eps / self.steps
        return StepConfig(self.eps, step, self.steps, self.norm, self.targeted, self.random_start)


@dataclass(frozen=True)
class AttackOutcome:
    """Adversarial inputs and what the model made of them."""

    spec: AttackSpec
    x_adv: np.ndarray
    predictions: np.ndarray
    labels: np.ndarray
    targets: np.ndarray | None
    seconds: float

    @property
    def robust_accuracy(self) -> float:
        return float(np.mean(self.predictions == self.labels))

    @property
    def success_rate(self) -> float:
        """Untargeted: fraction misclassified; targeted: fraction sent to their target class."""
        if self.targets is not None:
            return float(np.mean(self.predictions == self.targets))
        return float(np.mean(self.predictions != self.labels))

    @property
    def examples_per_second(self) -> float:
        return len(self.labels) / self.seconds if self.seconds > 0 else float("inf")


def choose_targets(labels: np.ndarray, n_classes: int, mode: TargetMode, seed: int) -> np.ndarray:
    """A target class different from the true one for every example."""
    if mode == "next":
        return (labels + 1) % n_classes
    offsets = np.random.default_rng(seed).integers(1, n_classes, size=labels.shape)
    return (labels + offsets) % n_classes


def run_attack(
    classifier: Classifier,
    data: Dataset,
    spec: AttackSpec,
    *,
    batch_size: int = 256,
    seed: int = 0,
    targets: np.ndarray | None = None,
) -> AttackOutcome:
    """Attack every example of ``data``; with restarts, keep for each example the first run that succeeds."""
    if spec.targeted and targets is None:
        raise RobustnessError("a targeted attack needs target classes (choose_targets or a 'target' array)")
    if batch_size < 1:
        raise RobustnessError("batch_size must be >= 1")
    goal = targets if spec.targeted else None
    bounds = (data.clip_min, data.clip_max)
    started = time.perf_counter()
    if spec.name in GRADIENT_ATTACKS:
        classifier.check_gradients(data.x[: min(len(data), 64)], data.y[: min(len(data), 64)])
    parts = []
    for start in range(0, len(data), batch_size):
        x = data.x[start : start + batch_size]
        labels = data.y[start : start + batch_size]
        batch_goal = None if goal is None else goal[start : start + batch_size]
        if spec.name == "square":
            parts.append(_square(classifier, x, labels, batch_goal, spec, bounds, seed + start, batch_size))
        else:
            parts.append(
                _pgd_restarts(classifier, x, labels, batch_goal, spec, bounds, seed + start, batch_size)
            )
    x_adv = np.concatenate(parts)
    predictions = np.argmax(predict_batched(classifier, x_adv, batch_size), axis=1)
    seconds = time.perf_counter() - started
    return AttackOutcome(spec, x_adv, predictions, data.y, targets if spec.targeted else None, seconds)


def _pgd_restarts(
    classifier: Classifier,
    x: np.ndarray,
    labels: np.ndarray,
    goal: np.ndarray | None,
    spec: AttackSpec,
    bounds: tuple[float, float],
    seed: int,
    batch_size: int,
) -> np.ndarray:
    n = len(x)
    xp, gp = pad_batch(x, batch_size), pad_batch(labels if goal is None else goal, batch_size)
    config = spec.step_config()
    best: np.ndarray | None = None
    done = np.zeros(n, bool)
    for restart in range(spec.restarts if config.random_start else 1):
        candidate = classifier.pgd(xp, gp, config, bounds, seed * 1000 + restart)[:n]
        predicted = np.argmax(classifier.predict(pad_batch(candidate, batch_size))[:n], axis=1)
        succeeded = predicted == goal if goal is not None else predicted != labels
        if best is None:
            best = np.array(candidate)  # a writable copy (a JAX result is read-only)
        else:
            take = succeeded & ~done
            best[take] = candidate[take]
        done |= succeeded
        if done.all():
            break
    assert best is not None
    return best


def _p_schedule(p_init: float, step: int, total: int) -> float:
    """The paper's schedule: the window fraction halves at fixed points of a 10 000-query budget."""
    scaled = int(step / total * 10_000)
    for bound, divisor in (
        (8000, 512),
        (6000, 256),
        (4000, 128),
        (2000, 64),
        (1000, 32),
        (500, 16),
        (200, 8),
        (50, 4),
        (10, 2),
    ):
        if scaled > bound:
            return p_init / divisor
    return p_init


def _as_grid(x: np.ndarray) -> np.ndarray:
    """A (n, H, W, C) view: images stay images (channels last), a flat vector becomes one row."""
    if x.ndim == 4:
        return x
    if x.ndim == 3:
        return x[..., None]
    return x.reshape(x.shape[0], 1, -1, 1)


def _square(
    classifier: Classifier,
    x: np.ndarray,
    labels: np.ndarray,
    goal: np.ndarray | None,
    spec: AttackSpec,
    bounds: tuple[float, float],
    seed: int,
    batch_size: int,
) -> np.ndarray:
    if x.ndim > 4:
        raise RobustnessError(
            f"the Square Attack handles vectors and images, not inputs of shape {x.shape[1:]}"
        )
    rng = np.random.default_rng(seed)
    lo, hi = bounds
    eps = np.float32(spec.eps)
    grid = _as_grid(x)
    n, height, width, channels = grid.shape
    wanted = labels if goal is None else goal

    def margins(candidate: np.ndarray, rows: np.ndarray) -> np.ndarray:
        out = predict_batched(classifier, candidate.reshape((len(rows), *x.shape[1:])), batch_size)
        logp = np.asarray(log_probabilities(np, out.astype(np.float64), classifier.output_kind))
        picked = logp[np.arange(len(rows)), wanted[rows]]
        logp[np.arange(len(rows)), wanted[rows]] = -np.inf
        other = logp.max(axis=1)
        return np.asarray(picked - other if goal is None else other - picked)  # > 0: not fooled yet

    delta = eps * rng.choice(np.array([-1.0, 1.0], np.float32), size=(n, 1, width, channels))
    best = np.clip(grid + delta, lo, hi).astype(np.float32)
    margin = margins(best, np.arange(n))
    for step in range(spec.steps):
        active = np.flatnonzero(margin > 0)
        if active.size == 0:
            break
        p = _p_schedule(spec.p_init, step, spec.steps)
        if height == 1:
            side_h, side_w = 1, max(1, min(width, round(p * width)))
        else:
            side = max(1, min(height, width, round(math.sqrt(p * height * width))))
            side_h = side_w = side
        top = rng.integers(0, height - side_h + 1, size=active.size)
        left = rng.integers(0, width - side_w + 1, size=active.size)
        rows = np.arange(height)[None, :]
        cols = np.arange(width)[None, :]
        in_rows = (rows >= top[:, None]) & (rows < top[:, None] + side_h)
        in_cols = (cols >= left[:, None]) & (cols < left[:, None] + side_w)
        window = in_rows[:, :, None, None] & in_cols[:, None, :, None]
        corner = eps * rng.choice(np.array([-1.0, 1.0], np.float32), size=(active.size, 1, 1, channels))
        current = best[active] - grid[active]
        candidate = np.clip(grid[active] + np.where(window, corner, current), lo, hi).astype(np.float32)
        new_margin = margins(candidate, active)
        better = new_margin < margin[active]
        best[active[better]] = candidate[better]
        margin[active[better]] = new_margin[better]
    return best.reshape(x.shape)
