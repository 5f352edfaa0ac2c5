"""The parent-side parser of worker answers: strict, exact, and never raising anything unexpected."""

from __future__ import annotations

import base64
import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kerasguard.formats.artifact import H5Object
from kerasguard.formats.hdf5.child_client import (
    ProtocolError,
    WalkResult,
    WorkerFailure,
    parse_answer,
    parse_response,
    trusted_answer,
)


def answer(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "ok": True,
        "objects": [
            {"path": "/layers", "kind": "group"},
            {
                "path": "/layers/dense/vars/0",
                "kind": "dataset",
                "shape": [2**62, 8],
                "dtype": "float64",
                "itemsize": 8,
                "stored_bytes": 0,
                "layout": "chunked",
                "chunks": [1, 8],
                "filters": ["deflate"],
                "attrs": [["name", "dense"]],
            },
        ],
        "root_attrs": {"keras_version": "3.15.1"},
        "json_attrs": {"model_config": {"size": 2, "parts": 1, "data": base64.b64encode(b"{}").decode()}},
        "errors": [{"path": "/x", "message": "broken"}],
        "truncated": None,
    }
    base.update(overrides)
    return base


def line(msg: Any) -> bytes:
    return json.dumps(msg).encode()


def test_valid_answer_is_parsed_with_exact_sizes() -> None:
    result = parse_response(line(answer()), max_objects=10)
    assert isinstance(result, WalkResult)
    ds = result.objects[1]
    assert ds.declared_bytes == 2**62 * 8 * 8  # arbitrary precision, no int64 wrap
    assert (ds.chunks, ds.filters, ds.attrs, ds.layout) == (
        (1, 8),
        ("deflate",),
        (("name", "dense"),),
        "chunked",
    )
    assert result.json_attrs["model_config"].data == b"{}"
    assert result.errors[0].path == "/x"


def test_trusted_answer_builds_the_same_objects() -> None:
    """The in-process reader's objects are built without the dataclass __init__: same fields, in order."""
    trusted = trusted_answer(answer())
    assert trusted == parse_answer(answer(), max_objects=10)
    assert isinstance(trusted, WalkResult)
    for obj in trusted.objects:
        assert list(vars(obj)) == [f.name for f in dataclasses.fields(H5Object)]
        assert obj == H5Object(**vars(obj)) and hash(obj) == hash(H5Object(**vars(obj)))


def test_failure_answer() -> None:
    result = parse_response(line({"ok": False, "kind": "limit", "message": "MemoryError"}), 10)
    assert result == WorkerFailure("limit", "MemoryError")


@pytest.mark.parametrize(
    "bad",
    [
        answer(ok="yes"),
        answer(objects={}),
        answer(objects=[{"path": "relative", "kind": "group"}]),
        answer(objects=[{"path": "/a", "kind": "teleport"}]),
        answer(objects=[{"path": "/a", "kind": "dataset", "shape": [1, "2"]}]),
        answer(objects=[{"path": "/a", "kind": "dataset", "shape": [True]}]),
        answer(objects=[{"path": "/a", "kind": "dataset", "shape": [2**64]}]),
        answer(objects=[{"path": "/a", "kind": "dataset", "shape": [1] * 2000}]),
        answer(objects=[{"path": "/a", "kind": "dataset", "itemsize": -1}]),
        answer(objects=[{"path": "/a", "kind": "group", "surprise": 1}]),
        answer(objects=[{"path": "/a", "kind": "dataset", "external": [["f", 0]]}]),
        answer(objects=[{"path": "/a", "kind": "group", "attrs": [["a"]]}]),
        answer(objects=[{"path": f"/{i}", "kind": "group"} for i in range(11)]),
        answer(root_attrs={"a": 1}),
        answer(json_attrs={"model_config": {"size": 3, "parts": 1, "data": "e30="}}),
        answer(json_attrs={"model_config": {"size": 2, "parts": 1, "data": "!!"}}),
        answer(json_attrs={"model_config": {"size": 2, "parts": 0}}),
        answer(errors=[{"path": "/x"}]),
        answer(truncated="maybe"),
        {"ok": False, "kind": "crash", "message": "a child may not choose this kind"},
        {"ok": False, "kind": "corrupt"},
        [1, 2],
    ],
)
def test_malformed_answers_are_protocol_errors(bad: Any) -> None:
    with pytest.raises(ProtocolError):
        parse_response(line(bad), max_objects=10)


def test_non_json_is_a_protocol_error() -> None:
    for raw in (b"", b"\xff\xfe", b"{", b"[" * 100_000):
        with pytest.raises(ProtocolError):
            parse_response(raw, 10)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2048))
def test_fuzz_bytes(raw: bytes) -> None:
    try:
        result = parse_response(raw, 100)
    except ProtocolError:
        return
    assert isinstance(result, WalkResult | WorkerFailure)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=30,
)
object_keys = st.sampled_from(
    [
        "path",
        "kind",
        "target",
        "shape",
        "dtype",
        "itemsize",
        "stored_bytes",
        "layout",
        "chunks",
        "filters",
        "external",
        "virtual_sources",
        "attrs",
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.dictionaries(object_keys, json_values, max_size=6), max_size=5), json_values, json_values)
def test_fuzz_structured(objects: list[dict[str, Any]], root_attrs: Any, json_attrs: Any) -> None:
    """Near-valid answers with random field values: parsed into typed objects, or refused."""
    msg = answer(objects=objects, root_attrs=root_attrs, json_attrs=json_attrs)
    try:
        result = parse_response(line(msg), 100)
    except ProtocolError:
        return
    assert isinstance(result, WalkResult)
    for obj in result.objects:
        assert obj.path.startswith("/")
        assert obj.shape is None or all(isinstance(d, int) for d in obj.shape)
        if obj.kind == "dataset":
            assert isinstance(obj.declared_bytes, int)


def test_repeated_scans_reuse_one_pooled_worker(tmp_path: Path) -> None:
    """The public API keeps an idle HDF5 child between calls instead of paying a start per file."""
    import h5py

    from kerasguard import scan
    from kerasguard.formats.hdf5.child_client import POOL

    path = tmp_path / "w.weights.h5"
    with h5py.File(path, "w") as h5:
        h5.create_dataset("layers/dense/vars/0", data=[[1.0, 2.0]])
    assert scan(path).complete
    pids = {w.pid for _, w in POOL._idle}
    assert scan(path).complete
    assert {w.pid for _, w in POOL._idle} == pids and None not in pids
