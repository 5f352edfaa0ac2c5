"""Attacks on real trained digits models: they must actually lower accuracy, within their budget."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from kerasguard.robustness import AttackSpec, as_classifier, choose_targets, evaluate, run_attack
from kerasguard.robustness.engines import PredictOnlyClassifier, predict_batched

from .conftest import Digits, as_images

pytestmark = [pytest.mark.slow, pytest.mark.keras]


def _clean_accuracy(model: Any, data: Any) -> float:
    classifier = as_classifier(model)
    return float(np.mean(np.argmax(predict_batched(classifier, data.x, 256), axis=1) == data.y))


def test_pgd_cuts_the_mlp_accuracy_sharply_at_eps_0_1(mlp: Any, digits: Digits) -> None:
    report = evaluate(mlp, digits.test, attacks=("fgsm", "pgd"), eps=(0.1,), steps=20)
    fgsm, pgd = report.rows
    assert report.clean_accuracy >= 0.9
    assert pgd.robust_accuracy <= report.clean_accuracy - 0.3
    assert pgd.robust_accuracy <= fgsm.robust_accuracy + 0.02  # the iterated attack is at least as strong


def test_pgd_cuts_the_cnn_accuracy_sharply_at_eps_0_1(cnn: Any, digits: Digits) -> None:
    images = as_images(digits.test)
    report = evaluate(cnn, images, attacks=("pgd",), eps=(0.1,), steps=20)
    assert report.clean_accuracy >= 0.9
    assert report.rows[0].robust_accuracy <= report.clean_accuracy - 0.3


def test_adversarial_examples_stay_in_the_ball_and_the_range(mlp: Any, digits: Digits) -> None:
    classifier = as_classifier(mlp)
    data = digits.test.take(100)
    for spec in (
        AttackSpec("pgd", 0.1, "linf", steps=20, restarts=2),
        AttackSpec("pgd", 1.0, "l2", steps=20),
        AttackSpec("fgsm", 0.1),
        AttackSpec("square", 0.1, steps=50),
    ):
        out = run_attack(classifier, data, spec)
        delta = (out.x_adv - data.x).reshape(len(data), -1)
        if spec.norm == "linf":
            assert np.abs(delta).max() <= spec.eps + 1e-5, spec
        else:
            assert np.linalg.norm(delta, axis=1).max() <= spec.eps + 1e-4, spec
        assert out.x_adv.min() >= 0.0 and out.x_adv.max() <= 1.0, spec
        assert np.abs(delta).max() > 0, spec


def test_l2_pgd_and_restarts(mlp: Any, digits: Digits) -> None:
    classifier = as_classifier(mlp)
    data = digits.test.take(200)
    clean = _clean_accuracy(mlp, data)
    l2 = run_attack(classifier, data, AttackSpec("pgd", 1.5, "l2", steps=20))
    assert l2.robust_accuracy <= clean - 0.3
    one = run_attack(classifier, data, AttackSpec("pgd", 0.05, steps=20, restarts=1), seed=3)
    five = run_attack(classifier, data, AttackSpec("pgd", 0.05, steps=20, restarts=5), seed=3)
    assert five.robust_accuracy <= one.robust_accuracy  # the first run is kept unless a later one succeeds


def test_targeted_pgd_sends_examples_to_their_targets(mlp: Any, digits: Digits) -> None:
    classifier = as_classifier(mlp)
    data = digits.test.take(200)
    targets = choose_targets(data.y, 10, "random", seed=1)
    assert not np.any(targets == data.y)
    out = run_attack(classifier, data, AttackSpec("pgd", 0.2, steps=20, targeted=True), targets=targets)
    chance = float(np.mean(np.argmax(predict_batched(classifier, data.x, 256), axis=1) == targets))
    assert out.success_rate >= 0.6 and out.success_rate > chance + 0.5


def test_square_attack_needs_only_predictions(mlp: Any, digits: Digits) -> None:
    """Through a predict-only wrapper (what the sandbox gives), Square still breaks the model."""
    calls = []

    def predict(x: np.ndarray) -> np.ndarray:
        calls.append(len(x))
        return np.asarray(mlp.predict(x, verbose=0))

    blind = PredictOnlyClassifier(predict, (None, 64), 10, "sandbox")
    data = digits.test.take(150)
    report = evaluate(blind, data, attacks=("square",), eps=(0.15,), square_queries=200, batch_size=150)
    assert report.backend == "sandbox" and any("Square" in note for note in report.notes)
    assert report.rows[0].robust_accuracy <= report.clean_accuracy - 0.2
    assert len(calls) > 10
