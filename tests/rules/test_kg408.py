"""KG408: weight shapes that cannot belong to the architecture in the model config."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from kerasguard.findings import Severity
from kerasguard.formats.context import ReadContext
from support.h5craft import (
    all_findings,
    declare_bomb,
    h5file,
    keras_weights,
    keras_zip,
    module_context,
    read_keras_zip,
    rule_context,
    scan_path,
)
from support.scanhelp import hits

h5ctx = module_context()


def dense_config(units: int = 4, inputs: int = 8, **extra: Any) -> dict[str, Any]:
    dense = {
        "module": "keras.layers",
        "class_name": "Dense",
        "config": {"name": "dense", "units": units, "use_bias": True, **extra},
        "build_config": {"input_shape": [None, inputs]},
    }
    return {
        "module": "keras",
        "class_name": "Sequential",
        "config": {"name": "m", "layers": [{"class_name": "InputLayer", "config": {"name": "in"}}, dense]},
    }


def archive(tmp_path: Path, weights: Path, config: dict[str, Any]) -> Path:
    return keras_zip(
        tmp_path / "m.keras", {"config.json": json.dumps(config).encode(), "model.weights.h5": weights}
    )


def test_oversized_kernel_is_high(tmp_path: Path, h5ctx: ReadContext) -> None:
    weights = h5file(tmp_path / "model.weights.h5", lambda f: keras_weights(f, kernel=(8, 4096)))
    art = read_keras_zip(archive(tmp_path, weights, dense_config()), h5ctx)
    (hit,) = hits(all_findings(art), "KG408")
    assert hit.severity == Severity.HIGH
    assert hit.location.h5path == "/layers/dense/vars/0"
    assert "must have shape (8, 4)" in hit.message and "(8, 4096)" in hit.message


def test_small_bomb_hidden_in_a_kernel(tmp_path: Path, h5ctx: ReadContext) -> None:
    """Under every size threshold, but the Dense kernel can only be 8x4."""

    def build(f: h5py.File) -> None:
        keras_weights(f)
        del f["layers/dense/vars/0"]
        declare_bomb(f, "layers/dense/vars/0", 32 * 1024 * 1024)

    art = read_keras_zip(
        archive(tmp_path, h5file(tmp_path / "model.weights.h5", build), dense_config()), h5ctx
    )
    findings = all_findings(art)
    assert [f.rule_id for f in findings if f.rule_id.startswith("KG40")] == ["KG408"]


def test_smaller_or_transposed_kernel_is_medium(tmp_path: Path, h5ctx: ReadContext) -> None:
    weights = h5file(tmp_path / "model.weights.h5", lambda f: keras_weights(f, kernel=(4, 8)))
    art = read_keras_zip(archive(tmp_path, weights, dense_config()), h5ctx)
    (hit,) = hits(all_findings(art), "KG408")
    assert hit.severity == Severity.MEDIUM


def test_matching_weights_are_quiet(tmp_path: Path, h5ctx: ReadContext) -> None:
    weights = h5file(tmp_path / "model.weights.h5", keras_weights)
    art = read_keras_zip(archive(tmp_path, weights, dense_config()), h5ctx)
    assert hits(all_findings(art), "KG408") == []


def test_uncertain_mapping_is_not_flagged(tmp_path: Path, h5ctx: ReadContext) -> None:
    """The vars group names another layer, or the layer is quantized: nothing is certain."""
    weights = h5file(tmp_path / "model.weights.h5", lambda f: keras_weights(f, kernel=(8, 4096)))
    renamed = dense_config()
    renamed["config"]["layers"][1]["config"]["name"] = "not_dense"
    assert hits(all_findings(read_keras_zip(archive(tmp_path, weights, renamed), h5ctx)), "KG408") == []
    quantized = dense_config(
        dtype={"class_name": "QuantizedDTypePolicy", "config": {"name": "int8_from_float32"}}
    )
    assert hits(all_findings(read_keras_zip(archive(tmp_path, weights, quantized), h5ctx)), "KG408") == []


def test_weights_without_config_are_not_judged(tmp_path: Path, h5ctx: ReadContext) -> None:
    path = h5file(tmp_path / "w.weights.h5", lambda f: keras_weights(f, kernel=(8, 4096)))
    assert hits(scan_path(path, h5ctx), "KG408") == []


def test_legacy_h5_layout(tmp_path: Path, h5ctx: ReadContext) -> None:
    def build(f: h5py.File) -> None:
        f.attrs["model_config"] = json.dumps(dense_config())
        g = f.create_group("model_weights/dense/dense")
        g.create_dataset("kernel", data=np.zeros((8, 512), dtype="f4"))
        g.create_dataset("bias", data=np.zeros((4,), dtype="f4"))

    (hit,) = hits(scan_path(h5file(tmp_path / "legacy.h5", build), h5ctx), "KG408")
    assert hit.location.h5path == "/model_weights/dense/dense/kernel" and hit.severity == Severity.HIGH


# ---------------------------------------------------------------- with models saved by real Keras


@pytest.mark.keras
def test_tampered_real_keras_files(tmp_path: Path, h5ctx: ReadContext) -> None:
    kmodels = pytest.importorskip("support.kmodels")
    model = kmodels.cnn()
    good_keras, good_h5 = tmp_path / "cnn.keras", tmp_path / "cnn.h5"
    model.save(good_keras)
    model.save(good_h5)
    assert hits(all_findings(read_keras_zip(good_keras, h5ctx)), "KG408") == []
    assert hits(scan_path(good_h5, h5ctx), "KG408") == []

    # .keras: swap the Conv2D kernel (3, 3, 3, 8) for a larger one
    with zipfile.ZipFile(good_keras) as zf:
        config, weights = zf.read("config.json"), zf.read("model.weights.h5")
    weights_path = tmp_path / "model.weights.h5"
    weights_path.write_bytes(weights)
    with h5py.File(weights_path, "a") as f:
        del f["layers/conv2d/vars/0"]
        f["layers/conv2d/vars"].create_dataset("0", data=np.zeros((3, 3, 3, 64), dtype="f4"))
    bad_keras = keras_zip(tmp_path / "bad.keras", {"config.json": config, "model.weights.h5": weights_path})
    (hit,) = hits(all_findings(read_keras_zip(bad_keras, h5ctx), rule_context()), "KG408")
    assert hit.location.h5path == "/layers/conv2d/vars/0" and "Conv2D" in hit.message

    # legacy .h5: the BatchNormalization vectors must all be (8,)
    with h5py.File(good_h5, "a") as f:  # layer names depend on what Keras built before: look it up
        gammas: list[str] = []
        f.visit(lambda name: gammas.append(name) if name.endswith("/gamma") else None)
        (gamma,) = gammas
        del f[gamma]
        f.create_dataset(gamma, data=np.ones(9, "f4"))
    (hit,) = hits(scan_path(good_h5, h5ctx), "KG408")
    assert hit.location.h5path == "/" + gamma and "(8)" in hit.message
