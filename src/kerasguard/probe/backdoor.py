"""``find_backdoor``: Neural Cleanse trigger search + MAD outlier test, and a fitted STRIP detector."""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kerasguard.errors import ProbeError
from kerasguard.policy import Policy
from kerasguard.policy import Probe as ProbeSettings
from kerasguard.probe.data import as_labelled, check_fits, check_per_class
from kerasguard.probe.metrics import anomaly_indexes
from kerasguard.probe.strip import StripDetector, fit_strip
from kerasguard.probe.target import Target
from kerasguard.probe.trigger import SearchConfig, Trigger, mask_shape, search_triggers

SCHEMA = "kerasguard.probe.backdoor/1"


def png_shape(input_shape: tuple[int, ...], image_shape: tuple[int, ...] | None = None) -> tuple[int, ...]:
    """The shape trigger PNGs are drawn in: the input's own when it is an image (H, W or H, W, 1|3),
    else ``image_shape`` holding as many values; ProbeError otherwise (checked before a search too)."""
    shape = tuple(image_shape) if image_shape is not None else tuple(input_shape)
    if image_shape is not None and math.prod(shape) != math.prod(input_shape):
        raise ProbeError(f"--image-shape {image_shape} does not fit inputs of shape {tuple(input_shape)}")
    if len(shape) not in (2, 3) or (len(shape) == 3 and shape[-1] not in (1, 3)):
        raise ProbeError(
            f"inputs of shape {tuple(input_shape)} are not images: give an image shape (e.g. 8x8) for PNGs"
        )
    return shape


@dataclass(frozen=True)
class ClassResult:
    """The trigger search's answer for one output class."""

    target: int
    mask_l1: float
    anomaly_index: float  # MADs below the median mask norm (negative: above it)
    flagged: bool
    attack_success: float  # held-out clean inputs of other classes sent to ``target`` by the trigger
    reached_threshold: bool  # the search found a mask reaching the success threshold
    norm_ratio: float = 1.0  # mask norm over the median of all classes' mask norms


@dataclass
class StripSummary:
    fpr: float
    threshold: float
    calibration_fpr: float
    calibration_n: int
    detection_rate: dict[int, float]  # flagged class -> share of inputs with its recovered trigger caught
    digest: str
    saved_to: str | None = None


@dataclass
class BackdoorReport:
    """What ``find_backdoor`` found. ``verdict``: ``backdoor``, ``clean`` or ``not-searched``."""

    n_classes: int
    n_samples: int
    anomaly_threshold: float
    verdict: str
    max_norm_ratio: float = 0.6
    min_attack_success: float = 0.75
    classes: list[ClassResult] = field(default_factory=list)
    triggers: list[Trigger] = field(default_factory=list, repr=False)
    strip: StripSummary | None = None
    detector: StripDetector | None = field(default=None, repr=False)
    backend: str = ""
    search_seconds: float = 0.0
    model: str = ""
    notes: list[str] = field(default_factory=list)
    trigger_images: dict[int, list[str]] = field(default_factory=dict)

    @property
    def flagged(self) -> list[int]:
        return [c.target for c in self.classes if c.flagged]

    def to_dict(self) -> dict[str, Any]:
        def num(v: float) -> float | str:
            return v if np.isfinite(v) else ("inf" if v > 0 else "-inf")

        return {
            "schema": SCHEMA,
            "model": self.model,
            "verdict": self.verdict,
            "flagged_classes": self.flagged,
            "anomaly_threshold": self.anomaly_threshold,
            "max_norm_ratio": self.max_norm_ratio,
            "min_attack_success": self.min_attack_success,
            "n_classes": self.n_classes,
            "n_samples": self.n_samples,
            "backend": self.backend,
            "search_seconds": round(self.search_seconds, 3),
            "classes": [
                {
                    "class": c.target,
                    "mask_l1": round(c.mask_l1, 4),
                    "anomaly_index": num(round(c.anomaly_index, 4)),
                    "norm_ratio": round(c.norm_ratio, 4),
                    "flagged": c.flagged,
                    "attack_success": round(c.attack_success, 4),
                    "reached_threshold": c.reached_threshold,
                    "images": self.trigger_images.get(c.target, []),
                }
                for c in self.classes
            ],
            "strip": None
            if self.strip is None
            else {
                "fpr": self.strip.fpr,
                "threshold": self.strip.threshold,
                "calibration_fpr": round(self.strip.calibration_fpr, 4),
                "calibration_n": self.strip.calibration_n,
                "detection_rate_on_recovered_triggers": {
                    str(k): round(v, 4) for k, v in self.strip.detection_rate.items()
                },
                "digest": self.strip.digest,
                "saved_to": self.strip.saved_to,
            },
            "notes": self.notes,
        }

    def write_trigger_images(
        self,
        folder: str | os.PathLike[str],
        *,
        image_shape: tuple[int, ...] | None = None,
        lo: float = 0.0,
        hi: float = 1.0,
    ) -> list[str]:
        """PNGs of each class's mask and masked pattern (image inputs, or flat ones with ``image_shape``)."""
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        written: list[str] = []
        for trig in self.triggers:
            view = png_shape(trig.pattern.shape, image_shape)
            mask, pattern = trig.mask.reshape(view), trig.pattern.reshape(view)
            scale = max(1, 128 // max(mask.shape[0], 1))
            from kerasguard.probe.png import write_png

            norm = (pattern - lo) / (hi - lo) if hi > lo else pattern
            paths = [out / f"class_{trig.target}_mask.png", out / f"class_{trig.target}_trigger.png"]
            write_png(paths[0], mask, scale=scale)
            write_png(paths[1], mask * norm, scale=scale)
            self.trigger_images[trig.target] = [str(p) for p in paths]
            written += [str(p) for p in paths]
        return written


def judge_triggers(
    target: Target, triggers: list[Trigger], x_held: np.ndarray, y_held: np.ndarray, settings: ProbeSettings
) -> list[ClassResult]:
    """One verdict per class (decision 59). Flagged: the mask norm is more than
    ``backdoor_anomaly_index`` MADs below the median (Neural Cleanse), *and* at most
    ``backdoor_max_norm_ratio`` of the median (a shortcut, not merely the easiest natural class: with 10
    classes the MAD is small when the natural classes are alike), *and* the recovered trigger sends at
    least ``backdoor_min_attack_success`` of held-out clean inputs of the other classes (``x_held``, never
    seen by the search) to the class."""
    norms = np.array([t.l1 for t in triggers], dtype=np.float64)
    indexes = anomaly_indexes(norms)
    median = float(np.median(norms))
    results = []
    for trig, index in zip(triggers, indexes, strict=True):
        others = x_held[y_held != trig.target]
        success = 0.0
        if len(others):
            hits = target.log_proba(trig.apply(others)).argmax(axis=1) == trig.target
            success = float(hits.mean())
        ratio = trig.l1 / median if median > 0 else 1.0
        flagged = (
            index > settings.backdoor_anomaly_index
            and ratio <= settings.backdoor_max_norm_ratio
            and success >= settings.backdoor_min_attack_success
        )
        results.append(
            ClassResult(
                target=trig.target,
                mask_l1=trig.l1,
                anomaly_index=float(index),
                flagged=bool(flagged),
                attack_success=success,
                reached_threshold=trig.reached_threshold,
                norm_ratio=float(ratio),
            )
        )
    return results


def unconfirmed_notes(classes: list[ClassResult], settings: ProbeSettings) -> list[str]:
    """A note per class that crossed the anomaly index but was not confirmed, saying which test failed."""
    notes = []
    for c in classes:
        if c.flagged or not c.anomaly_index > settings.backdoor_anomaly_index:
            continue
        why = []
        if c.norm_ratio > settings.backdoor_max_norm_ratio:
            why.append(
                f"its mask is {c.norm_ratio:.2f} of the median norm (a backdoor's is at most "
                f"{settings.backdoor_max_norm_ratio:g}): an easy natural class"
            )
        if c.attack_success < settings.backdoor_min_attack_success:
            why.append(
                f"its trigger moves only {c.attack_success:.0%} of held-out inputs (at least "
                f"{settings.backdoor_min_attack_success:.0%} needed)"
            )
        head = f"class {c.target}: anomaly index {c.anomaly_index:.2f} but not flagged: "
        notes.append(head + "; ".join(why))
    return notes


def find_backdoor(
    model: Any,
    x: Any,
    y: Any,
    *,
    policy: Policy | None = None,
    config: SearchConfig | None = None,
    search: bool = True,
    strip: bool = True,
    n_perturb: int = 20,
    model_sha256: str | None = None,
    seed: int = 0,
) -> BackdoorReport:
    """Search every class for a small trigger (needs the in-process model) and fit a STRIP detector.

    ``x``/``y`` are clean labelled samples (at least ``[probe] min_clean_per_class`` per class). A class
    is flagged when its smallest trigger is an outlier and works (:func:`judge_triggers`). With
    ``search=False`` only the STRIP detector is fitted (works on a SandboxedModel).
    """
    import keras

    policy = policy or Policy()
    settings = policy.probe
    if not (search or strip):
        raise ProbeError("nothing to do: both the trigger search and STRIP are off")
    data = as_labelled(x, y, what="clean data")
    target = Target.of(model)
    check_fits(data, target.input_shape, target.n_classes, what="clean data")
    check_per_class(data, target.n_classes, settings.min_clean_per_class, what="clean data")
    if search:
        target.require_in_process("the trigger search")
    target.calibrate(data.x)
    report = BackdoorReport(
        n_classes=target.n_classes,
        n_samples=len(data),
        anomaly_threshold=settings.backdoor_anomaly_index,
        max_norm_ratio=settings.backdoor_max_norm_ratio,
        min_attack_success=settings.backdoor_min_attack_success,
        verdict="not-searched",
        backend=keras.backend.backend(),
        model=str(getattr(model, "name", "")),
    )
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(data))
    cut = max(1, int(len(data) * 0.7))
    search_part, eval_part = data.subset(order[:cut]), data.subset(order[cut:])
    if search:
        config = config or SearchConfig(seed=seed)
        started = time.perf_counter()
        triggers = search_triggers(target, search_part.x, config)
        report.search_seconds = time.perf_counter() - started
        report.classes = judge_triggers(target, triggers, eval_part.x, eval_part.y, settings)
        report.notes += unconfirmed_notes(report.classes, settings)
        report.triggers = triggers
        report.verdict = "backdoor" if report.flagged else "clean"
        unreached = [t.target for t in triggers if not t.reached_threshold]
        if unreached:
            report.notes.append(
                f"the search did not reach {config.attack_success_threshold:.0%} attack success for classes "
                f"{unreached}: their norms are upper bounds (more epochs may help)"
            )
        size = int(np.prod(mask_shape(tuple(int(d) for d in data.x.shape[1:]))))
        report.notes.append(
            f"search space: a mask over {size} input positions; triggers that are not a small additive patch "
            "(blends, warps, whole-image filters) or span a large share of the input are outside it"
        )
    if strip:
        detector = fit_strip(
            target, data.x, fpr=settings.strip_fpr, n_perturb=n_perturb, seed=seed, model_sha256=model_sha256
        )
        detection: dict[int, float] = {}
        for trig in report.triggers:
            others = eval_part.x[eval_part.y != trig.target]
            if trig.target in report.flagged and len(others):
                detection[trig.target] = float(detector.is_trojaned(trig.apply(others), seed=seed).mean())
        report.detector = detector
        report.strip = StripSummary(
            fpr=detector.fpr,
            threshold=detector.threshold,
            calibration_fpr=float(detector.calibration.get("fpr_on_calibration", 0.0)),
            calibration_n=int(detector.calibration.get("n", 0)),
            detection_rate=detection,
            digest=detector.digest,
        )
    return report
