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
