"""Out-of-distribution scores and drift alarms of one served model version with an attached detector.

The OOD scores are computed for every kind the detector was fitted with, from what the sandboxed
child returns with the outputs (``SandboxedModel.serve``): ``mahalanobis`` (distance to the nearest
class mean of the reference data), ``max-softmax`` and ``energy`` (from the logits ``features @ kernel
+ bias`` of the stored last Dense layer) from each instance's penultimate features, exactly as
``DetectorSet.feature_scores`` computes them for ``kerasguard robustness detectors``; ``squeeze`` from
the outputs on the squeezed inputs the worker sent along (``Squeezers.apply``), with the same
``squeeze_distance``. Drift compares tumbling
windows of ``drift_window`` predictions with the reference statistics stored with the detector: the
window's mean top probability against the reference mean (an alarm when it fell by more than
``drift_confidence_drop``), and its predicted-class counts against the reference class fractions (a
chi-square goodness-of-fit test, an alarm below ``drift_p_value``).
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kerasguard.robustness.detectors import DetectorSet, confidences_and_classes, squeeze_distance

log = logging.getLogger("kerasguard.serve.drift")
# Expected counts below this are raised to it: a class the reference never predicted must not make
# one stray prediction an infinite chi-square term.
_MIN_EXPECTED = 0.5


@dataclass(frozen=True)
class DriftAlarm:
    kind: str  # "confidence" or "class_mix"
    detail: dict[str, Any]


@dataclass
class Monitor:
    """Scores batches against one detector and keeps the current drift window."""

    detector: DetectorSet
    window: int
    confidence_drop: float
    p_value: float
    _confidences: list[float] = field(default_factory=list)
    _classes: list[int] = field(default_factory=list)

    @property
    def head(self) -> str | None:
        """The layer whose input the child returns with the outputs; None when no kind needs features."""
        return self.detector.head if self.detector.feature_kinds else None

    @property
    def kinds(self) -> tuple[str, ...]:
        """The detector kinds the gateway applies: every kind of the attachment, in fitted order."""
        return self.detector.kinds

    @property
    def primary(self) -> str:
        """The kind whose scores go into the ``X-KerasGuard-OOD-Score`` header."""
        return self.detector.primary

    def threshold(self, kind: str) -> float:
        return self.detector.thresholds[kind]

    def squeeze(self, x: np.ndarray) -> list[np.ndarray]:
        """The squeezed copies of a batch the child must predict too (none without ``squeeze``)."""
        if "squeeze" not in self.kinds:
            return []
        return self.detector.squeezers.apply(np.asarray(x, np.float32))

    def scores(
        self, features: np.ndarray | None, outputs: np.ndarray, squeezed: list[np.ndarray]
    ) -> dict[str, np.ndarray]:
        """One score per row for each applied kind, from the child's features (their width must match
        the detector's) and its outputs on the batch and on each squeezed copy."""
        out: dict[str, np.ndarray] = {}
        with np.errstate(all="ignore"):
            if self.detector.feature_kinds:
                if features is None:
                    raise ValueError("the detector needs features and none came")
                feats = np.asarray(features, np.float64).reshape(len(features), -1)
                if feats.shape[1] != self.detector.means.shape[1]:
                    raise ValueError(
                        f"features have width {feats.shape[1]}, the detector {self.detector.means.shape[1]}"
                    )
                out.update(self.detector.feature_scores(feats, self.detector.feature_kinds))
            if "squeeze" in self.kinds:
                if not squeezed:
                    raise ValueError("the detector needs the outputs on squeezed inputs and none came")
                out["squeeze"] = squeeze_distance(outputs, squeezed)
        # Non-finite scores (an overflowing model) are as unusual as it gets, never "clean".
        # primary first: its scores are the ``X-KerasGuard-OOD-Score`` header
        order = [self.primary, *(k for k in self.kinds if k != self.primary)]
        return {kind: np.where(np.isfinite(out[kind]), out[kind], np.inf) for kind in order}

    def observe(self, outputs: np.ndarray) -> list[DriftAlarm]:
        """Add these predictions to the window; the alarms of every window this completes."""
        conf, classes = confidences_and_classes(np.asarray(outputs, np.float64))
        self._confidences.extend(float(c) for c in conf)
        self._classes.extend(int(c) for c in classes)
        alarms: list[DriftAlarm] = []
        while len(self._confidences) >= self.window:
            window_conf = self._confidences[: self.window]
            window_classes = self._classes[: self.window]
            del self._confidences[: self.window], self._classes[: self.window]
            alarms.extend(self._judge(np.asarray(window_conf), np.asarray(window_classes)))
        return alarms

    def _judge(self, conf: np.ndarray, classes: np.ndarray) -> list[DriftAlarm]:
        reference = self.detector.reference or {}
        alarms = []
        ref_conf = float(reference["confidence_mean"])
        mean = float(conf.mean())
        if not math.isfinite(mean) or mean < ref_conf - self.confidence_drop:
            alarms.append(
                DriftAlarm(
                    "confidence",
                    {"window_mean": round(mean, 4), "reference_mean": round(ref_conf, 4), "n": len(conf)},
                )
            )
        fractions = np.asarray(reference["class_fractions"], np.float64)
        k = len(fractions)
        counts = np.bincount(np.clip(classes, 0, k - 1), minlength=k)[:k].astype(np.float64)
        expected = np.maximum(fractions * len(classes), _MIN_EXPECTED)
        statistic = float(((counts - expected) ** 2 / expected).sum())
        critical = chi2_critical(k - 1, self.p_value)
        if statistic > critical:
            alarms.append(
                DriftAlarm(
                    "class_mix",
                    {
                        "chi2": round(statistic, 2),
                        "critical": round(critical, 2),
                        "p_value": self.p_value,
                        "counts": [int(c) for c in counts],
                    },
                )
            )
        return alarms


def chi2_critical(df: int, p_value: float) -> float:
    """Upper ``p_value`` quantile of chi-square with ``df`` degrees of freedom (Wilson-Hilferty)."""
    if df < 1:
        return math.inf
    z = _normal_upper(p_value)
    a = 2.0 / (9.0 * df)
    return float(df * (1.0 - a + z * math.sqrt(a)) ** 3)


def _normal_upper(p: float) -> float:
    """z with P(Z > z) = p, by bisection on erfc (no SciPy needed for one number)."""
    lo, hi = -10.0, 10.0
    for _ in range(100):
        mid = (lo + hi) / 2
        if 0.5 * math.erfc(mid / math.sqrt(2)) > p:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def log_alarm(labels: tuple[str, str, str], alarm: DriftAlarm) -> None:
    """One structured JSON line per alarm (the access log's format: one object per line)."""
    tenant, model, version = labels
    line = {"event": "drift_alarm", "kind": alarm.kind, "tenant": tenant, "model": model, "version": version}
    log.warning("%s", json.dumps({**line, **alarm.detail}, separators=(",", ":"), sort_keys=False))
