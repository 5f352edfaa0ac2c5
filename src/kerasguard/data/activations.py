"""Penultimate-layer activations of a Keras model, on any backend (keras.Model + predict only).

The penultimate layer is the input of the model's last layer that has weights (the classifier
head), so a trailing Softmax/Activation layer does not hide it. A layer may also be named.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kerasguard.data.dataset import Array, FloatArray
from kerasguard.errors import DataError

MAX_FEATURES = 65_536


def feature_model(model: Any, layer: str | None = None) -> tuple[Any, str]:
    """(a keras.Model mapping the inputs to the penultimate activations, the layer's name)."""
    import keras

    try:
        inputs = model.inputs
    except (AttributeError, ValueError):
        inputs = None
    if not inputs:
        raise DataError(
            "the model has no symbolic inputs (a subclassed model?); its penultimate layer cannot be tapped",
            hint="build it with keras.Input (Sequential or functional), or pass activations yourself",
        )
    try:
        if layer is not None:
            target = model.get_layer(layer)
            return keras.Model(inputs, target.output), target.name
        head = next((lay for lay in reversed(model.layers) if lay.weights), None)
        if head is None:
            raise DataError("the model has no layer with weights")
        return keras.Model(inputs, head.input), f"input of {head.name}"
    except (ValueError, AttributeError) as exc:
        raise DataError(f"cannot tap layer {layer or 'before the head'}: {exc}") from None


def activations(
    model: Any, x: Array, layer: str | None = None, batch_size: int = 256
) -> tuple[FloatArray, str]:
    """(activations flattened to (samples, features), layer description)."""
    extractor, name = feature_model(model, layer)
    try:
        out = extractor.predict(x, batch_size=batch_size, verbose=0)
    except (ValueError, TypeError) as exc:
        raise DataError(f"the model does not accept these inputs: {str(exc)[:300]}") from None
    acts = np.asarray(out, dtype=np.float64).reshape(len(x), -1)
    if acts.shape[1] > MAX_FEATURES:
        raise DataError(f"layer {name} has {acts.shape[1]} features; name a smaller layer (--layer)")
    return acts, name
