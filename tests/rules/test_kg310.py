"""KG310 JSON that parsers read differently."""

from __future__ import annotations

from pathlib import Path

from kerasguard.findings import Severity
from support.scanhelp import hits, scan_bytes
from support.zipcraft import build, keras_entries


def test_duplicate_class_name_in_model_config_is_high(tmp_path: Path) -> None:
    config = (
        b'{"class_name": "Sequential", '
        b'"config": {"layers": [{"class_name": "Dense", "class_name": "Lambda"}]}}'
    )
    (finding,) = hits(scan_bytes(tmp_path, build(keras_entries(config__json=config))), "KG310")
    assert finding.severity is Severity.HIGH
    assert finding.location.pointer == "/config/layers/0/class_name"
    assert 'keeps the last value "Lambda"' in finding.message and '"Dense"' in finding.message


def test_duplicate_in_metadata_is_medium(tmp_path: Path) -> None:
    meta = b'{"keras_version": "3.15.1", "keras_version": "2.0"}'
    (finding,) = hits(scan_bytes(tmp_path, build(keras_entries(metadata__json=meta))), "KG310")
    assert finding.severity is Severity.MEDIUM and finding.location.member == "metadata.json"


def test_nan_values_are_low_and_grouped(tmp_path: Path) -> None:
    config = b'{"class_name": "Sequential", "config": {"a": NaN, "b": [Infinity, NaN]}}'
    (finding,) = hits(scan_bytes(tmp_path, build(keras_entries(config__json=config))), "KG310")
    assert finding.severity is Severity.LOW and "at 3 places" in finding.message
    assert finding.evidence == "/config/a, /config/b/0, /config/b/1"


def test_strict_json_passes(tmp_path: Path) -> None:
    assert hits(scan_bytes(tmp_path, build(keras_entries())), "KG310") == []
