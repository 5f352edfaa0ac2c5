"""KG107 legacy YAML config with Python object tags (CVE-2021-37678)."""

from __future__ import annotations

from pathlib import Path

from kerasguard.findings import Severity
from support.scanhelp import hits, scan_bytes
from support.zipcraft import Entry, build, keras_entries

BENIGN = b"class_name: Sequential\nconfig:\n  layers:\n  - class_name: Dense\n    config: {units: 4}\n"


def test_python_tag_is_critical(tmp_path: Path) -> None:
    data = BENIGN + b'  - !!python/object/apply:os.system ["id"]\n'
    (finding,) = hits(scan_bytes(tmp_path, data, name="model.yaml"), "KG107")
    assert finding.severity is Severity.CRITICAL and finding.cves == ("CVE-2021-37678",)
    assert "line 6" in finding.message and finding.evidence == "!!python/object/apply:os.system"


def test_yaml_inside_an_archive_is_checked(tmp_path: Path) -> None:
    data = build([*keras_entries(), Entry(b"assets/model.yml", b"x: !!python/name:os.system\n")])
    (finding,) = hits(scan_bytes(tmp_path, data), "KG107")
    assert finding.location.member == "assets/model.yml"


def test_benign_yaml_and_core_tags_pass(tmp_path: Path) -> None:
    data = BENIGN + b"name: !!str mlp\nweights: !!binary aGVsbG8=\n"
    assert hits(scan_bytes(tmp_path, data, name="model.yaml"), "KG107") == []
