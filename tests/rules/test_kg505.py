"""KG505: the whole model's variables, propagated through its graph, against the weights and a budget.

Every model here is built and saved by real Keras; attacks edit only sizes in its config, keeping the
small weights Keras wrote, as an attacker shipping a 1 KB config would.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import pytest

from kerasguard.errors import PolicyError
from kerasguard.findings import Severity
from kerasguard.formats.keras_graph import estimate
from kerasguard.policy import GiB, MiB, policy_from_mapping
from kerasguard.scanning.engine import scan
from support.kgconfig import workdir
from support.scanhelp import hits

pytestmark = pytest.mark.keras


def _saved(name: str, build: Any) -> Path:
    path = workdir() / f"{name}.keras"
    if not path.exists():
        build().save(path)
    return path


def _edit(base: Path, name: str, edit: Any) -> Path:
    from support import attacks

    return attacks.edit_config(base, workdir() / name, edit)  # type: ignore[no-any-return]


def _chain() -> Any:
    import keras

    inp = keras.Input((20,), name="x")
    hidden = keras.layers.Dense(20, name="d1")(inp)
    return keras.Model(inp, keras.layers.Dense(20, name="d2")(hidden))


def _widen(config: dict[str, Any]) -> None:
    """Two Dense(20000) after a 20000-wide input: 3.2 GB of kernels (6.4 GB peak in Keras 3.15.1)."""
    for layer in config["config"]["layers"]:
        if layer["class_name"] == "InputLayer":
            layer["config"]["batch_shape"] = [None, 20000]
        if layer["class_name"] == "Dense":
            layer["config"]["units"] = 20000


def test_dense_chain_is_critical_although_each_layer_is_under_kg501() -> None:
    evil = _edit(_saved("chain", _chain), "chain_20000.keras", _widen)
    assert not [f for f in hits(scan(evil), "KG501") if f.severity >= Severity.HIGH]
    [hit] = hits(scan(evil), "KG505")
    assert hit.severity is Severity.CRITICAL
    assert "Dense 'd2' 400,020,000" in hit.message and "weights store only" in hit.message
    assert scan(evil).exit_code(Severity.HIGH) == 1
    # a budget large enough still leaves a config its weights cannot back: high
    roomy = policy_from_mapping({"limits": {"max_load_bytes": 8 * GiB}})
    assert [h.severity for h in hits(scan(evil, roomy), "KG505")] == [Severity.HIGH]


def test_the_graph_not_build_config_decides_the_input_width() -> None:
    """build_config says 20 (what KG408 compares), the Input says 20000: Keras builds with the Input."""

    def edit(config: dict[str, Any]) -> None:
        _widen(config)
        for layer in config["config"]["layers"]:
            if layer["class_name"] == "Dense":
                layer["build_config"] = {"input_shape": [None, 20]}

    evil = _edit(_saved("chain", _chain), "chain_lying_build.keras", edit)
    assert [h.severity for h in hits(scan(evil), "KG505")] == [Severity.CRITICAL]


def test_wide_and_deep_embedding_is_not_flagged() -> None:
    """Embedding(5_000_000, 1): 20 MB of real weights, flagged high by KG501 before."""

    def build() -> Any:
        import keras

        ids = keras.Input((1,), dtype="int32", name="id")
        dense_in = keras.Input((8,), name="dense_in")
        wide = keras.layers.Flatten()(keras.layers.Embedding(5_000_000, 1, name="wide")(ids))
        deep = keras.layers.Dense(16, activation="relu")(dense_in)
        out = keras.layers.Dense(1)(keras.layers.Concatenate()([wide, deep]))
        return keras.Model([ids, dense_in], out)

    path = _saved("wide_deep", build)
    assert path.stat().st_size > 19_000_000
    report = scan(path)
    assert report.findings == () or [f.rule_id for f in report.findings] == []
    assert report.exit_code(Severity.LOW) == 0


@pytest.mark.parametrize(
    "name", ["mlp", "cnn", "rnn", "embedding", "nested_submodel", "time_distributed", "mixed_precision"]
)
def test_estimate_equals_keras_count_params(name: str) -> None:
    from support import kmodels

    model = kmodels.BENIGN[name]()
    path = workdir() / f"count_{name}.keras"
    model.save(path)
    found = estimate(json.loads(zipfile.ZipFile(path).read("config.json")))
    assert found is not None
    assert found.elements == model.count_params()


def _attention_model() -> Any:
    import keras

    inp = keras.Input((4, 8), name="x")
    att = keras.layers.MultiHeadAttention(num_heads=2, key_dim=4, name="mha")(inp, inp)
    gqa = keras.layers.GroupQueryAttention(head_dim=4, num_query_heads=2, num_key_value_heads=1, name="gqa")(
        att, att
    )
    return keras.Model(inp, keras.layers.Dense(3, lora_rank=2, name="lora")(gqa))


def test_attention_and_lora_counts_match_keras() -> None:
    model = _attention_model()
    path = workdir() / "attention.keras"
    model.save(path)
    found = estimate(json.loads(zipfile.ZipFile(path).read("config.json")))
    assert found is not None
    assert found.elements == model.count_params()


@pytest.mark.parametrize(
    ("layer", "key", "value"),
    [
        ("mha", "key_dim", 20_000_000),
        ("mha", "num_heads", 10_000_000),
        ("gqa", "head_dim", 50_000_000),
        ("lora", "lora_rank", 300_000_000),
    ],
)
def test_size_carrying_keys_count(layer: str, key: str, value: int) -> None:
    def edit(config: dict[str, Any]) -> None:
        for entry in config["config"]["layers"]:
            if entry["config"].get("name") == layer:
                entry["config"][key] = value

    evil = _edit(_saved("attention", _attention_model), f"attention_{key}.keras", edit)
    assert [h.severity for h in hits(scan(evil), "KG505")] == [Severity.CRITICAL]


def test_stft_frame_length_counts() -> None:
    config = {
        "class_name": "Sequential",
        "config": {
            "layers": [
                {"class_name": "InputLayer", "config": {"batch_shape": [None, 16000, 1]}},
                {"class_name": "STFTSpectrogram", "config": {"name": "stft", "frame_length": 40_000}},
            ]
        },
    }
    found = estimate(config)
    assert found is not None and found.elements == 2 * 40_000 * (65536 // 2 + 1)


def test_real_model_over_the_budget_is_high_not_critical() -> None:
    from support import kmodels

    path = _saved("big_dense", lambda: kmodels.big_dense(units=512, layers=2))
    tight = policy_from_mapping({"limits": {"max_load_bytes": 1 * MiB}})
    assert [h.severity for h in hits(scan(path, tight), "KG505")] == [Severity.HIGH]
    assert hits(scan(path), "KG505") == []


def test_budget_is_validated() -> None:
    with pytest.raises(PolicyError, match="max_load_bytes"):
        policy_from_mapping({"limits": {"max_load_bytes": 1000}})
    with pytest.raises(PolicyError):
        policy_from_mapping({"limits": {"max_load_bytes": "big"}})


def test_bare_config_over_the_budget_is_high() -> None:
    """A config alone (model_from_json): no weights to compare with, the budget still applies."""
    from support.kgconfig import artifact, findings

    dense = {"class_name": "Dense", "config": {"name": "d", "units": 30000}}
    config = {
        "class_name": "Sequential",
        "config": {
            "layers": [
                {"class_name": "InputLayer", "config": {"batch_shape": [None, 30000]}},
                dense,
            ]
        },
    }
    art = artifact(config, role="json", fmt="json", name="model.json", member=None)
    assert [h.severity for h in hits(findings(art), "KG505")] == [Severity.HIGH]
