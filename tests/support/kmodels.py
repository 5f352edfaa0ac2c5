"""Real Keras models saved by real Keras (JAX backend), for tests. Import only in tests that need keras.

Every builder returns the built model; ``save_all`` writes it in every format kerasguard reads.
Malicious artifacts are built by the test modules that need them, from the published
mechanisms of the Keras loading advisories (docs/rules.md), never downloaded.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras
import numpy as np


@keras.saving.register_keras_serializable(package="kgtests")
class ScaleLayer(keras.layers.Layer):
    """A registered custom layer: benign, but not a Keras built-in."""

    def __init__(self, factor: float = 2.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.factor = factor

    def call(self, x: Any) -> Any:
        return x * self.factor

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "factor": self.factor}


def mlp() -> keras.Model:
    model = keras.Sequential(
        [
            keras.Input((8,)),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(3, activation="softmax"),
        ],
        name="mlp",
    )
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def cnn() -> keras.Model:
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", kernel_regularizer=keras.regularizers.L2(1e-4))(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Activation("relu")(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Dropout(0.2)(x)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(4, kernel_constraint=keras.constraints.MaxNorm(2.0))(x)
    model = keras.Model(inputs, outputs, name="cnn")
    model.compile(optimizer="sgd", loss="mse")
    return model


def rnn() -> keras.Model:
    inputs = keras.Input((5, 4))
    x = keras.layers.LSTM(6, return_sequences=True)(inputs)
    x = keras.layers.Bidirectional(keras.layers.GRU(3))(x)
    outputs = keras.layers.Dense(2)(x)
    return keras.Model(inputs, outputs, name="rnn")


def conv1d_time_distributed() -> keras.Model:
    inputs = keras.Input((6, 10, 2))
    x = keras.layers.TimeDistributed(keras.layers.Conv1D(4, 3))(inputs)
    x = keras.layers.TimeDistributed(keras.layers.GlobalAveragePooling1D())(x)
    outputs = keras.layers.Dense(1)(x)
    return keras.Model(inputs, outputs, name="td")


def custom_layer() -> keras.Model:
    return keras.Sequential([keras.Input((4,)), ScaleLayer(3.0), keras.layers.Dense(2)], name="custom")


def mixed_precision() -> keras.Model:
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = keras.Sequential(
            [keras.Input((4,)), keras.layers.Dense(8), keras.layers.Dense(2, dtype="float32")]
        )
    finally:
        keras.mixed_precision.set_global_policy("float32")
    return model


def embedding() -> keras.Model:
    return keras.Sequential(
        [
            keras.Input((10,), dtype="int32"),
            keras.layers.Embedding(1000, 16),
            keras.layers.GlobalAveragePooling1D(),
        ],
        name="embed",
    )


def nested_submodel() -> keras.Model:
    inner = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4, activation="tanh")], name="inner")
    inputs = keras.Input((4,))
    outputs = keras.layers.Dense(1)(inner(inputs))
    return keras.Model(inputs, outputs, name="outer")


def big_dense(units: int = 2048, layers: int = 3) -> keras.Model:
    """A model with tens of MB of real weights (3 x 2048x2048 float32 = 48 MiB)."""
    model = keras.Sequential([keras.Input((units,))] + [keras.layers.Dense(units) for _ in range(layers)])
    rng = np.random.default_rng(0)
    for layer in model.layers:
        kernel, bias = layer.get_weights()
        layer.set_weights([rng.standard_normal(kernel.shape).astype("float32"), bias])
    return model


BENIGN: dict[str, Callable[[], keras.Model]] = {
    "mlp": mlp,
    "cnn": cnn,
    "rnn": rnn,
    "time_distributed": conv1d_time_distributed,
    "custom_layer": custom_layer,
    "mixed_precision": mixed_precision,
    "embedding": embedding,
    "nested_submodel": nested_submodel,
}


def save_keras(model: keras.Model, path: Path) -> Path:
    model.save(path)
    return path


def save_all(model: keras.Model, folder: Path, name: str) -> dict[str, Path]:
    """Save one model as .keras, legacy .h5, .weights.h5, sharded weights and npz-in-.keras."""
    folder.mkdir(parents=True, exist_ok=True)
    out = {
        "keras": folder / f"{name}.keras",
        "h5": folder / f"{name}.h5",
        "weights_h5": folder / f"{name}.weights.h5",
        "sharded": folder / f"{name}.weights.json",
    }
    model.save(out["keras"])
    model.save(out["h5"])
    model.save_weights(out["weights_h5"])
    model.save_weights(out["sharded"], max_shard_size=0.0001)
    return out
