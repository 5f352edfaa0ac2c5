"""Config values that Keras interprets instead of storing: numpy dtype strings and regular expressions.

Keras builds ``{"class_name": "__numpy__", "config": {"value", "dtype"}}`` with
``np.array(value, dtype=dtype)`` wherever a config is deserialised (node kwargs, Lambda ``arguments``),
and matches the keys of ``DTypePolicyMap.policy_map`` and ``OptimizerMap.optimizer_map`` with
``re.fullmatch`` (Muon's ``exclude_layers`` with ``re.search``). These readers describe such values
without numpy and without compiling a pattern; the rules decide what is acceptable.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from typing import Any

from kerasguard.formats.npz import plain_dtype

# The dtype names Keras writes (backend.standardize_dtype) and the numpy names and one-letter codes that
# mean the same fixed-size types, with numpy's itemsize. Keras-only names (bfloat16, int4, float8_*)
# are sized as ml_dtypes registers them.
_POINTER = struct.calcsize("P")
NAMED_DTYPES: dict[str, int] = {
    **{name: 1 for name in ("bool", "bool_", "int8", "uint8", "?", "b", "B", "byte", "ubyte")},
    **{name: 1 for name in ("int4", "uint4", "float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz")},
    **{name: 2 for name in ("int16", "uint16", "float16", "bfloat16", "half", "h", "H", "e")},
    **{name: 4 for name in ("int32", "uint32", "float32", "single", "i", "I", "f", "intc", "uintc")},
    **{name: 8 for name in ("int64", "uint64", "float64", "double", "float", "int", "uint", "d")},
    **{name: 8 for name in ("l", "L", "q", "Q", "long", "ulong", "longlong", "ulonglong", "complex64")},
    **{name: 8 for name in ("intp", "uintp", "p", "P", "F")},
    **{name: 16 for name in ("complex128", "complex", "D")},
    **{name: _POINTER for name in ("object", "O", "object_")},
}
# Keras's own name for string tensors; numpy refuses it (TypeError), so it allocates nothing.
REFUSED_BY_NUMPY = frozenset({"string"})


@dataclass(frozen=True)
class DtypeFacts:
    """What ``np.array(value, dtype=text)`` would make of a config's dtype string."""

    text: str
    itemsize: int | None  # bytes per element; None when this reader does not know the dtype
    fixed_width_text: bool = False  # an S/U/V dtype whose width the string itself sets


def numpy_dtype(text: str) -> DtypeFacts:
    """The itemsize numpy gives ``text``, for the names Keras writes and plain descrs (``<U8``, ``|S4``).

    Sub-array (``(1000,)f8``), structured (``f8,i4``), datetime and every other spelling is unknown
    (``itemsize`` None): a rule refuses what it cannot size.
    """
    if text in NAMED_DTYPES:
        return DtypeFacts(text, NAMED_DTYPES[text])
    if text in REFUSED_BY_NUMPY:
        return DtypeFacts(text, 0)
    plain = plain_dtype(text)
    if plain is not None:
        return DtypeFacts(text, plain[0], fixed_width_text=text.lstrip("<>|=")[:1] in ("S", "U"))
    match = _TEXT_DTYPE.fullmatch(text)
    if match is not None:  # widths beyond the .npy table (U1000000000), sized as numpy sizes them
        width = int(match["width"] or 0)
        unit = 4 if match["kind"] == "U" else 1
        return DtypeFacts(text, width * unit, fixed_width_text=True)
    return DtypeFacts(text, None)


_TEXT_DTYPE = re.compile(r"[<>|=]?(?P<kind>[SUVa])(?P<width>[0-9]{1,20})?")


def element_count(value: Any, budget: int = 1_000_000) -> int:
    """Leaves of a nested JSON list as ``np.array`` counts elements (a scalar is one); at most ``budget``."""
    count = 0
    stack = [value]
    while stack and count < budget:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
        else:
            count += 1
    return max(count, 1)


# --- regular expressions ----------------------------------------------------------------------------

# Longest pattern accepted as linear: matching costs at most (pattern length) x (subject length).
MAX_LINEAR_PATTERN = 256
# Optional atoms (``a?``) accepted: each doubles the ways a backtracking matcher can split the subject.
MAX_OPTIONAL = 4
_META = frozenset(".^$*+?{}[]\\|()")
_UNBOUNDED = frozenset("*+")


@dataclass(frozen=True)
class RegexFacts:
    """How a pattern Keras matches would behave, judged without compiling it."""

    pattern: str
    literal: bool  # no metacharacter: matches only itself
    linear: bool  # in the subset whose matching is proven linear in the subject
    catastrophic: bool  # a quantified group that itself repeats or alternates: exponential backtracking
    reason: str  # why it is not linear ("" when it is)


def regex_facts(pattern: str, search: bool = False) -> RegexFacts:
    """Classify ``pattern`` as ``re.fullmatch`` (or ``re.search`` when ``search``) would run it.

    The linear subset: at most ``MAX_LINEAR_PATTERN`` characters of literals, escaped punctuation,
    ``.`` and simple character classes, at most ``MAX_OPTIONAL`` of them followed by ``?``, and at most
    one ``*`` or ``+`` in the whole pattern (none for ``re.search``, which retries at every offset).
    With one unbounded repeat and no groups or alternation, a backtracking
    matcher tries each split point of the subject once: (pattern length) x (subject length) steps.
    Everything else (groups, alternation, counted repeats, two unbounded repeats, anchors, backrefs)
    is not proven linear.
    """
    if not any(ch in _META for ch in pattern):
        return RegexFacts(pattern, literal=True, linear=True, catastrophic=False, reason="")
    catastrophic = _nested_quantifier(pattern)
    reason = _nonlinear_reason(pattern, max_unbounded=0 if search else 1)
    return RegexFacts(pattern, literal=False, linear=not reason, catastrophic=catastrophic, reason=reason)


def _nonlinear_reason(pattern: str, max_unbounded: int) -> str:
    if len(pattern) > MAX_LINEAR_PATTERN:
        return f"longer than {MAX_LINEAR_PATTERN} characters"
    unbounded = optional = 0
    i, n = 0, len(pattern)
    previous_atom = False
    while i < n:
        ch = pattern[i]
        if ch == "\\":
            if i + 1 >= n or pattern[i + 1].isalnum():
                return "an escape other than escaped punctuation"
            i += 2
            previous_atom = True
            continue
        if ch == "[":
            end = pattern.find("]", i + 2)
            body = pattern[i + 1 : end] if end > 0 else ""
            if end < 0 or "[" in body or "\\" in body:
                return "a character class outside the simple form"
            i = end + 1
            previous_atom = True
            continue
        if ch in "*+?":
            if not previous_atom:
                return "a repeat of a repeat"
            if ch in _UNBOUNDED:
                unbounded += 1
                if unbounded > max_unbounded:
                    return f"more than {max_unbounded} unbounded repeat(s)"
            else:
                optional += 1
                if optional > MAX_OPTIONAL:
                    return f"more than {MAX_OPTIONAL} optional atoms"
            previous_atom = False
            i += 1
            continue
        if ch in "{}":
            return "a counted repeat"
        if ch in "()|":
            return "groups or alternation"
        if ch in "^$":
            return "anchors"
        previous_atom = True
        i += 1
    return ""


def _nested_quantifier(pattern: str) -> bool:
    """A group that is repeated while it contains a repeat or an alternation: ``(a+)+``, ``(a|a)*``."""
    stack: list[bool] = []  # per open group: holds a repeat or alternation
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "\\":
            i += 2
            continue
        if ch == "[":
            end = pattern.find("]", i + 2)
            i = n if end < 0 else end + 1
            continue
        if ch == "(":
            stack.append(False)
        elif ch == ")" and stack:
            risky = stack.pop()
            following = pattern[i + 1 : i + 2]
            if risky and following in ("*", "+", "{"):
                return True
            if stack and risky:
                stack[-1] = True
        elif ch in "*+{|" and stack:
            stack[-1] = True
        i += 1
    return False
