"""KG302 symlink member (zip Unix mode or a link in a model directory)."""

from __future__ import annotations

from pathlib import Path

from kerasguard.findings import Severity
from support.scanhelp import hits, scan_bytes, scan_path
from support.zipcraft import CONFIG, Entry, build, keras_entries

LINK = 0o120777 << 16


def test_link_leaving_the_archive_is_high(tmp_path: Path) -> None:
    data = build([*keras_entries(), Entry(b"assets/data", b"../../../etc", external_attr=LINK)])
    (finding,) = hits(scan_bytes(tmp_path, data), "KG302")
    assert finding.severity is Severity.HIGH and finding.evidence == "-> ../../../etc"
    assert finding.location.member == "assets/data"


def test_link_inside_the_archive_is_medium(tmp_path: Path) -> None:
    data = build([*keras_entries(), Entry(b"assets/a", b"b.txt", external_attr=LINK)])
    (finding,) = hits(scan_bytes(tmp_path, data), "KG302")
    assert finding.severity is Severity.MEDIUM


def test_symlink_mode_from_non_unix_host_and_regular_files_are_not_links(tmp_path: Path) -> None:
    data = build([*keras_entries(), Entry(b"assets/a", b"/etc", external_attr=LINK, create_system=0)])
    assert hits(scan_bytes(tmp_path, data), "KG302") == []


def _model_dir(tmp_path: Path) -> Path:
    model = tmp_path / "model"
    (model / "assets").mkdir(parents=True)
    (model / "config.json").write_bytes(CONFIG)
    (model / "model.weights.h5").write_bytes(b"\x89HDF\r\n\x1a\n")
    return model


def test_directory_link_to_a_role_file_is_high(tmp_path: Path) -> None:
    model = _model_dir(tmp_path)
    (model / "model.weights.h5").unlink()
    (model / "model.weights.h5").symlink_to("/dev/zero")
    (finding,) = hits(scan_path(model), "KG302")
    assert finding.severity is Severity.HIGH and "Keras reads this file through the link" in finding.message


def test_directory_link_inside_the_tree_is_medium(tmp_path: Path) -> None:
    model = _model_dir(tmp_path)
    (model / "assets" / "real.txt").write_text("a")
    (model / "assets" / "alias.txt").symlink_to("real.txt")
    (finding,) = hits(scan_path(model), "KG302")
    assert finding.severity is Severity.MEDIUM and finding.location.member == "assets/alias.txt"


def test_plain_directory_has_no_links(tmp_path: Path) -> None:
    assert hits(scan_path(_model_dir(tmp_path)), "KG302") == []
