"""KG311 Keras archive without config.json."""

from __future__ import annotations

from pathlib import Path

from kerasguard.findings import Severity
from support.scanhelp import hits, scan_bytes
from support.zipcraft import Entry, build, keras_entries


def test_keras_file_without_config(tmp_path: Path) -> None:
    entries = [e for e in keras_entries() if e.name != b"config.json"]
    (finding,) = hits(scan_bytes(tmp_path, build(entries)), "KG311")
    assert finding.severity is Severity.MEDIUM


def test_renamed_config_does_not_count(tmp_path: Path) -> None:
    entries = [*(e for e in keras_entries() if e.name != b"config.json"), Entry(b"assets/config.json", b"{}")]
    assert len(hits(scan_bytes(tmp_path, build(entries)), "KG311")) == 1


def test_keras_file_with_config_and_plain_zip_pass(tmp_path: Path) -> None:
    assert hits(scan_bytes(tmp_path, build(keras_entries())), "KG311") == []
    assert hits(scan_bytes(tmp_path, build([Entry(b"a.txt", b"a")]), name="x.zip"), "KG311") == []
