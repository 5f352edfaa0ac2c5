"""A tiny protobuf encoder for tests: builds SavedModel / GraphDef / keras_metadata bytes by hand.

Field numbers as in tensorflow's saved_model.proto, meta_graph.proto, graph.proto, function.proto,
node_def.proto, attr_value.proto, tensor.proto and tf_keras saved_metadata.proto. Used to make
graphs TensorFlow would build only for an attacker (WriteFile to a constant path, wired savers...).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def field(number: int, value: bytes | str | int) -> bytes:
    """A varint field for ints, a length-delimited field for bytes/str."""
    if isinstance(value, int):
        return varint(number << 3) + varint(value)
    data = value.encode() if isinstance(value, str) else value
    return varint(number << 3 | 2) + varint(len(data)) + data


def attr_s(value: str) -> bytes:
    return field(2, value)


def attr_list_s(values: Iterable[str]) -> bytes:
    return field(1, b"".join(field(2, v) for v in values))


def attr_func(name: str) -> bytes:
    return field(10, field(1, name))


def attr_string_tensor(*values: str) -> bytes:
    return field(8, field(1, 7) + b"".join(field(8, v) for v in values))  # dtype DT_STRING


def node(name: str, op: str, inputs: Iterable[str] = (), attrs: Mapping[str, bytes] | None = None) -> bytes:
    out = field(1, name) + field(2, op) + b"".join(field(3, i) for i in inputs)
    for key, value in (attrs or {}).items():
        out += field(5, field(1, key) + field(2, value))
    return out


def const(name: str, *values: str) -> bytes:
    return node(name, "Const", attrs={"value": attr_string_tensor(*values), "dtype": field(6, 7)})


def function(name: str, nodes: Iterable[bytes]) -> bytes:
    return field(1, field(1, name)) + b"".join(field(3, n) for n in nodes)


def graph(nodes: Iterable[bytes] = (), functions: Iterable[bytes] = ()) -> bytes:
    out = b"".join(field(1, n) for n in nodes)
    funcs = b"".join(field(1, f) for f in functions)
    if funcs:
        out += field(2, funcs)
    return out + field(4, field(1, 1987))  # versions.producer


def saved_model(graph_bytes: bytes) -> bytes:
    return field(1, 1) + field(2, field(2, graph_bytes))


def keras_metadata(nodes: Iterable[tuple[int, str, str, str]]) -> bytes:
    return b"".join(
        field(1, field(2, node_id) + field(3, path) + field(4, ident) + field(5, meta))
        for node_id, path, ident, meta in nodes
    )


def traced_saver(suffix: int = 1) -> list[bytes]:
    """The functions every TF2 SavedModel has: save and restore, with their checkpoint ops."""
    save = function(
        f"__inference__traced_save_{suffix}",
        [
            const("Const", ".part"),
            node("StringJoin", "StringJoin", ["file_prefix", "Const:output:0"]),
            node("ShardedFilename", "ShardedFilename", ["StringJoin:output:0", "num_shards", "shard"]),
            node("SaveV2", "SaveV2", ["ShardedFilename:filename:0", "tensor_names", "slices"]),
            node("MergeV2Checkpoints", "MergeV2Checkpoints", ["prefixes", "file_prefix"]),
        ],
    )
    restore = function(
        f"__inference__traced_restore_{suffix + 1}",
        [node("RestoreV2", "RestoreV2", ["file_prefix", "names", "slices"])],
    )
    return [save, restore]


def saver_calls(suffix: int = 1) -> list[bytes]:
    """Top-level nodes that call the saver functions, as tf.saved_model.save writes them."""
    return [
        node("saver_filename", "Placeholder"),
        node(
            "StatefulPartitionedCall_1",
            "StatefulPartitionedCall",
            ["saver_filename"],
            {"f": attr_func(f"__inference__traced_save_{suffix}")},
        ),
        node(
            "StatefulPartitionedCall_2",
            "StatefulPartitionedCall",
            ["saver_filename"],
            {"f": attr_func(f"__inference__traced_restore_{suffix + 1}")},
        ),
    ]


def write_savedmodel(folder: Path, graph_bytes: bytes, files: Mapping[str, bytes] | None = None) -> Path:
    """A SavedModel directory with ``saved_model.pb`` and optional extra files (relative paths)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "saved_model.pb").write_bytes(saved_model(graph_bytes))
    for rel, data in (files or {}).items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return folder
