"""Strict JSON: same value as Python's json.loads(bytes), every ambiguity recorded, limits first."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kerasguard.findings import Location
from kerasguard.formats.artifact import Artifact, JsonDocument
from kerasguard.formats.json_strict import (
    _may_hold_big_numbers,
    escape_pointer_token,
    nesting_depth,
    parse_json_bytes,
    preview,
)
from kerasguard.policy import Limits

LOC = Location("m.keras", member="config.json")


def parse(data: bytes, limits: Limits | None = None) -> tuple[JsonDocument | None, Artifact]:
    art = Artifact(path="m.keras", format="keras", location=Location("m.keras"))
    doc = parse_json_bytes(data, LOC, "model_config", limits or Limits(), art)
    return doc, art


def kinds(doc: JsonDocument) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for q in doc.quirks:
        out.setdefault(q.kind, []).append(q.pointer)
    return out


def test_plain_config_has_no_findings() -> None:
    data = json.dumps({"class_name": "Dense", "config": {"units": 3, "rate": 0.5, "tags": ["a"]}}).encode()
    doc, art = parse(data)
    assert doc is not None and doc.value == json.loads(data)
    assert doc.duplicate_keys == [] and doc.quirks == [] and not art.problems
    assert doc.depth == 3 and doc.size == len(data) and art.json_docs == [doc]


def test_duplicate_keys_have_rfc6901_pointers_and_both_values() -> None:
    data = (
        b'{"layers": [{"class_name": "Dense", "config": {}, "class_name": "Lambda"}], "a/b~c": 1, "a/b~c": 2}'
    )
    doc, _ = parse(data)
    assert doc is not None
    dups = {d.pointer: d for d in doc.duplicate_keys}
    assert set(dups) == {"/layers/0/class_name", "/a~1b~0c"}
    layer = dups["/layers/0/class_name"]
    assert (layer.key, layer.used, layer.dropped, layer.count) == ("class_name", '"Lambda"', '"Dense"', 2)
    assert doc.value["layers"][0]["class_name"] == "Lambda"  # what Keras sees
    assert dups["/a~1b~0c"].used == "2" and dups["/a~1b~0c"].dropped == "1"


def test_duplicate_counted_three_times_and_nested_value_previewed() -> None:
    doc, _ = parse(b'{"k": 1, "k": {"deep": [1, 2, 3, 4, 5, 6]}, "k": {"x": "y"}}')
    assert doc is not None
    (dup,) = doc.duplicate_keys
    assert dup.count == 3 and dup.used == '{"x": "y"}' and dup.dropped == "1"


def test_duplicates_in_a_dropped_value_are_not_attributed_to_the_kept_one() -> None:
    doc, _ = parse(b'{"a": {"x": 1, "x": 2}, "a": {"y": 3}}')
    assert doc is not None
    assert [d.pointer for d in doc.duplicate_keys] == ["/a"]


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        (b'{"a": NaN}', "non_finite"),
        (b'{"a": -Infinity}', "non_finite"),
        (b'{"a": 1e999}', "non_finite"),
        (b'{"a": 123456789012345678901234567890}', "huge_number"),
        (b'{"a": "\\ud800"}', "lone_surrogate"),
    ],
)
def test_values_strict_parsers_reject(text: bytes, kind: str) -> None:
    doc, art = parse(text)
    assert doc is not None and not art.problems
    assert kinds(doc) == {kind: ["/a"]}


@pytest.mark.parametrize(
    ("text", "found"),
    [
        (b"[0.0010000000474974513, 1.5e-07]", False),  # float32 values as Keras writes them
        (b"[0.0010000000474974513, 12345678901234567890]", True),
        (b"[-1234567890123456789.5]", True),
        (b"[1" + b"0" * 400 + b".5]", True),  # a float beyond range, written out in full
        (b"[1.5E+308]", True),
        (b'["v1.1234567890123456789", 2]', False),
    ],
)
def test_big_number_hint_skips_long_fractions_only(text: bytes, found: bool) -> None:
    assert _may_hold_big_numbers(text.decode()) is found


def test_paired_surrogate_escape_is_not_a_quirk() -> None:
    doc, _ = parse(b'{"emoji": "\\ud83d\\ude00"}')
    assert doc is not None and doc.value == {"emoji": "\U0001f600"} and doc.quirks == []


def test_lone_surrogate_in_raw_bytes_and_in_a_key() -> None:
    data = '{"\ud800": 1}'.encode("utf-8", "surrogatepass")
    doc, _ = parse(data)
    assert doc is not None and kinds(doc) == {"lone_surrogate": ["/\ud800"]}
    assert json.loads(data) == doc.value  # Python's json accepts it


def test_bom_and_utf16_are_accepted_like_json_loads_bytes() -> None:
    bom, _ = parse(b'\xef\xbb\xbf{"a": 1}')
    assert bom is not None and bom.value == {"a": 1} and kinds(bom) == {"bom": [""]}
    utf16, _ = parse('{"a": [1]}'.encode("utf-16-le"))
    assert utf16 is not None and utf16.value == {"a": [1]} and kinds(utf16) == {"encoding": [""]}


def test_invalid_utf8_is_refused_with_its_offset() -> None:
    doc, art = parse(b'{"a": "\xc3\x28"}')
    assert doc is None
    assert [p.message for p in art.problems] == [
        "JSON is not valid UTF-8 at byte 7: Python's json (and Keras) refuse it"
    ]


def test_too_many_digits_fails_like_the_loader() -> None:
    with pytest.raises(ValueError):
        json.loads(b"[" + b"9" * 5000 + b"]")
    doc, art = parse(b"[" + b"9" * 5000 + b"]")
    assert doc is None and art.problems[0].kind == "corrupt"


def test_size_limit_is_checked_before_parsing() -> None:
    doc, art = parse(b"[" + b"1," * 600 + b"1]", Limits(max_json_bytes=1000))
    assert (
        doc is None and art.problems[0].kind == "limit" and "max_json_bytes=1000" in art.problems[0].message
    )


def test_depth_limit_is_checked_before_parsing() -> None:
    doc, art = parse(b"[" * 129 + b"]" * 129)
    assert doc is None and art.problems[0].kind == "limit"
    ok, art2 = parse(b"[" * 128 + b"]" * 128)
    assert ok is not None and ok.depth == 128 and not art2.problems


def test_brackets_inside_strings_do_not_count() -> None:
    assert nesting_depth('{"a": "[[[[[{{{{", "b": ["\\"]]]"]}', 10) == 2
    assert nesting_depth('"\\\\"[[', 10) == 2


def test_unterminated_string_is_corrupt_not_a_hang() -> None:
    doc, art = parse(b'"' + b'\\"' * 200_000)
    assert doc is None and art.problems[0].kind == "corrupt"


def test_recursion_beyond_pythons_stack_is_reported() -> None:
    doc, art = parse(b"[" * 5000 + b"]" * 5000, Limits(max_json_depth=100_000))
    assert doc is None and art.problems[0].kind == "corrupt"


@pytest.mark.parametrize("data", [b"", b"{", b"{} {}", b"[1,]", b'{"a" 1}', b"\x00\x00\x00\x00", b"nul"])
def test_malformed_documents_are_corrupt(data: bytes) -> None:
    doc, art = parse(data)
    assert doc is None and art.problems and art.problems[0].kind == "corrupt"


def test_recorded_quirks_are_bounded() -> None:
    doc, _ = parse(b"[" + b"NaN," * 500 + b"NaN]")
    assert doc is not None
    found = kinds(doc)
    assert len(found["non_finite"]) == 100 and found["truncated"] == [""]


def test_pointer_escaping_and_preview_bounds() -> None:
    assert escape_pointer_token("a/~b") == "a~1~0b"
    assert len(preview({"k": "x" * 1000, "l": list(range(100))})) <= 80
    assert preview(10**100) == '"<integer of 101 digits>"'


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=5), kids, max_size=4),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(_JSON)
def test_value_matches_json_loads(value: object) -> None:
    data = json.dumps(value).encode()
    doc, art = parse(data)
    assert doc is not None and not art.problems
    assert doc.value == json.loads(data)
    assert doc.duplicate_keys == []


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=512))
def test_random_bytes_never_raise(data: bytes) -> None:
    doc, art = parse(data)
    assert (doc is not None) != bool(art.problems)
    if doc is not None:
        assert doc.value == json.loads(data)


_REFERENCE_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)


def _reference_depth(text: str) -> int:
    """The depth as a tokenizer sees it: strings (escapes included) removed by a regex, brackets counted."""
    depth = best = 0
    for ch in re.sub(r"[^\[\]{}]", "", _REFERENCE_STRING.sub("", text + ' "')):
        depth += 1 if ch in "[{" else -1
        best = max(best, depth)
    return best


_JSON_TEXT = st.text(alphabet=st.sampled_from('ab"\\/[]{}\n\u00e9\u20ac\U0001f600'), max_size=12)
_JSON_VALUES = st.recursive(
    st.none() | st.integers() | _JSON_TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_JSON_TEXT, inner, max_size=4),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(_JSON_VALUES, st.booleans())
def test_depth_equals_a_tokenizers_on_any_valid_json(value: object, ascii_only: bool) -> None:
    """Brackets, quotes and backslashes inside strings (escaped or not, any encoding) never count."""
    text = json.dumps(value, ensure_ascii=ascii_only)
    assert nesting_depth(text, 1000) == _reference_depth(text)


def _old_depth(text: str, limit: int) -> int:
    """The depth as nesting_depth counted it before its C passes: the same bytes kept, summed in Python."""
    raw = text.encode("utf-8", "surrogatepass").replace(b"\\\\", b"").replace(b'\\"', b"")
    shape = bytes(b for b in raw if b in b'"[]{}')
    depth = best = 0
    for b in b"".join(shape.split(b'"')[::2]):
        depth += 1 if b in b"[{" else -1
        best = max(best, depth)
        if best > limit:
            break
    return best


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet=st.sampled_from('"\\[]{}a:,'), max_size=80), st.integers(0, 40))
def test_depth_on_any_text_is_the_running_sums(text: str, limit: int) -> None:
    """Quote pairs dropped in one pass and balanced brackets peeled in C count exactly as before, on
    unbalanced brackets, unterminated strings and stray escapes too (past ``limit``: anything above it)."""
    expected = _old_depth(text, limit)
    found = nesting_depth(text, limit)
    assert found == expected or (found > limit and expected > limit)


def test_depth_of_deep_documents_past_the_peeling_passes() -> None:
    for depth in (31, 32, 33, 40, 200):
        text = "[" * depth + "]" * depth
        assert nesting_depth(text, 1000) == depth
        assert nesting_depth(text, 35) == depth if depth <= 36 else nesting_depth(text, 35) > 35
    assert nesting_depth("[" * 70000 + "]" * 70000, 10**6) == 70000  # the running sums in C
