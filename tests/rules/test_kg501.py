"""KG501: absurd sizes in the config that allocate when layers are built."""

from __future__ import annotations

import pytest

from kerasguard.findings import Severity
from kerasguard.policy import policy_from_mapping
from support.kgconfig import artifact, attack, config_of, findings, keras_ref, layers, saved, scan_e2e
from support.scanhelp import hits

pytestmark = pytest.mark.keras


def test_huge_units_attack() -> None:
    found = hits(findings(artifact(config_of(attack("huge_units")))), "KG501")
    assert len(found) == 1
    assert found[0].severity is Severity.HIGH and found[0].location.pointer == "/config/layers/1"
    assert f"units={2**40}" in found[0].message


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("filters", 10**9),
        ("kernel_size", [3, 10**8]),
        ("num_heads", 1e12),
        ("batch_shape", [None, 65536, 65536]),
        ("output_dim", float("inf")),
    ],
)
def test_sizes_and_shapes(key: str, value: object) -> None:
    config = config_of(saved("mlp"))
    layers(config)[1]["config"][key] = value
    assert len(hits(findings(artifact(config)), "KG501")) == 1


def test_weight_product_over_limit_with_small_values() -> None:
    """Each value under max_config_units, but units x input dim is 2**42 weights."""
    config = config_of(saved("mlp"))
    dense = layers(config)[1]
    dense["config"]["units"] = 2**21
    dense["build_config"]["input_shape"] = [None, 2**21]
    found = hits(findings(artifact(config)), "KG501")
    assert len(found) == 1 and "weights" in found[0].message


def test_embedding_table_over_limit() -> None:
    config = config_of(saved("embedding"))
    emb = layers(config)[1]
    emb["config"]["input_dim"] = 4_000_000
    emb["config"]["output_dim"] = 4_000
    assert len(hits(findings(artifact(config)), "KG501")) == 1


def test_policy_limits_are_used() -> None:
    config = config_of(saved("mlp"))
    strict = policy_from_mapping({"limits": {"max_config_units": 8}})
    assert [h.location.pointer for h in hits(findings(artifact(config), policy=strict), "KG501")] == [
        "/config/layers/1"
    ]


def test_negative_bool_and_normal_values_are_not_sizes() -> None:
    config = config_of(saved("cnn"))
    layers(config)[1]["config"]["filters"] = -5
    layers(config)[1]["config"]["use_bias"] = True
    layers(config).append(keras_ref("keras.layers", "Dense", {"name": "n", "units": float("nan")}))
    assert hits(findings(artifact(config)), "KG501") == []
    for name in ("mlp", "rnn", "embedding", "time_distributed", "nested_submodel"):
        assert hits(findings(artifact(config_of(saved(name)))), "KG501") == []


def test_scan_of_the_keras_archive_end_to_end() -> None:
    found = scan_e2e(attack("huge_units"))
    assert hits(found, "KG501")
