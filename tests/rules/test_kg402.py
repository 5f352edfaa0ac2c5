"""KG402: datasets whose bytes live in external host files (CVE-2026-1669)."""

from __future__ import annotations

from pathlib import Path

import h5py

from kerasguard.findings import Severity
from kerasguard.formats.context import ReadContext
from support.h5craft import (
    FIXED_KERAS,
    OLD_KERAS,
    all_findings,
    h5file,
    keras_weights,
    keras_zip,
    module_context,
    read_keras_zip,
    rule_context,
    scan_path,
)
from support.scanhelp import hits

h5ctx = module_context()


def planted_weights(tmp_path: Path) -> Path:
    planted = tmp_path / "planted_secret.txt"
    planted.write_bytes(b"api-key=hunter2\n" * 4)

    def build(f: h5py.File) -> None:
        keras_weights(f)
        del f["layers/dense/vars/1"]
        f["layers/dense/vars"].create_dataset("1", shape=(64,), dtype="u1", external=[(str(planted), 0, 64)])

    return h5file(tmp_path / "model.weights.h5", build)


def test_external_storage_points_at_a_planted_file(tmp_path: Path, h5ctx: ReadContext) -> None:
    found = hits(scan_path(planted_weights(tmp_path), h5ctx, FIXED_KERAS), "KG402")
    assert len(found) == 1
    (hit,) = found
    assert hit.location.h5path == "/layers/dense/vars/1"
    assert str(tmp_path / "planted_secret.txt") in hit.message
    assert (hit.severity, hit.cves) == (Severity.HIGH, ("CVE-2026-1669",))


def test_critical_for_keras_that_reads_external_storage(tmp_path: Path, h5ctx: ReadContext) -> None:
    found = hits(scan_path(planted_weights(tmp_path), h5ctx, OLD_KERAS), "KG402")
    assert [f.severity for f in found] == [Severity.CRITICAL]


def test_external_storage_inside_a_keras_archive(tmp_path: Path, h5ctx: ReadContext) -> None:
    archive = keras_zip(tmp_path / "m.keras", {"model.weights.h5": planted_weights(tmp_path)})
    art = read_keras_zip(archive, h5ctx)
    found = hits(all_findings(art, rule_context(OLD_KERAS)), "KG402")
    assert [(f.location.member, f.severity) for f in found] == [("model.weights.h5", Severity.CRITICAL)]


def test_internal_storage_is_fine(tmp_path: Path, h5ctx: ReadContext) -> None:
    assert hits(scan_path(h5file(tmp_path / "ok.h5", keras_weights), h5ctx), "KG402") == []
