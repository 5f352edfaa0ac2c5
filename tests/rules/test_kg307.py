"""KG307 too many members."""

from __future__ import annotations

from pathlib import Path

from kerasguard.policy import Limits
from support.scanhelp import hits, scan_bytes, scan_path
from support.zipcraft import CONFIG, Entry, build, keras_entries


def test_archive_over_max_members(tmp_path: Path) -> None:
    entries = [*keras_entries(), *(Entry(f"assets/{i}".encode(), b"") for i in range(20))]
    report = scan_bytes(tmp_path, build(entries), limits=Limits(max_members=10))
    (finding,) = hits(report, "KG307")
    assert "declares 23 entries" in finding.message and "max_members=10" in finding.message
    assert report.exit_code(report.max_severity or finding.severity) == 2  # incomplete: KG902 too


def test_directory_over_max_members(tmp_path: Path) -> None:
    model = tmp_path / "m"
    (model / "assets").mkdir(parents=True)
    (model / "config.json").write_bytes(CONFIG)
    for i in range(12):
        (model / "assets" / f"{i}.txt").write_text("x")
    assert len(hits(scan_path(model, Limits(max_members=5)), "KG307")) == 1


def test_within_limit_passes(tmp_path: Path) -> None:
    assert hits(scan_bytes(tmp_path, build(keras_entries()), limits=Limits(max_members=3)), "KG307") == []
