"""Every benign model from tests/support/kmodels.py passes the config rules (no high/critical finding)."""

from __future__ import annotations

import json

import h5py
import pytest

from kerasguard.findings import Finding, Severity
from kerasguard.formats.artifact import Artifact
from support.kgconfig import artifact, config_of, findings, saved, scan_e2e, serious

pytestmark = pytest.mark.keras

BENIGN = [
    "mlp",
    "cnn",
    "rnn",
    "time_distributed",
    "custom_layer",
    "mixed_precision",
    "embedding",
    "nested_submodel",
]
CONFIG_RULES = ("KG1", "KG2", "KG5")


def config_findings(art: Artifact, version: str | None) -> list[Finding]:
    return [f for f in findings(art, keras_version=version) if f.rule_id.startswith(CONFIG_RULES)]


@pytest.mark.parametrize("version", ["3.15.1", None])
@pytest.mark.parametrize("name", BENIGN)
def test_keras_config_has_nothing_serious(name: str, version: str | None) -> None:
    found = config_findings(artifact(config_of(saved(name))), version)
    assert serious(found) == []
    expected = {"KG205"} if name == "custom_layer" else set()
    assert {f.rule_id for f in found} == expected


@pytest.mark.parametrize("name", BENIGN)
def test_scan_of_the_benign_archive_end_to_end(name: str) -> None:
    found = scan_e2e(saved(name))
    config = [f for f in found if f.rule_id.startswith(CONFIG_RULES)]
    assert {f.rule_id for f in config} == ({"KG205"} if name == "custom_layer" else set())


@pytest.mark.parametrize("name", BENIGN)
def test_legacy_h5_configs_have_nothing_serious(name: str) -> None:
    with h5py.File(saved(name, "h5")) as f:
        docs = {key: f.attrs[key] for key in ("model_config", "training_config") if key in f.attrs}
    for role, raw in docs.items():
        art = artifact(json.loads(raw), role=role, fmt="legacy_model", member=None)
        found = config_findings(art, "3.15.1")
        assert all(f.severity <= Severity.MEDIUM for f in found), found
