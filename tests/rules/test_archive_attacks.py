"""The archive entries of the shared attack corpus (tests/support/attacks.py) are caught by this family."""

from __future__ import annotations

from pathlib import Path

import pytest

from kerasguard.findings import Severity
from support.scanhelp import scan_path

ARCHIVE_ATTACKS = (
    "zip_traversal",
    "zip_symlink",
    "duplicate_config",
    "zip_bomb",
    "truncated",
    "local_header_mismatch",
)


@pytest.mark.keras
@pytest.mark.parametrize("name", ARCHIVE_ATTACKS)
def test_archive_attack_is_detected(tmp_path: Path, name: str) -> None:
    from support import attacks, kerasfiles

    build, expected = attacks.KERAS_ATTACKS[name]
    path = build(kerasfiles.saved("mlp"), tmp_path / f"{name}.keras")
    found = {f.rule_id for f in scan_path(path).findings}
    assert found & set(expected), f"{name}: expected one of {expected}, got {sorted(found)}"


@pytest.mark.keras
def test_random_bytes_are_never_clean(tmp_path: Path) -> None:
    from support import attacks

    report = scan_path(attacks.random_bytes(tmp_path / "r.keras"))
    assert report.findings and report.exit_code(Severity.CRITICAL) == 2  # incomplete, never "clean"
