"""The config walker: every nested container, RFC 6901 pointers, reference recognition, bounds."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kerasguard.formats import config_walk as cw
from support.kgconfig import artifact

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=40,
)


def resolve(doc: Any, pointer: str) -> Any:
    """RFC 6901 evaluation, to check the walker's pointers."""
    node = doc
    if pointer == "":
        return node
    for token in pointer.split("/")[1:]:
        token = token.replace("~1", "/").replace("~0", "~")
        node = node[int(token)] if isinstance(node, list) else node[token]
    return node


@settings(max_examples=200, deadline=None)
@given(JSON)
def test_every_container_once_with_a_pointer_that_resolves(value: Any) -> None:
    walked = list(cw.walk(value))
    expected = count_containers(value)
    assert len(walked) == expected
    for pointer, node, _ in walked:
        assert resolve(value, pointer) is node


_REFS = st.fixed_dictionaries(
    {"class_name": st.sampled_from(["Dense", "__lambda__", "function", "__numpy__"]), "config": JSON}
)
JSON_WITH_REFS = st.recursive(
    JSON | _REFS,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(["layers", "a/b", "~c", "config", "x"]), inner, max_size=4)
    ),
    max_leaves=40,
)


@settings(max_examples=200, deadline=None)
@given(JSON_WITH_REFS, st.integers(min_value=1, max_value=30))
def test_the_index_is_the_walk(value: Any, max_nodes: int) -> None:
    """build_index's one loop gives walk's containers, pointers and order, its refs and its bound."""
    for limit in (max_nodes, cw.DEFAULT_MAX_NODES):
        walked = list(cw.walk(value, limit + 1))
        index = cw.build_index(value, limit)
        assert index.truncated == (len(walked) > limit)
        assert index.visited == len(walked)
        assert index.nodes == [(pointer, node) for pointer, node, _ in walked[:limit]]
        expected = [cw.as_ref(node, pointer, in_layers) for pointer, node, in_layers in walked[:limit]]
        assert index.refs == [ref for ref in expected if ref is not None]
        for pointer, node in index.nodes:
            assert resolve(value, pointer) is node


def count_containers(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + sum(count_containers(v) for v in value.values())
    if isinstance(value, list):
        return 1 + sum(count_containers(v) for v in value)
    return 0


def test_pointer_escaping() -> None:
    value = {"a/b": {"m~n": [{"x": 1}]}}
    pointers = [p for p, _, _ in cw.walk(value)]
    assert pointers == ["", "/a~1b", "/a~1b/m~0n", "/a~1b/m~0n/0"]


def test_refs_and_layers_membership() -> None:
    value = {
        "class_name": "Sequential",
        "config": {
            "layers": [
                {"module": "keras.layers", "class_name": "Dense", "config": {"name": "d"}},
                {"class_name": "function", "module": "keras.ops", "config": "add"},
                {"class_name": "__lambda__", "config": {"code": ""}},
            ],
            "not_layers": [{"class_name": "Dense", "config": {}}],
        },
    }
    refs = cw.build_index(value).refs
    kinds = {(r.pointer, r.kind, r.in_layers) for r in refs}
    assert kinds == {
        ("", "class", False),
        ("/config/layers/0", "class", True),
        ("/config/layers/1", "function", True),
        ("/config/layers/2", "lambda", True),
        ("/config/not_layers/0", "class", False),
    }
    func = next(r for r in refs if r.kind == "function")
    assert func.qualified == "keras.ops.add" and func.function_name == "add"


def test_not_references() -> None:
    assert cw.as_ref({"class_name": "Dense"}) is None  # neither config nor module
    assert cw.as_ref({"class_name": 3, "config": {}}) is None
    assert cw.as_ref(["class_name", "config"]) is None
    assert cw.as_ref({"class_name": "__keras_tensor__", "config": {}}).kind == "special"  # type: ignore[union-attr]


def test_truncation_is_reported() -> None:
    value = [[i] for i in range(100)]
    walked = cw.build_index(value, max_nodes=10)
    assert walked.truncated and len(walked.nodes) == 10
    assert not cw.build_index(value, max_nodes=101).truncated


def test_deeply_nested_does_not_recurse() -> None:
    value: Any = {}
    node = value
    for _ in range(5000):
        node["c"] = {}
        node = node["c"]
    assert len(list(cw.walk(value))) == 5001


def test_index_is_cached_per_document() -> None:
    art = artifact({"class_name": "Sequential", "config": {"layers": []}})
    doc = art.json_docs[0]
    assert cw.index(doc) is cw.index(doc)


def test_enclosing_layer() -> None:
    value = {"class_name": "X", "config": {"layer": {"class_name": "Lambda", "config": {"function": {}}}}}
    walked = cw.build_index(value)
    owner = walked.enclosing("/config/layer/config/function")
    assert owner is not None and owner.class_name == "Lambda"


def test_config_documents_roles() -> None:
    model = {"class_name": "Sequential", "config": {"layers": []}}
    assert len(cw.config_documents(artifact(model, role="json"))) == 1
    assert cw.config_documents(artifact({"keras_version": "3"}, role="json")) == []
    assert len(cw.config_documents(artifact({"loss": "mse"}, role="training_config"))) == 1
    assert cw.config_documents(artifact(model, role="metadata")) == []


def test_class_like_names() -> None:
    assert cw.is_class_like("Dense") and cw.is_class_like("pkg>MyLayer") and cw.is_class_like("Conv2D")
    assert not cw.is_class_like("run") and not cw.is_class_like("") and not cw.is_class_like("A-b")


def test_walk_of_a_large_real_shaped_config_stays_linear() -> None:
    layer = {"module": "keras.layers", "class_name": "Dense", "config": {"name": "d", "units": 1}}
    value = {"class_name": "Sequential", "config": {"layers": [dict(layer) for _ in range(20_000)]}}
    walked = cw.build_index(json.loads(json.dumps(value)))
    assert len(walked.refs) == 20_001


def test_a_recognised_reference_is_the_dataclass_with_every_field() -> None:
    # as_ref fills the frozen dataclass without its __init__ (speed): same fields, equal, still frozen.
    node = {"module": "keras.layers", "class_name": "Dense", "config": {"name": "d"}, "registered_name": 7}
    ref = cw.as_ref(node, "/config/layers/0", True)
    assert ref == cw.ObjRef(
        pointer="/config/layers/0",
        node=node,
        class_name="Dense",
        module="keras.layers",
        registered_name=None,  # not a string: no registered name
        config={"name": "d"},
        kind="class",
        in_layers=True,
    )
    assert list(vars(ref)) == [f.name for f in dataclasses.fields(cw.ObjRef)]
    with pytest.raises(dataclasses.FrozenInstanceError):
        ref.pointer = "/elsewhere"  # type: ignore[misc]
