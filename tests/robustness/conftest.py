"""Digits (scikit-learn, offline) and two small classifiers trained once per session with fixed seeds.

The data is shuffled once and cut into three parts: ``train`` (the models learn it), ``reference``
(clean data the models never saw: detectors are fitted on it) and ``test`` (held out from both).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "jax")

from support import digitsets


@dataclass(frozen=True)
class Digits:
    train: Any
    reference: Any
    test: Any


@pytest.fixture(scope="session")
def digits() -> Digits:
    from kerasguard.robustness import make_dataset

    x, y = digitsets.load()
    order = np.random.default_rng(0).permutation(len(x))
    x, y = x[order], y[order]
    parts = [(0, 700), (700, 1300), (1300, len(x))]
    sets = [
        make_dataset(x[a:b], y[a:b], clip_min=0.0, clip_max=1.0, source=f"digits[{a}:{b}]") for a, b in parts
    ]
    return Digits(*sets)


def _fit(model: Any, data: Any, epochs: int) -> Any:
    return digitsets.train(model, data.x, data.y, epochs=epochs, seed=None)


def build_mlp() -> Any:
    import keras

    keras.utils.set_random_seed(0)
    return digitsets.mlp()


def build_cnn() -> Any:
    import keras

    keras.utils.set_random_seed(0)
    return digitsets.cnn(convs=1)


@pytest.fixture(scope="session")
def mlp(digits: Digits) -> Any:
    """Trained once; tests that change weights clone it first."""
    return _fit(build_mlp(), digits.train, epochs=20)


@pytest.fixture(scope="session")
def cnn(digits: Digits) -> Any:
    from kerasguard.robustness import make_dataset

    images = make_dataset(digits.train.x.reshape(-1, 8, 8, 1), digits.train.y, clip_min=0.0, clip_max=1.0)
    return _fit(build_cnn(), images, epochs=20)


@pytest.fixture(scope="session")
def saved_mlp(mlp: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("models") / "digits_mlp.keras"
    mlp.save(path)
    return path


def clone(model: Any) -> Any:
    """An independent copy with the same weights."""
    import keras

    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


def as_images(data: Any) -> Any:
    from kerasguard.robustness import make_dataset

    return make_dataset(data.x.reshape(-1, 8, 8, 1), data.y, clip_min=0.0, clip_max=1.0, source=data.source)
