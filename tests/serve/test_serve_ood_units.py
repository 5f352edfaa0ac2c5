"""The pieces of OOD monitoring without a server: store attachments and their checks, drift windows."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kerasguard.robustness.detector_files import (
    MAX_ATTACHMENT_BYTES,
    attachment,
    from_attachment,
    save_detectors,
)
from kerasguard.robustness.detectors import DetectorSet, Squeezers, mahalanobis
from kerasguard.robustness.errors import DetectorFileError
from kerasguard.serve.drift import Monitor, chi2_critical

SHA = "ab" * 32
UNIFORM = {"confidence_mean": 0.9, "class_fractions": [0.25] * 4, "count": 400}


def detector(reference: dict[str, Any] | None = UNIFORM, width: int = 6) -> DetectorSet:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(width, width))
    return DetectorSet(
        head="out",
        input_shape=(None, 8),
        n_classes=4,
        clip_min=0.0,
        clip_max=1.0,
        kernel=rng.normal(size=(width, 4)),
        bias=np.zeros(4),
        means=rng.normal(size=(4, width)),
        precision=a @ a.T + np.eye(width),
        squeezers=Squeezers(4, False, 0.0, 1.0),
        thresholds={"mahalanobis": 12.5},
        target_fpr=0.05,
        calibration_fpr={"mahalanobis": 0.05},
        model_sha256=SHA,
        reference=reference,
    )


def saved(tmp_path: Path, **kwargs: Any) -> Path:
    return save_detectors(detector(**kwargs), tmp_path / "det")


def test_attachment_round_trip_keeps_every_number(tmp_path: Path) -> None:
    value = attachment(saved(tmp_path), model_sha256=SHA)
    json.dumps(value)  # it is what the store keeps as provenance
    back = from_attachment(value, model_sha256="sha256:" + SHA, where="t/m:1")
    original = detector()
    np.testing.assert_array_equal(back.precision, original.precision)
    np.testing.assert_array_equal(back.means, original.means)
    assert back.thresholds == original.thresholds and back.reference == UNIFORM


def _edit(value: dict[str, Any], part: str, change: Any) -> dict[str, Any]:
    data = bytearray(base64.b64decode(value[part]))
    change(data)
    return {**value, part: base64.b64encode(bytes(data)).decode()}


def test_every_tampered_attachment_is_refused(tmp_path: Path) -> None:
    value = attachment(saved(tmp_path), model_sha256=SHA)

    def flip_last(data: bytearray) -> None:
        data[-30] ^= 1

    def raise_threshold(data: bytearray) -> None:
        doc = json.loads(bytes(data))
        doc["thresholds"]["mahalanobis"] = 1e12
        data[:] = json.dumps(doc).encode()

    cases = {
        "sha256 mismatch": _edit(value, "npz", flip_last),
        "digest mismatch": _edit(value, "json", raise_threshold),
        "not base64": {**value, "npz": "***"},
        "no valid 'json' part": {**value, "json": "A" * (MAX_ATTACHMENT_BYTES + 4)},
        "is not a kerasguard.detector-attachment/1": {**value, "format": "other"},
    }
    for message, bad in cases.items():
        with pytest.raises(DetectorFileError, match=message):
            from_attachment(bad, model_sha256=SHA, where="t/m:1")
    with pytest.raises(DetectorFileError, match="fitted on another model"):
        from_attachment(value, model_sha256="cd" * 32, where="t/m:1")


def test_attach_refuses_what_serve_cannot_use(tmp_path: Path) -> None:
    with pytest.raises(DetectorFileError, match="reference statistics"):
        attachment(saved(tmp_path, reference=None), model_sha256=SHA)
    with pytest.raises(DetectorFileError, match="the store attaches at most"):
        attachment(save_detectors(detector(width=80), tmp_path / "wide"), model_sha256=SHA)
    with pytest.raises(DetectorFileError, match="fitted on another model"):
        attachment(saved(tmp_path), model_sha256="cd" * 32)
    folder = saved(tmp_path)
    doc = json.loads((folder / "detector.json").read_text())
    doc["reference"]["class_fractions"] = [1.0, 1.0, 0.0, 0.0]  # re-digested, but not fractions
    import hashlib

    from kerasguard.robustness.detector_files import _canonical

    doc["digest"] = hashlib.sha256(_canonical(doc)).hexdigest()
    (folder / "detector.json").write_text(json.dumps(doc))
    with pytest.raises(DetectorFileError, match="reference statistics are malformed"):
        attachment(folder, model_sha256=SHA)


def onehot(classes: list[int], confidence: float) -> np.ndarray:
    out = np.full((len(classes), 4), (1 - confidence) / 3)
    out[np.arange(len(classes)), classes] = confidence
    return out


def test_drift_windows() -> None:
    monitor = Monitor(detector(), window=40, confidence_drop=0.15, p_value=0.001)
    balanced = [i % 4 for i in range(40)]
    assert monitor.observe(onehot(balanced[:25], 0.9)) == []  # the window is not full yet
    assert monitor.observe(onehot(balanced[25:], 0.9)) == []  # full, like the reference
    [alarm] = monitor.observe(onehot(balanced, 0.5))
    assert alarm.kind == "confidence" and alarm.detail["window_mean"] == 0.5
    [alarm] = monitor.observe(onehot([2] * 40, 0.9))
    assert alarm.kind == "class_mix" and alarm.detail["counts"] == [0, 0, 40, 0]
    # logits (not probabilities) are turned into probabilities first
    logits = np.log(onehot(balanced, 0.9)) + 3.0
    assert monitor.observe(logits) == []
    # two windows in one batch: two verdicts
    assert [a.kind for a in monitor.observe(onehot([1] * 80, 0.9))] == ["class_mix", "class_mix"]


def test_chi2_critical_values() -> None:
    # table values: chi2.ppf(0.999, 9) = 27.877, chi2.ppf(0.99, 3) = 11.345, chi2.ppf(0.95, 1) = 3.841
    assert chi2_critical(9, 0.001) == pytest.approx(27.877, rel=0.02)
    assert chi2_critical(3, 0.01) == pytest.approx(11.345, rel=0.02)
    assert chi2_critical(1, 0.05) == pytest.approx(3.841, rel=0.03)


def test_scores_are_the_detectors_and_non_finite_features_are_outliers() -> None:
    det = detector()
    monitor = Monitor(det, window=40, confidence_drop=0.15, p_value=0.001)
    feats = np.random.default_rng(1).normal(size=(5, 6))
    outputs = onehot([0, 1, 2, 3, 0], 0.9)
    scores = monitor.scores(feats, outputs, [])
    assert list(scores) == ["mahalanobis"] and monitor.squeeze(np.zeros((5, 8))) == []
    np.testing.assert_allclose(scores["mahalanobis"], mahalanobis(feats, det.means, det.precision))
    feats[2, 0] = np.inf
    assert np.isinf(monitor.scores(feats, outputs, [])["mahalanobis"][2])
    with pytest.raises(ValueError, match="width"):
        monitor.scores(np.zeros((2, 7)), outputs[:2], [])
    with pytest.raises(ValueError, match="none came"):
        monitor.scores(None, outputs, [])


class LinearSource:
    """A stand-in for the model: features are a fixed linear map of the inputs (flattened to 8 values
    -> 6), outputs the softmax of a second map of the features (6 -> 4), so squeezing changes them."""

    head = "out"

    def __init__(self) -> None:
        rng = np.random.default_rng(3)
        self.map, self.out = rng.normal(size=(8, 6)), 4 * rng.normal(size=(6, 4))

    def features(self, x: np.ndarray) -> np.ndarray:
        flat = np.asarray(x, np.float64).reshape(len(x), -1)
        return flat[:, :8] @ self.map

    def predict(self, x: np.ndarray) -> np.ndarray:
        logits = self.features(x) @ self.out
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        return np.asarray(e / e.sum(axis=1, keepdims=True), np.float32)


def gateway_scores(det: DetectorSet, source: LinearSource, x: np.ndarray) -> dict[str, np.ndarray]:
    """What the gateway computes: the worker squeezes the batch, the child returns the features and
    the outputs on the batch and on each squeezed copy, the monitor scores them."""
    monitor = Monitor(det, window=40, confidence_drop=0.15, p_value=0.001)
    copies = monitor.squeeze(x)
    features = source.features(x) if monitor.head is not None else None
    return monitor.scores(features, source.predict(x), [source.predict(c) for c in copies])


@pytest.mark.parametrize(
    "kinds",
    [
        ["mahalanobis", "max-softmax", "energy", "squeeze"],
        ["energy", "max-softmax"],
        ["max-softmax"],
        ["energy"],
        ["squeeze"],
        ["squeeze", "mahalanobis"],
    ],
)
def test_gateway_scores_equal_the_robustness_scores_for_each_kind(kinds: list[str]) -> None:
    det = detector()
    det.thresholds = {k: 0.0 for k in kinds}
    det.primary = kinds[0]
    source = LinearSource()
    det.bind(source)
    x = np.random.default_rng(4).uniform(0, 1, size=(7, 8)).astype(np.float32)
    expected = det.scores(x, kinds)  # what `kerasguard robustness detectors` computes
    got = gateway_scores(det, source, x)
    assert list(got) == kinds
    for kind in kinds:
        np.testing.assert_array_equal(got[kind], expected[kind])
    if "max-softmax" in kinds:
        assert np.all((got["max-softmax"] >= -1) & (got["max-softmax"] <= -0.25))
    if "squeeze" in kinds:
        assert np.all((got["squeeze"] >= 0) & (got["squeeze"] <= 2)) and got["squeeze"].max() > 0
        assert Monitor(det, 40, 0.15, 0.001).head == ("out" if len(kinds) > 1 else None)


def test_gateway_squeezes_images_with_the_median_filter_too() -> None:
    """On image inputs the squeezers are bit depth and a 2x2 median: two copies, the larger change."""
    det = detector()
    det.input_shape, det.thresholds, det.primary = (None, 2, 2, 2), {"squeeze": 0.0}, "squeeze"
    det.squeezers = Squeezers(2, True, 0.0, 1.0)
    source = LinearSource()
    det.bind(source)
    x = np.random.default_rng(5).uniform(0, 1, size=(9, 2, 2, 2)).astype(np.float32)
    monitor = Monitor(det, window=40, confidence_drop=0.15, p_value=0.001)
    assert len(monitor.squeeze(x)) == 2
    got = gateway_scores(det, source, x)
    np.testing.assert_array_equal(got["squeeze"], det.scores(x, ["squeeze"])["squeeze"])
    only_bits = np.abs(source.predict(x) - source.predict(monitor.squeeze(x)[0])).sum(axis=1)
    assert np.all(got["squeeze"] >= only_bits - 1e-6) and np.any(got["squeeze"] > only_bits + 1e-6)
    # NaN outputs (an overflowing model) score infinity, never clean
    broken = source.predict(x)
    broken[3] = np.nan
    copies = [source.predict(c) for c in monitor.squeeze(x)]
    assert np.isinf(monitor.scores(None, broken, copies)["squeeze"][3])


def test_every_fitted_kind_is_served_with_reference_statistics(tmp_path: Path) -> None:
    from kerasguard.robustness.detector_files import check_servable

    det = detector()
    det.thresholds, det.primary = {"energy": -3.0}, "energy"
    check_servable(det, "t")  # energy alone is served
    det.thresholds, det.primary = {"squeeze": 0.2}, "squeeze"
    check_servable(det, "t")  # and squeeze alone
    det.reference = None
    with pytest.raises(DetectorFileError, match="cannot be served"):
        check_servable(det, "t")


def test_ood_headers_primary_first_then_one_per_kind() -> None:
    from kerasguard.serve.app import ood_headers

    headers = ood_headers({"energy": np.array([-3.5, 1.0]), "max-softmax": np.array([-0.9, -0.3])})
    assert headers == {
        "X-KerasGuard-OOD-Score": "-3.5,1",
        "X-KerasGuard-OOD-Score-Energy": "-3.5,1",
        "X-KerasGuard-OOD-Score-Max-Softmax": "-0.9,-0.3",
    }


def test_a_detector_that_records_no_model_is_refused_where_a_model_is_named(tmp_path: Path) -> None:
    """An unkeyed digest can be recomputed after setting ``model_sha256`` to null: no binding, no load."""
    from kerasguard.robustness.detector_files import load_detectors

    unbound = detector()
    unbound.model_sha256 = None
    folder = save_detectors(unbound, tmp_path / "unbound")
    with pytest.raises(DetectorFileError, match="do not record the model"):
        load_detectors(folder, model_sha256="cd" * 32)
    with pytest.raises(DetectorFileError, match="do not record the model"):
        attachment(folder, model_sha256=SHA)
    assert load_detectors(folder).model_sha256 is None  # no model named: nothing to compare
    # sealed in the store, it is bound to its version by the MAC-covered entry: read as it is
    from kerasguard.robustness.detector_files import from_attachment

    value = attachment(folder)
    assert from_attachment(value, model_sha256=SHA, where="t/m:1").model_sha256 is None
