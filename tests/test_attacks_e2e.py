"""End to end: every attack in tests/support/attacks.py is caught by a full scan, benign models are clean.

Each attack file is derived from a real model saved by real Keras; the scan runs the whole pipeline
(discovery, readers, the HDF5 child, rules, advisories) exactly as `kerasguard scan` does.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from kerasguard import Policy, Severity, scan
from support import attacks
from support.scanhelp import hits

pytestmark = pytest.mark.keras


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from support import kmodels

    folder = tmp_path_factory.mktemp("e2e")
    kmodels.mlp().save(folder / "base.keras")
    kmodels.mlp().save(folder / "base.h5")
    return folder


@pytest.mark.parametrize("name", sorted(attacks.KERAS_ATTACKS))
def test_attack_is_caught(base: Path, tmp_path: Path, name: str) -> None:
    build, expected = attacks.KERAS_ATTACKS[name]
    path = build(base / "base.keras", tmp_path / f"{name}.keras")
    # npz object arrays are unpickled by Keras 3.0-3.8 only: judge that attack for the Keras it targets
    report = scan(path, Policy(keras_version="3.8.0") if name == "npz_object_array" else None)
    fired = {f.rule_id for f in report.findings}
    assert fired & set(expected), f"{name}: expected one of {expected}, got {sorted(fired)}"
    assert report.exit_code(Severity.HIGH) != 0 or name == "local_header_mismatch"


def test_legacy_h5_lambda_is_caught(base: Path, tmp_path: Path) -> None:
    path = attacks.legacy_h5_lambda(base / "base.h5", tmp_path / "legacy.h5")
    report = scan(path)
    [finding] = hits(report, "KG101")
    assert finding.severity == Severity.CRITICAL
    assert "CVE-2025-9905" in finding.cves
    assert "system" in finding.evidence


def test_base_models_are_clean(base: Path) -> None:
    for path in (base / "base.keras", base / "base.h5"):
        report = scan(path)
        assert report.complete and not report.findings, report.to_dict()


@pytest.mark.parametrize(
    ("version", "advisory"),
    [("3.13.0", "CVE-2026-0897"), ("3.15.0", None)],
)
def test_shape_bomb_names_the_advisory_for_the_loading_keras(
    base: Path, tmp_path: Path, version: str, advisory: str | None
) -> None:
    path = attacks.shape_bomb(base / "base.keras", tmp_path / "bomb.keras", gib=8.0)
    report = scan(path, Policy(keras_version=version))
    kg601 = hits(report, "KG601")
    if advisory is None:
        assert not any("CVE-2026-0897" in f.cves for f in kg601)
    else:
        assert any(advisory in f.cves for f in kg601)
        assert report.max_severity == Severity.CRITICAL
