"""KG410: sharded weights indexes naming files outside their folder."""

from __future__ import annotations

import json
from pathlib import Path

from kerasguard.findings import Severity
from kerasguard.formats.context import ReadContext
from support.h5craft import h5file, keras_weights, module_context, scan_path
from support.scanhelp import hits

h5ctx = module_context()


def index(folder: Path, *names: str) -> Path:
    path = folder / "m.weights.json"
    path.write_text(json.dumps({"weight_map": {f"/layers/l{i}/vars": n for i, n in enumerate(names)}}))
    return path


def test_traversal_and_absolute_names(tmp_path: Path, h5ctx: ReadContext) -> None:
    found = hits(scan_path(index(tmp_path, "../../etc/shadow", "/etc/passwd"), h5ctx), "KG410")
    assert [f.severity for f in found] == [Severity.HIGH, Severity.HIGH]
    assert "path separator" in found[0].message and "not read" in found[0].message


def test_symlink_leaving_the_folder(tmp_path: Path, h5ctx: ReadContext) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "m_00000.weights.h5").symlink_to(h5file(tmp_path / "elsewhere.h5", keras_weights))
    (hit,) = hits(scan_path(index(folder, "m_00000.weights.h5"), h5ctx), "KG410")
    assert "symlink" in hit.message


def test_plain_shard_names_are_fine(tmp_path: Path, h5ctx: ReadContext) -> None:
    h5file(tmp_path / "m_00000.weights.h5", keras_weights)
    assert scan_path(index(tmp_path, "m_00000.weights.h5"), h5ctx) == ()
