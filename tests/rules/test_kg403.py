"""KG403: virtual datasets assembled from other files (CVE-2026-12480)."""

from __future__ import annotations

from pathlib import Path

import h5py

from kerasguard.findings import Severity
from kerasguard.formats.context import ReadContext
from support.h5craft import FIXED_KERAS, OLD_KERAS, h5file, keras_weights, module_context, scan_path
from support.scanhelp import hits

h5ctx = module_context()


def virtual_weights(tmp_path: Path) -> Path:
    def build(f: h5py.File) -> None:
        keras_weights(f)
        del f["layers/dense/vars/0"]
        layout = h5py.VirtualLayout(shape=(8, 4), dtype="f4")
        layout[:] = h5py.VirtualSource("/srv/other/model.h5", "/weights", shape=(8, 4))
        f["layers/dense/vars"].create_virtual_dataset("0", layout)

    return h5file(tmp_path / "vds.weights.h5", build)


def test_virtual_dataset(tmp_path: Path, h5ctx: ReadContext) -> None:
    found = hits(scan_path(virtual_weights(tmp_path), h5ctx, FIXED_KERAS), "KG403")
    assert [(f.location.h5path, f.severity) for f in found] == [("/layers/dense/vars/0", Severity.HIGH)]
    assert "/srv/other/model.h5:/weights" in found[0].message
    assert found[0].cves == ("CVE-2026-12480",)


def test_critical_for_keras_that_reads_virtual_datasets(tmp_path: Path, h5ctx: ReadContext) -> None:
    found = hits(scan_path(virtual_weights(tmp_path), h5ctx, OLD_KERAS), "KG403")
    assert [f.severity for f in found] == [Severity.CRITICAL]


def test_regular_datasets_are_not_virtual(tmp_path: Path, h5ctx: ReadContext) -> None:
    assert hits(scan_path(h5file(tmp_path / "ok.h5", keras_weights), h5ctx), "KG403") == []
