"""KG303 duplicate member names."""

from __future__ import annotations

from pathlib import Path

from kerasguard.findings import Severity
from support.scanhelp import hits, scan_bytes
from support.zipcraft import Entry, build, keras_entries


def test_duplicate_config_is_high_and_names_the_entry_keras_uses(tmp_path: Path) -> None:
    data = build([*keras_entries(), Entry(b"config.json", b'{"class_name": "Lambda"}')])
    (finding,) = hits(scan_bytes(tmp_path, data), "KG303")
    assert finding.severity is Severity.HIGH
    assert "uses entry #3" in finding.message and "first use entry #1" in finding.message


def test_duplicate_asset_is_medium(tmp_path: Path) -> None:
    data = build([*keras_entries(), Entry(b"assets/v.txt", b"a"), Entry(b"assets/v.txt", b"b")])
    (finding,) = hits(scan_bytes(tmp_path, data), "KG303")
    assert finding.severity is Severity.MEDIUM


def test_nul_truncation_collision_is_a_duplicate(tmp_path: Path) -> None:
    data = build([*keras_entries(), Entry(b"config.json\x00evil", b"{}")])
    (finding,) = hits(scan_bytes(tmp_path, data), "KG303")
    assert "raw names differ after a NUL byte" in finding.message


def test_case_only_collision_is_low(tmp_path: Path) -> None:
    data = build([*keras_entries(), Entry(b"assets/A.txt", b"a"), Entry(b"assets/a.txt", b"b")])
    (finding,) = hits(scan_bytes(tmp_path, data), "KG303")
    assert finding.severity is Severity.LOW and "case" in finding.message


def test_unique_names_pass(tmp_path: Path) -> None:
    assert hits(scan_bytes(tmp_path, build(keras_entries())), "KG303") == []
