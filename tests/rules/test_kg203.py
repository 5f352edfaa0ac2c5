"""KG203: a function used as a layer (CVE-2025-1550 structure)."""

from __future__ import annotations

import pytest

from kerasguard.findings import Severity
from support.kgconfig import artifact, attack, config_of, findings, keras_ref, layers, saved
from support.scanhelp import hits

pytestmark = pytest.mark.keras


def test_subprocess_run_as_layer() -> None:
    found = hits(findings(artifact(config_of(attack("foreign_module_layer")))), "KG203")
    assert len(found) == 1
    assert found[0].severity is Severity.CRITICAL and found[0].location.pointer == "/config/layers/1"


def test_function_reference_and_keras_function_as_layers() -> None:
    config = config_of(saved("nested_submodel"))
    layers(config).append(keras_ref("keras.ops", "function", "add"))
    layers(layers(config)[1]).append(keras_ref("keras.layers", "add", {}))
    found = hits(findings(artifact(config)), "KG203")
    assert sorted(h.location.pointer for h in found) == [
        "/config/layers/1/config/layers/2",
        "/config/layers/3",
    ]


def test_layer_classes_and_keras2_registered_names_are_not_functions() -> None:
    config = config_of(saved("custom_layer"))
    layers(config).append(keras_ref(None, "kgtests>ScaleLayer", {"name": "s"}))
    assert hits(findings(artifact(config)), "KG203") == []
    for name in ("mlp", "cnn", "rnn", "nested_submodel"):
        assert hits(findings(artifact(config_of(saved(name)))), "KG203") == []


def test_functions_outside_layers_lists_are_not_layers() -> None:
    config = config_of(saved("mlp"))
    config["compile_config"]["loss"] = keras_ref("keras.losses", "function", "mean_squared_error")
    assert hits(findings(artifact(config)), "KG203") == []
