"""KG209: layer names that look like paths (CVE-2026-12479 heuristic)."""

from __future__ import annotations

import pytest

from kerasguard.findings import Severity
from kerasguard.rules.references import traversal_reason
from support.kgconfig import artifact, config_of, findings, layers, saved
from support.scanhelp import hits

pytestmark = pytest.mark.keras


@pytest.mark.parametrize(
    ("name", "severity"),
    [
        ("../../etc/cron.d/x", Severity.HIGH),
        ("..\\..\\windows", Severity.HIGH),
        ("/tmp/evil", Severity.HIGH),
        ("C:evil", Severity.HIGH),
        ("dense/kernel", Severity.MEDIUM),
    ],
)
def test_path_like_layer_names(name: str, severity: Severity) -> None:
    config = config_of(saved("mlp"))
    layers(config)[1]["config"]["name"] = name
    found = hits(findings(artifact(config)), "KG209")
    assert len(found) == 1
    assert found[0].severity is severity and found[0].location.pointer == "/config/layers/1"


def test_keras2_entry_name_beside_config() -> None:
    config = {
        "class_name": "Sequential",
        "config": {
            "name": "s",
            "layers": [{"class_name": "Dense", "name": "a/../b", "config": {"units": 1}}],
        },
    }
    assert len(hits(findings(artifact(config)), "KG209")) == 1


def test_normal_names_are_fine() -> None:
    config = config_of(saved("nested_submodel"))
    layers(config)[1]["config"]["name"] = "tf.math.add..2"
    assert hits(findings(artifact(config)), "KG209") == []
    assert hits(findings(artifact(config_of(saved("rnn")))), "KG209") == []


@pytest.mark.parametrize(
    ("name", "severity"),
    [
        ("..", Severity.HIGH),
        ("layer\x00", Severity.HIGH),
        ("D:", Severity.HIGH),
        ("ünï/cödé", Severity.MEDIUM),
        ("dense_3", None),  # an identifier: the quick answer
        ("ünïcödé_1", None),
        ("tf.math.add..2", None),
    ],
)
def test_traversal_reason_of_names(name: str, severity: Severity | None) -> None:
    reason = traversal_reason(name)
    assert (reason[1] if reason else None) is severity
