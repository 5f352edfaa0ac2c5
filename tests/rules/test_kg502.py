"""KG502: Functional graphs with unknown layers, bad node indices or cycles."""

from __future__ import annotations

import json
from typing import Any

import h5py
import pytest

from kerasguard.findings import Severity
from support.kgconfig import artifact, config_of, findings, layers, saved
from support.scanhelp import hits

pytestmark = pytest.mark.keras


def history(entry: dict[str, Any]) -> list[Any]:
    """The keras_history [layer, node, tensor] of an entry's first call argument."""
    value: list[Any] = entry["inbound_nodes"][0]["args"][0]["config"]["keras_history"]
    return value


def test_reference_to_unknown_layer() -> None:
    config = config_of(saved("cnn"))
    history(layers(config)[2])[0] = "ghost"
    found = hits(findings(artifact(config)), "KG502")
    assert len(found) == 1 and found[0].severity is Severity.HIGH and "'ghost'" in found[0].message


def test_cycle_between_layers() -> None:
    config = config_of(saved("cnn"))
    names = [e["name"] for e in layers(config)]
    # conv2d now reads from the last layer, which (transitively) reads from conv2d
    history(layers(config)[1])[0] = names[-1]
    found = hits(findings(artifact(config)), "KG502")
    assert any("cycle" in h.message and h.severity is Severity.HIGH for h in found)


def test_node_index_out_of_range_is_medium() -> None:
    config = config_of(saved("rnn"))
    history(layers(config)[2])[1] = 7
    found = hits(findings(artifact(config)), "KG502")
    assert [h.severity for h in found] == [Severity.MEDIUM]


def test_duplicate_layer_names_and_bad_output_layers() -> None:
    config = config_of(saved("cnn"))
    layers(config)[3]["name"] = layers(config)[2]["name"]
    config["config"]["output_layers"] = [["nowhere", 0, 0]]
    messages = [h.message for h in hits(findings(artifact(config)), "KG502")]
    assert any("two layers are named" in m for m in messages)
    assert any("'nowhere'" in m for m in messages)


def test_keras2_legacy_h5_graph_with_unknown_layer() -> None:
    with h5py.File(saved("nested_submodel", "h5")) as f:
        raw = f.attrs["model_config"]
    config = json.loads(raw)
    assert hits(findings(artifact(config, role="model_config")), "KG502") == []
    keras2 = {
        "class_name": "Functional",
        "config": {
            "name": "m",
            "layers": [
                {"class_name": "InputLayer", "name": "in", "config": {"name": "in"}, "inbound_nodes": []},
                {
                    "class_name": "Dense",
                    "name": "d",
                    "config": {"units": 1},
                    "inbound_nodes": [[["in", 0, 0, {}]]],
                },
                {
                    "class_name": "Dense",
                    "name": "e",
                    "config": {"units": 1},
                    "inbound_nodes": [[["zz", 0, 0, {}]]],
                },
            ],
            "input_layers": [["in", 0, 0]],
            "output_layers": [["e", 0, 0]],
        },
    }
    found = hits(findings(artifact(keras2)), "KG502")
    assert len(found) == 1 and "'zz'" in found[0].message


def test_keras2_self_loop() -> None:
    keras2 = {
        "class_name": "Model",
        "config": {
            "layers": [
                {"class_name": "Dense", "name": "d", "config": {}, "inbound_nodes": [[["d", 0, 0, {}]]]}
            ],
            "input_layers": [],
            "output_layers": [["d", 0, 0]],
        },
    }
    assert any("cycle" in h.message for h in hits(findings(artifact(keras2)), "KG502"))


@pytest.mark.parametrize("name", ["cnn", "rnn", "time_distributed", "nested_submodel"])
def test_real_functional_models_are_well_formed(name: str) -> None:
    assert hits(findings(artifact(config_of(saved(name)))), "KG502") == []
    with h5py.File(saved(name, "h5")) as f:
        legacy = json.loads(f.attrs["model_config"])
    assert hits(findings(artifact(legacy)), "KG502") == []
