"""The bounded protobuf wire reader and the text-format parser, on valid and hostile input."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kerasguard.formats.savedmodel.pbtext import MAX_DEPTH, TextFormatError, parse_text
from kerasguard.formats.savedmodel.protowire import BinMsg, WireError, read_varint
from support import pbenc


@pytest.mark.parametrize("n", [0, 1, 127, 128, 300, 2**32, 2**63 - 1, 2**64 - 1])
def test_varint_round_trip(n: int) -> None:
    data = memoryview(pbenc.varint(n))
    assert read_varint(data, 0, len(data)) == (n, len(data))


def test_fields_by_number() -> None:
    msg = BinMsg(pbenc.field(1, "a") + pbenc.field(2, 5) + pbenc.field(1, "b") + pbenc.field(3, b"\x08\x07"))
    assert msg.strings(1, "x") == [b"a", b"b"]
    assert msg.ints(2, "y") == [5]
    assert msg.ints(3, "packed") == [8, 7]
    assert next(msg.messages(3, "sub")).ints(1, "v") == [7]
    assert msg.strings(9, "absent") == []


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (b"\x0a\x05ab", "declares 5 bytes"),
        (b"\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", "longer than 10"),
        (b"\x08\xff", "truncated varint"),
        (b"\x0b\x0c", "group"),
        (b"\x0e", "invalid wire type"),
        (b"\x00\x01", "field number 0"),
        (b"\x09\x01\x02", "truncated fixed"),
    ],
)
def test_malformed_wire_data(data: bytes, needle: str) -> None:
    with pytest.raises(WireError, match=needle):
        BinMsg(data).validate()


def test_a_varint_where_a_message_is_expected_is_an_error() -> None:
    msg = BinMsg(pbenc.field(1, 5))
    with pytest.raises(WireError, match="expected length-delimited"):
        list(msg.messages(1, "node"))


def test_huge_declared_length_is_not_allocated() -> None:
    data = b"\x0a" + pbenc.varint(1 << 40) + b"x"
    with pytest.raises(WireError, match="1099511627776"):
        BinMsg(data).validate()


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_wire_reader(data: bytes) -> None:
    try:
        msg = BinMsg(data)
        msg.validate()
        for number in range(1, 6):
            for sub in msg.messages(number, "f"):
                sub.strings(1, "g")
    except WireError:
        pass


TEXT = b"""
# a comment
saved_model_schema_version: 1
meta_graphs {
  graph_def {
    node { name: "a" op: 'Read' "File" input: "x:0" attr { key: "s" value { s: "\\x41\\102\\n\\u00e9" } } }
    node < name: "b" op: "Const" >
    versions { producer: 1987 }
  }
  [ext.field] { x: 1 }
  list: [1, 2, 3]
}
"""


def test_text_format() -> None:
    msg = parse_text(TEXT)
    assert msg.ints(1, "saved_model_schema_version") == [1]
    [meta] = msg.messages(2, "meta_graphs")
    [graph] = meta.messages(2, "graph_def")
    first, second = graph.messages(1, "node")
    assert first.strings(2, "op") == [b"ReadFile"]  # adjacent strings concatenate
    [attr] = first.messages(5, "attr")
    [value] = attr.messages(2, "value")
    assert value.strings(2, "s") == [b"AB\n" + "é".encode()]
    assert second.strings(1, "name") == [b"b"]
    assert meta.strings(0, "list") == [b"1", b"2", b"3"]


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        (b"a { b: 1", "end of text"),
        (b"a { b: 1 >", "unbalanced"),
        (b"a: 'x\\q'", "escape"),
        (b"a: @", "unexpected character"),
        (b"{", "field name"),
        (b"a:", "no value"),
        (b"a: [1 2]", "','"),
        (b"a: [1,", "end of text"),
        (b"a { " * (MAX_DEPTH + 1), "nesting"),
        (b"a: '\\U00110000'", "unicode"),
    ],
)
def test_malformed_text(text: bytes, needle: str) -> None:
    with pytest.raises(TextFormatError, match=needle):
        parse_text(text)


def test_scalar_where_message_expected() -> None:
    with pytest.raises(TextFormatError, match="scalar"):
        list(parse_text(b"node: 1").messages(1, "node"))


def test_deep_nesting_does_not_recurse() -> None:
    with pytest.raises(TextFormatError, match="nesting"):
        parse_text(b"a {" * 100_000)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_text_parser(data: bytes) -> None:
    with contextlib.suppress(TextFormatError):
        parse_text(data)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="ab:{}<>[],;\"\\' \n#x01", max_size=80))
def test_fuzz_text_parser_grammar_alphabet(text: str) -> None:
    with contextlib.suppress(TextFormatError):
        parse_text(text.encode())
