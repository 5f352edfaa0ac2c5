"""KG407: many bombs, or too much declared in total, per file or across all shards."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np

from kerasguard.findings import Severity
from kerasguard.formats.context import ReadContext
from kerasguard.formats.dispatch import open_artifact
from kerasguard.policy import KiB, MiB
from support.h5craft import (
    FIXED_KERAS,
    all_findings,
    declare_bomb,
    h5file,
    module_context,
    rule_context,
    scan_path,
)
from support.scanhelp import hits

h5ctx = module_context()


def bombs(count: int, each: int):  # type: ignore[no-untyped-def]
    def build(f: h5py.File) -> None:
        for i in range(count):
            declare_bomb(f, f"layers/dense_{i}/vars/0", each)

    return build


def test_many_100_mib_bombs(tmp_path: Path, h5ctx: ReadContext) -> None:
    findings = scan_path(h5file(tmp_path / "many.h5", bombs(6, 100 * MiB)), h5ctx, FIXED_KERAS)
    (total,) = hits(findings, "KG407")
    assert total.severity == Severity.CRITICAL  # each is under Keras's 4 GiB floor: all are read
    assert "6 datasets together declare 600.0 MiB" in total.message
    assert len(hits(findings, "KG405")) == 6


def test_many_small_bombs_each_under_the_floor(tmp_path: Path, h5ctx: ReadContext) -> None:
    findings = scan_path(h5file(tmp_path / "small.h5", bombs(10, 10 * MiB)), h5ctx, FIXED_KERAS)
    assert hits(findings, "KG405") == []
    (total,) = hits(findings, "KG407")
    assert "10 datasets" in total.message


def test_one_bomb_is_left_to_kg405(tmp_path: Path, h5ctx: ReadContext) -> None:
    findings = scan_path(h5file(tmp_path / "one.h5", bombs(1, 100 * MiB)), h5ctx)
    assert hits(findings, "KG407") == [] and len(hits(findings, "KG405")) == 1


def test_bombs_spread_over_shards_add_up(tmp_path: Path, h5ctx: ReadContext) -> None:
    for i in range(2):
        h5file(
            tmp_path / f"m_0000{i}.weights.h5",
            lambda f, i=i: declare_bomb(f, f"layers/dense_{i}/vars/0", 40 * MiB),
        )
    index = tmp_path / "m.weights.json"
    index.write_text(
        json.dumps(
            {
                "weight_map": {
                    "/layers/dense_0/vars": "m_00000.weights.h5",
                    "/layers/dense_1/vars": "m_00001.weights.h5",
                }
            }
        )
    )
    findings = scan_path(index, h5ctx)
    (total,) = hits(findings, "KG407")
    assert str(total.location) == str(index) and "2 datasets" in total.message


def test_total_declared_over_the_policy_is_medium(tmp_path: Path, h5ctx: ReadContext) -> None:
    def build(f: h5py.File) -> None:
        for i in range(4):
            f.create_dataset(f"w{i}", data=np.ones(1024, dtype="f4"))

    h5ctx.start_file()
    art = open_artifact(h5file(tmp_path / "real.h5", build), h5ctx)
    assert hits(all_findings(art), "KG407") == []
    (hit,) = hits(all_findings(art, rule_context(h5_total_declared=8 * KiB)), "KG407")
    assert hit.severity == Severity.MEDIUM and "16.0 KiB" in hit.message
