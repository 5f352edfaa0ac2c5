"""tf.keras / Keras 2 configs (class names without modules) must not raise false alarms.

The config below is written by hand in the layout tf.keras 2.x `model.to_json()` produces: a
Functional model with a nested Sequential (called as node 1), TFOpLambda ops whose kwargs reference
other tensors, AddLoss, a module-less custom layer and Keras 2 initializer/regularizer objects.
"""

from __future__ import annotations

import copy
from typing import Any

from support.kgconfig import artifact, findings, serious
from support.scanhelp import hits

INIT = {"class_name": "GlorotUniform", "config": {"seed": None}}
ZEROS = {"class_name": "Zeros", "config": {}}
L2 = {"class_name": "L2", "config": {"l2": 1e-5}}


def dense(name: str, units: int, inbound: list[Any]) -> dict[str, Any]:
    config = {
        "name": name,
        "trainable": True,
        "dtype": "float32",
        "units": units,
        "activation": "relu",
        "use_bias": True,
        "kernel_initializer": INIT,
        "bias_initializer": ZEROS,
        "kernel_regularizer": L2,
        "bias_regularizer": None,
        "activity_regularizer": None,
        "kernel_constraint": {"class_name": "MaxNorm", "config": {"max_value": 2, "axis": 0}},
        "bias_constraint": None,
    }
    return {"class_name": "Dense", "config": config, "name": name, "inbound_nodes": inbound}


def tf_op(name: str, function: str, inbound: list[Any]) -> dict[str, Any]:
    config = {"name": name, "trainable": True, "dtype": "float32", "function": function}
    return {"class_name": "TFOpLambda", "config": config, "name": name, "inbound_nodes": inbound}


def input_layer(name: str, shape: list[Any]) -> dict[str, Any]:
    config = {"batch_input_shape": shape, "dtype": "float32", "sparse": False, "ragged": False, "name": name}
    return {"class_name": "InputLayer", "config": config, "name": name, "inbound_nodes": []}


SEQUENTIAL = {
    "class_name": "Sequential",
    "config": {
        "name": "features",
        "layers": [
            {"class_name": "InputLayer", "config": {"batch_input_shape": [None, 32, 32, 3], "name": "f_in"}},
            {
                "class_name": "Conv2D",
                "config": {
                    "name": "conv",
                    "filters": 16,
                    "kernel_size": [3, 3],
                    "strides": [1, 1],
                    "activation": "linear",
                    "kernel_initializer": INIT,
                    "bias_initializer": ZEROS,
                    "kernel_regularizer": L2,
                },
            },
            {"class_name": "BatchNormalization", "config": {"name": "bn", "axis": [3], "momentum": 0.99}},
            {"class_name": "ReLU", "config": {"name": "relu", "max_value": None}},
            {
                "class_name": "GlobalAveragePooling2D",
                "config": {"name": "gap", "data_format": "channels_last"},
            },
        ],
    },
    "name": "features",
    "inbound_nodes": [[["image", 0, 0, {}]]],
}

KERAS2_MODEL: dict[str, Any] = {
    "class_name": "Functional",
    "config": {
        "name": "model",
        "layers": [
            input_layer("image", [None, 32, 32, 3]),
            input_layer("extra", [None, 4]),
            SEQUENTIAL,
            dense("embed", 8, [[["features", 1, 0, {}]]]),
            tf_op("tf.expand_dims", "expand_dims", [["embed", 0, 0, {"axis": 1}]]),
            tf_op(
                "tf.math.multiply", "math.multiply", [["extra", 0, 0, {"y": ["embed", 0, 0], "name": None}]]
            ),
            tf_op("tf.compat.v1.transpose", "compat.v1.transpose", [["tf.math.multiply", 0, 0, {}]]),
            tf_op("tf.convert_to_tensor", "convert_to_tensor", [["tf.expand_dims", 0, 0, {}]]),
            {
                "class_name": "SlicingOpLambda",
                "config": {"name": "tf.__operators__.getitem", "function": "__operators__.getitem"},
                "name": "tf.__operators__.getitem",
                "inbound_nodes": [["tf.convert_to_tensor", 0, 0, {"slice_spec": {}}]],
            },
            {
                "class_name": "PairwiseScore",
                "config": {"name": "pairwise", "trainable": True, "temperature": 0.1},
                "name": "pairwise",
                "inbound_nodes": [
                    [["tf.compat.v1.transpose", 0, 0, {"other": ["tf.__operators__.getitem", 0, 0]}]]
                ],
            },
            tf_op("tf.math.reduce_mean", "math.reduce_mean", [["pairwise", 0, 0, {}]]),
            {
                "class_name": "AddLoss",
                "config": {"name": "add_loss", "unconditional": False},
                "name": "add_loss",
                "inbound_nodes": [[["tf.math.reduce_mean", 0, 0, {}]]],
            },
            dense("out", 2, [[["pairwise", 0, 0, {}]]]),
        ],
        "input_layers": [["image", 0, 0], ["extra", 0, 0]],
        "output_layers": [["out", 0, 0]],
    },
    "keras_version": "2.11.0",
    "backend": "tensorflow",
}

TRAINING = {
    "loss": {"class_name": "CategoricalCrossentropy", "config": {"from_logits": True, "name": "cce"}},
    "metrics": [[{"class_name": "MeanMetricWrapper", "config": {"name": "accuracy", "dtype": "float32"}}]],
    "optimizer_config": {"class_name": "Adam", "config": {"name": "Adam", "learning_rate": 0.001}},
}


def test_tf_keras_functional_config_raises_no_alarm() -> None:
    found = findings(artifact(KERAS2_MODEL, fmt="legacy_model", member=None), keras_version=None)
    assert serious(found) == []
    assert [f.evidence for f in hits(found, "KG205")] == ["class_name='PairwiseScore', name='pairwise'"]
    assert hits(found, "KG502") == []


def test_tf_keras_training_config_raises_no_alarm() -> None:
    found = findings(artifact(TRAINING, role="training_config", fmt="legacy_model", member=None))
    assert serious(found) == []


def test_graph_rule_still_sees_keras2_kwargs_references() -> None:
    broken = copy.deepcopy(KERAS2_MODEL)
    multiply = next(e for e in broken["config"]["layers"] if e["name"] == "tf.math.multiply")
    multiply["inbound_nodes"] = [["extra", 0, 0, {"y": ["ghost", 0, 0]}]]
    messages = [f.message for f in hits(findings(artifact(broken)), "KG502")]
    assert messages == [
        "inbound node 0 of 'tf.math.multiply' references layer 'ghost', which is not in the model"
    ]
