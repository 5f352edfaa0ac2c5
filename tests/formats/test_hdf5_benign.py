"""Benign models saved by real Keras, in every HDF5 form, produce no high or critical finding.

The same files check KG408's layout knowledge against what Keras really writes: every variable it
expects must be found where Keras put it, with a fitting shape.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from kerasguard.formats.context import ReadContext
from kerasguard.formats.dispatch import open_artifact
from kerasguard.rules.hdf5 import legacy_match
from kerasguard.rules.weight_shapes import expected_vars, shape_fits
from support.h5craft import all_findings, module_context, read_keras_zip, rule_context, scan_path, severe

kmodels = pytest.importorskip("support.kmodels")  # needs keras

pytestmark = pytest.mark.keras

h5ctx = module_context()
NAMES = sorted(kmodels.BENIGN)


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, dict[str, Path]]]:
    folder = tmp_path_factory.mktemp("benign")
    out = {}
    for name in NAMES:
        out[name] = kmodels.save_all(kmodels.BENIGN[name](), folder / name, name)
    multi = folder / "multi"
    multi.mkdir()
    kmodels.mlp().save_weights(multi / "mlp.weights.json", max_shard_size=6e-7)  # two shards
    out["multi_shard"] = {"sharded": multi / "mlp.weights.json"}
    yield out


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("form", ["h5", "weights_h5", "sharded"])
def test_no_severe_finding(
    saved: dict[str, dict[str, Path]], name: str, form: str, h5ctx: ReadContext
) -> None:
    findings = scan_path(saved[name][form], h5ctx)
    assert severe(findings) == [], [str(f.location) + " " + f.message for f in findings]


@pytest.mark.parametrize("name", NAMES)
def test_keras_archive_no_severe_finding(
    saved: dict[str, dict[str, Path]], name: str, h5ctx: ReadContext
) -> None:
    art = read_keras_zip(saved[name]["keras"], h5ctx)
    assert art.problems == []
    assert art.h5_files[0].role == "keras_weights" and art.model_configs
    assert severe(all_findings(art)) == []


def test_multi_shard_index_reads_every_shard(saved: dict[str, dict[str, Path]], h5ctx: ReadContext) -> None:
    index = saved["multi_shard"]["sharded"]
    h5ctx.start_file()
    art = open_artifact(index, h5ctx)
    assert art.problems == []
    assert [r.status for r in art.shard_refs] == ["read", "read"]
    assert [h.role for h in art.h5_files] == ["weights_shard", "weights_shard"]
    assert severe(all_findings(art, rule_context())) == []


@pytest.mark.parametrize("name", NAMES)
def test_keras3_layout_matches_what_keras_writes(
    saved: dict[str, dict[str, Path]], name: str, h5ctx: ReadContext
) -> None:
    art = read_keras_zip(saved[name]["keras"], h5ctx)
    (config,) = art.model_configs
    datasets = {o.path: o for o in art.h5_files[0].datasets}
    expected = expected_vars(config.value)
    for ev in expected:
        assert ev.k3_path in datasets, ev
        assert datasets[ev.k3_path].shape is not None
        assert shape_fits(ev.shape, datasets[ev.k3_path].shape), (ev, datasets[ev.k3_path].shape)
    if name != "custom_layer":  # ScaleLayer has no variables kerasguard knows; its Dense does
        assert expected


@pytest.mark.parametrize("name", NAMES)
def test_legacy_layout_matches_what_keras_writes(
    saved: dict[str, dict[str, Path]], name: str, h5ctx: ReadContext
) -> None:
    h5ctx.start_file()
    art = open_artifact(saved[name]["h5"], h5ctx)
    (config,) = art.model_configs
    expected = expected_vars(config.value)
    matched = 0
    for obj in art.h5_files[0].datasets:
        parts = obj.path.split("/")
        if parts[1] != "model_weights" or len(parts) < 5:
            continue
        match = legacy_match([e for e in expected if e.legacy_top == parts[2]], parts[3:])
        if match is not None:
            matched += 1
            assert obj.shape is not None and shape_fits(match.shape, obj.shape), (obj.path, match)
    assert matched == len(expected)
