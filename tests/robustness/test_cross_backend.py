"""The same attack on the same weights gives the same robust accuracy on JAX and on PyTorch / TensorFlow.

The other backend runs in a child interpreter (Keras picks its backend once per process) on the
model file saved by the JAX side; PGD starts without random noise, so only float rounding differs.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kerasguard.robustness import AttackSpec, as_classifier, run_attack
from support import digitsets

from .conftest import Digits

pytestmark = [pytest.mark.slow, pytest.mark.keras]

CHILD = """
import json, sys
import keras, numpy as np
from kerasguard.robustness import AttackSpec, as_classifier, load_dataset, run_attack
model = keras.saving.load_model(sys.argv[1])
data = load_dataset(sys.argv[2])
classifier = as_classifier(model)
rows = {}
for norm, eps in (("linf", 0.1), ("l2", 1.0)):
    spec = AttackSpec("pgd", eps, norm, steps=20, random_start=False)
    rows[norm] = run_attack(classifier, data, spec).robust_accuracy
print(json.dumps({"backend": keras.backend.backend(), "kind": type(classifier).__name__, "rows": rows}))
"""


@pytest.mark.parametrize("backend", ["torch", "tensorflow"])
def test_pgd_robust_accuracy_matches_jax(
    backend: str, saved_mlp: Path, mlp: Any, digits: Digits, tmp_path: Path
) -> None:
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} is not installed (the torch extra installs PyTorch)")
    data = digits.test.take(200)
    np.savez(tmp_path / "data.npz", x=data.x, y=data.y, range=np.array([0.0, 1.0]))
    classifier = as_classifier(mlp)
    expected = {
        norm: run_attack(
            classifier, data, AttackSpec("pgd", eps, norm, steps=20, random_start=False)
        ).robust_accuracy  # type: ignore[arg-type]
        for norm, eps in (("linf", 0.1), ("l2", 1.0))
    }
    answer = digitsets.run_on_backend(backend, CHILD, str(saved_mlp), str(tmp_path / "data.npz"), timeout=240)
    assert answer["backend"] == backend and answer["kind"] == "TapeClassifier"
    assert expected["linf"] <= 0.7  # the attack really bites, so agreement means something
    for norm, accuracy in expected.items():
        assert abs(answer["rows"][norm] - accuracy) <= 0.01, (norm, answer, expected)
