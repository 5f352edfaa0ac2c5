"""KG309 nested archive."""

from __future__ import annotations

from pathlib import Path

import pytest

from kerasguard.findings import Severity
from support.scanhelp import hits, scan_bytes, scan_path
from support.zipcraft import Entry, build, keras_entries


def test_zip_in_assets_is_info_and_scanned(tmp_path: Path) -> None:
    inner = build([Entry(b"evil.pkl", b"\x80\x04N.")])
    report = scan_bytes(tmp_path, build([*keras_entries(), Entry(b"assets/bundle.zip", inner)]))
    (finding,) = hits(report, "KG309")
    assert finding.severity is Severity.INFO and finding.location.member == "assets/bundle.zip"


@pytest.mark.keras
def test_kerass_own_npz_weights_are_not_nested_archives() -> None:
    from support import kerasfiles

    assert hits(scan_path(kerasfiles.saved("mlp", "npz")), "KG309") == []


def test_flat_archive_passes(tmp_path: Path) -> None:
    assert hits(scan_bytes(tmp_path, build(keras_entries())), "KG309") == []
