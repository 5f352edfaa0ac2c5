"""KG405: datasets declaring far more than they store (CVE-2026-0897, CVE-2026-12570)."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from kerasguard.findings import Severity
from kerasguard.formats.context import ReadContext
from kerasguard.formats.dispatch import open_artifact
from kerasguard.policy import GiB, KiB
from support.h5craft import (
    FIXED_KERAS,
    OLD_KERAS,
    all_findings,
    declare_bomb,
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


def bomb_weights(tmp_path: Path, nbytes: int, name: str = "model.weights.h5") -> Path:
    def build(f: h5py.File) -> None:
        keras_weights(f)
        del f["layers/dense/vars/0"]
        declare_bomb(f, "layers/dense/vars/0", nbytes)

    return h5file(tmp_path / name, build)


def test_8_gib_bomb_refused_by_fixed_keras_is_high(tmp_path: Path, h5ctx: ReadContext) -> None:
    path = bomb_weights(tmp_path, 8 * GiB)
    assert path.stat().st_size < 100 * KiB
    (hit,) = hits(scan_path(path, h5ctx, FIXED_KERAS), "KG405")
    assert hit.severity == Severity.HIGH and "refuses" in hit.message
    assert hit.location.h5path == "/layers/dense/vars/0"
    assert hit.cves == ("CVE-2026-0897", "CVE-2026-12570")
    assert "stored=0" in hit.evidence and "deflate" in hit.evidence


def test_8_gib_bomb_is_critical_for_vulnerable_keras(tmp_path: Path, h5ctx: ReadContext) -> None:
    (hit,) = hits(scan_path(bomb_weights(tmp_path, 8 * GiB), h5ctx, OLD_KERAS), "KG405")
    assert hit.severity == Severity.CRITICAL


def test_3_gib_bomb_under_the_keras_floor_is_critical_even_on_fixed_keras(
    tmp_path: Path, h5ctx: ReadContext
) -> None:
    (hit,) = hits(scan_path(bomb_weights(tmp_path, 3 * GiB), h5ctx, FIXED_KERAS), "KG405")
    assert hit.severity == Severity.CRITICAL and "reads it in full" in hit.message


def test_bomb_inside_a_stored_keras_archive(tmp_path: Path, h5ctx: ReadContext) -> None:
    archive = keras_zip(
        tmp_path / "bomb.keras", {"metadata.json": b"{}", "model.weights.h5": bomb_weights(tmp_path, 8 * GiB)}
    )
    assert archive.stat().st_size < 100 * KiB
    art = read_keras_zip(archive, h5ctx)
    (hit,) = hits(all_findings(art, rule_context(OLD_KERAS)), "KG405")
    assert str(hit.location) == f"{archive}!/model.weights.h5:/layers/dense/vars/0"


def test_ratio_applies_at_any_size(tmp_path: Path, h5ctx: ReadContext) -> None:
    """Compressed zeros store ~nothing: flagged once over the (policy) floor, real data never."""

    def build(f: h5py.File) -> None:
        f.create_dataset("zeros", data=np.zeros(64 * 1024, dtype="f4"), chunks=(4096,), compression="gzip")
        f.create_dataset("real", data=np.random.default_rng(0).standard_normal(64 * 1024).astype("f4"))

    h5ctx.start_file()
    art = open_artifact(h5file(tmp_path / "small.h5", build), h5ctx)
    found = hits(all_findings(art, rule_context(h5_bomb_floor=1 * KiB)), "KG405")
    assert [f.location.h5path for f in found] == ["/zeros"]
    assert hits(all_findings(art, rule_context()), "KG405") == []  # 256 KiB is under the default 64 MiB floor
    assert hits(all_findings(art, rule_context(h5_bomb_floor=1 * KiB, h5_bomb_ratio=10**6)), "KG405") == []


def test_real_weights_are_not_bombs(tmp_path: Path, h5ctx: ReadContext) -> None:
    assert hits(scan_path(h5file(tmp_path / "ok.h5", keras_weights), h5ctx), "KG405") == []
