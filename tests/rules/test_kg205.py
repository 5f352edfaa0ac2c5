"""KG205: registered custom objects from outside Keras (review, or info when allowlisted)."""

from __future__ import annotations

import pytest

from kerasguard.findings import Severity
from kerasguard.policy import policy_from_mapping
from support.kgconfig import artifact, config_of, findings, keras_ref, layers, saved
from support.scanhelp import hits

pytestmark = pytest.mark.keras


def test_registered_custom_layer_is_medium_review() -> None:
    found = hits(findings(artifact(config_of(saved("custom_layer")))), "KG205")
    assert len(found) == 1
    assert found[0].severity is Severity.MEDIUM
    assert "kgtests>ScaleLayer" in found[0].message and found[0].location.pointer == "/config/layers/1"


def test_custom_layer_model_has_nothing_above_medium() -> None:
    found = findings(artifact(config_of(saved("custom_layer"))), keras_version=None)
    assert max(f.severity for f in found) is Severity.MEDIUM


@pytest.mark.parametrize(
    ("entry", "severity"),
    [
        ({"name": "kgtests>ScaleLayer", "reason": "our layer"}, Severity.INFO),
        ({"name": "support.kmodels.ScaleLayer", "reason": "our layer"}, Severity.INFO),
        ({"name": "kgtests>*", "reason": "our layer"}, Severity.INFO),
        (
            {"name": "ScaleLayer", "reason": "a bare name cannot cover a module-qualified object"},
            Severity.MEDIUM,
        ),
    ],
)
def test_allowlisted_custom_object_is_info_with_reason(entry: dict[str, str], severity: Severity) -> None:
    policy = policy_from_mapping({"allow": {"custom_objects": [entry]}})
    found = hits(findings(artifact(config_of(saved("custom_layer"))), policy=policy), "KG205")
    assert len(found) == 1 and found[0].severity is severity
    assert (entry["reason"] in found[0].message) is (severity is Severity.INFO)


def test_bare_name_allowlist_covers_keras2_configs() -> None:
    config = config_of(saved("mlp"))
    layers(config).insert(1, keras_ref(None, "MyAttention", {"name": "att"}))
    policy = policy_from_mapping({"allow": {"custom_objects": [{"name": "MyAttention", "reason": "ours"}]}})
    assert [h.severity for h in hits(findings(artifact(config), policy=policy), "KG205")] == [Severity.INFO]


def test_module_allowlist() -> None:
    policy = policy_from_mapping(
        {"allow": {"modules": [{"name": "support.kmodels", "reason": "test models"}]}}
    )
    found = hits(findings(artifact(config_of(saved("custom_layer"))), policy=policy), "KG205")
    assert [h.severity for h in found] == [Severity.INFO]


def test_module_allowlist_never_covers_the_standard_library() -> None:
    config = config_of(saved("mlp"))
    layers(config).insert(1, keras_ref("subprocess", "Popen", {}))
    policy = policy_from_mapping({"allow": {"modules": [{"name": "*", "reason": "everything"}]}})
    assert len(hits(findings(artifact(config), policy=policy), "KG201")) == 1


def test_keras2_custom_object_without_module() -> None:
    config = config_of(saved("mlp"))
    layers(config).insert(1, keras_ref(None, "MyAttention", {"name": "att"}))
    found = hits(findings(artifact(config)), "KG205")
    assert len(found) == 1 and "MyAttention" in found[0].message


def test_keras_hub_registered_function_is_review() -> None:
    config = config_of(saved("mlp"))
    config["config"]["layers"][1]["config"]["activation"] = keras_ref(
        "keras_hub.src.utils.keras_utils",
        "function",
        "keras_hub>gelu_approximate",
        "keras_hub>gelu_approximate",
    )
    assert [h.severity for h in hits(findings(artifact(config)), "KG205")] == [Severity.MEDIUM]
    assert hits(findings(artifact(config)), "KG204") == []


def test_plain_keras_models_have_no_custom_objects() -> None:
    for name in ("mlp", "cnn", "rnn", "embedding"):
        assert hits(findings(artifact(config_of(saved(name)))), "KG205") == []


def test_custom_activation_by_name_is_low_and_allowlistable() -> None:
    config = config_of(saved("mlp"))
    layers(config)[1]["config"]["activation"] = "my_swishy"
    layers(config)[2]["config"]["activation"] = "swish"
    found = hits(findings(artifact(config)), "KG205")
    assert [(h.location.pointer, h.severity) for h in found] == [
        ("/config/layers/1/config/activation", Severity.LOW)
    ]
    policy = policy_from_mapping({"allow": {"custom_objects": [{"name": "my_swishy", "reason": "ours"}]}})
    assert [h.severity for h in hits(findings(artifact(config), policy=policy), "KG205")] == [Severity.INFO]


def test_tf_keras_module_paths_for_keras_names_are_known() -> None:
    config = config_of(saved("mlp"))
    layers(config)[1]["module"] = "tf_keras.src.layers.core.dense"
    layers(config)[1]["config"]["activation"] = keras_ref(
        "tf_keras.src.activations", "function", "relu", "relu"
    )
    layers(config).append(keras_ref("tf_keras.src.layers", "MyOwnThing", {"name": "x"}))
    layers(config).append(keras_ref("tf_keras.src.utils.data_utils", "function", "get_file", "get_file"))
    found = {r: hits(findings(artifact(config)), r) for r in ("KG201", "KG202", "KG204", "KG205")}
    assert [h.location.pointer for h in found["KG205"]] == ["/config/layers/3"]
    assert [h.location.pointer for h in found["KG202"]] == ["/config/layers/4"]
    assert found["KG201"] == [] and found["KG204"] == []
