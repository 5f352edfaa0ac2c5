"""Adversarial training must raise robust accuracy well above the undefended model's."""

from __future__ import annotations

from typing import Any

import pytest

from kerasguard.robustness import adversarial_fit

from .conftest import Digits, clone

pytestmark = [pytest.mark.slow, pytest.mark.keras]


@pytest.mark.parametrize("method", ["pgd", "trades"])
def test_adversarial_training_raises_pgd_accuracy_at_eps_0_1(mlp: Any, digits: Digits, method: str) -> None:
    model = clone(mlp)
    report = adversarial_fit(
        model,
        digits.train,
        validation=digits.test,
        method=method,
        eps=0.1,
        steps=7,
        epochs=8,
        seed=0,  # type: ignore[arg-type]
    )
    assert report.before.robust_accuracy <= report.before.clean_accuracy - 0.3
    assert report.after.robust_accuracy >= report.before.robust_accuracy + 0.15, report.to_text()
    assert report.after.clean_accuracy >= 0.85, report.to_text()
    # the weights really changed in the model the caller holds
    assert any((a != b).any() for a, b in zip(model.get_weights(), mlp.get_weights(), strict=True))
    assert (
        "before" in report.to_text()
        and report.to_dict()["after"]["robust_accuracy"] == report.after.robust_accuracy
    )
