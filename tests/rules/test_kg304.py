"""KG304 central directory vs local header mismatch, overlapping members, archive ambiguities."""

from __future__ import annotations

from pathlib import Path

from kerasguard.findings import Severity
from support.scanhelp import hits, scan_bytes
from support.zipcraft import CONFIG, Entry, build, keras_entries


def test_overlapping_members_are_high(tmp_path: Path) -> None:
    shared = Entry(b"model.weights.h5", b"\x00" * 200)
    aliases = [Entry(f"assets/{i}".encode(), b"\x00" * 200, write_local=False) for i in range(3)]
    entries = [Entry(b"config.json", CONFIG), shared, *aliases]
    build(entries)
    for alias in aliases:
        alias.header_offset = shared.offset
    found = hits(scan_bytes(tmp_path, build(entries)), "KG304")
    overlaps = [f for f in found if "overlap" in f.message]
    assert len(overlaps) == 4 and all(f.severity is Severity.HIGH for f in overlaps)
    # the aliases also point at a local header that carries another name
    assert {f.location.member for f in found if "local header names" in f.message} == {
        "assets/0",
        "assets/1",
        "assets/2",
    }


def test_local_name_mismatch_is_medium(tmp_path: Path) -> None:
    entries = keras_entries()
    entries[1].local_name = b"config.jsoN"
    (finding,) = hits(scan_bytes(tmp_path, build(entries)), "KG304")
    assert finding.severity is Severity.MEDIUM and "local header names" in finding.message
    assert finding.location.member == "config.json"


def test_prepended_data_is_reported(tmp_path: Path) -> None:
    data = build(keras_entries(), prefix=b"MZ" + b"\x00" * 100, relative_offsets=True)
    (finding,) = hits(scan_bytes(tmp_path, data), "KG304")
    assert "102 bytes precede the archive" in finding.message


def test_recovered_archive_reports_the_recovery_once(tmp_path: Path) -> None:
    data = build(keras_entries())
    found = hits(scan_bytes(tmp_path, data[: data.index(b"PK\x01\x02")]), "KG304")
    assert len(found) == 1 and "recovered" in found[0].message


def test_consistent_archive_passes(tmp_path: Path) -> None:
    assert hits(scan_bytes(tmp_path, build(keras_entries())), "KG304") == []
