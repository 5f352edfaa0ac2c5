"""`kerasguard inspect` on real Keras models: the reviewer sees the architecture, references and findings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kerasguard.cli import app
from kerasguard.inspect import inspect_model

pytestmark = pytest.mark.keras

runner = CliRunner()


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from support import kmodels

    path = tmp_path_factory.mktemp("inspect") / "cnn.keras"
    kmodels.cnn().save(path)
    return path


def test_architecture_tree_and_references(base: Path) -> None:
    ins = inspect_model(base)
    [model] = ins.layers
    assert model.class_name == "Functional"
    classes = [child.class_name for child in model.children]
    assert classes[:3] == ["InputLayer", "Conv2D", "BatchNormalization"]
    conv = model.children[1]
    assert conv.details["filters"] == "8"
    refs = {(r.module, r.name) for r in ins.references}
    assert ("keras.layers", "Conv2D") in refs
    assert ("keras.regularizers", "L2") in refs
    assert not [f for f in ins.report.findings if f.severity >= 3]


def test_attack_is_visible_to_the_reviewer(base: Path, tmp_path: Path) -> None:
    from support import attacks

    evil = attacks.get_file_reference(base, tmp_path / "evil.keras")
    result = runner.invoke(app, ["inspect", str(evil), "--format", "json"])
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    names = {(r["module"], r["name"]) for r in doc["references"]}
    assert ("keras.utils", "get_file") in names
    assert any(f["rule_id"] == "KG202" for f in doc["report"]["findings"])
    text = runner.invoke(app, ["inspect", str(evil)])
    assert "Lambda" in text.stdout and "get_file" in text.stdout


def test_weights_summary_and_parameter_counts(base: Path) -> None:
    ins = inspect_model(base)
    data = ins.to_dict()["weights"]
    assert data["datasets"] > 0 and data["declared_bytes"] == data["stored_bytes"] > 0
    [model] = ins.layers
    by_class = {child.class_name: child.parameters for child in model.children}
    assert by_class["Conv2D"] == 3 * 3 * 3 * 8 + 8  # kernel 3x3x3x8 + bias, read from the stored shapes
    assert by_class["BatchNormalization"] == 4 * 8
