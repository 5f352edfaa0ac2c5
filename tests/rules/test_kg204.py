"""KG204: references not on the allowlist of known modelling names."""

from __future__ import annotations

import pytest

from kerasguard.findings import Severity
from kerasguard.policy import policy_from_mapping
from support.kgconfig import artifact, config_of, findings, keras_ref, layers, saved
from support.scanhelp import hits

pytestmark = pytest.mark.keras


def lam(function: object) -> dict[str, object]:
    return keras_ref("keras.layers", "Lambda", {"name": "l", "function": function, "arguments": {}})


def test_unknown_keras_function_is_high() -> None:
    config = config_of(saved("mlp"))
    layers(config).insert(1, lam(keras_ref("keras.tree", "function", "map_structure")))
    layers(config).insert(2, lam(keras_ref("keras.src.ops.core", "function", "not_a_real_op")))
    found = hits(findings(artifact(config)), "KG204")
    assert [h.severity for h in found] == [Severity.HIGH, Severity.HIGH]
    assert "keras.tree.map_structure" in found[0].message


def test_unknown_keras_class_is_medium() -> None:
    config = config_of(saved("mlp"))
    layers(config).insert(1, keras_ref("keras.layers", "FancyLayerFromTheFuture", {"name": "f"}))
    found = hits(findings(artifact(config)), "KG204")
    assert len(found) == 1 and found[0].severity is Severity.MEDIUM


def test_keras_function_named_as_class_is_high() -> None:
    config = config_of(saved("mlp"))
    layers(config).insert(1, keras_ref("keras.src.ops.numpy", "where", {}))
    found = hits(findings(artifact(config)), "KG204")
    assert len(found) == 1 and found[0].severity is Severity.HIGH


def test_unknown_tf_op_lambda_and_raw_tf_op() -> None:
    config = config_of(saved("mlp"))
    layers(config).insert(1, keras_ref(None, "TFOpLambda", {"name": "a", "function": "strange.thing"}))
    layers(config).insert(2, keras_ref(None, "TFOpLambda", {"name": "b", "function": "nn.relu"}))
    layers(config).insert(3, keras_ref(None, "TFOpLambda", {"name": "c", "function": "compat.v1.transpose"}))
    layers(config).insert(4, keras_ref(None, "TensorFlowOpLayer", {"name": "d", "node_def": {"op": "AddV2"}}))
    found = hits(findings(artifact(config)), "KG204")
    assert [(h.location.pointer, h.severity) for h in found] == [
        ("/config/layers/1", Severity.HIGH),
        ("/config/layers/4", Severity.MEDIUM),
    ]


def test_policy_allows_a_function() -> None:
    config = config_of(saved("mlp"))
    layers(config).insert(1, lam(keras_ref("keras.tree", "function", "flatten")))
    policy = policy_from_mapping({"allow": {"functions": [{"name": "keras.tree.*", "reason": "tree utils"}]}})
    assert hits(findings(artifact(config), policy=policy), "KG204") == []
    assert hits(findings(artifact(config), policy=policy), "KG205")[0].severity is Severity.INFO


def test_every_keras_name_in_benign_models_is_known() -> None:
    for name in ("mlp", "cnn", "rnn", "time_distributed", "mixed_precision", "embedding", "nested_submodel"):
        assert hits(findings(artifact(config_of(saved(name)))), "KG204") == [], name


def test_functional_ops_written_by_real_keras_are_known() -> None:
    import keras

    from support.kgconfig import artifact, findings, workdir

    inputs = keras.Input((4,))
    x = keras.ops.add(inputs, keras.ops.exp(inputs))
    x = keras.layers.Dense(2, activation=keras.activations.gelu)(x)
    model = keras.Model(inputs, keras.ops.softmax(x))
    model.compile(loss=keras.losses.mean_squared_error, metrics=[keras.metrics.mean_absolute_error])
    path = workdir() / "ops_functional.keras"
    model.save(path)
    config = config_of(path)
    assert hits(findings(artifact(config)), "KG204") == []
    assert hits(findings(artifact(config)), "KG201") == [] and hits(findings(artifact(config)), "KG205") == []
