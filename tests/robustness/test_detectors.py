"""Detectors fitted at a target FPR on clean reference data; files that cannot be trusted are refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kerasguard.robustness import (
    DetectorFileError,
    KerasFeatures,
    evaluate_detectors,
    fit_detectors,
    load_detectors,
    save_detectors,
)

from .conftest import Digits

pytestmark = [pytest.mark.slow, pytest.mark.keras]


@pytest.fixture(scope="module")
def fitted(mlp: Any, digits: Digits) -> Any:
    return fit_detectors(
        mlp, digits.reference, fpr=0.05, calibration_fraction=0.5, seed=0, model_sha256="ab" * 32
    )


def test_fpr_on_held_out_clean_data_stays_near_the_target(fitted: Any, mlp: Any, digits: Digits) -> None:
    report = evaluate_detectors(fitted, mlp, digits.test, eps=0.1)
    for kind, fpr in report.held_out_fpr.items():
        assert fpr <= 0.10, (kind, fpr)
    for kind, fpr in fitted.calibration_fpr.items():
        assert fpr <= 0.05, (kind, fpr)
    rows = {(r.detector, r.inputs): r for r in report.rows}
    # Mahalanobis on penultimate features separates noise and inverted digits almost perfectly
    assert rows[("mahalanobis", "noise")].auroc > 0.95
    assert rows[("mahalanobis", "shifted")].auroc > 0.95
    assert rows[("mahalanobis", "noise")].detection_rate > 0.8
    assert rows[("squeeze", "adversarial")].examples > 20
    assert "mahalanobis" in report.to_text() and report.to_dict()["held_out_fpr"] == report.held_out_fpr


def test_saved_detectors_score_the_same_after_loading(
    fitted: Any, mlp: Any, digits: Digits, tmp_path: Path
) -> None:
    save_detectors(fitted, tmp_path / "det")
    loaded = load_detectors(tmp_path / "det", model_sha256="ab" * 32).bind(KerasFeatures(mlp))
    batch = digits.test.x[:50]
    for kind in fitted.kinds:
        np.testing.assert_allclose(loaded.score(batch, kind), fitted.score(batch, kind), rtol=1e-6, atol=1e-9)
    assert (loaded.is_outlier(batch) == fitted.is_outlier(batch)).all()
    noise = np.random.default_rng(0).uniform(0, 1, (20, 64)).astype(np.float32)
    assert loaded.is_outlier(noise).mean() > 0.8
    with pytest.raises(DetectorFileError, match="another model"):
        load_detectors(tmp_path / "det", model_sha256="cd" * 32)
    names = {p.name for p in (tmp_path / "det").iterdir()}
    assert names == {"detector.json", "detector.npz"}


def test_the_gateways_squeeze_path_on_an_image_model_gives_the_detectors_scores(
    cnn: Any, digits: Digits, tmp_path: Path
) -> None:
    """What ``kerasguard serve`` does per batch on a CNN: the worker squeezes the batch (bit depth and
    the 2x2 median filter), the sandboxed child predicts the copies with the batch, the monitor scores
    them; every kind equals what ``robustness detectors`` computes in process."""
    import kerasguard
    from kerasguard.serve.drift import Monitor

    from .conftest import as_images

    images = as_images(digits.reference)
    detector = fit_detectors(cnn, images, fpr=0.05, seed=0)
    assert detector.squeezers.median and detector.kinds[-1] == "squeeze"
    path = tmp_path / "cnn.keras"
    cnn.save(path)
    monitor = Monitor(detector, window=40, confidence_drop=0.15, p_value=0.001)
    x = np.concatenate([as_images(digits.test).x[:24], 1.0 - as_images(digits.test).x[:8]])
    copies = monitor.squeeze(x)
    assert len(copies) == 2  # bit depth, median
    with kerasguard.load_model(path) as model:
        served = model.serve(x, layer=monitor.head, squeezed=copies)
    got = monitor.scores(served.features, served.outputs, list(served.squeezed))
    expected = detector.scores(x)  # in process (fit_detectors bound the model)
    assert next(iter(got)) == detector.primary and set(got) == set(expected)
    for kind, values in expected.items():
        np.testing.assert_allclose(got[kind], values, rtol=1e-4, atol=1e-5, err_msg=kind)
