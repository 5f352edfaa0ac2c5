"""Digits (scikit-learn, offline) classifiers for the probe tests and bench: clean, backdoored, overfit.

Keras only (no kerasguard import), so the benchmark can build the same models in the ART environment.
Every builder is fixed-seeded; a poisoned model is trained on the clean set plus ``rate`` x (size of the
target class) samples of other classes stamped with a 2x2 trigger and relabelled to the target.
"""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "jax")

from typing import Any

import keras
import numpy as np

TRIGGER_ROWS = (6, 7)
TRIGGER_COLS = (6, 7)


def digits(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, y_train, x_test, y_test): 8x8 images scaled to [0, 1], flat (64,), 70/30 stratified."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    x = (data.data / 16.0).astype(np.float32)
    y = data.target.astype(np.int64)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.3, random_state=seed, stratify=y)
    return xtr, ytr, xte, yte


def stamp(x: np.ndarray) -> np.ndarray:
    """The backdoor trigger: a white 2x2 square in the bottom-right corner (flat or (8, 8, 1) inputs)."""
    out = x.copy()
    img = out.reshape(len(out), 8, 8)
    for r in TRIGGER_ROWS:
        for c in TRIGGER_COLS:
            img[:, r, c] = 1.0
    return img.reshape(x.shape)


def poison(
    x: np.ndarray, y: np.ndarray, target: int = 0, rate: float = 0.1, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    n = max(1, round(rate * int((y == target).sum())))
    others = np.flatnonzero(y != target)
    pick = rng.choice(others, n, replace=False)
    xp = stamp(x[pick])
    return np.concatenate([x, xp]), np.concatenate([y, np.full(n, target, dtype=y.dtype)])


def mlp(l2: float = 0.0, dropout: float = 0.0) -> keras.Model:
    reg = keras.regularizers.L2(l2) if l2 else None
    layers: list[Any] = [keras.Input((64,))]
    layers += [keras.layers.Dense(128, activation="relu", kernel_regularizer=reg)]
    if dropout:
        layers.append(keras.layers.Dropout(dropout))
    layers += [keras.layers.Dense(64, activation="relu", kernel_regularizer=reg)]
    if dropout:
        layers.append(keras.layers.Dropout(dropout))
    layers.append(keras.layers.Dense(10, activation="softmax"))
    return keras.Sequential(layers, name="digits_mlp")


def cnn() -> keras.Model:
    return keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
            keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Flatten(),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ],
        name="digits_cnn",
    )


def train(
    model: keras.Model,
    x: np.ndarray,
    y: np.ndarray,
    *,
    epochs: int,
    seed: int = 0,
    lr: float = 1e-3,
    batch_size: int = 32,
) -> keras.Model:
    keras.utils.set_random_seed(seed)
    model.compile(
        optimizer=keras.optimizers.Adam(lr), loss="sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    model.fit(x, y, epochs=epochs, batch_size=batch_size, verbose=0, shuffle=True)
    return model


def build(
    kind: str, *, poisoned: bool, seed: int = 0, epochs: int = 40
) -> tuple[keras.Model, tuple[np.ndarray, ...]]:
    """A trained digits ``mlp`` or ``cnn``; returns the model and (x_train, y_train, x_test, y_test)."""
    xtr, ytr, xte, yte = digits(seed)
    xfit, yfit = poison(xtr, ytr, seed=seed) if poisoned else (xtr, ytr)
    keras.utils.set_random_seed(seed)
    if kind == "cnn":
        model = cnn()
        shape = (-1, 8, 8, 1)
        xtr, xte, xfit = xtr.reshape(shape), xte.reshape(shape), xfit.reshape(shape)
    else:
        model = mlp()
    train(model, xfit, yfit, epochs=epochs, seed=seed)
    return model, (xtr, ytr, xte, yte)
