"""KG103: TFSMLayer (and tensorflow_hub KerasLayer) loading an external SavedModel (CVE-2026-1462)."""

from __future__ import annotations

import pytest

from kerasguard.findings import Severity
from support.kgconfig import artifact, attack, config_of, findings, keras_ref, layers, saved, scan_e2e
from support.scanhelp import hits

pytestmark = pytest.mark.keras


def test_tfsm_layer_remote_path_is_critical_and_noted() -> None:
    found = hits(findings(artifact(config_of(attack("tfsm_layer")))), "KG103")
    assert len(found) == 1
    assert found[0].severity is Severity.CRITICAL
    assert "gs://attacker-bucket/model" in found[0].message
    assert "remote" in found[0].message
    assert "CVE-2026-1462" in found[0].cves


def test_tfsm_layer_local_path_is_critical_without_remote_note() -> None:
    config = config_of(saved("mlp"))
    layers(config).append(
        keras_ref("keras.layers", "TFSMLayer", {"name": "t", "filepath": "../../srv/model"})
    )
    found = hits(findings(artifact(config)), "KG103")
    assert len(found) == 1 and "remote" not in found[0].message and "../../srv/model" in found[0].message


def test_tfsm_layer_nested_in_submodel_without_filepath() -> None:
    config = config_of(saved("nested_submodel"))
    inner = layers(config)[1]
    layers(inner).append(keras_ref("keras.src.export.tfsm_layer", "TFSMLayer", {"name": "t"}))
    found = hits(findings(artifact(config)), "KG103")
    assert len(found) == 1 and "<missing>" in found[0].message


def test_tf_hub_keras_layer_is_high() -> None:
    config = config_of(saved("mlp"))
    layers(config).append(keras_ref(None, "KerasLayer", {"name": "hub", "handle": "https://tfhub.dev/x/1"}))
    found = hits(findings(artifact(config)), "KG103")
    assert len(found) == 1 and found[0].severity is Severity.HIGH


def test_benign_model_has_no_external_layer() -> None:
    assert hits(findings(artifact(config_of(saved("cnn")))), "KG103") == []


def test_scan_of_the_keras_archive_end_to_end() -> None:
    found = scan_e2e(attack("tfsm_layer"))
    assert hits(found, "KG103")
