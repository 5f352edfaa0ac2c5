"""SavedModel reading: real TensorFlow-written fixtures, hand-encoded graphs, hostile protobufs."""

from __future__ import annotations

import os
import pickle
import time
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kerasguard.findings import Location
from kerasguard.formats.artifact import Artifact
from kerasguard.formats.blob import Blob
from kerasguard.formats.context import ReadContext
from kerasguard.formats.dispatch import open_artifact
from kerasguard.formats.savedmodel.reader import read_graph_blob
from kerasguard.policy import Limits
from support import pbenc

FIXTURES = Path(__file__).resolve().parents[1] / "data" / "savedmodel"


def open_dir(path: Path, limits: Limits | None = None) -> Artifact:
    ctx = ReadContext(limits=limits or Limits())
    ctx.start_file()
    return open_artifact(path, ctx)


def ops(art: Artifact) -> Counter[str]:
    return Counter(op.op for op in art.graph_ops)


def test_keras2_savedmodel_from_tensorflow() -> None:
    art = open_dir(FIXTURES / "keras2_benign")
    assert art.format == "savedmodel"
    assert art.problems == []
    counts = ops(art)
    assert counts["MatMul"] >= 2 and counts["SaveV2"] == 1 and counts["RestoreV2"] == 1
    saves = [op for op in art.graph_ops if op.op == "SaveV2"]
    assert saves[0].function is not None and saves[0].function.startswith("__inference__traced_save_")
    calls = {c for op in art.graph_ops for c in op.calls}
    assert saves[0].function in calls
    kinds = {m.name: m.kind for m in art.members}
    assert kinds["saved_model.pb"] == "protobuf"
    assert kinds["variables/variables.data-00000-of-00001"] == "data"
    assert "variables.index" in kinds
    [root] = art.model_configs
    assert root.location.member == "keras_metadata.pb!/root"
    assert root.value["class_name"] == "Sequential"
    assert {d.role for d in art.json_docs} == {"model_config", "json"}


def test_keras2_lambda_metadata_reaches_the_config_rules() -> None:
    art = open_dir(FIXTURES / "keras2_lambda")
    assert art.problems == []
    [root] = art.model_configs
    layers = root.value["config"]["layers"]
    [lam] = [layer for layer in layers if layer["class_name"] == "Lambda"]
    function = lam["config"]["function"]
    assert function["class_name"] == "__tuple__"  # Keras 2 marshalled bytecode (base64) inside
    assert isinstance(function["items"][0], str) and len(function["items"][0]) > 40


def test_keras2_lookup_reads_assets_and_records_the_table_initializer() -> None:
    art = open_dir(FIXTURES / "keras2_lookup")
    assert art.problems == []
    assert ops(art)["InitializeTableFromTextFileV2"] == 1
    assert any(m.location.member == "assets/_vocab.txt" for m in art.members)


def test_pbtxt_and_pb_give_the_same_graph() -> None:
    binary = open_dir(FIXTURES / "pyfunc")
    text = open_dir(FIXTURES / "pyfunc_pbtxt")
    assert binary.problems == [] and text.problems == []

    def key(art: Artifact) -> Counter[tuple[str, str, str | None, tuple[str, ...]]]:
        return Counter((o.op, o.node, o.function, o.inputs) for o in art.graph_ops)

    assert key(binary) == key(text)
    assert ops(text)["EagerPyFunc"] == 1


def test_tf1_saver_graph() -> None:
    art = open_dir(FIXTURES / "tf1_saver")
    assert art.problems == []
    save = [op for op in art.graph_ops if op.op == "SaveV2"]
    assert [(op.node, op.function) for op in save] == [("save/SaveV2", None)]


def test_hand_encoded_nodes_attrs_and_functions(tmp_path: Path) -> None:
    graph = pbenc.graph(
        [
            pbenc.const("path", "/etc/passwd"),
            pbenc.node("read", "ReadFile", ["path", "^ctrl"]),
            pbenc.node("call", "PartitionedCall", [], {"f": pbenc.attr_func("fn")}),
            pbenc.node("dbg", "DebugIdentity", [], {"debug_urls": pbenc.attr_list_s(["file:///tmp/x"])}),
        ],
        [pbenc.function("fn", [pbenc.node("w", "WriteFile", ["a", "b"])])],
    )
    art = open_dir(pbenc.write_savedmodel(tmp_path / "m", graph))
    assert art.problems == []
    by_node = {op.node: op for op in art.graph_ops}
    assert by_node["path"].attrs[0] == ("value", "/etc/passwd")
    assert by_node["read"].inputs == ("path", "^ctrl")
    assert by_node["call"].calls == ("fn",)
    assert ("debug_urls", "file:///tmp/x") in by_node["dbg"].attrs
    assert by_node["w"].function == "fn"


def test_last_op_field_wins_like_protobuf(tmp_path: Path) -> None:
    node = pbenc.field(1, "n") + pbenc.field(2, "Identity") + pbenc.field(2, "EagerPyFunc")
    art = open_dir(pbenc.write_savedmodel(tmp_path / "m", pbenc.field(1, node)))
    assert [op.op for op in art.graph_ops] == ["EagerPyFunc"]


def test_unknown_fields_are_skipped(tmp_path: Path) -> None:
    node = pbenc.node("n", "ReadFile") + pbenc.field(99, "future") + pbenc.field(98, 7)
    art = open_dir(pbenc.write_savedmodel(tmp_path / "m", pbenc.field(1, node)))
    assert art.problems == []
    assert [op.op for op in art.graph_ops] == ["ReadFile"]


def test_garbled_graph_keeps_earlier_nodes_and_reports(tmp_path: Path) -> None:
    graph = pbenc.field(1, pbenc.node("ok", "ReadFile")) + pbenc.field(1, b"\x0a\xff\x01")
    art = open_dir(pbenc.write_savedmodel(tmp_path / "m", graph))
    assert [op.op for op in art.graph_ops] == ["ReadFile"]
    assert [p.kind for p in art.problems] == ["corrupt"]
    assert "after 1 nodes" in art.problems[0].message


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b"\x08\x01", "no graph nodes"),
        (b"random bytes that are not protobuf \xff\xff", "invalid protobuf"),
        (b"\x08\x01\x12\x00", "no graph nodes"),
        (b"", "no graph nodes"),
        (b"\x80\x04\x95garbage", "invalid protobuf"),  # sniffs as a pickle; parsed as TF parses it
    ],
)
def test_bad_saved_model_pb(tmp_path: Path, content: bytes, needle: str) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "saved_model.pb").write_bytes(content)
    art = open_dir(folder)
    assert any(p.kind == "corrupt" and needle in p.message for p in art.problems), art.problems


def test_bad_pbtxt(tmp_path: Path) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "saved_model.pbtxt").write_text('meta_graphs { graph_def { node { op: "ReadFile" } } ')
    art = open_dir(folder)
    assert [p.kind for p in art.problems] == ["corrupt"]


def test_node_limit(tmp_path: Path) -> None:
    graph = pbenc.graph([pbenc.node(f"n{i}", "Identity") for i in range(50)])
    art = open_dir(pbenc.write_savedmodel(tmp_path / "m", graph), Limits(max_graph_nodes=10))
    assert len(art.graph_ops) == 10
    assert [p.kind for p in art.problems] == ["limit"]


def test_millions_of_empty_nodes_stop_at_the_node_budget(tmp_path: Path) -> None:
    graph = pbenc.field(1, b"") * 3_000_000  # 6 MB of empty NodeDefs
    art = open_dir(pbenc.write_savedmodel(tmp_path / "m", graph), Limits(max_graph_nodes=1000))
    assert len(art.graph_ops) == 1000
    assert [p.kind for p in art.problems] == ["limit"]


def test_deadline_stops_the_graph_walk() -> None:
    data = pbenc.saved_model(pbenc.graph([pbenc.node(f"n{i}", "Identity") for i in range(10)]))
    art = Artifact(path="m", format="savedmodel", location=Location("m"))
    ctx = ReadContext(limits=Limits())
    ctx.deadline = time.monotonic() - 1
    read_graph_blob(Blob.from_bytes(data, Location("m"), "saved_model.pb"), art, ctx)
    assert [p.kind for p in art.problems] == ["timeout"]


def test_pbtxt_size_limit(tmp_path: Path) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "saved_model.pbtxt").write_text('meta_graphs { graph_def { node { op: "ReadFile" } } }')
    art = open_dir(folder, Limits(max_pbtxt_bytes=10))
    assert [p.kind for p in art.problems] == ["limit"]


def test_protobuf_size_limit(tmp_path: Path) -> None:
    graph = pbenc.graph([pbenc.node("n", "Identity")])
    art = open_dir(pbenc.write_savedmodel(tmp_path / "m", graph), Limits(max_protobuf_bytes=8))
    assert "limit" in [p.kind for p in art.problems]


def test_function_attribute_nesting_is_bounded(tmp_path: Path) -> None:
    value = pbenc.attr_func("leaf")
    for _ in range(10):
        entry = pbenc.field(1, "k") + pbenc.field(2, value)
        value = pbenc.field(10, pbenc.field(1, "f") + pbenc.field(2, entry))
    graph = pbenc.graph([pbenc.node("n", "PartitionedCall", [], {"f": value})])
    art = open_dir(pbenc.write_savedmodel(tmp_path / "m", graph))
    assert [p.kind for p in art.problems] == ["corrupt"]


def test_keras_metadata_with_bad_json_and_bad_protobuf(tmp_path: Path) -> None:
    graph = pbenc.graph([pbenc.node("n", "Identity")])
    meta = pbenc.keras_metadata(
        [(0, "root", "_tf_keras_network", '{"class_name": '), (1, "root.l", "_tf_keras_layer", "{}")]
    )
    art = open_dir(pbenc.write_savedmodel(tmp_path / "a", graph, {"keras_metadata.pb": meta}))
    assert [p.kind for p in art.problems] == ["corrupt"]
    assert [d.location.member for d in art.json_docs] == ["keras_metadata.pb!/root.l"]
    art = open_dir(pbenc.write_savedmodel(tmp_path / "b", graph, {"keras_metadata.pb": b"\x0a\x09"}))
    assert any("keras_metadata" in p.message for p in art.problems)


def test_assets_are_read_as_what_they_are(tmp_path: Path) -> None:
    graph = pbenc.graph([pbenc.node("n", "Identity")])
    folder = pbenc.write_savedmodel(
        tmp_path / "m",
        graph,
        {
            "assets/vocab.txt": b"a\nb\n",
            "assets/extra.pkl": pickle.dumps({"x": 1}, protocol=2),
            "assets/deep/hidden.bin": b"cos\nsystem\n(S'id'\ntR.",
            "fingerprint.pb": b"\x08\x01",
        },
    )
    os.rename(folder / "assets/deep/hidden.bin", folder / "assets/deep/hidden.pkl")
    art = open_dir(folder)
    assert art.problems == []
    assert {p.location.member for p in art.pickles} == {"assets/extra.pkl", "assets/deep/hidden.pkl"}
    assert any("fingerprint" in note for note in art.notes) or any(
        m.name == "fingerprint.pb" for m in art.members
    )


def test_symlinks_are_reported_not_followed(tmp_path: Path) -> None:
    graph = pbenc.graph([pbenc.node("n", "Identity")])
    folder = pbenc.write_savedmodel(tmp_path / "m", graph, {"assets/ok.txt": b"x"})
    (folder / "assets" / "passwd").symlink_to("/etc/passwd")
    (folder / "assets" / "outside").symlink_to(tmp_path, target_is_directory=True)
    art = open_dir(folder)
    linked = sorted(p.location.member or "" for p in art.problems if "symbolic link" in p.message)
    assert linked == ["assets/outside", "assets/passwd"]
    assert all(m.location.member != "assets/passwd" for m in art.members)


def test_standalone_graphdef_and_non_graph_pb(tmp_path: Path) -> None:
    frozen = tmp_path / "frozen_graph.pb"
    frozen.write_bytes(pbenc.graph([pbenc.node("x", "Placeholder"), pbenc.node("py", "PyFunc")]))
    art = open_dir(frozen)
    assert art.problems == []
    assert ops(art)["PyFunc"] == 1
    other = tmp_path / "other.pb"
    other.write_bytes(pbenc.field(7, "not a graph"))
    art = open_dir(other)
    assert [p.kind for p in art.problems] == ["unknown_format"]
    junk = tmp_path / "junk.pb"
    junk.write_bytes(b"\xff\xff\xff")
    art = open_dir(junk)
    assert [p.kind for p in art.problems] == ["corrupt"]


def test_standalone_saved_model_pb(tmp_path: Path) -> None:
    folder = tmp_path / "x"
    folder.mkdir()
    path = folder / "model.pb"
    path.write_bytes(pbenc.saved_model(pbenc.graph([pbenc.node("w", "WriteFile")])))
    art = open_dir(path)
    assert art.problems == []
    assert ops(art)["WriteFile"] == 1


def test_nested_non_graph_protobuf_is_only_a_note() -> None:
    art = Artifact(path="m", format="savedmodel", location=Location("m"))
    ctx = ReadContext(limits=Limits())
    blob = Blob.from_bytes(pbenc.field(7, "data"), Location("m", member="assets/x.pb"), "x.pb")
    read_graph_blob(blob, art, ctx)
    assert art.problems == []
    assert art.notes


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=300))
def test_fuzz_saved_model_pb(tmp_path: Path, data: bytes) -> None:
    art = Artifact(path="m", format="savedmodel", location=Location("m"))
    ctx = ReadContext(limits=Limits())
    read_graph_blob(Blob.from_bytes(data, Location("m"), "saved_model.pb"), art, ctx)
    assert art.graph_ops or art.problems


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.text(max_size=12), st.text(max_size=12), st.lists(st.text(max_size=8), max_size=3)),
        max_size=8,
    )
)
def test_fuzz_encoded_graphs_round_trip(nodes: list[tuple[str, str, list[str]]]) -> None:
    data = pbenc.saved_model(pbenc.graph([pbenc.node(n, o, i) for n, o, i in nodes]))
    art = Artifact(path="m", format="savedmodel", location=Location("m"))
    read_graph_blob(Blob.from_bytes(data, Location("m"), "saved_model.pb"), art, ReadContext(limits=Limits()))
    assert [(o.node, o.op, list(o.inputs)) for o in art.graph_ops] == [(n, o, i) for n, o, i in nodes]
    assert art.problems == [] or not nodes
