"""KG308 decompression bomb (ratio, member size, total size)."""

from __future__ import annotations

import zlib
from pathlib import Path

from kerasguard.findings import Severity
from kerasguard.policy import GiB, Limits, MiB
from support.scanhelp import hits, scan_bytes
from support.zipcraft import CONFIG, Entry, build, keras_entries


def test_one_kilobyte_declaring_ten_gib(tmp_path: Path) -> None:
    bomb = Entry(b"model.weights.h5", b"\x00" * 1000, method=8, zip64_sizes=True, file_size=10 * GiB)
    data = build([Entry(b"config.json", CONFIG), bomb])
    assert len(data) < 1024
    report = scan_bytes(tmp_path, data)
    (finding,) = hits(report, "KG308")
    assert finding.severity is Severity.HIGH and "Keras >= 3.12.3/3.15.0 refuses it" in finding.message
    assert hits(report, "KG902")  # and it was not decompressed


def test_real_deflate_bomb_below_kerass_thresholds(tmp_path: Path) -> None:
    zeros = b"\x00" * (20 * MiB)
    raw = zlib.compressobj(9, zlib.DEFLATED, -15)
    stream = raw.compress(zeros) + raw.flush()
    data = build([*keras_entries(), Entry(b"assets/blob.bin", zeros, method=8, raw=stream)])
    (finding,) = hits(scan_bytes(tmp_path, data), "KG308")
    assert (
        "below Keras's own thresholds" in finding.message and "max_compression_ratio=100" in finding.message
    )


def test_extract_floor_message(tmp_path: Path) -> None:
    big = Entry(b"assets/x", b"\x00" * 100, method=8, file_size=300 * MiB)
    (finding,) = hits(scan_bytes(tmp_path, build([*keras_entries(), big])), "KG308")
    assert "refuses to extract it" in finding.message


def test_member_and_total_size_limits(tmp_path: Path) -> None:
    entries = [*keras_entries(), Entry(b"assets/a", b"a" * 3000), Entry(b"assets/b", b"b" * 3000)]
    limits = Limits(max_member_bytes=2500, max_total_uncompressed=5000)
    found = hits(scan_bytes(tmp_path, build(entries), limits=limits), "KG308")
    messages = " ".join(f.message for f in found)
    assert (
        len(found) == 3 and "max_member_bytes=2500" in messages and "max_total_uncompressed=5000" in messages
    )


def test_small_or_stored_members_pass(tmp_path: Path) -> None:
    entries = [*keras_entries(), Entry(b"assets/v.txt", b"a\n" * 5000, method=8)]
    assert hits(scan_bytes(tmp_path, build(entries)), "KG308") == []
