"""KG301 unsafe member path."""

from __future__ import annotations

from pathlib import Path

import pytest

from kerasguard.findings import Severity
from support.scanhelp import hits, scan_bytes
from support.zipcraft import Entry, build, keras_entries


@pytest.mark.parametrize(
    ("name", "severity", "words"),
    [
        (b"assets/../../../home/u/.bashrc", Severity.HIGH, "'..' component"),
        (b"/etc/cron.d/x", Severity.HIGH, "absolute path"),
        (b"C:/Windows/x.dll", Severity.HIGH, "drive letter"),
        (b"\\\\server\\share\\x", Severity.HIGH, "absolute path"),
        (b"assets\\..\\..\\x", Severity.HIGH, "'..' component"),
        (b"assets\\vocab.txt", Severity.MEDIUM, "backslash"),
        (b"config.json\x00.txt", Severity.HIGH, "NUL byte"),
        (b"assets/" + b"a" * 300, Severity.LOW, "overlong"),
        (b"assets/\x1b[2Jx", Severity.LOW, "control characters"),
        (b"", Severity.LOW, "empty member name"),
    ],
)
def test_unsafe_names(tmp_path: Path, name: bytes, severity: Severity, words: str) -> None:
    report = scan_bytes(tmp_path, build([*keras_entries(), Entry(name, b"x")]))
    (finding,) = hits(report, "KG301")
    assert finding.severity is severity and words in finding.message
    assert finding.cwe == "CWE-22" and "CVE-2026-12479" in finding.cves


def test_safe_names_are_not_flagged(tmp_path: Path) -> None:
    entries = [
        *keras_entries(),
        Entry(b"assets/string_lookup/vocabulary.txt", b"a\nb\n"),
        Entry(b"assets/", b""),
    ]
    assert hits(scan_bytes(tmp_path, build(entries)), "KG301") == []


def test_findings_are_capped_per_archive(tmp_path: Path) -> None:
    entries = [Entry(f"../x{i}".encode(), b"x") for i in range(30)]
    found = hits(scan_bytes(tmp_path, build(entries), name="a.zip"), "KG301")
    assert len(found) == 21
    assert [f.message for f in found if "more" in f.message] == [
        "10 more members with unsafe paths not listed"
    ]
