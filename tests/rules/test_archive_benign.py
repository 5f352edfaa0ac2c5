"""Models saved by real Keras raise no archive, JSON or YAML finding in any saved form."""

from __future__ import annotations

import pytest

from support.scanhelp import hits, scan_path

FAMILY = ("KG107", "KG3")


@pytest.mark.keras
@pytest.mark.parametrize("builder", ["mlp", "cnn", "nested_submodel", "custom_layer"])
@pytest.mark.parametrize("form", ["keras", "npz", "dir"])
def test_benign_models_are_clean_for_this_family(builder: str, form: str) -> None:
    from support import kerasfiles

    report = scan_path(kerasfiles.saved(builder, form))
    assert [f for f in report.findings if f.rule_id.startswith(FAMILY)] == []
    assert not hits(report, "KG901", "KG902")
