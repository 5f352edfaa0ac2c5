"""Retraining on the filtered set, and the numbers that say whether filtering helped.

The user's model is cloned (same architecture, fresh weights, fixed seed) and trained on the data
without the flagged samples, with the user's loss and optimizer settings when the model was saved
compiled. Clean accuracy needs a clean test set; attack success needs a *poisoned* test set (inputs
with the trigger, labelled with the attacker's target class): kerasguard does not guess triggers.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kerasguard.data.dataset import Array, IntArray
from kerasguard.errors import DataError


def predict_classes(model: Any, x: Array, batch_size: int = 256) -> IntArray:
    out = np.asarray(model.predict(x, batch_size=batch_size, verbose=0))
    if out.ndim == 2 and out.shape[1] > 1:
        return np.asarray(out.argmax(axis=1), dtype=np.int64)
    return np.asarray(out.reshape(len(x)) > 0.5, dtype=np.int64)


def accuracy(model: Any, data: tuple[Array, IntArray] | None) -> float | None:
    """Share of ``data`` classified as its labels (None without data)."""
    if data is None or len(data[0]) == 0:
        return None
    return float(np.mean(predict_classes(model, data[0]) == data[1]))


def _loss_for(model: Any, labels: IntArray) -> Any:
    loss = getattr(model, "loss", None)
    if loss:
        return loss
    outputs = int(model.outputs[0].shape[-1]) if getattr(model, "outputs", None) else 1
    return "sparse_categorical_crossentropy" if outputs > 1 else "binary_crossentropy"


def retrain(model: Any, x: Array, y: IntArray, *, epochs: int, batch_size: int, seed: int) -> Any:
    """A fresh copy of ``model``'s architecture trained on (x, y)."""
    import keras

    keras.utils.set_random_seed(seed)
    try:
        clone = keras.models.clone_model(model)
    except (ValueError, TypeError) as exc:
        raise DataError(f"cannot clone the model to retrain it: {str(exc)[:300]}") from None
    optimizer: Any = "adam"
    if getattr(model, "optimizer", None) is not None:
        try:
            optimizer = type(model.optimizer).from_config(model.optimizer.get_config())
        except (ValueError, TypeError, KeyError):
            optimizer = "adam"
    clone.compile(optimizer=optimizer, loss=_loss_for(model, y), metrics=["accuracy"])
    clone.fit(x, y, epochs=epochs, batch_size=batch_size, verbose=0, shuffle=True)
    return clone
