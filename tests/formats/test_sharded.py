"""Sharded weights indexes: shards resolved only as plain files next to the index."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kerasguard.formats.artifact import Artifact
from kerasguard.formats.context import ReadContext
from kerasguard.formats.dispatch import open_artifact
from kerasguard.formats.sharded import escape_reason, shard_names
from support.h5craft import h5file, keras_weights, module_context

h5ctx = module_context()


def index(folder: Path, weight_map: dict[str, Any], name: str = "m.weights.json", **extra: Any) -> Path:
    path = folder / name
    path.write_text(json.dumps({"metadata": {"total_size": 100}, "weight_map": weight_map, **extra}))
    return path


def open_index(path: Path, ctx: ReadContext) -> Artifact:
    ctx.start_file()
    return open_artifact(path, ctx)


def test_every_shard_is_read_once(tmp_path: Path, h5ctx: ReadContext) -> None:
    h5file(tmp_path / "m_00000.weights.h5", keras_weights)
    h5file(tmp_path / "m_00001.weights.h5", keras_weights)
    path = index(
        tmp_path,
        {
            "/layers/dense/vars": ["m_00000.weights.h5", "m_00001.weights.h5"],
            "/layers/dense_1/vars": "m_00001.weights.h5",
        },
    )
    art = open_index(path, h5ctx)
    assert art.format == "sharded_weights" and art.problems == []
    assert [(r.name, r.status) for r in art.shard_refs] == [
        ("m_00000.weights.h5", "read"),
        ("m_00001.weights.h5", "read"),
    ]
    assert [h.role for h in art.h5_files] == ["weights_shard", "weights_shard"]
    assert str(art.h5_files[1].location) == str(tmp_path / "m_00001.weights.h5")
    assert [d.role for d in art.json_docs] == ["weights_index"]


@pytest.mark.parametrize(
    "name",
    [
        "../outside.weights.h5",
        "/etc/passwd",
        "sub/x.weights.h5",
        "..",
        ".",
        "C:x.h5",
        "a\\b.h5",
        "",
        "a\x00b",
    ],
)
def test_names_that_leave_the_folder_are_recorded_not_read(
    tmp_path: Path, h5ctx: ReadContext, name: str
) -> None:
    folder = tmp_path / "model"
    (folder / "sub").mkdir(parents=True)
    h5file(tmp_path / "outside.weights.h5", keras_weights)
    h5file(folder / "sub" / "x.weights.h5", keras_weights)
    art = open_index(index(folder, {"/layers/dense/vars": name}), h5ctx)
    assert [(r.name, r.status) for r in art.shard_refs] == [(name, "escapes")]
    assert art.h5_files == [] and art.problems == []


def test_symlink_out_of_the_folder_escapes(tmp_path: Path, h5ctx: ReadContext) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    target = h5file(tmp_path / "secret.h5", keras_weights)
    (folder / "m_00000.weights.h5").symlink_to(target)
    art = open_index(index(folder, {"/layers/dense/vars": "m_00000.weights.h5"}), h5ctx)
    assert [r.status for r in art.shard_refs] == ["escapes"] and "symlink" in art.shard_refs[0].detail
    assert art.h5_files == []


def test_symlink_inside_the_folder_is_read(tmp_path: Path, h5ctx: ReadContext) -> None:
    real = h5file(tmp_path / "real.weights.h5", keras_weights)
    (tmp_path / "m_00000.weights.h5").symlink_to(real.name)
    art = open_index(index(tmp_path, {"/layers/dense/vars": "m_00000.weights.h5"}), h5ctx)
    assert [r.status for r in art.shard_refs] == ["read"] and len(art.h5_files) == 1


def test_missing_or_odd_shards_are_problems(tmp_path: Path, h5ctx: ReadContext) -> None:
    (tmp_path / "adir.h5").mkdir()
    (tmp_path / "dangling.h5").symlink_to(tmp_path / "nowhere.h5")
    path = index(tmp_path, {"/a/vars": "gone.h5", "/b/vars": "adir.h5", "/c/vars": "dangling.h5"})
    art = open_index(path, h5ctx)
    assert [r.status for r in art.shard_refs] == ["missing"] * 3
    assert [p.kind for p in art.problems] == ["io"] * 3
    assert "missing" in art.problems[0].message and "not a regular file" in art.problems[1].message


def test_shard_that_is_not_hdf5_is_read_as_what_it_is(tmp_path: Path, h5ctx: ReadContext) -> None:
    (tmp_path / "m_00000.weights.h5").write_bytes(b"\x80\x04K\x01.")  # a pickle
    art = open_index(index(tmp_path, {"/a/vars": "m_00000.weights.h5"}), h5ctx)
    assert [m.kind for m in art.members] == ["pickle"]
    assert art.h5_files == []


@pytest.mark.parametrize(
    "doc",
    [
        [],
        {},
        {"weight_map": []},
        {"weight_map": {"/a": 3}},
        {"weight_map": {"/a": []}},
        {"weight_map": {"/a": ["x.h5", 1]}},
        {"metadata": [], "weight_map": {}},
        {"metadata": {"total_size": -1}, "weight_map": {}},
        {"metadata": {"total_size": "big"}, "weight_map": {}},
    ],
)
def test_malformed_index_is_corrupt(tmp_path: Path, h5ctx: ReadContext, doc: Any) -> None:
    path = tmp_path / "m.weights.json"
    path.write_text(json.dumps(doc))
    art = open_index(path, h5ctx)
    assert [p.kind for p in art.problems] == ["corrupt"]
    assert "sharded-weights index" in art.problems[0].message


def test_invalid_json_is_corrupt(tmp_path: Path, h5ctx: ReadContext) -> None:
    path = tmp_path / "m.weights.json"
    path.write_bytes(b'{"weight_map": {"/a": "x.h5"')
    assert [p.kind for p in open_index(path, h5ctx).problems] == ["corrupt"]


def test_too_many_shards_is_a_limit(tmp_path: Path) -> None:
    from kerasguard.policy import Limits

    path = index(tmp_path, {f"/l{i}/vars": f"s{i}.h5" for i in range(5)})
    ctx = ReadContext(limits=Limits(max_members=2))
    try:
        art = open_index(path, ctx)
    finally:
        ctx.close()
    assert "limit" in [p.kind for p in art.problems]
    assert len(art.shard_refs) == 2


@pytest.mark.parametrize(("name", "ok"), [("x_00000.weights.h5", True), ("..x.h5", True), ("x/y", False)])
def test_escape_reason(name: str, ok: bool) -> None:
    assert (escape_reason(name) is None) is ok


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(json_values, json_values)
def test_fuzz_index_structure(weight_map: Any, metadata: Any) -> None:
    try:
        names = shard_names({"metadata": metadata, "weight_map": weight_map})
    except ValueError:
        return
    assert all(isinstance(n, str) for n in names) and len(names) == len(set(names))
