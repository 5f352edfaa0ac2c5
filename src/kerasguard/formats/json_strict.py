"""Strict JSON: parsed exactly as Python's json parses bytes (what Keras does), every ambiguity recorded.

The value kept is the one Keras would see. What other parsers would see differently is recorded on
the document: duplicate keys (RFC 6901 pointer, the value kept, the value dropped), NaN/Infinity,
integers beyond 64 bits, a BOM or a UTF-16/32 encoding, lone surrogates. Size and nesting limits are
checked before parsing, in linear time.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from itertools import accumulate
from typing import Any

from kerasguard.findings import Location
from kerasguard.formats.artifact import Artifact, DuplicateKey, JsonDocument, JsonQuirk
from kerasguard.formats.blob import Blob, LimitExceeded
from kerasguard.formats.context import ReadContext
from kerasguard.policy import Limits

MAX_RECORDED = 100  # per document and kind: enough to judge, bounded for hostile input
INT_MIN, INT_MAX = -(2**63), 2**64 - 1  # beyond int64/uint64 other parsers overflow or round
_CHUNK = 1 << 20

_NOT_SHAPE = bytes(sorted(set(range(256)) - set(b'"[]{}')))
_STEP = [1 if b in b"[{" else -1 for b in range(256)]  # after _NOT_SHAPE only brackets are left
_SURROGATE = re.compile("[\ud800-\udfff]")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
# Integers past 64 bits have at least 19 digits; floats overflow only with a 3-digit exponent or
# more than 300 digits. Digits become "1", exponent letters "e" and signs "s", then plain substring
# searches find candidates (a regex is ~50x slower here). A hit inside a string only costs a walk.
_NUMBER_SHAPE = bytes.maketrans(b"0123456789eE+-", b"1111111111eess")
_LONG_RUN = b"1" * 19
_ONES = re.compile(b"1*")
_DOT = ord(".")


_SMALL = 1 << 16  # brackets walked in plain Python; larger documents by running sums in C


def _depth_small(brackets: str, limit: int) -> int:
    depth = best = 0
    for ch in brackets:
        if ch in "[{":
            depth += 1
            if depth > best:
                best = depth
                if best > limit:
                    break
        else:
            depth -= 1
    return best


def nesting_depth(text: str, limit: int) -> int:
    """Maximum bracket depth outside strings (stops early once past ``limit``).

    Linear, in C-speed passes: escaped backslashes and quotes go first (left to right, as a JSON
    string pairs them: backslashes appear nowhere else in valid JSON), then every byte but quotes and
    brackets, then what lies between quotes (the strings); the brackets left are counted. UTF-8
    multi-byte sequences hold no ASCII byte, so the encoding cannot make a bracket or a quote."""
    raw = text.encode("utf-8", "surrogatepass")
    if b"\\" in raw:
        raw = raw.replace(b"\\\\", b"").replace(b'\\"', b"")
    shape = raw.translate(None, _NOT_SHAPE)
    # Two adjacent quotes hold nothing (an empty string, or a string's end and the next one's start with
    # only deleted bytes between): dropping them keeps every other byte's side of the quotes. After the
    # translation most strings are such pairs, and one C pass is cheaper than splitting on every quote.
    shape = shape.replace(b'""', b"")
    if b'"' in shape:  # what lies between a quote and the next is a string (an unterminated one too)
        shape = b"".join(shape.split(b'"')[::2])
    if not shape:
        return 0
    peeled = _peeled_depth(shape, limit)
    if peeled is not None:
        return peeled
    brackets = shape.decode("ascii")
    if len(brackets) <= _SMALL:
        return _depth_small(brackets, limit)
    best = carry = 0  # large documents: running sums in C (accumulate, max), never numpy on the scan path
    for start in range(0, len(shape), _CHUNK):
        running = list(accumulate(map(_STEP.__getitem__, shape[start : start + _CHUNK]), initial=carry))
        best = max(best, max(running))
        carry = running[-1]
        if best > limit:
            break
    return best


_PEEL_PASSES = 32  # Keras configs nest ~10-15 levels; deeper documents take the running sums
_PEEL_BYTES = 1 << 20
_ONE_KIND = bytes.maketrans(b"[{]}", b"(())")


def _peeled_depth(brackets: bytes, limit: int) -> int | None:
    """The depth of balanced ``brackets`` as the number of passes that delete every innermost pair
    (each pass removes the leaves of the bracket tree), in C; None when they are not balanced or nest
    deeper than a few passes (at most _PEEL_PASSES passes over at most _PEEL_BYTES bytes)."""
    if len(brackets) > _PEEL_BYTES:
        return None
    shape = brackets.translate(_ONE_KIND)  # the depth counts every opening bracket alike
    for depth in range(1, min(_PEEL_PASSES, limit + 1) + 1):
        peeled = shape.replace(b"()", b"")
        if len(peeled) == len(shape):
            return None  # unbalanced: a closing bracket first, or one left open
        if not peeled:
            return depth
        shape = peeled
    return None


def escape_pointer_token(token: str) -> str:
    """RFC 6901: ``~`` becomes ``~0`` and ``/`` becomes ``~1``."""
    return token.replace("~", "~0").replace("/", "~1")


def preview(value: Any, limit: int = 80) -> str:
    """A short, printable JSON rendering of ``value`` (attacker-controlled: bounded work)."""
    text = json.dumps(_prune(value, 3), ensure_ascii=True, allow_nan=True)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _prune(value: Any, depth: int) -> Any:
    if isinstance(value, str):
        return value if len(value) <= 60 else value[:57] + "..."
    if isinstance(value, dict):
        if depth == 0:
            return {"...": "..."} if value else {}
        items = list(value.items())[:4]
        out = {k[:40]: _prune(v, depth - 1) for k, v in items}
        if len(value) > 4:
            out["..."] = "..."
        return out
    if isinstance(value, list):
        if depth == 0:
            return ["..."] if value else []
        pruned = [_prune(v, depth - 1) for v in value[:4]]
        return [*pruned, "..."] if len(value) > 4 else pruned
    if isinstance(value, int) and not isinstance(value, bool) and not INT_MIN <= value <= INT_MAX:
        return f"<integer of {len(str(abs(value)))} digits>"
    return value


class _Hooks:
    """Callbacks for json.loads that note what needs a closer look after parsing (objects, NaN)."""

    def __init__(self) -> None:
        # id(dict) -> (the dict, [(key, count, first value)]); the dict is kept alive so ids stay unique
        self.duplicates: dict[int, tuple[dict[str, Any], list[tuple[str, int, Any]]]] = {}
        self.non_finite = False

    def pairs(self, pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out = dict(pairs)  # the last value wins, as in json's default
        if len(out) != len(pairs):
            first: dict[str, Any] = {}
            for key, value in pairs:
                first.setdefault(key, value)
            counts = Counter(key for key, _ in pairs)
            info = [(key, n, first[key]) for key, n in counts.items() if n > 1]
            self.duplicates[id(out)] = (out, info)
        return out

    def constant(self, name: str) -> float:
        self.non_finite = True
        return float(name)


def _decode(data: bytes, location: Location, art: Artifact) -> tuple[str, list[JsonQuirk]] | None:
    """Decode as ``json.loads(bytes)`` does: detected encoding, surrogates passed through."""
    encoding = json.detect_encoding(data)
    try:
        text = data.decode(encoding, "surrogatepass")
    except UnicodeDecodeError as exc:
        shown = "UTF-8" if encoding.startswith("utf-8") else encoding.upper()
        art.problem(
            location,
            "corrupt",
            f"JSON is not valid {shown} at byte {exc.start}: Python's json (and Keras) refuse it",
        )
        return None
    quirks: list[JsonQuirk] = []
    if encoding == "utf-8-sig":
        quirks.append(
            JsonQuirk(
                "", "bom", "starts with a UTF-8 byte order mark: Python accepts it, strict parsers do not"
            )
        )
    elif encoding != "utf-8":
        quirks.append(
            JsonQuirk(
                "",
                "encoding",
                f"encoded as {encoding.upper()}: Python's json detects it, tools expecting UTF-8 do not",
            )
        )
    return text, quirks


def parse_json_bytes(
    data: bytes, location: Location, role: str, limits: Limits, art: Artifact
) -> JsonDocument | None:
    """Parse ``data`` into a JsonDocument appended to ``art``; problems go to ``art.problems``."""
    if len(data) > limits.max_json_bytes:
        art.problem(
            location, "limit", f"JSON of {len(data)} bytes exceeds max_json_bytes={limits.max_json_bytes}"
        )
        return None
    decoded = _decode(data, location, art)
    if decoded is None:
        return None
    text, quirks = decoded
    depth = nesting_depth(text, limits.max_json_depth)
    if depth > limits.max_json_depth:
        art.problem(location, "limit", f"JSON nesting deeper than max_json_depth={limits.max_json_depth}")
        return None
    hooks = _Hooks()
    try:
        value = json.loads(
            text,
            object_pairs_hook=hooks.pairs,
            parse_constant=hooks.constant,
        )
    except (ValueError, RecursionError) as exc:
        art.problem(location, "corrupt", f"invalid JSON: {_short_error(exc)}")
        return None
    doc = JsonDocument(location=location, role=role, value=value, size=len(data), depth=depth, quirks=quirks)
    # Per-number hooks would cost a Python call per number; a textual hint decides whether to walk.
    numbers = _may_hold_big_numbers(text)
    surrogates = bool((not text.isascii() and _SURROGATE.search(text)) or _SURROGATE_ESCAPE.search(text))
    if hooks.duplicates or hooks.non_finite or numbers or surrogates:
        _Walker(doc, hooks, surrogates).walk(value)
    art.json_docs.append(doc)
    return doc


def _may_hold_big_numbers(text: str) -> bool:
    shape = text.encode("utf-8", "surrogatepass").translate(_NUMBER_SHAPE)
    if b"e111" in shape or b"es111" in shape:
        return True
    # A run of 19+ digits right after "." is a fraction (float32 weights saved as 0.0010000000474974513):
    # it can neither overflow nor be an integer. Each run is visited once, so this stays linear.
    start = shape.find(_LONG_RUN)
    while start >= 0:
        if start == 0 or shape[start - 1] != _DOT:
            return True
        run = _ONES.match(shape, start)  # always matches: it starts on a digit
        start = shape.find(_LONG_RUN, run.end() if run else start + 1)
    return False


def _short_error(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


Path = tuple[Any, ...] | None  # (parent path, token): pointers are built only when reported


def _pointer(path: Path) -> str:
    tokens: list[str] = []
    while path is not None:
        path, token = path
        tokens.append(escape_pointer_token(str(token)))
    return "".join("/" + t for t in reversed(tokens))


class _Walker:
    """One iterative pass over the parsed value, recording what the hooks flagged, with pointers."""

    def __init__(self, doc: JsonDocument, hooks: _Hooks, surrogates: bool) -> None:
        self.doc = doc
        self.hooks = hooks
        self.surrogates = surrogates
        self.counts: Counter[str] = Counter()

    def _quirk(self, path: Path, kind: str, detail: str) -> None:
        self.counts[kind] += 1
        if self.counts[kind] <= MAX_RECORDED:
            self.doc.quirks.append(JsonQuirk(_pointer(path), kind, detail))

    def walk(self, root: Any) -> None:
        stack: list[tuple[Any, Path]] = [(root, None)]
        while stack:
            node, path = stack.pop()
            if isinstance(node, dict):
                self._object(node, path)
                stack.extend((v, (path, k)) for k, v in reversed(list(node.items())))
            elif isinstance(node, list):
                stack.extend((v, (path, i)) for i, v in reversed(list(enumerate(node))))
            elif isinstance(node, float) and not math.isfinite(node):
                shown = "NaN" if math.isnan(node) else ("Infinity" if node > 0 else "-Infinity")
                self._quirk(
                    path, "non_finite", f"{shown} (a literal, or a number beyond float range): not valid JSON"
                )
            elif isinstance(node, int) and not isinstance(node, bool) and not INT_MIN <= node <= INT_MAX:
                self._quirk(path, "huge_number", f"integer of {len(str(abs(node)))} digits: beyond 64 bits")
            elif isinstance(node, str) and self.surrogates and _SURROGATE.search(node):
                self._quirk(path, "lone_surrogate", "string holds a lone UTF-16 surrogate: not valid Unicode")
        for kind, n in self.counts.items():
            if n > MAX_RECORDED:
                self.doc.quirks.append(
                    JsonQuirk("", "truncated", f"{n - MAX_RECORDED} more {kind} not listed")
                )

    def _object(self, node: dict[str, Any], path: Path) -> None:
        if self.surrogates:
            for key in node:
                if _SURROGATE.search(key):
                    self._quirk((path, key), "lone_surrogate", "key holds a lone UTF-16 surrogate")
        entry = self.hooks.duplicates.get(id(node))
        if entry is None or entry[0] is not node:
            return
        for key, count, first in entry[1]:
            self.counts["duplicate_key"] += 1
            if self.counts["duplicate_key"] > MAX_RECORDED:
                continue
            self.doc.duplicate_keys.append(
                DuplicateKey(
                    pointer=_pointer((path, key)),
                    key=key,
                    used=preview(node[key]),
                    count=count,
                    dropped=preview(first),
                )
            )


def read_json(blob: Blob, art: Artifact, ctx: ReadContext, role: str) -> JsonDocument | None:
    """Read and parse a JSON blob within the policy's limits."""
    try:
        data = blob.read_all(ctx.limits.max_json_bytes, "JSON document")
    except LimitExceeded as exc:
        art.problem(blob.location, "limit", f"{exc}; max_json_bytes={ctx.limits.max_json_bytes}")
        return None
    return parse_json_bytes(data, blob.location, role, ctx.limits, art)
