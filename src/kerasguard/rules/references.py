"""KG2xx: references in the model config to code outside the modelling allowlist.

Keras rebuilds a model by resolving every ``{"module", "class_name", "config"}`` object it meets.
Each safe_mode bypass so far (CVE-2025-1550, CVE-2025-8747, CVE-2025-9906, GHSA-pwq7-2gvj-vg9v)
resolved a public function nobody had denied yet, so references are judged against an allowlist of
known modelling names (``rules/data/keras_api.json``) by :mod:`kerasguard.rules.ref_judge`.
KG208: SavedModel graph ops that reach files or the network.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from kerasguard.findings import Severity
from kerasguard.formats import config_walk as cw
from kerasguard.formats.artifact import Artifact, JsonDocument
from kerasguard.formats.config_walk import ObjRef
from kerasguard.policy import Allow, Policy
from kerasguard.rules.base import Check, Hit, Rule, RuleContext, allowance
from kerasguard.rules.keras_api import is_activation_name, keras_api
from kerasguard.rules.ref_judge import Category, Judgement, judge, judge_function_name
from kerasguard.rules.tf_ops import (
    Graph,
    file_or_network_use,
    group_ops,
    op_scope,
)
from kerasguard.suppressions import allowlist_may_clear


@dataclass(frozen=True)
class Judged:
    """A reference, where it is, and its judgement."""

    pointer: str
    ref: ObjRef
    verdict: Judgement
    evidence: str


def _judged(art: Artifact, ctx: RuleContext) -> Iterator[tuple[JsonDocument, Judged]]:
    """Every reference whose judgement can make a finding (not "safe" or "other", most of them), with
    that judgement, computed once per document and rule context."""
    for doc in cw.config_documents(art):
        walked = cw.index(doc)
        key = ("judged", id(ctx.policy))
        if key not in walked.cache:
            verdicts: dict[tuple[object, ...], Judgement] = {}
            judged = list(filter(None, (_judge(ref, ctx, verdicts) for ref in walked.refs)))
            judged += (
                item
                for item in filter(None, (_lambda_function_ref(ref, ctx) for ref in walked.refs))
                if item.verdict.category not in _NO_FINDING
            )
            walked.cache[key] = (ctx.policy, judged)  # the policy is kept so its id stays unique
        for item in walked.cache[key][1]:
            yield doc, item


# The rule that reports each category of judgement (see the check functions below).
CATEGORY_RULES = {"foreign": "KG201", "non_modeling": "KG202", "unknown": "KG204", "custom": "KG205"}


def _allowlisted(verdict: Judgement, rejudge: Callable[[Policy], Judgement], policy: Policy) -> Judgement:
    """An "allowed" judgement with what the allowlist cleared, or that judgement itself when the policy
    may not clear it (a found policy and a high or critical finding: decision 37)."""
    if verdict.category != "allowed" or verdict.allow is None:
        return verdict
    cleared = rejudge(dataclasses.replace(policy, allow=Allow()))
    rule_id = CATEGORY_RULES.get(cleared.category)
    if rule_id is None:
        return verdict
    severity = cleared.severity or _rules_by_id()[rule_id].severity
    if not allowlist_may_clear(policy, rule_id, severity):
        return dataclasses.replace(cleared, refused_allow=verdict.allow)
    return dataclasses.replace(verdict, cleared=cleared)


def _rules_by_id() -> dict[str, Rule]:
    return {rule.id: rule for rule in RULES}


_NO_FINDING = frozenset({"safe", "other"})


def _judge(ref: ObjRef, ctx: RuleContext, verdicts: dict[tuple[object, ...], Judgement]) -> Judged | None:
    # Only a pinned Keras version may lower a judgement: the one installed beside the scanner is not
    # necessarily the one that will load the file (decision 13).
    version = ctx.policy.keras_version
    # A class or function reference is judged by its names alone (ref_judge reads nothing else of it),
    # so a config's thousands of references need one judgement per distinct name.
    key = (ref.kind, ref.class_name, ref.module, ref.registered_name, ref.function_name)
    verdict = verdicts.get(key) if ref.kind in ("class", "function") else None
    if verdict is None:
        verdict = _allowlisted(
            judge(ref, ctx.policy, version),
            lambda policy: judge(ref, policy, version),
            ctx.policy,
        )
        if ref.kind in ("class", "function") and ref.class_name != "__typespec__":
            verdicts[key] = verdict
    if verdict.category in _NO_FINDING:  # most references: no finding, nothing to keep
        return None
    return Judged(ref.pointer, ref, verdict, _evidence(ref))


def _lambda_function_ref(ref: ObjRef, ctx: RuleContext) -> Judged | None:
    """Keras 2 Lambda ``{"function": name, "function_type": "function", "module": m}``."""
    cfg = ref.config
    if ref.kind != "class" or not isinstance(cfg, dict):
        return None
    if cfg.get("function_type") != "function" or not isinstance(cfg.get("function"), str):
        return None
    module = cfg.get("module") if isinstance(cfg.get("module"), str) else None
    # tf-keras resolves these from any module already imported (sys.modules), whatever Keras 3 does.
    verdict = _allowlisted(
        judge_function_name(module, cfg["function"], ctx.policy, keras_version=None),
        lambda policy: judge_function_name(module, cfg["function"], policy, keras_version=None),
        ctx.policy,
    )
    evidence = f"function={cfg['function']!r}, function_type='function', module={module!r}"
    return Judged(f"{ref.pointer}/config/function", ref, verdict, evidence)


def _category_hits(category: Category) -> Check:
    def check(art: Artifact, ctx: RuleContext) -> Iterator[Hit]:
        for doc, item in _judged(art, ctx):
            verdict = item.verdict
            if verdict.category == category:
                refused = verdict.refused_allow
                yield Hit(
                    cw.at(doc, item.pointer),
                    verdict.message,
                    evidence=item.evidence,
                    severity=verdict.severity,
                    allowance=None if refused is None else allowance(ctx.policy, refused, applied=False),
                )

    return check


def _evidence(ref: ObjRef) -> str:
    parts = [f"class_name={ref.class_name!r}"]
    if ref.module is not None:
        parts.insert(0, f"module={ref.module!r}")
    if ref.kind == "function" and isinstance(ref.config, str):
        parts.append(f"config={ref.config!r}")
    if ref.registered_name:
        parts.append(f"registered_name={ref.registered_name!r}")
    name = ref.layer_name
    if name:
        parts.append(f"name={name!r}")
    return ", ".join(parts)


def check_kg201(art: Artifact, ctx: RuleContext) -> Iterator[Hit]:
    yield from _category_hits("foreign")(art, ctx)


# --- KG202 -----------------------------------------------------------------------------------------

# TFOpLambda (tf.keras) calls a TensorFlow function by its API name with the node's arguments.
TF_SIDE_EFFECT_NAMESPACES = frozenset(
    {
        "io",
        "saved_model",
        "data",
        "summary",
        "debugging",
        "config",
        "distribute",
        "train",
        "keras",
        "lookup",
        "raw_ops",
        "autograph",
        "sysconfig",
        "test",
        "tpu",
        "queue",
        "gfile",
        "experimental",
        "audio",
    }
)
TF_SIDE_EFFECT_NAMES = frozenset(
    {"py_function", "numpy_function", "py_func", "load_op_library", "load_library", "print", "function"}
)
TF_MODELING_NAMESPACES = frozenset(
    {
        "math",
        "nn",
        "linalg",
        "__operators__",
        "image",
        "signal",
        "bitwise",
        "sparse",
        "ragged",
        "strings",
        "random",
    }
)
TF_MODELING_NAMES = frozenset(
    {
        "abs",
        "add",
        "add_n",
        "argmax",
        "argmin",
        "argsort",
        "boolean_mask",
        "broadcast_to",
        "cast",
        "clip_by_value",
        "concat",
        "convert_to_tensor",
        "cumsum",
        "einsum",
        "equal",
        "exp",
        "expand_dims",
        "eye",
        "fill",
        "gather",
        "gather_nd",
        "identity",
        "linspace",
        "matmul",
        "maximum",
        "meshgrid",
        "minimum",
        "multiply",
        "one_hot",
        "ones",
        "ones_like",
        "pad",
        "pow",
        "range",
        "rank",
        "reduce_all",
        "reduce_any",
        "reduce_max",
        "reduce_mean",
        "reduce_min",
        "reduce_prod",
        "reduce_sum",
        "repeat",
        "reshape",
        "reverse",
        "roll",
        "round",
        "scatter_nd",
        "shape",
        "sigmoid",
        "sign",
        "size",
        "slice",
        "sort",
        "split",
        "sqrt",
        "square",
        "squeeze",
        "stack",
        "stop_gradient",
        "strided_slice",
        "subtract",
        "tanh",
        "tensordot",
        "tile",
        "transpose",
        "truediv",
        "unstack",
        "where",
        "zeros",
        "zeros_like",
    }
)
# TensorFlowOpLayer (TF 2.0-2.3) embeds a raw graph node; these ops touch files or run Python.
TF_SIDE_EFFECT_OPS = frozenset(
    {
        "ReadFile",
        "WriteFile",
        "MatchingFiles",
        "PyFunc",
        "PyFuncStateless",
        "EagerPyFunc",
        "Save",
        "SaveV2",
        "SaveSlices",
        "Restore",
        "RestoreV2",
        "RestoreSlice",
        "ImmutableConst",
        "PrintV2",
        "DebugIdentity",
        "InitializeTableFromTextFile",
        "InitializeTableFromTextFileV2",
        "FixedLengthRecordReader",
        "TextLineReader",
        "WholeFileReader",
    }
)


def _tf_function(name: str) -> tuple[str, str]:
    """(category, namespace) of a TFOpLambda function name such as ``math.add``."""
    for prefix in ("compat.v1.", "compat.v2."):
        if name.startswith(prefix):
            name = name[len(prefix) :]
    head, _, rest = name.partition(".")
    last = name.rsplit(".", 1)[-1]
    if head in TF_SIDE_EFFECT_NAMESPACES or last in TF_SIDE_EFFECT_NAMES:
        return "non_modeling", head
    if (rest and head in TF_MODELING_NAMESPACES) or (not rest and name in TF_MODELING_NAMES):
        return "safe", head
    return "unknown", head


_TF_OP_CLASSES = frozenset({"TFOpLambda", "SlicingOpLambda", "TensorFlowOpLayer"})


def tf_op_hits(art: Artifact, category: str) -> Iterator[Hit]:
    """Hits of ``category`` for tf.keras TFOpLambda / SlicingOpLambda / TensorFlowOpLayer layers."""
    for doc, ref in cw.refs(art):
        cfg = ref.config
        if ref.class_name not in _TF_OP_CLASSES or ref.kind != "class" or not isinstance(cfg, dict):
            continue
        if ref.class_name in ("TFOpLambda", "SlicingOpLambda") and isinstance(cfg.get("function"), str):
            name = cfg["function"]
            got, _ = _tf_function(name)
            if got == category == "non_modeling":
                yield Hit(cw.at(doc, ref.pointer), f"TFOpLambda calls tf.{name}, which acts outside a model")
            elif got == category == "unknown":
                yield Hit(cw.at(doc, ref.pointer), f"TFOpLambda calls tf.{name}, not a known modelling op")
        node_def = cfg.get("node_def")
        if ref.class_name == "TensorFlowOpLayer" and isinstance(node_def, dict):
            op = node_def.get("op")
            if not isinstance(op, str):
                continue
            if op in TF_SIDE_EFFECT_OPS and category == "non_modeling":
                yield Hit(cw.at(doc, ref.pointer), f"TensorFlowOpLayer embeds the TensorFlow op {op}")
            elif op not in TF_SIDE_EFFECT_OPS and category == "unknown":
                yield Hit(
                    cw.at(doc, ref.pointer),
                    f"TensorFlowOpLayer embeds a raw TensorFlow op ({op}); review it",
                    severity=Severity.MEDIUM,
                )


def check_kg202(art: Artifact, ctx: RuleContext) -> Iterator[Hit]:
    yield from _category_hits("non_modeling")(art, ctx)
    yield from tf_op_hits(art, "non_modeling")


# --- KG203 -----------------------------------------------------------------------------------------


def check_kg203(art: Artifact, ctx: RuleContext) -> Iterator[Hit]:
    api = keras_api()
    for doc, ref in cw.refs(art):
        if not ref.in_layers or ref.kind in ("lambda", "special"):
            continue
        qualified = ref.qualified
        if ref.kind == "function":
            why = "a function reference"
        elif ref.module and not cw.is_class_like(ref.class_name):
            why = f"{qualified!r}, which is not a class name"
        elif ref.module and qualified in api.functions:
            why = f"the Keras function {qualified}"
        else:
            continue
        yield Hit(
            cw.at(doc, ref.pointer),
            f"layers[] entry is {why}: Keras < 3.9 calls whatever it resolves with the arguments in "
            "inbound_nodes",
            evidence=_evidence(ref),
        )


# --- KG204 -----------------------------------------------------------------------------------------


def check_kg204(art: Artifact, ctx: RuleContext) -> Iterator[Hit]:
    yield from _category_hits("unknown")(art, ctx)
    yield from tf_op_hits(art, "unknown")


# --- KG205 -----------------------------------------------------------------------------------------


def check_kg205(art: Artifact, ctx: RuleContext) -> Iterator[Hit]:
    for doc, item in _judged(art, ctx):
        verdict = item.verdict
        if verdict.category == "custom":
            yield Hit(
                cw.at(doc, item.pointer),
                f"{verdict.message}: its code runs when the application registers it; review that code "
                "and allowlist it with a reason (policy allow.custom_objects)",
                evidence=item.evidence,
            )
        elif verdict.category == "allowed" and verdict.allow is not None:
            where = cw.at(doc, item.pointer)
            cleared = None
            if verdict.cleared is not None and verdict.cleared.category in CATEGORY_RULES:
                rule = _rules_by_id()[CATEGORY_RULES[verdict.cleared.category]]
                cleared = rule.finding(
                    Hit(where, verdict.cleared.message, item.evidence, verdict.cleared.severity)
                )
            yield Hit(
                where,
                f"{verdict.message}: {verdict.allow.reason}",
                evidence=item.evidence,
                severity=Severity.INFO,
                allowance=None if cleared is None else allowance(ctx.policy, verdict.allow, True, cleared),
            )
    for doc in cw.config_documents(art):
        for pointer, name in cw.activation_strings(cw.index(doc), skip=is_activation_name):
            allowed = ctx.policy.allow.allows("custom_objects", name) or ctx.policy.allow.allows(
                "functions", name
            )
            message = (
                f"activation {name!r} is not a Keras activation: it resolves only to a custom object the "
                "application passes in"
            )
            hit = Hit(cw.at(doc, pointer), message, evidence=f"activation={name!r}", severity=Severity.LOW)
            if allowed:
                cleared = _rules_by_id()["KG205"].finding(hit)
                hit = dataclasses.replace(
                    hit,
                    message=f"{message}; allowed by the policy: {allowed.reason}",
                    severity=Severity.INFO,
                    allowance=allowance(ctx.policy, allowed, True, cleared),
                )
            yield hit


# --- KG206 -----------------------------------------------------------------------------------------

LOOKUP_CLASSES = frozenset({"StringLookup", "IntegerLookup", "TextVectorization", "IndexLookup"})
LOOKUP_KEYS = ("vocabulary", "idf_weights")


def check_kg206(art: Artifact, ctx: RuleContext) -> Iterator[Hit]:
    for doc, ref in cw.refs(art):
        cfg = ref.config
        if ref.kind != "class" or not isinstance(cfg, dict):
            continue
        for key in LOOKUP_KEYS:
            value = cfg.get(key)
            if not isinstance(value, str):
                continue
            kind = ref.class_name if ref.class_name in LOOKUP_CLASSES else f"{ref.class_name} (lookup-like)"
            scheme = cw.scheme_of(value)
            where = (
                f"a remote {scheme}:// URL (server-side request at load time)"
                if scheme and scheme != "file"
                else "a file path read from the loading host"
            )
            yield Hit(
                cw.at(doc, f"{ref.pointer}/config/{key}"),
                f"{kind} {key} is {where}; its content becomes part of the model",
                evidence=f"{key}={value!r}",
            )


# --- KG209 -----------------------------------------------------------------------------------------

_DRIVE = re.compile(r"^[A-Za-z]:")
_SEPARATORS = re.compile(r"[\\/]")


def traversal_reason(name: str) -> tuple[str, Severity] | None:
    """Why a layer or asset name could escape a directory when Keras uses it as a path."""
    if name.isidentifier():  # most layer names ("conv2d_3"): no separator, dot, colon or NUL
        return None
    parts = _SEPARATORS.split(name)
    if ".." in parts:
        return "contains a '..' path segment", Severity.HIGH
    if name.startswith(("/", "\\")) or _DRIVE.match(name):
        return "is an absolute path", Severity.HIGH
    if "\x00" in name:
        return "contains a NUL byte", Severity.HIGH
    if "/" in name or "\\" in name:
        return "contains a path separator", Severity.MEDIUM
    return None


def check_kg209(art: Artifact, ctx: RuleContext) -> Iterator[Hit]:
    seen: set[tuple[int, str]] = set()
    for doc, ref in cw.refs(art):
        if ref.kind != "class":
            continue
        name = ref.layer_name
        if name is None or (id(doc), ref.pointer) in seen:
            continue
        seen.add((id(doc), ref.pointer))
        reason = traversal_reason(name)
        if reason:
            yield Hit(
                cw.at(doc, ref.pointer),
                f"{ref.class_name} name {reason[0]}; Keras derives asset and weight paths from names",
                evidence=f"name={name!r}",
                severity=reason[1],
            )


def check_file_network_ops(art: Artifact, ctx: RuleContext) -> Iterator[Hit]:
    if not art.graph_ops:
        return
    graph = Graph.of(art.graph_ops)
    flagged = ((op, file_or_network_use(graph, op)) for op in graph.ops)
    for op, why, count in group_ops((op, why) for op, why in flagged if why is not None):
        consts = graph.const_strings(op)
        evidence = f"node={op.node}" + (f" constant inputs={consts[:3]}" if consts else "")
        yield Hit(op.location, f"graph op {op.op} in {op_scope(op, count)} {why}", evidence)


RULES: tuple[Rule, ...] = (
    Rule(
        id="KG201",
        name="foreign-module-reference",
        title="Config references code outside Keras",
        severity=Severity.CRITICAL,
        cwe="CWE-502",
        cves=("CVE-2025-1550",),
        rationale=(
            "A config object names a module outside keras / keras_hub / keras_cv / keras_nlp (or a Python "
            "built-in under 'builtins'). Keras 3.0-3.8 imported any module named in a config and returned "
            "the attribute, so 'subprocess.run' or 'builtins.exec' ran at load time even with "
            "safe_mode=True; tf-keras still does. Custom model classes are reported by KG205 instead; "
            "this rule covers standard-library modules, functions named where a class belongs, and "
            "functions from other packages. Those are critical unless the policy pins keras_version to "
            "3.9 or later: the Keras installed beside the scanner is not the one every copy will meet."
        ),
        remediation=(
            "Do not load the file. If the reference is your own registered code, allowlist it with a "
            "reason (policy allow.functions / allow.modules), or pin keras_version in the policy, and "
            "load with a Keras >= 3.9 that resolves only registered objects."
        ),
        check=check_kg201,
        example='{"module": "subprocess", "class_name": "run", "config": {...}} in config.layers',
        references=("https://github.com/keras-team/keras/pull/20751",),
    ),
    Rule(
        id="KG202",
        name="non-modeling-api",
        title="Config references a Keras API with side effects",
        severity=Severity.CRITICAL,
        cwe="CWE-502",
        cves=("CVE-2025-8747", "CVE-2025-9906", "GHSA-pwq7-2gvj-vg9v"),
        rationale=(
            "The config names a Keras function that acts outside the model: downloads (get_file, "
            "applications, datasets), loading or saving models, switching safe mode off "
            "(enable_unsafe_deserialization, set_global_attribute), global configuration, file writes "
            "(visualization, save_img). Keras 3.9-3.10 resolved these from a Lambda with attacker "
            "arguments (arbitrary download into site-packages; a second Lambda loading a bytecode "
            "model with safe_mode off). Keras 3.11 denies a short list; other public functions remain "
            "reachable, and keras.src.* spellings reached them directly. TensorFlow I/O and "
            "Python-callback ops named by tf.keras configs (TFOpLambda io.*, TensorFlowOpLayer ReadFile, "
            "Lambda over tensorflow io_ops / script_ops) are reported here too."
        ),
        remediation="Do not load the file. A model config never needs these functions.",
        check=check_kg202,
        example='Lambda function {"class_name": "function", "module": "keras.utils", "config": "get_file"}',
        references=(
            "https://jfrog.com/blog/keras-safe_mode-bypass-vulnerability/",
            "https://github.com/keras-team/keras/pull/21412",
        ),
    ),
    Rule(
        id="KG203",
        name="function-as-layer",
        title="A function is used as a layer",
        severity=Severity.CRITICAL,
        cwe="CWE-502",
        cves=("CVE-2025-1550",),
        rationale=(
            "A layers[] entry resolves to a plain function. Functional.from_config calls whatever each "
            "entry resolves to with the arguments in its inbound_nodes, which is how CVE-2025-1550 runs "
            "subprocess.run with attacker arguments. Keras >= 3.9 rejects non-Operation layers, older "
            "versions and tf-keras do not."
        ),
        remediation="Do not load the file. Legitimate layers are classes.",
        check=check_kg203,
    ),
    Rule(
        id="KG204",
        name="unknown-reference",
        title="Reference not on the allowlist of modelling names",
        severity=Severity.HIGH,
        cwe="CWE-502",
        rationale=(
            "A Keras-family function (a Lambda function, an activation, a loss...) or class is not a "
            "known modelling name of Keras 3.15.1 (activations, losses, metrics, ops, layers, initializers, "
            "regularizers, constraints, optimizers, dtype policies). Every past safe_mode bypass was a "
            "public function nobody had denied yet, so unknown functions are high. Unknown classes are "
            "medium: they may come from another Keras version, and Keras >= 3.11 only builds KerasSaveable "
            "classes."
        ),
        remediation=(
            "Check what the name does. If it is legitimate, allowlist it with a reason (policy "
            "allow.functions); otherwise do not load the file."
        ),
        check=check_kg204,
    ),
    Rule(
        id="KG205",
        name="custom-object",
        title="Custom object to review",
        severity=Severity.MEDIUM,
        cwe="CWE-829",
        rationale=(
            "The model names a custom class or function (registered_name 'package>Name' or a module "
            "outside Keras). Keras runs that code only if the loading application registered it or "
            "passes it in custom_objects, so the file alone cannot run it, but the model's behaviour "
            "depends on code the scanner cannot see. Activations named by a string Keras does not know "
            "are custom objects too (low). Allowlisted names (policy allow.custom_objects, "
            "allow.modules, allow.functions, each with a reason) are reported as info."
        ),
        remediation=(
            "Review the custom code, then allowlist it: [[tool.kerasguard.allow.custom_objects]] "
            'name = "package>Name", reason = "...".'
        ),
        check=check_kg205,
    ),
    Rule(
        id="KG206",
        name="lookup-vocabulary-path",
        title="Lookup layer reads its vocabulary from a path or URL",
        severity=Severity.HIGH,
        cwe="CWE-918",
        cves=("CVE-2025-12058",),
        rationale=(
            "StringLookup, IntegerLookup and TextVectorization (IndexLookup) accept a string vocabulary or "
            "idf_weights and read it with tf.io.gfile at load time: any local file (exfiltrated into the "
            "model's vocabulary and re-saved in assets) or a remote gs://, s3://, hdfs:// or http(s):// URL "
            "(server-side request). Keras < 3.12 did this under safe_mode."
        ),
        remediation="Do not load the file. Legitimate models store the vocabulary inline or in assets/.",
        check=check_kg206,
    ),
    Rule(
        id="KG209",
        name="name-path-traversal",
        title="Layer name looks like a path",
        severity=Severity.MEDIUM,
        cwe="CWE-22",
        cves=("CVE-2026-12479",),
        rationale=(
            "Keras builds asset and weight paths from object names; names containing '..', separators "
            "or absolute paths escaped the asset directory before 3.12.3 / 3.15.0. Keras 3 rejects '/' "
            "in names it creates, so such names are crafted."
        ),
        remediation="Do not load the file with Keras < 3.12.3 / 3.15.0; rename the objects if you own it.",
        check=check_kg209,
    ),
    Rule(
        id="KG208",
        name="savedmodel-file-network-op",
        title="SavedModel graph reads or writes files or uses the network",
        severity=Severity.HIGH,
        cwe="CWE-73",
        rationale=(
            "TensorFlow ops such as ReadFile, WriteFile, MatchingFiles, the file-backed dataset and reader "
            "ops, ImmutableConst (maps a file), PrintV2 to a file, Debug* ops with dump URLs, RPC and "
            "tf.data service ops let a model read host files into its outputs, write files, or talk to "
            "the network when it is loaded or called. The checkpoint ops (SaveV2, RestoreV2, "
            "MergeV2Checkpoints, ShardedFilename, StringJoin...) are part of every SavedModel's saver and "
            "are not flagged where TensorFlow puts them; they are flagged when anything else in the graph "
            "reaches them."
        ),
        remediation=(
            "Do not serve the model with access to sensitive files or the network. Ask the publisher why "
            "the graph needs these ops, or run it in a sandbox without file system or network access."
        ),
        check=check_file_network_ops,
        references=(
            "https://github.com/ZJU-SEC/TensorAbuse",
            "https://www.tensorflow.org/guide/saved_model",
        ),
    ),
)
