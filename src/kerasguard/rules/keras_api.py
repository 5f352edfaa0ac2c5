"""The allowlist of known modelling names, generated from keras 3.15.1 (``scripts/gen_keras_api.py``).

Shipped as package data so scanning never imports keras. Names a model legitimately references:
public layers, activations, losses, metrics, initializers, regularizers, constraints, optimizers,
schedules, ops, dtype policies, under their public and ``keras.src`` spellings.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

# Classes Keras 2 / tf.keras configs name without a module that Keras 3 no longer exports.
# Their risky members (TFOpLambda functions, TensorFlowOpLayer node_defs) are judged by the rules.
KERAS2_CLASS_NAMES = frozenset(
    {
        "Functional",
        "Model",
        "AddLoss",
        "AddMetric",
        "ClassMethod",
        "InstanceMethod",
        "InstanceProperty",
        "Sequential",
        "TFOpLambda",
        "SlicingOpLambda",
        "TensorFlowOpLayer",
        "ThresholdedReLU",
        "LocallyConnected1D",
        "LocallyConnected2D",
        "CuDNNLSTM",
        "CuDNNGRU",
        "DenseFeatures",
        "SequenceFeatures",
        "PeepholeLSTMCell",
        "RandomFourierFeatures",
        "Policy",
        "LossScaleOptimizer",
        "LossScaleOptimizerV3",
        "AbstractRNNCell",
        "InputLayer",
        "Normalization",
        "Reduction",
        "VarianceScaling",
    }
)


@dataclass(frozen=True)
class KerasApi:
    keras_version: str
    family: frozenset[str]
    classes: frozenset[str]  # qualified: keras.layers.Dense, keras.src.layers.core.dense.Dense
    class_names: frozenset[str]  # bare: Dense (Keras 2 configs carry no module)
    functions: frozenset[str]  # qualified: keras.activations.relu, keras.ops.add
    function_names: frozenset[str]  # bare: relu, add (tf-keras configs use other module paths)
    builtin_functions: frozenset[str]  # names Keras resolves for module "builtins"
    non_modeling: frozenset[str]  # keras.src.saving.serialization_lib.NON_MODELING_APIS
    gated_classes: frozenset[str]  # TFSMLayer, TorchModuleWrapper: load something from outside
    activation_names: frozenset[str]  # strings Keras resolves as activations ("relu", "swish")

    def in_family(self, module: str) -> bool:
        return module.split(".", 1)[0] in self.family


def _strings(data: dict[str, Any], key: str) -> frozenset[str]:
    value = data.get(key)
    if isinstance(value, dict):
        return frozenset(str(k) for k in value)
    if isinstance(value, list):
        return frozenset(str(v) for v in value)
    raise ValueError(f"keras_api.json: {key!r} missing or malformed")


@functools.cache
def keras_api() -> KerasApi:
    """Load the shipped allowlist once."""
    text = resources.files("kerasguard.rules").joinpath("data/keras_api.json").read_text("utf-8")
    data = json.loads(text)
    classes = _strings(data, "classes")
    functions = _strings(data, "functions")
    return KerasApi(
        keras_version=str(data["keras_version"]),
        family=_strings(data, "keras_family"),
        classes=classes,
        class_names=frozenset(c.rsplit(".", 1)[-1] for c in classes) | KERAS2_CLASS_NAMES,
        functions=functions,
        function_names=frozenset(f.rsplit(".", 1)[-1] for f in functions),
        builtin_functions=_strings(data, "builtin_functions"),
        non_modeling=_strings(data, "non_modeling_apis"),
        gated_classes=_strings(data, "gated_classes"),
        activation_names=_strings(data, "activation_names"),
    )


def is_activation_name(name: str) -> bool:
    """A string Keras resolves itself as an activation (anything else needs a custom object)."""
    return name in keras_api().activation_names
