"""KG305 encrypted members."""

from __future__ import annotations

from pathlib import Path

from kerasguard.findings import Severity
from support.scanhelp import hits, scan_bytes
from support.zipcraft import Entry, build, keras_entries


def test_encrypted_member_is_medium_and_not_read(tmp_path: Path) -> None:
    report = scan_bytes(tmp_path, build([*keras_entries(), Entry(b"assets/x.pkl", b"\x12\x34" * 8, flags=1)]))
    (finding,) = hits(report, "KG305")
    assert finding.severity is Severity.MEDIUM and finding.location.member == "assets/x.pkl"


def test_aes_method_counts_as_encrypted(tmp_path: Path) -> None:
    data = build([*keras_entries(), Entry(b"assets/x", b"", method=99, raw=b"\x00" * 20)])
    assert len(hits(scan_bytes(tmp_path, data), "KG305")) == 1


def test_plain_members_pass(tmp_path: Path) -> None:
    assert hits(scan_bytes(tmp_path, build(keras_entries())), "KG305") == []
