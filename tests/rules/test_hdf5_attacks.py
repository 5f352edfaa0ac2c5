"""The HDF5 entries of the shared attack corpus (tests/support/attacks.py) are caught by the KG4xx family."""

from __future__ import annotations

from pathlib import Path

import pytest

from kerasguard.findings import Severity
from support import attacks
from support.scanhelp import scan_path


@pytest.mark.keras
@pytest.mark.parametrize("name", attacks.HDF5_ATTACKS)
def test_hdf5_attack_is_detected(tmp_path: Path, name: str) -> None:
    from support import kerasfiles

    build, expected = attacks.KERAS_ATTACKS[name]
    path = build(kerasfiles.saved("mlp"), tmp_path / f"{name}.keras")
    report = scan_path(path)
    found = {f.rule_id for f in report.findings if f.severity >= Severity.HIGH}
    assert found & set(expected), f"{name}: expected one of {expected}, got {sorted(found)}"
    assert report.complete, [str(p) for p in report.errors]


@pytest.mark.keras
def test_benign_archive_is_clean(tmp_path: Path) -> None:
    from support import kerasfiles

    report = scan_path(kerasfiles.saved("mlp"))
    assert not [f for f in report.findings if f.rule_id.startswith("KG4")]
