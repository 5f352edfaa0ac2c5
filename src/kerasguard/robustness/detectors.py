"""Input detectors: flag inputs unlike the reference data, at a threshold chosen for a target FPR.

Four scores, higher meaning "more unusual":

- ``mahalanobis``: distance of the penultimate features (the input of the last Dense layer) to the
  nearest class mean under a shared covariance (Lee et al. 2018);
- ``max-softmax``: minus the top softmax probability (Hendrycks & Gimpel 2017);
- ``energy``: minus the log-sum-exp of the logits (Liu et al. 2020), logits being the last Dense
  layer's output before its softmax, computed from the features and that layer's stored weights;
- ``squeeze``: feature squeezing (Xu et al. 2018), the largest L1 change of the softmax when the
  input's bit depth is reduced (and, for images, a 2x2 median filter is applied).

Fitting uses one part of the reference data for the statistics and holds out another to set each
threshold at the ``1 - fpr`` quantile of clean scores. A :class:`DetectorSet` is bound to a
:class:`FeatureSource`: the model in process (:class:`KerasFeatures`) or, for ``kerasguard serve``,
a sandboxed model whose child computes the features (:class:`SandboxedFeatures`). Then
``detector.score(batch)`` and ``detector.is_outlier(batch)`` are all a caller needs.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np

from kerasguard.robustness.data import Dataset, check_fits_model
from kerasguard.robustness.errors import RobustnessError

Kind = Literal["mahalanobis", "max-softmax", "energy", "squeeze"]
KINDS: tuple[Kind, ...] = ("mahalanobis", "max-softmax", "energy", "squeeze")
# The kinds scored from the penultimate features alone (one feature pass, no extra predictions).
FEATURE_KINDS: tuple[Kind, ...] = ("mahalanobis", "max-softmax", "energy")
_BATCH = 512


class FeatureSource(Protocol):
    """What the detectors need from a model: its outputs and its penultimate features."""

    head: str

    def predict(self, x: np.ndarray) -> np.ndarray: ...

    def features(self, x: np.ndarray) -> np.ndarray: ...


def find_head(model: Any) -> Any:
    """The last layer with weights, which must be a Dense layer with a linear or softmax activation."""
    for layer in reversed(model.layers):
        if not layer.weights:
            if type(layer).__name__ in ("Activation", "Softmax", "Dropout", "Identity"):
                continue
            raise RobustnessError(
                f"detectors need the model to end in a Dense layer; it ends in {layer.name!r}"
            )
        activation = getattr(getattr(layer, "activation", None), "__name__", "")
        if type(layer).__name__ != "Dense" or activation not in ("linear", "softmax"):
            raise RobustnessError(
                f"detectors need the last weighted layer to be Dense (linear or softmax); {layer.name!r} is"
                f" {type(layer).__name__} ({activation or 'no activation'})"
            )
        return layer
    raise RobustnessError("the model has no weighted layer to take features from")


class KerasFeatures:
    """Features and outputs of an in-process Keras model."""

    def __init__(self, model: Any) -> None:
        import keras

        self.model = model
        layer = find_head(model)
        self.head = str(layer.name)
        self._features = keras.Model(model.inputs, layer.input)
        kernel = np.asarray(keras.ops.convert_to_numpy(layer.kernel), np.float64)
        bias = layer.bias if getattr(layer, "use_bias", False) else None
        self.kernel = kernel
        self.bias = (
            np.zeros(kernel.shape[1])
            if bias is None
            else np.asarray(keras.ops.convert_to_numpy(bias), np.float64)
        )

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.model.predict(x, batch_size=_BATCH, verbose=0))

    def features(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self._features.predict(x, batch_size=_BATCH, verbose=0))


class SandboxedFeatures:
    """Features computed inside the sandboxed child (the ``features`` request), outputs by predict."""

    def __init__(self, model: Any, head: str) -> None:
        self.model = model
        self.head = head

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.model.predict(x, batch_size=_BATCH))

    def features(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.model.layer_input(x, self.head, batch_size=_BATCH))


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    return np.asarray(e / e.sum(axis=1, keepdims=True))


def _probabilities(outputs: np.ndarray) -> np.ndarray:
    out = outputs.astype(np.float64)
    if np.all(out >= -1e-6) and np.allclose(out.sum(axis=1), 1.0, atol=1e-3):
        return out
    return _softmax(out)


@dataclass(frozen=True)
class Squeezers:
    """Bit-depth reduction (always) and a 2x2 median filter (images only)."""

    bits: int
    median: bool
    clip_min: float
    clip_max: float

    def apply(self, x: np.ndarray) -> list[np.ndarray]:
        span = self.clip_max - self.clip_min
        levels = 2**self.bits - 1
        unit = (x - self.clip_min) / span
        squeezed = [(np.round(unit * levels) / levels * span + self.clip_min).astype(np.float32)]
        if self.median and x.ndim in (3, 4):
            squeezed.append(_median_2x2(x))
        return squeezed


def _median_2x2(x: np.ndarray) -> np.ndarray:
    """2x2 median filter (the window's two middle values averaged), edges repeated."""
    grid = x[..., None] if x.ndim == 3 else x
    padded = np.pad(grid, ((0, 0), (0, 1), (0, 1), (0, 0)), mode="edge")
    stack = np.stack([padded[:, :-1, :-1], padded[:, 1:, :-1], padded[:, :-1, 1:], padded[:, 1:, 1:]], axis=0)
    out = np.median(stack, axis=0).astype(np.float32)
    return np.asarray(out.reshape(x.shape))


@dataclass
class DetectorSet:
    """Fitted detectors of one model; bind a FeatureSource, then score or flag batches."""

    head: str
    input_shape: tuple[int | None, ...]
    n_classes: int
    clip_min: float
    clip_max: float
    kernel: np.ndarray
    bias: np.ndarray
    means: np.ndarray
    precision: np.ndarray
    squeezers: Squeezers
    thresholds: dict[str, float]
    target_fpr: float
    calibration_fpr: dict[str, float]
    primary: str = "mahalanobis"
    model_sha256: str | None = None
    # the model's behaviour on the calibration data: {"confidence_mean": float, "class_fractions":
    # [float] * n_classes, "count": int}; what ``kerasguard serve`` compares its drift windows with
    reference: dict[str, Any] | None = None
    source: FeatureSource | None = field(default=None, repr=False, compare=False)

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(self.thresholds)

    def bind(self, source: FeatureSource) -> DetectorSet:
        """Score through this model (in process or sandboxed); its head layer must be the fitted one."""
        if source.head != self.head:
            raise RobustnessError(
                f"the detectors were fitted on layer {self.head!r}, the model gives {source.head!r}"
            )
        self.source = source
        return self

    def _check_batch(self, x: np.ndarray) -> np.ndarray:
        if self.source is None:
            raise RobustnessError("bind the detectors to a model first (DetectorSet.bind)")
        arr = np.asarray(x)
        if arr.dtype.kind not in "iuf":
            raise RobustnessError(f"inputs must be numbers, got {arr.dtype}")
        want = self.input_shape[1:]
        fits = arr.ndim == len(want) + 1 and all(
            w is None or w == g for w, g in zip(want, arr.shape[1:], strict=True)
        )
        if not fits:
            raise RobustnessError(
                f"inputs have shape {arr.shape}, the detectors expect (n, {', '.join(map(str, want))})"
            )
        arr = arr.astype(np.float32)
        if not np.all(np.isfinite(arr)):
            raise RobustnessError("inputs contain NaN or infinity")
        return arr

    def scores(self, x: np.ndarray, kinds: Iterable[str] | None = None) -> dict[str, np.ndarray]:
        """Every asked-for score of every example (higher: more unusual)."""
        arr = self._check_batch(x)
        assert self.source is not None
        wanted = list(self.kinds if kinds is None else kinds)
        unknown = [k for k in wanted if k not in self.thresholds]
        if unknown:
            raise RobustnessError(f"no fitted detector {', '.join(unknown)}; fitted: {', '.join(self.kinds)}")
        out: dict[str, np.ndarray] = {}
        if any(k in wanted for k in ("mahalanobis", "max-softmax", "energy")):
            feats = self.source.features(arr).astype(np.float64)
            if feats.shape != (len(arr), self.means.shape[1]):
                raise RobustnessError(
                    f"the model's features have shape {feats.shape}, expected (n, {self.means.shape[1]})"
                )
            out.update(self.feature_scores(feats, [k for k in wanted if k in FEATURE_KINDS]))
        if "squeeze" in wanted:
            outputs = self.source.predict(arr)
            squeezed = [self.source.predict(variant) for variant in self.squeezers.apply(arr)]
            out["squeeze"] = squeeze_distance(outputs, squeezed)
        return out

    @property
    def feature_kinds(self) -> tuple[str, ...]:
        """The fitted kinds scored from the penultimate features (``FEATURE_KINDS``), in fitted order."""
        return tuple(k for k in self.thresholds if k in FEATURE_KINDS)

    def feature_scores(self, feats: np.ndarray, kinds: Iterable[str]) -> dict[str, np.ndarray]:
        """The scores computed from penultimate features alone (``FEATURE_KINDS``): what ``kerasguard
        serve`` applies to the features its sandboxed child returns, so both give the same numbers.
        Energy and max-softmax use the logits ``feats @ kernel + bias`` (the last Dense layer before
        its softmax, whether or not the model ends in one)."""
        feats = np.asarray(feats, np.float64)
        wanted = list(kinds)
        out: dict[str, np.ndarray] = {}
        logits = feats @ self.kernel + self.bias
        if "mahalanobis" in wanted:
            out["mahalanobis"] = mahalanobis(feats, self.means, self.precision)
        if "max-softmax" in wanted:
            out["max-softmax"] = -_softmax(logits).max(axis=1)
        if "energy" in wanted:
            top = logits.max(axis=1)
            out["energy"] = -(top + np.log(np.exp(logits - top[:, None]).sum(axis=1)))
        return out

    def score(self, x: np.ndarray, kind: str | None = None) -> np.ndarray:
        """One score per example, of ``kind`` (default: the primary detector)."""
        name = kind or self.primary
        return self.scores(x, [name])[name]

    def is_outlier(self, x: np.ndarray, kind: str | None = None) -> np.ndarray:
        """True where the score is above the threshold fitted for the target FPR."""
        name = kind or self.primary
        return self.score(x, name) > self.thresholds[name]


def squeeze_distance(outputs: np.ndarray, squeezed_outputs: Sequence[np.ndarray]) -> np.ndarray:
    """The feature-squeezing score: the largest L1 change of the softmax between the model's outputs
    and its outputs on each squeezed input (``Squeezers.apply``; logits are softmaxed first). Shared by
    ``DetectorSet.scores`` and ``kerasguard serve``, whose child predicts the squeezed inputs."""
    base = _probabilities(np.asarray(outputs).reshape(len(outputs), -1))
    distance = np.zeros(len(base))
    for squeezed in squeezed_outputs:
        other = _probabilities(np.asarray(squeezed).reshape(len(squeezed), -1))
        if other.shape != base.shape:
            raise ValueError(f"squeezed outputs have shape {other.shape}, the outputs {base.shape}")
        distance = np.maximum(distance, np.abs(base - other).sum(axis=1))
    return distance


def reference_stats(outputs: np.ndarray, n_classes: int) -> dict[str, Any]:
    """Mean top probability and the predicted-class fractions of the model's outputs on clean data."""
    probs = _probabilities(np.asarray(outputs).reshape(len(outputs), -1))
    counts = np.bincount(probs.argmax(axis=1), minlength=n_classes)[:n_classes]
    return {
        "confidence_mean": float(probs.max(axis=1).mean()),
        "class_fractions": [float(c) / max(len(probs), 1) for c in counts],
        "count": len(probs),
    }


def confidences_and_classes(outputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Top probability and predicted class of each row (softmax applied to logits)."""
    probs = _probabilities(np.asarray(outputs).reshape(len(outputs), -1))
    return probs.max(axis=1), probs.argmax(axis=1)


def mahalanobis(features: np.ndarray, means: np.ndarray, precision: np.ndarray) -> np.ndarray:
    """Smallest squared Mahalanobis distance to a class mean (shared covariance)."""
    best = np.full(len(features), np.inf)
    for mean in means:
        centred = features - mean
        best = np.minimum(best, np.einsum("ij,jk,ik->i", centred, precision, centred))
    return best


def auroc(negatives: np.ndarray, positives: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney, ties counted half): positives should score higher."""
    neg, pos = np.asarray(negatives, np.float64), np.asarray(positives, np.float64)
    if len(neg) == 0 or len(pos) == 0:
        return float("nan")
    values = np.concatenate([neg, pos])
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(len(values))
    sorted_values = values[order]
    i = 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and sorted_values[j + 1] == sorted_values[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    pos_ranks = ranks[len(neg) :].sum()
    return float((pos_ranks - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def fit_detectors(
    model: Any,
    reference: Dataset,
    *,
    kinds: Sequence[str] = KINDS,
    fpr: float = 0.05,
    calibration_fraction: float = 0.3,
    bits: int = 4,
    seed: int = 0,
    model_sha256: str | None = None,
    source: FeatureSource | None = None,
) -> DetectorSet:
    """Fit on ``reference`` (clean, labelled data the model was meant for) and set thresholds at ``fpr``."""
    unknown = [k for k in kinds if k not in KINDS]
    if unknown or not kinds:
        raise RobustnessError(
            f"unknown detector(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(KINDS)}"
        )
    if not (math.isfinite(fpr) and 0 < fpr < 0.5):
        raise RobustnessError(f"the target false-positive rate must be in (0, 0.5), got {fpr}")
    if not 1 <= bits <= 16:
        raise RobustnessError(f"bits must be between 1 and 16, got {bits}")
    feats_source = source or KerasFeatures(model)
    if not isinstance(feats_source, KerasFeatures):
        raise RobustnessError("fitting needs the model in process (its last Dense layer's weights)")
    keras_model = feats_source.model
    input_shape = tuple(d if isinstance(d, int) else None for d in keras_model.inputs[0].shape)
    n_classes = int(feats_source.kernel.shape[1])
    check_fits_model(reference, input_shape, n_classes)
    fit_part, calibration = reference.split(calibration_fraction, seed)
    if len(calibration) < math.ceil(2 / fpr):
        raise RobustnessError(
            f"{len(calibration)} calibration examples are too few for a {fpr:g} false-positive rate"
            f" (need at least {math.ceil(2 / fpr)}): give more reference data"
        )
    feats = feats_source.features(fit_part.x).astype(np.float64)
    present = np.unique(fit_part.y)
    if len(present) < n_classes:
        missing = sorted(set(range(n_classes)) - set(present.tolist()))[:10]
        raise RobustnessError(f"the reference data has no example of class(es) {missing}")
    means = np.stack([feats[fit_part.y == c].mean(axis=0) for c in range(n_classes)])
    centred = feats - means[fit_part.y]
    cov = centred.T @ centred / len(feats)
    ridge = 1e-6 * max(float(np.trace(cov)) / cov.shape[0], 1e-12)
    precision = np.linalg.pinv(cov + ridge * np.eye(cov.shape[0]))
    squeezers = Squeezers(bits, len(input_shape) in (3, 4), reference.clip_min, reference.clip_max)
    detectors = DetectorSet(
        head=feats_source.head,
        input_shape=input_shape,
        n_classes=n_classes,
        clip_min=reference.clip_min,
        clip_max=reference.clip_max,
        kernel=feats_source.kernel,
        bias=feats_source.bias,
        means=means,
        precision=precision,
        squeezers=squeezers,
        thresholds={k: 0.0 for k in kinds},
        target_fpr=fpr,
        calibration_fpr={},
        primary="mahalanobis" if "mahalanobis" in kinds else kinds[0],
        model_sha256=model_sha256,
    ).bind(feats_source)
    clean = detectors.scores(calibration.x)
    detectors.reference = reference_stats(feats_source.predict(calibration.x), n_classes)
    for kind, values in clean.items():
        threshold = float(np.quantile(values, 1 - fpr, method="higher"))
        detectors.thresholds[kind] = threshold
        detectors.calibration_fpr[kind] = float(np.mean(values > threshold))
    return detectors
