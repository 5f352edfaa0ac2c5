"""KG503-KG504: values of allowlisted classes that Keras interprets when it loads the config.

The allowlist judges class names; these rules judge the values Keras acts on inside them: regular
expressions it matches against layer and variable paths (``DTypePolicyMap``, ``OptimizerMap``,
``Muon``) and numpy dtype strings it passes to ``np.array`` (``__numpy__`` objects). What else in
Keras 3.15.1 interprets config strings, and why it needs no rule, is in docs/decisions.md (32).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from kerasguard.findings import Severity
from kerasguard.formats import config_walk as cw
from kerasguard.formats.artifact import Artifact
from kerasguard.formats.config_values import element_count, numpy_dtype, regex_facts
from kerasguard.rules.base import Hit, Rule, RuleContext

# Class name -> (config key holding the patterns, how Keras matches them: "keys" of a dict with
# re.fullmatch, or "items" of a list with re.search).
REGEX_SINKS: dict[str, tuple[str, str]] = {
    "DTypePolicyMap": ("policy_map", "keys"),
    "OptimizerMap": ("optimizer_map", "keys"),
    "Muon": ("exclude_layers", "items"),
}
# Largest numpy element a config value may ask for, and the largest array: real configs carry small
# constants (Keras writes the value itself as JSON, so its size is bounded by the JSON document).
MAX_VALUE_ITEMSIZE = 4096
MAX_VALUE_BYTES = 64 * 2**20


def _patterns(config: Any, key: str, how: str) -> Iterator[tuple[str, str, bool]]:
    """(pointer suffix, pattern, search?) for each pattern Keras would match."""
    if not isinstance(config, dict):
        return
    value = config.get(key)
    if how == "keys" and isinstance(value, dict):
        for name in value:
            yield f"/config/{cw.escape(key)}/{cw.escape(name)}", name, False
    elif how == "items" and isinstance(value, list):
        for i, item in enumerate(value):
            if isinstance(item, str):
                yield f"/config/{cw.escape(key)}/{i}", item, True


def check_kg503(art: Artifact, ctx: RuleContext) -> Iterator[Hit]:
    for doc, ref in cw.refs(art):
        sink = REGEX_SINKS.get(ref.class_name) if ref.kind == "class" else None
        if sink is None:
            continue
        for suffix, pattern, search in _patterns(ref.config, *sink):
            facts = regex_facts(pattern, search=search)
            if facts.linear:
                continue
            how = "re.search" if search else "re.fullmatch"
            if facts.catastrophic:
                why = "it repeats a group that itself repeats or alternates (exponential backtracking)"
            else:
                why = f"it is not in the subset proven linear ({facts.reason})"
            yield Hit(
                cw.at(doc, ref.pointer + suffix),
                f"{ref.class_name} key {pattern[:80]!r} is a regular expression Keras runs with {how} "
                f"against every layer or variable path at load: {why}",
                evidence=pattern,
                severity=Severity.HIGH,
            )


def check_kg504(art: Artifact, ctx: RuleContext) -> Iterator[Hit]:
    for doc, ref in cw.refs(art):
        if ref.class_name != "__numpy__" or not isinstance(ref.config, dict) or "dtype" not in ref.config:
            continue
        dtype = ref.config["dtype"]
        where = cw.at(doc, ref.pointer + "/config/dtype")
        if dtype is None:
            continue  # numpy infers the dtype from the JSON value: bounded by the document
        if not isinstance(dtype, str):
            yield Hit(
                where,
                f"__numpy__ dtype is a {type(dtype).__name__}, which numpy reads as a structured "
                "dtype; Keras never writes one",
                evidence=repr(dtype)[:120],
            )
            continue
        facts = numpy_dtype(dtype)
        if facts.itemsize is None:
            yield Hit(
                where,
                f"__numpy__ dtype {dtype[:60]!r} is not a dtype Keras writes (sub-array, structured or "
                "unknown spelling); numpy would interpret it unchecked",
                evidence=dtype,
            )
            continue
        count = element_count(ref.config.get("value"))
        total = count * facts.itemsize
        if facts.itemsize > MAX_VALUE_ITEMSIZE or total > MAX_VALUE_BYTES:
            yield Hit(
                where,
                f"__numpy__ dtype {dtype[:60]!r} makes np.array allocate {facts.itemsize} bytes per element, "
                f"{total} bytes for {count} element(s), from a few bytes of config",
                evidence=f"dtype={dtype[:60]} itemsize={facts.itemsize} elements={count}",
            )


RULES: tuple[Rule, ...] = (
    Rule(
        id="KG503",
        name="config-regex",
        title="Config holds a regular expression Keras matches at load that may not finish",
        severity=Severity.HIGH,
        cwe="CWE-1333",
        rationale=(
            "DTypePolicyMap and OptimizerMap keys are regular expressions Keras matches with re.fullmatch "
            "against layer and variable paths when it builds the model (Muon's exclude_layers with "
            "re.search), under safe_mode too. A catastrophic-backtracking key such as '(a+)+$' with a long "
            "layer name makes Keras spin for minutes. Only keys proven linear are accepted: plain paths, "
            "or literals with '.', simple character classes, a few '?' and one '*' or '+'."
        ),
        remediation=(
            "Do not load the file. Keras's own quantization writes plain layer paths; rewrite any other "
            "key as a plain path."
        ),
        check=check_kg503,
    ),
    Rule(
        id="KG504",
        name="numpy-dtype-value",
        title="Config asks numpy for an array far larger than the config",
        severity=Severity.HIGH,
        cwe="CWE-789",
        rationale=(
            "Keras rebuilds {'class_name': '__numpy__'} values (node kwargs, Lambda arguments) with "
            "np.array(value, dtype=dtype) and never checks the dtype. A fixed-width string ('<U999999999') "
            "or sub-array ('(100000000,)f8') dtype makes a 1 KB config allocate gigabytes at load, under "
            "safe_mode too. Keras writes only plain dtype names; anything numpy would size otherwise, or "
            "an element over 4 KiB or an array over 64 MiB, is flagged."
        ),
        remediation="Do not load the file; a model saved by Keras never carries such a dtype.",
        check=check_kg504,
    ),
)
