"""KG202: references to Keras APIs with side effects (CVE-2025-8747, CVE-2025-9906, GHSA-pwq7-2gvj-vg9v)."""

from __future__ import annotations

import pytest

from kerasguard.findings import Severity
from support.kgconfig import artifact, attack, config_of, findings, keras_ref, layers, saved, scan_e2e
from support.scanhelp import hits

pytestmark = pytest.mark.keras


def lam(function: object, name: str = "l") -> dict[str, object]:
    return keras_ref("keras.layers", "Lambda", {"name": name, "function": function, "arguments": {}})


def test_get_file_lambda_reference() -> None:
    found = hits(findings(artifact(config_of(attack("get_file_reference")))), "KG202")
    assert len(found) == 1
    assert found[0].severity is Severity.CRITICAL
    assert found[0].location.pointer == "/config/layers/1/config/function"
    assert "keras.utils.get_file" in found[0].message and "CVE-2025-8747" in found[0].cves


def test_safe_mode_off_then_load_model_chain() -> None:
    found = hits(findings(artifact(config_of(attack("safe_mode_off_chain")))), "KG202")
    messages = " ".join(h.message for h in found)
    assert len(found) == 2
    assert "set_global_attribute" in messages and "keras.models.load_model" in messages


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("keras.config", "enable_unsafe_deserialization"),
        ("keras.src.utils.file_utils", "get_file"),
        ("keras.saving", "load_model"),
        ("keras.visualization", "plot_image_gallery"),
        ("keras.applications", "ResNet50"),
        ("keras.datasets.mnist", "load_data"),
        ("keras.src.legacy.saving.legacy_h5_format", "load_model_from_hdf5"),
        ("keras.utils", "plot_model"),
    ],
)
def test_side_effect_functions_any_spelling(module: str, name: str) -> None:
    config = config_of(saved("mlp"))
    layers(config).insert(1, lam(keras_ref(module, "function", name, name)))
    found = hits(findings(artifact(config)), "KG202")
    assert len(found) == 1 and found[0].severity is Severity.CRITICAL


def test_non_modeling_class_reference() -> None:
    config = config_of(saved("mlp"))
    layers(config).insert(1, keras_ref("keras.callbacks", "RemoteMonitor", {"root": "http://x"}))
    layers(config).insert(2, keras_ref("keras.src.saving.file_editor", "KerasFileEditor", {}))
    assert len(hits(findings(artifact(config)), "KG202")) == 2


def test_tf_op_lambda_io_function_and_py_func_op() -> None:
    config = config_of(saved("mlp"))
    layers(config).insert(1, keras_ref(None, "TFOpLambda", {"name": "w", "function": "io.write_file"}))
    layers(config).insert(2, keras_ref(None, "TFOpLambda", {"name": "p", "function": "compat.v1.py_func"}))
    layers(config).insert(
        3, keras_ref(None, "TensorFlowOpLayer", {"name": "r", "node_def": {"op": "ReadFile"}})
    )
    layers(config).insert(4, keras_ref(None, "TFOpLambda", {"name": "ok", "function": "math.add"}))
    found = hits(findings(artifact(config)), "KG202")
    assert sorted(h.location.pointer for h in found) == [
        "/config/layers/1",
        "/config/layers/2",
        "/config/layers/3",
    ]


def test_modeling_functions_are_not_side_effects() -> None:
    config = config_of(saved("mlp"))
    layers(config).insert(1, lam(keras_ref("keras.ops", "function", "relu", "relu")))
    layers(config).insert(2, lam(keras_ref("keras.activations", "function", "gelu", "gelu")))
    config["compile_config"]["loss"] = keras_ref("keras.metrics", "function", "mean_squared_error")
    assert hits(findings(artifact(config)), "KG202") == []
    assert hits(findings(artifact(config)), "KG204") == []


def test_scan_of_the_keras_archive_end_to_end() -> None:
    found = scan_e2e(attack("safe_mode_off_chain"))
    assert len(hits(found, "KG202")) == 2
