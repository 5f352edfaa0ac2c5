"""KG404: dataspaces no real model has (negative dims, rank, 64-bit overflow)."""

from __future__ import annotations

from pathlib import Path

import h5py

from kerasguard.findings import Location, Severity
from kerasguard.formats.artifact import Artifact, H5File, H5Object
from kerasguard.formats.context import ReadContext
from kerasguard.formats.dispatch import open_artifact
from support.h5craft import all_findings, h5file, keras_weights, module_context, rule_context, scan_path
from support.scanhelp import hits

h5ctx = module_context()


def test_element_count_overflowing_int64(tmp_path: Path, h5ctx: ReadContext) -> None:
    def build(f: h5py.File) -> None:
        keras_weights(f)
        f.create_dataset("layers/dense_1/vars/0", shape=(2**62, 8), dtype="f8", chunks=(1, 8))

    found = hits(scan_path(h5file(tmp_path / "overflow.h5", build), h5ctx), "KG404")
    assert [(f.location.h5path, f.severity) for f in found] == [("/layers/dense_1/vars/0", Severity.HIGH)]
    assert "overflow" in found[0].message


def test_rank_over_the_policy_limit(tmp_path: Path, h5ctx: ReadContext) -> None:
    def build(f: h5py.File) -> None:
        f.create_dataset("w", shape=(1,) * 5, dtype="f4")

    path = h5file(tmp_path / "rank.h5", build)
    h5ctx.start_file()
    art = open_artifact(path, h5ctx)
    assert hits(all_findings(art, rule_context(h5_max_dims=4)), "KG404")
    assert not hits(all_findings(art, rule_context()), "KG404")


def test_negative_dimension_from_any_reader() -> None:
    """h5py cannot express one; the rule still refuses it from any reader that can."""
    loc = Location("x.h5")
    h5 = H5File(
        loc, "keras_weights", [H5Object("/w", "dataset", shape=(-1, 4), itemsize=4, declared_bytes=-16)]
    )
    art = Artifact(path="x.h5", format="keras_weights", location=loc, h5_files=[h5])
    (hit,) = hits(all_findings(art), "KG404")
    assert "negative" in hit.message


def test_ordinary_shapes_are_fine(tmp_path: Path, h5ctx: ReadContext) -> None:
    assert hits(scan_path(h5file(tmp_path / "ok.h5", keras_weights), h5ctx), "KG404") == []
