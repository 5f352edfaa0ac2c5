"""KG208: SavedModel ops that read or write files or use the network; benign savers stay quiet."""

from __future__ import annotations

from pathlib import Path

import pytest

from kerasguard.findings import Severity
from kerasguard.scanning.engine import scan
from support import pbenc
from support.scanhelp import hits

FIXTURES = Path(__file__).resolve().parents[1] / "data" / "savedmodel"


def model(tmp_path: Path, nodes: list[bytes], functions: list[bytes] | None = None) -> Path:
    """A TF2-style SavedModel: the standard saver plus the given nodes and functions."""
    graph = pbenc.graph([*pbenc.saver_calls(), *nodes], [*pbenc.traced_saver(), *(functions or [])])
    return pbenc.write_savedmodel(tmp_path / "sm", graph)


def test_tf_io_read_file_saved_by_tensorflow() -> None:
    [finding] = hits(scan(FIXTURES / "readfile"), "KG208")
    assert finding.severity == Severity.HIGH
    assert "ReadFile" in finding.message and "reads host files" in finding.message


@pytest.mark.parametrize(
    "fixture", ["keras2_benign", "keras2_lambda", "keras2_lookup", "pyfunc", "tf1_saver"]
)
def test_benign_savers_and_lookup_tables_are_not_flagged(fixture: str) -> None:
    # every SavedModel has SaveV2 / RestoreV2 / MergeV2Checkpoints / ShardedFilename / StringJoin
    assert hits(scan(FIXTURES / fixture), "KG208") == []


def test_hand_encoded_standard_saver_is_not_flagged(tmp_path: Path) -> None:
    assert hits(scan(model(tmp_path, [pbenc.node("x", "Identity")])), "KG208") == []


def test_write_file_with_a_constant_path(tmp_path: Path) -> None:
    serve = pbenc.function(
        "__inference_serve_9",
        [pbenc.const("path", "/root/.bashrc"), pbenc.node("w", "WriteFile", ["path:output:0", "contents"])],
    )
    [finding] = hits(scan(model(tmp_path, [], [serve])), "KG208")
    assert "WriteFile" in finding.message and "__inference_serve_9" in finding.message
    assert "/root/.bashrc" in finding.evidence


def test_save_v2_outside_the_saver(tmp_path: Path) -> None:
    serve = pbenc.function("__inference_serve_9", [pbenc.node("s", "SaveV2", ["prefix", "names", "slices"])])
    [finding] = hits(scan(model(tmp_path, [], [serve])), "KG208")
    assert "outside TensorFlow's saver" in finding.message


SAVE_CALL = {"f": pbenc.attr_func("__inference__traced_save_1")}


def test_saver_function_reached_from_the_serving_function(tmp_path: Path) -> None:
    serve = pbenc.function(
        "__inference_serve_9",
        [
            pbenc.node(
                "c", "StatefulPartitionedCall", ["p"], {"f": pbenc.attr_func("__inference__traced_save_1")}
            )
        ],
    )
    findings = hits(scan(model(tmp_path, [], [serve])), "KG208")
    assert {f.message.split()[2] for f in findings} == {"SaveV2", "MergeV2Checkpoints"}


def test_saver_function_called_by_op_name(tmp_path: Path) -> None:
    serve = pbenc.function("__inference_serve_9", [pbenc.node("c", "__inference__traced_restore_2", ["p"])])
    [finding] = hits(scan(model(tmp_path, [], [serve])), "KG208")
    assert "RestoreV2" in finding.message


def test_tf1_saver_wired_into_the_model(tmp_path: Path) -> None:
    nodes = [
        pbenc.node("save/Const", "Const"),
        pbenc.node("save/SaveV2", "SaveV2", ["save/Const", "names", "slices"]),
        pbenc.node("y", "Identity", ["x", "^save/SaveV2"]),
    ]
    [finding] = hits(scan(pbenc.write_savedmodel(tmp_path / "sm", pbenc.graph(nodes))), "KG208")
    assert "SaveV2" in finding.message and "top-level graph" in finding.message


@pytest.mark.parametrize(
    ("node", "needle"),
    [
        (
            pbenc.node("p", "PrintV2", [], {"output_stream": pbenc.attr_s("file:///tmp/leak")}),
            "file:///tmp/leak",
        ),
        (
            pbenc.node("d", "DebugIdentity", [], {"debug_urls": pbenc.attr_list_s(["grpc://10.0.0.1:6064"])}),
            "grpc://",
        ),
        (
            pbenc.node("i", "ImmutableConst", [], {"memory_region_name": pbenc.attr_s("/etc/shadow")}),
            "reads host files",
        ),
        (pbenc.node("m", "MatchingFiles", ["pattern"]), "lists host directories"),
        (pbenc.node("r", "DataServiceDatasetV4", ["address"]), "network"),
        (pbenc.node("t", "TFRecordDatasetV2", ["names"]), "reads host files"),
        (
            pbenc.node("e", "DecodeProtoV2", [], {"descriptor_source": pbenc.attr_s("/tmp/evil.desc")}),
            "/tmp/evil.desc",
        ),
        (pbenc.node("f", "FileSystemSetConfiguration", ["scheme"]), "file systems"),
    ],
)
def test_file_and_network_ops(tmp_path: Path, node: bytes, needle: str) -> None:
    [finding] = hits(scan(model(tmp_path, [node])), "KG208")
    assert needle in finding.message


@pytest.mark.parametrize(
    "node",
    [
        pbenc.node("p", "PrintV2", [], {"output_stream": pbenc.attr_s("stderr")}),
        pbenc.node("p2", "PrintV2"),
        pbenc.node("d", "DebugIdentity", [], {"debug_urls": pbenc.attr_list_s([])}),
        pbenc.node("e", "DecodeProtoV2", [], {"descriptor_source": pbenc.attr_s("local://")}),
        pbenc.node("n", "ShardedFilename", ["a", "b", "c"]),
        pbenc.node("j", "StringJoin", ["a", "b"]),
    ],
)
def test_harmless_configurations_are_not_flagged(tmp_path: Path, node: bytes) -> None:
    assert hits(scan(model(tmp_path, [node])), "KG208") == []


def test_lookup_table_from_a_constant_path(tmp_path: Path) -> None:
    init = pbenc.function(
        "__inference__initializer_7",
        [
            pbenc.const("Const", "/etc/passwd"),
            pbenc.node("init", "InitializeTableFromTextFileV2", ["table", "Const:output:0"]),
        ],
    )
    [finding] = hits(scan(model(tmp_path, [], [init])), "KG208")
    assert "/etc/passwd" in finding.message


def test_repeated_ops_are_grouped(tmp_path: Path) -> None:
    serve = pbenc.function(
        "__inference_serve_9", [pbenc.node(f"r{i}", "ReadFile", ["p"]) for i in range(500)]
    )
    [finding] = hits(scan(model(tmp_path, [], [serve])), "KG208")
    assert "(500 nodes)" in finding.message


def test_many_saver_ops_stay_linear(tmp_path: Path) -> None:
    nodes = [pbenc.node(f"save/SaveV2_{i}", "SaveV2", ["save/Const"]) for i in range(20_000)]
    nodes += [pbenc.node(f"m{i}", "Identity", [f"m{i - 1}"]) for i in range(20_000)]
    assert hits(scan(pbenc.write_savedmodel(tmp_path / "sm", pbenc.graph(nodes))), "KG208") == []


def test_dataset_cache_in_memory_vs_on_disk(tmp_path: Path) -> None:
    memory = [pbenc.const("c", ""), pbenc.node("cache", "CacheDatasetV2", ["ds", "c", "r"])]
    assert hits(scan(model(tmp_path / "a", memory)), "KG208") == []
    disk = [pbenc.const("c", "/tmp/cache"), pbenc.node("cache", "CacheDatasetV2", ["ds", "c", "r"])]
    [finding] = hits(scan(model(tmp_path / "b", disk)), "KG208")
    assert "/tmp/cache" in finding.evidence
