"""KG5xx: configs that exhaust memory or hang the loader before any weight is read.

Keras builds every layer from its config (allocating kernels of the declared size) before it reads
weights, and walks the Functional graph from ``inbound_nodes``. Both are attacker-controlled.

KG503-KG504: values of allowlisted classes that Keras interprets when it loads the config. The
allowlist judges class names; these rules judge the values Keras acts on inside them: regular
expressions it matches against layer and variable paths (``DTypePolicyMap``, ``OptimizerMap``,
``Muon``) and numpy dtype strings it passes to ``np.array`` (``__numpy__`` objects). What else in
Keras 3.15.1 interprets config strings, and why it needs no rule, is in docs/decisions.md (32).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from kerasguard.findings import Severity
from kerasguard.formats import config_walk as cw
from kerasguard.formats.artifact import Artifact
from kerasguard.formats.config_values import element_count, numpy_dtype, regex_facts
from kerasguard.formats.config_walk import ObjRef
from kerasguard.formats.keras_graph import estimate
from kerasguard.policy import Limits
from kerasguard.rules.base import Hit, Rule, RuleContext

# Config keys holding one size that Keras turns into an allocation when the layer is built.
UNIT_KEYS = (
    "units",
    "filters",
    "input_dim",
    "output_dim",
    "depth_multiplier",
    "num_heads",
    "key_dim",
    "value_dim",
    "max_tokens",
    "num_tokens",
    "vocabulary_size",
    "output_sequence_length",
    "num_bins",
    "intermediate_dim",
    "hidden_dim",
    "embedding_dim",
    "num_experts",
    "latent_dim",
    "kernel_size",
)
# Config keys holding a shape (a list of ints/None, or nested shapes for multi-input layers).
SHAPE_KEYS = (
    "batch_shape",
    "batch_input_shape",
    "input_shape",
    "build_input_shape",
    "shape",
    "target_shape",
    "output_shape",
    "dims",
)
MAX_SHAPE_NESTING = 4
_UNIT_SET = frozenset(UNIT_KEYS)
_TABLE_SIDES = frozenset({"input_dim", "output_dim"})
_SHAPE_SET = frozenset(SHAPE_KEYS)


def as_size(value: Any) -> int | None:
    """A config number as a non-negative size (floats included: JSON may say 1e12), else None."""
    if value is None:  # the common cases first: a missing key, a plain JSON integer
        return None
    if type(value) is int:
        return value if value >= 0 else None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if math.isinf(value):
            return 2**63 if value > 0 else None
        value = int(value)
    return value if value >= 0 else None


def is_shape(value: Any) -> bool:
    return isinstance(value, list) and all(v is None or as_size(v) is not None for v in value)


def shapes_in(value: Any, depth: int = 0) -> Iterator[list[Any]]:
    """Flat shapes inside ``value`` (a shape, a list of shapes, a dict of shapes)."""
    if depth > MAX_SHAPE_NESTING:
        return
    if is_shape(value):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from shapes_in(item, depth + 1)
    elif isinstance(value, dict):
        for item in value.values():
            yield from shapes_in(item, depth + 1)


def elements(shape: list[Any]) -> int:
    total = 1
    for dim in shape:
        size = as_size(dim)
        if size:
            total *= size
    return total


def _kernel(cfg: dict[str, Any]) -> int:
    ks = cfg.get("kernel_size")
    if isinstance(ks, list):
        return elements(ks)
    return as_size(ks) or 1


def _input_dim(ref: ObjRef) -> int:
    build = ref.node.get("build_config")
    shape = build.get("input_shape") if isinstance(build, dict) else None
    if is_shape(shape) and shape:
        return as_size(shape[-1]) or 1
    return 1


def size_problems(ref: ObjRef, limits: Limits) -> list[str]:
    """Why ``ref``'s config would allocate too much when built (empty: fine)."""
    cfg = ref.config
    if not isinstance(cfg, dict):
        return []
    # Most references (initializers, policies, activations, pooling) hold no size key at all: every
    # check below reads only these keys, so such a config has nothing to report.
    has_units, has_shapes = not _UNIT_SET.isdisjoint(cfg), not _SHAPE_SET.isdisjoint(cfg)
    if not (has_units or has_shapes):
        return []
    out: list[str] = []
    # A table's two sides are judged by their product (below, and the whole-model budget of KG505):
    # Embedding(5_000_000, 1) is a 20 MB wide-and-deep feature table, not an attack.
    paired = as_size(cfg.get("input_dim")) is not None and as_size(cfg.get("output_dim")) is not None
    for key in [k for k in cfg if k in _UNIT_SET and not (paired and k in _TABLE_SIDES)] if has_units else ():
        value = cfg[key]
        sizes = [as_size(v) for v in value] if isinstance(value, list) else [as_size(value)]
        for size in sizes:
            if size is not None and size > limits.max_config_units:
                out.append(f"{key}={size} > max_config_units={limits.max_config_units}")
                break
    for key in [k for k in cfg if k in _SHAPE_SET] if has_shapes else ():
        for shape in shapes_in(cfg[key]):
            count = elements(shape)
            if count > limits.max_config_elements:
                out.append(f"{key} {shape} declares {count} elements > max_config_elements")
                break
    weights = 0
    units = as_size(cfg.get("units")) or as_size(cfg.get("filters"))
    if units:
        weights = max(weights, units * _kernel(cfg) * _input_dim(ref))
    in_dim, out_dim = as_size(cfg.get("input_dim")), as_size(cfg.get("output_dim"))
    if in_dim and out_dim:
        weights = max(weights, in_dim * out_dim)
    if weights > limits.max_config_elements:
        out.append(f"its weights would hold about {weights} elements > max_config_elements")
    return out


def check_kg501(art: Artifact, ctx: RuleContext) -> Iterator[Hit]:
    limits = ctx.policy.limits
    for doc, ref in cw.refs(art):
        if ref.kind != "class":
            continue
        problems = size_problems(ref, limits)
        if problems:
            yield Hit(
                cw.at(doc, ref.pointer),
                f"{ref.class_name} {ref.layer_name or ''!r} declares sizes Keras allocates when it builds "
                f"the layer, before weights are read: {'; '.join(problems)}",
                evidence="; ".join(problems),
            )


# --- KG505 -----------------------------------------------------------------------------------------

WEIGHT_ROLES = frozenset({"keras_weights", "legacy_model", "legacy_weights", "weights_shard"})
# Bytes a config may declare beyond what the weights file stores before it counts as unbacked: real
# files differ by optimizer slots, seed generators and counters, never by hundreds of MiB.
UNBACKED_SLACK = 256 * 2**20
BYTES_PER_ELEMENT = 4  # Keras variables are float32 unless a policy says otherwise


def stored_weight_bytes(art: Artifact) -> int | None:
    """Bytes the artifact's weights files store (None: no weights file was read, e.g. a bare config)."""
    files = [h5 for h5 in art.h5_files if h5.role in WEIGHT_ROLES]
    if not files and not art.npy_arrays:
        return 0 if art.format == "keras" else None
    stored = sum(d.stored_bytes or 0 for h5 in files for d in h5.datasets)
    return stored + sum(a.stored_bytes for a in art.npy_arrays)  # model.weights.npz


def check_kg505(art: Artifact, ctx: RuleContext) -> Iterator[Hit]:
    budget = ctx.policy.limits.max_load_bytes
    for doc in cw.config_documents(art):
        if doc.role != "model_config" and not cw.looks_like_keras_config(doc.value):
            continue
        found = estimate(doc.value)
        if found is None:
            continue
        declared = found.elements * BYTES_PER_ELEMENT
        stored = stored_weight_bytes(art)
        unbacked = stored is not None and declared > 2 * stored + UNBACKED_SLACK
        over = declared > budget
        if not (over or unbacked):
            continue
        biggest = ", ".join(f"{s.class_name} {s.name!r} {s.elements:,}" for s in found.largest())
        parts = [
            f"the config makes Keras allocate about {_mib(declared)} of variables when it builds the model"
        ]
        if over:
            parts.append(f"over the policy's max_load_bytes ({_mib(budget)})")
        if unbacked:
            parts.append(
                f"while its weights store only {_mib(stored or 0)}: a real model's weights hold them all"
            )
        yield Hit(
            cw.at(doc, ""),
            "; ".join(parts) + f" (largest: {biggest})",
            evidence=f"{found.elements} elements, {len(found.layers)} layers sized, {found.unknown} unknown",
            severity=Severity.CRITICAL if over and unbacked else Severity.HIGH,
        )


def _mib(n: int) -> str:
    return f"{n / 2**20:,.1f} MiB"


# --- KG502 -----------------------------------------------------------------------------------------

TensorRef = tuple[str, int]  # (layer name, node index)


@dataclass
class Graph:
    """A Functional config's layers and the node references between them."""

    pointer: str
    layers: dict[str, int] = field(default_factory=dict)  # name -> number of nodes
    duplicates: list[str] = field(default_factory=list)
    edges: dict[TensorRef, list[TensorRef]] = field(default_factory=dict)
    endpoints: list[tuple[str, TensorRef]] = field(default_factory=list)  # (where, ref) input/output


def _history(value: Any) -> TensorRef | None:
    if (
        isinstance(value, list)
        and len(value) >= 3
        and isinstance(value[0], str)
        and as_size(value[1]) is not None
    ):
        return value[0], as_size(value[1]) or 0
    return None


def tensor_refs(value: Any, keras2: bool, budget: int = 10_000) -> list[TensorRef]:
    """(layer, node) references inside one inbound node, input_layers or output_layers."""
    out: list[TensorRef] = []
    stack = [value]
    while stack and budget > 0:
        budget -= 1
        item = stack.pop()
        if isinstance(item, dict):
            if item.get("class_name") == "__keras_tensor__" and isinstance(item.get("config"), dict):
                hist = _history(item["config"].get("keras_history"))
                if hist:
                    out.append(hist)
                continue
            stack.extend(item.values())
        elif isinstance(item, list):
            hist = _history(item) if keras2 else None
            if hist:
                out.append(hist)
                stack.extend(item[3:])  # Keras 2 call kwargs may reference more tensors
            else:
                stack.extend(item)
    return out


def _entry_name(entry: dict[str, Any]) -> str | None:
    name = entry.get("name")
    if isinstance(name, str):
        return name
    cfg = entry.get("config")
    if isinstance(cfg, dict) and isinstance(cfg.get("name"), str):
        return str(cfg["name"])
    return None


def build_graph(ref: ObjRef) -> Graph | None:
    cfg = ref.config
    if not isinstance(cfg, dict) or not isinstance(cfg.get("layers"), list):
        return None
    if "input_layers" not in cfg and "output_layers" not in cfg:
        return None
    graph = Graph(pointer=ref.pointer)
    entries = [e for e in cfg["layers"] if isinstance(e, dict)]
    nodes_of: list[tuple[str, list[Any]]] = []
    for entry in entries:
        name = _entry_name(entry)
        if name is None:
            continue
        inbound = entry.get("inbound_nodes")
        inbound = inbound if isinstance(inbound, list) else []
        if name in graph.layers:
            graph.duplicates.append(name)
        # A nested model owns one node of its own (its inputs to its outputs) before it is called:
        # tf.keras configs reference its first call as node 1.
        cfg_of_entry = entry.get("config")
        own_node = 1 if isinstance(cfg_of_entry, dict) and isinstance(cfg_of_entry.get("layers"), list) else 0
        graph.layers[name] = max(1, len(inbound) + own_node)
        nodes_of.append((name, inbound))
    for name, inbound in nodes_of:
        for index, node in enumerate(inbound):
            graph.edges[(name, index)] = tensor_refs(node, keras2=isinstance(node, list))
    for key in ("input_layers", "output_layers"):
        for target in tensor_refs(cfg.get(key), keras2=True):
            graph.endpoints.append((key, target))
    return graph


def find_cycle(graph: Graph) -> list[TensorRef] | None:
    """A cycle of node references, if any (iterative DFS, white/grey/black)."""
    state: dict[TensorRef, int] = {}
    for start in graph.edges:
        if state.get(start):
            continue
        path: list[TensorRef] = []
        stack: list[tuple[TensorRef, Iterator[TensorRef]]] = [(start, iter(graph.edges.get(start, ())))]
        state[start] = 1
        path.append(start)
        while stack:
            node, children = stack[-1]
            advanced = False
            for child in children:
                if child not in graph.edges:
                    continue
                if state.get(child) == 1:
                    return [*path[path.index(child) :], child]
                if not state.get(child):
                    state[child] = 1
                    path.append(child)
                    stack.append((child, iter(graph.edges.get(child, ()))))
                    advanced = True
                    break
            if not advanced:
                state[node] = 2
                path.pop()
                stack.pop()
    return None


def graph_problems(graph: Graph) -> Iterator[tuple[str, Severity | None]]:
    for name in dict.fromkeys(graph.duplicates):
        yield f"two layers are named {name!r}; node references to it are ambiguous", Severity.MEDIUM
    reported: set[tuple[str, TensorRef]] = set()
    sources = [(f"inbound node {i} of {layer!r}", t) for (layer, i), ts in graph.edges.items() for t in ts]
    for where, target in [*sources, *graph.endpoints]:
        if (where, target) in reported:
            continue
        reported.add((where, target))
        layer, index = target
        if layer not in graph.layers:
            yield f"{where} references layer {layer!r}, which is not in the model", None
        elif index >= graph.layers[layer]:
            yield (
                f"{where} references node {index} of {layer!r}, which has {graph.layers[layer]}",
                Severity.MEDIUM,
            )
    cycle = find_cycle(graph)
    if cycle:
        shown = " -> ".join(f"{name}[{i}]" for name, i in cycle[:12])
        yield f"inbound_nodes form a cycle: {shown}", None


def check_kg502(art: Artifact, ctx: RuleContext) -> Iterator[Hit]:
    for doc, ref in cw.refs(art):
        graph = build_graph(ref)
        if graph is None:
            continue
        for message, severity in graph_problems(graph):
            yield Hit(cw.at(doc, ref.pointer), message, evidence=_graph_evidence(graph), severity=severity)


def _graph_evidence(graph: Graph) -> str:
    return f"{len(graph.layers)} layers, {sum(len(v) for v in graph.edges.values())} node references"


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
        id="KG501",
        name="config-allocation",
        title="Config declares absurd sizes",
        severity=Severity.HIGH,
        cwe="CWE-789",
        rationale=(
            "Keras builds each layer from its config before reading weights: a Dense with 2**40 units, a "
            "huge Embedding or an input shape of billions of elements allocates (or tries to) at load time, "
            "whatever the weights file holds. No Keras release bounds these sizes. Limits: single values "
            "above max_config_units (default 4,194,304) and declared element counts above "
            "max_config_elements (default 2**31, 8 GiB of float32), both in the policy."
        ),
        remediation=(
            "Do not load the file. If the model is legitimately this large, raise the limits in "
            "[tool.kerasguard.limits] and re-scan."
        ),
        check=check_kg501,
    ),
    Rule(
        id="KG502",
        name="functional-graph",
        title="Functional graph is malformed",
        severity=Severity.HIGH,
        cwe="CWE-835",
        rationale=(
            "A Functional config whose inbound_nodes reference layers that do not exist or form a cycle "
            "makes older loaders loop forever waiting for nodes that can never be built (rejected since "
            "Keras 3.12.2 / 3.14.1). Keras never writes such graphs; references to missing node indices "
            "and duplicate layer names are reported at medium."
        ),
        remediation="Do not load the file with Keras < 3.12.2 / 3.14.1; obtain an intact copy.",
        check=check_kg502,
    ),
    Rule(
        id="KG505",
        name="memory-budget",
        title="Config makes Keras allocate more than the weights store or the budget allows",
        severity=Severity.HIGH,
        cwe="CWE-789",
        rationale=(
            "Keras creates every variable of every layer when it builds the model from its config, before "
            "it reads a weight. kerasguard propagates shapes from the Input layers through the whole "
            "Sequential/Functional graph (Dense, Embedding, convolutions, recurrent and attention layers, "
            "lora_rank, nested models...) and counts those variables. A model whose config declares far "
            "more than its weights file stores (two Dense(20000) layers: gigabytes from a 1 KB config) "
            "cannot be real: high, critical when it is also over the policy's max_load_bytes (default "
            "2 GiB). A real model over the budget is high until the budget is raised."
        ),
        remediation=(
            "Do not load the file unless its weights really are that large; then raise "
            "limits.max_load_bytes in the policy and re-scan."
        ),
        check=check_kg505,
    ),
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
