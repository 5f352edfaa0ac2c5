"""KG401: soft, external and aliased HDF5 links (CVE-2026-12480)."""

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


def with_links(f: h5py.File) -> None:
    keras_weights(f)
    f["layers/dense/vars/2"] = h5py.SoftLink("/layers/dense/vars/0")
    f["layers/dense/vars/3"] = h5py.ExternalLink("/etc/host.h5", "/secret")


def test_soft_and_external_links(tmp_path: Path, h5ctx: ReadContext) -> None:
    path = h5file(tmp_path / "links.weights.h5", with_links)
    found = hits(scan_path(path, h5ctx, FIXED_KERAS), "KG401")
    assert {(f.location.h5path, f.severity) for f in found} == {
        ("/layers/dense/vars/2", Severity.HIGH),
        ("/layers/dense/vars/3", Severity.HIGH),
    }
    assert any("/etc/host.h5:/secret" in f.message for f in found)
    assert all(f.cves == ("CVE-2026-12480",) for f in found)


def test_critical_when_the_target_keras_follows_links(tmp_path: Path, h5ctx: ReadContext) -> None:
    path = h5file(tmp_path / "links.weights.h5", with_links)
    found = hits(scan_path(path, h5ctx, OLD_KERAS), "KG401")
    assert [f.severity for f in found] == [Severity.CRITICAL, Severity.CRITICAL]


def test_hard_link_cycle_is_medium(tmp_path: Path, h5ctx: ReadContext) -> None:
    def build(f: h5py.File) -> None:
        keras_weights(f)
        f["layers/dense/again"] = f["layers/dense"]

    found = hits(scan_path(h5file(tmp_path / "cycle.h5", build), h5ctx), "KG401")
    assert [(f.location.h5path, f.severity) for f in found] == [("/layers/dense/again", Severity.MEDIUM)]


def test_link_inside_a_keras_archive(tmp_path: Path, h5ctx: ReadContext) -> None:
    weights = h5file(tmp_path / "model.weights.h5", with_links)
    art = read_keras_zip(keras_zip(tmp_path / "m.keras", {"model.weights.h5": weights}), h5ctx)
    found = hits(all_findings(art, rule_context(OLD_KERAS)), "KG401")
    assert len(found) == 2
    assert all(f.location.member == "model.weights.h5" for f in found)


def test_plain_weights_have_no_links(tmp_path: Path, h5ctx: ReadContext) -> None:
    assert hits(scan_path(h5file(tmp_path / "ok.weights.h5", keras_weights), h5ctx), "KG401") == []
