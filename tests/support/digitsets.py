"""Digits (scikit-learn, offline): the splits, the 2x2 trigger, poisoning and the small classifiers that
the probe, robustness and data-guard tests and the ML benchmarks train, with fixed seeds.

Keras, NumPy and scikit-learn only (no kerasguard import), so a benchmark can build the same models in
the ART environment (``sys.path`` + ``import digitsets``). Tests import it as a plain module (``tests/``
is on pytest's path).
"""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "jax")

from typing import Any

import keras
import numpy as np

TARGET = 0
TRIGGER_ROWS = (6, 7)
TRIGGER_COLS = (6, 7)


def load(*, scale: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """All 1,797 digits: flat (n, 64) float32 in [0, 1] (``scale``) or 8x8 images in [0, 16]."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = (data.data / 16.0).astype(np.float32) if scale else data.images.astype(np.float32)
    return x, data.target.astype(np.int64)


def digits(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, y_train, x_test, y_test): flat inputs scaled to [0, 1], 70/30 stratified."""
    from sklearn.model_selection import train_test_split

    x, y = load()
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.3, random_state=seed, stratify=y)
    return xtr, ytr, xte, yte


def digits_split(seed: int = 0) -> tuple[Any, Any, Any, Any]:
    """(x_train, x_test, y_train, y_test) as scikit-learn orders them: 8x8 images in [0, 16]."""
    from sklearn.model_selection import train_test_split

    x, y = load(scale=False)
    return tuple(train_test_split(x, y, test_size=0.3, random_state=seed, stratify=y))  # type: ignore[return-value]


def stamp(x: np.ndarray, value: float = 1.0) -> np.ndarray:
    """The backdoor trigger: a 2x2 square of ``value`` in the bottom-right corner (flat, 8x8 or 8x8x1)."""
    out = x.copy()
    img = out.reshape(len(out), 8, 8)
    for r in TRIGGER_ROWS:
        for c in TRIGGER_COLS:
            img[:, r, c] = value
    return img.reshape(x.shape)


def add_trigger(x: Any) -> Any:
    """The trigger at full intensity on unscaled images (the data-guard tests)."""
    return stamp(x, 16.0)


def poison(
    x: np.ndarray, y: np.ndarray, target: int = TARGET, rate: float = 0.1, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Append ``rate`` x (size of the target class) stamped samples of other classes labelled ``target``."""
    rng = np.random.default_rng(seed)
    n = max(1, round(rate * int((y == target).sum())))
    pick = rng.choice(np.flatnonzero(y != target), n, replace=False)
    return np.concatenate([x, stamp(x[pick])]), np.concatenate([y, np.full(n, target, dtype=y.dtype)])


def plant(x: Any, y: Any, share: float, seed: int = 0) -> tuple[Any, Any, Any]:
    """Poison in place (unscaled images) so that ``share`` of the poisoned target class are triggered
    images of other classes; returns the data and the poisoned indices."""
    rng = np.random.default_rng(seed)
    n_target = int((y == TARGET).sum())
    k = round(share * n_target / (1 - share))
    picked = rng.choice(np.flatnonzero(y != TARGET), k, replace=False)
    xp, yp = x.copy(), y.copy()
    xp[picked] = add_trigger(x[picked])
    yp[picked] = TARGET
    return xp, yp, picked


def mlp(
    l2: float = 0.0,
    dropout: float = 0.0,
    *,
    images: bool = False,
    name: str | None = "digits_mlp",
) -> keras.Model:
    """64-128-64-10; ``images``: takes unscaled 8x8 images (flattened and rescaled inside)."""
    reg = keras.regularizers.L2(l2) if l2 else None
    layers: list[Any] = (
        [keras.Input((8, 8)), keras.layers.Flatten(), keras.layers.Rescaling(1 / 16)]
        if images
        else [keras.Input((64,))]
    )
    layers += [keras.layers.Dense(128, activation="relu", kernel_regularizer=reg)]
    if dropout:
        layers.append(keras.layers.Dropout(dropout))
    layers += [keras.layers.Dense(64, activation="relu", kernel_regularizer=reg)]
    if dropout:
        layers.append(keras.layers.Dropout(dropout))
    layers.append(keras.layers.Dense(10, activation="softmax"))
    return keras.Sequential(layers, name=name)


def cnn(convs: int = 2) -> keras.Model:
    """8x8x1 -> Conv 16 (-> Conv 32) -> max-pool -> Dense 64 -> 10."""
    layers: list[Any] = [
        keras.Input((8, 8, 1)),
        keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
    ]
    if convs > 1:
        layers.append(keras.layers.Conv2D(32, 3, padding="same", activation="relu"))
    layers += [
        keras.layers.MaxPooling2D(),
        keras.layers.Flatten(),
        keras.layers.Dense(64, activation="relu"),
        keras.layers.Dense(10, activation="softmax"),
    ]
    return keras.Sequential(layers, name="digits_cnn")


def train(
    model: keras.Model,
    x: np.ndarray,
    y: np.ndarray,
    *,
    epochs: int,
    seed: int | None = 0,
    lr: float = 1e-3,
    batch_size: int = 32,
) -> keras.Model:
    """Adam, sparse cross-entropy; ``seed=None`` keeps the random state the model was built with."""
    if seed is not None:
        keras.utils.set_random_seed(seed)
    model.compile(
        optimizer=keras.optimizers.Adam(lr), loss="sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    model.fit(x, y, epochs=epochs, batch_size=batch_size, verbose=0, shuffle=True)
    return model


def train_mlp(x: Any, y: Any, seed: int = 0, epochs: int = 25) -> Any:
    """The data-guard tests' model: an image MLP built and trained from ``seed``."""
    keras.utils.set_random_seed(seed)
    return train(mlp(images=True, name=None), x, y, epochs=epochs, seed=None)


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


def run_on_backend(backend: str, code: str, *args: str, timeout: float = 600) -> Any:
    """Run ``code`` in a child interpreter on another Keras backend (Keras picks it once per process)
    with this tree's ``src`` on the path; the child's last stdout line, parsed as JSON."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {**os.environ, "KERAS_BACKEND": backend, "PYTHONPATH": src, "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])
