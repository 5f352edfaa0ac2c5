"""KG503 / KG504: values of allowlisted classes that Keras interprets at load.

Models are serialised by real Keras (a DTypePolicyMap layer dtype, a Lambda whose ``arguments`` hold a
numpy array); the attacks rewrite only the interpreted value. Each test also shows, with small harmless
inputs, that Keras does interpret the value (a regex match, a numpy sub-array dtype).
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import pytest

from kerasguard.findings import Severity
from kerasguard.formats.config_values import numpy_dtype, regex_facts
from kerasguard.scanning.engine import scan
from support.kgconfig import artifact, findings, workdir
from support.scanhelp import hits

pytestmark = pytest.mark.keras


def _save(model: Any, name: str) -> Path:
    path = workdir() / name
    model.save(path)
    return path


def _config(path: Path) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(zipfile.ZipFile(path).read("config.json"))
    return value


def _rewrite(path: Path, dst: str, edit: Any) -> Path:
    from support import attacks

    return attacks.edit_config(path, workdir() / dst, edit)  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def policy_map_model() -> Path:
    import keras

    policies = keras.dtype_policies.DTypePolicyMap(default_policy="float32")
    policies["dense.*"] = "float16"
    inp = keras.Input((4,), name="x")
    out = keras.layers.Dense(2, dtype=policies, name="dense")(inp)
    # Keras does treat the key as a regex: a path it never stored resolves through re.fullmatch.
    assert policies["dense_other"].name == "float16"
    return _save(keras.Model(inp, out), "policy_map.keras")


@pytest.fixture(scope="module")
def numpy_args_model() -> Path:
    import keras
    import numpy as np

    inp = keras.Input((4,), name="x")
    out = keras.layers.Lambda(
        keras.ops.add, arguments={"x2": np.array([1.0, 2.0, 3.0, 4.0], dtype="float32")}, name="add"
    )(inp)
    return _save(keras.Model(inp, out), "numpy_args.keras")


def _policy_map(config: dict[str, Any]) -> dict[str, Any]:
    value: dict[str, Any] = config["config"]["layers"][1]["config"]["dtype"]["config"]["policy_map"]
    return value


def test_keras_written_policy_map_is_accepted(policy_map_model: Path) -> None:
    assert "dense.*" in _policy_map(_config(policy_map_model))
    report = scan(policy_map_model)
    assert not hits(report, "KG503")


@pytest.mark.parametrize(
    ("key", "catastrophic"),
    [("(a+)+$", True), ("(a|aa)*b", True), ("(x*)*y", True), ("a.*b.*c", False), ("^dense$", False)],
)
def test_backtracking_policy_map_key_is_flagged(policy_map_model: Path, key: str, catastrophic: bool) -> None:
    def edit(config: dict[str, Any]) -> None:
        policies = _policy_map(config)
        policies[key] = policies.pop("dense.*")

    evil = _rewrite(policy_map_model, f"policy_map_{abs(hash(key))}.keras", edit)
    report = scan(evil)
    found = hits(report, "KG503")
    assert len(found) == 1 and found[0].severity is Severity.HIGH
    assert ("exponential" in found[0].message) is catastrophic
    assert found[0].location.pointer.endswith("/policy_map/" + key.replace("~", "~0").replace("/", "~1"))
    assert report.exit_code(Severity.HIGH) == 1


def test_optimizer_map_and_muon_patterns() -> None:
    config = {
        "class_name": "Sequential",
        "config": {"layers": []},
        "compile_config": {
            "optimizer": {
                "module": "keras.optimizers",
                "class_name": "Muon",
                "config": {"exclude_layers": ["output_dense", "dense.*"]},
            }
        },
        "extra": {
            "module": "keras.optimizers",
            "class_name": "OptimizerMap",
            "config": {"optimizer_map": {"encoder/.*": {}, "(b+)+c": {}}},
        },
    }
    found = hits(findings(artifact(config)), "KG503")
    flagged = sorted(h.evidence for h in found)
    # re.search retries at every offset: even one unbounded repeat is not linear there
    assert flagged == ["(b+)+c", "dense.*"]


def test_keras_written_numpy_argument_is_accepted(numpy_args_model: Path) -> None:
    arguments = _config(numpy_args_model)["config"]["layers"][1]["config"]["arguments"]
    assert arguments["x2"]["class_name"] == "__numpy__"
    report = scan(numpy_args_model)
    assert not hits(report, "KG504")


@pytest.mark.parametrize(
    "dtype",
    ["<U1000000000", "S2000000000", "(100000000,)f8", "f8,(50000000,)i8", [["f0", "<U999999999"]], "V99999"],
)
def test_huge_numpy_dtype_in_lambda_arguments_is_flagged(numpy_args_model: Path, dtype: Any) -> None:
    import keras

    # Keras hands the dtype to numpy unchecked: a small sub-array dtype grows the array it builds.
    small = keras.saving.deserialize_keras_object(
        {"class_name": "__numpy__", "config": {"value": [1, 2], "dtype": "(3,)i1"}}
    )
    assert small.shape == (2, 3)

    def edit(config: dict[str, Any]) -> None:
        config["config"]["layers"][1]["config"]["arguments"]["x2"]["config"]["dtype"] = dtype

    evil = _rewrite(numpy_args_model, f"numpy_{abs(hash(str(dtype)))}.keras", edit)
    report = scan(evil)
    found = hits(report, "KG504")
    assert len(found) == 1 and found[0].severity is Severity.HIGH, report.findings
    assert found[0].location.pointer.endswith("/arguments/x2/config/dtype")


def test_numpy_value_in_node_kwargs_is_judged_too() -> None:
    evil = {"class_name": "__numpy__", "config": {"value": [0], "dtype": "<U500000000"}}
    config = {
        "class_name": "Functional",
        "config": {
            "layers": [
                {
                    "class_name": "Dense",
                    "config": {"name": "d", "units": 1},
                    "inbound_nodes": [{"args": [], "kwargs": {"mask": evil}}],
                }
            ]
        },
    }
    found = hits(findings(artifact(config)), "KG504")
    assert len(found) == 1 and "2000000000 bytes per element" in found[0].message


@pytest.mark.parametrize(
    ("text", "itemsize"),
    [("float32", 4), ("int64", 8), ("bool", 1), ("<U5", 20), ("|S4", 4), ("U400000000", 1_600_000_000)],
)
def test_dtype_sizes_match_numpy(text: str, itemsize: int) -> None:
    import numpy as np

    assert numpy_dtype(text).itemsize == itemsize == np.dtype(text).itemsize


@pytest.mark.parametrize(
    ("pattern", "linear"),
    [
        ("encoder/layer_0/dense", True),
        ("encoder/.*", True),
        ("dense_[0-9]+", True),
        ("block\\.1/.*", True),
        ("a.*b.*c", False),
        ("(a+)+", False),
        ("a{1,100}", False),
        ("a?" * 10 + "a" * 10, False),
        ("x" * 300 + ".*", False),
    ],
)
def test_linear_subset(pattern: str, linear: bool) -> None:
    assert regex_facts(pattern).linear is linear
