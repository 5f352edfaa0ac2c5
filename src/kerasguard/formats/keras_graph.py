"""Shapes and parameter counts of a Keras model config, propagated through its layer graph.

Keras builds every layer (allocating its variables) when it loads a config, before any weight is read,
and the shapes it builds with come from the graph: the Input shape flows through each layer, whatever
``build_config`` claims. This module follows that flow for the common layers (Dense, Embedding,
convolutions, recurrent layers, attention, normalisation, reshaping and merging layers, nested models)
and counts the elements of the variables each one creates. Layers it does not know, or whose input is
unknown, fall back to the input shape the config records for them; what stays unknown is counted, not
guessed. Facts only: the budget is judged by ``rules/resources.py`` (KG505).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Shape = list[int | None]
# Layers whose output has their input's shape (and whose variables, if any, are per channel).
SAME_SHAPE = frozenset(
    {
        "Activation", "Dropout", "ReLU", "Softmax", "LeakyReLU", "PReLU", "ELU", "GaussianNoise",
        "GaussianDropout", "AlphaDropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D",
        "Rescaling", "Identity", "Masking", "ActivityRegularization", "UnitNormalization",
        "Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum",
    }
)  # fmt: skip

MODEL_CLASSES = frozenset({"Sequential", "Functional", "Model"})
MAX_NESTED_MODELS = 64


@dataclass(frozen=True)
class LayerSize:
    """One layer's variables as Keras would build them."""

    name: str
    class_name: str
    elements: int


@dataclass
class GraphEstimate:
    """Parameter elements of every layer whose size is known, and how many are not."""

    layers: list[LayerSize] = field(default_factory=list)
    unknown: int = 0  # layers that create variables of a size this module cannot tell

    @property
    def elements(self) -> int:
        return sum(layer.elements for layer in self.layers)

    def largest(self, n: int = 3) -> list[LayerSize]:
        return sorted(self.layers, key=lambda layer: -layer.elements)[:n]


def _int(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        value = int(value)
    return value if value >= 0 else None


def _shape(value: Any) -> Shape | None:
    if not isinstance(value, list) or not value or len(value) > 64:
        return None
    if any(isinstance(d, list | dict) for d in value):
        return None
    return [_int(d) for d in value]


def _ints(value: Any, rank: int) -> list[int] | None:
    if isinstance(value, list) and len(value) == rank and all(_int(v) is not None for v in value):
        return [v for v in (_int(x) for x in value) if v is not None]
    single = _int(value)
    return [single] * rank if single is not None else None


def _prod(dims: list[int | None]) -> int | None:
    total = 1
    for d in dims:
        if d is None:
            return None
        total *= d
    return total


# --- one layer ------------------------------------------------------------------------------------

Result = tuple[int | None, Shape | None]  # (parameter elements, output shape)


def _dense(cfg: dict[str, Any], ins: list[Shape | None]) -> Result:
    units, shape = _int(cfg.get("units")), ins[0]
    if units is None or shape is None:
        return None, None
    out: Shape = [*shape[:-1], units]
    inner = shape[-1]
    if inner is None:
        return None, out
    params = inner * units + (units if cfg.get("use_bias", True) else 0)
    rank = _int(cfg.get("lora_rank")) or 0
    return params + rank * (inner + units), out


def _embedding(cfg: dict[str, Any], ins: list[Shape | None]) -> Result:
    vocab, dim = _int(cfg.get("input_dim")), _int(cfg.get("output_dim"))
    if vocab is None or dim is None:
        return None, None
    rank = _int(cfg.get("lora_rank")) or 0
    out = [*ins[0], dim] if ins[0] is not None else None
    return vocab * dim + rank * (vocab + dim), out


def _channels(cfg: dict[str, Any], shape: Shape) -> int | None:
    return shape[1] if cfg.get("data_format") == "channels_first" and len(shape) > 1 else shape[-1]


def _spatial(
    cfg: dict[str, Any], shape: Shape, rank: int, window: list[int], transpose: bool
) -> Shape | None:
    if len(shape) != rank + 2:
        return None
    first = cfg.get("data_format") == "channels_first"
    dims = shape[2:] if first else shape[1:-1]
    strides = _ints(cfg.get("strides", 1), rank) or [1] * rank
    dilation = _ints(cfg.get("dilation_rate", 1), rank) or [1] * rank
    same = cfg.get("padding") == "same"
    out: list[int | None] = []
    for n, k, s, d in zip(dims, window, strides, dilation, strict=True):
        if n is None or s == 0:
            out.append(None)
        elif transpose:
            out.append(n * s)
        elif same:
            out.append(-(-n // s))
        else:
            out.append(max(0, (n - (k - 1) * d - 1) // s + 1))
    return out


def _conv(rank: int, transpose: bool = False) -> Callable[[dict[str, Any], list[Shape | None]], Result]:
    def size(cfg: dict[str, Any], ins: list[Shape | None]) -> Result:
        filters, kernel, shape = _int(cfg.get("filters")), _ints(cfg.get("kernel_size"), rank), ins[0]
        if filters is None or kernel is None or shape is None:
            return None, None
        spatial = _spatial(cfg, shape, rank, kernel, transpose)
        out = None
        if spatial is not None:
            first = cfg.get("data_format") == "channels_first"
            out = [shape[0], filters, *spatial] if first else [shape[0], *spatial, filters]
        channels = _channels(cfg, shape)
        if channels is None:
            return None, out
        groups = _int(cfg.get("groups")) or 1
        params = filters * math.prod(kernel) * (channels // groups if groups <= channels else 1)
        params += filters if cfg.get("use_bias", True) else 0
        rank_ = _int(cfg.get("lora_rank")) or 0
        return params + rank_ * (math.prod(kernel) * channels + filters), out

    return size


def _depthwise(rank: int, separable: bool) -> Callable[[dict[str, Any], list[Shape | None]], Result]:
    def size(cfg: dict[str, Any], ins: list[Shape | None]) -> Result:
        kernel, shape = _ints(cfg.get("kernel_size"), rank), ins[0]
        multiplier = _int(cfg.get("depth_multiplier", 1))
        if kernel is None or shape is None or multiplier is None:
            return None, None
        channels = _channels(cfg, shape)
        spatial = _spatial(cfg, shape, rank, kernel, False)
        filters = _int(cfg.get("filters")) if separable else (channels * multiplier if channels else None)
        out = None
        if spatial is not None and filters is not None:
            first = cfg.get("data_format") == "channels_first"
            out = [shape[0], filters, *spatial] if first else [shape[0], *spatial, filters]
        if channels is None or filters is None:
            return None, out
        params = channels * multiplier * math.prod(kernel)
        if separable:
            params += channels * multiplier * filters
        return params + (filters if cfg.get("use_bias", True) else 0), out

    return size


def _pool(rank: int) -> Callable[[dict[str, Any], list[Shape | None]], Result]:
    def size(cfg: dict[str, Any], ins: list[Shape | None]) -> Result:
        shape, window = ins[0], _ints(cfg.get("pool_size", 2), rank)
        if shape is None or window is None:
            return 0, None
        local = dict(cfg)
        local.setdefault("strides", window)
        if local.get("strides") is None:
            local["strides"] = window
        spatial = _spatial(local, shape, rank, window, False)
        if spatial is None:
            return 0, None
        first = cfg.get("data_format") == "channels_first"
        return 0, [shape[0], shape[1], *spatial] if first else [shape[0], *spatial, shape[-1]]

    return size


def _global_pool(cfg: dict[str, Any], ins: list[Shape | None]) -> Result:
    shape = ins[0]
    if shape is None or cfg.get("keepdims"):
        return 0, None
    return 0, [shape[0], _channels(cfg, shape)]


def _recurrent(gates: int) -> Callable[[dict[str, Any], list[Shape | None]], Result]:
    def size(cfg: dict[str, Any], ins: list[Shape | None]) -> Result:
        units, shape = _int(cfg.get("units")), ins[0]
        if units is None or shape is None:
            return None, None
        out: Shape = [*shape[:-1], units] if cfg.get("return_sequences") else [shape[0], units]
        inner = shape[-1]
        if inner is None:
            return None, out
        biases = 2 if gates == 3 and cfg.get("reset_after", True) else 1
        return gates * units * (inner + units + biases), out

    return size


def _attention(cfg: dict[str, Any], ins: list[Shape | None]) -> Result:
    heads, key_dim = _int(cfg.get("num_heads")), _int(cfg.get("key_dim"))
    value_dim = _int(cfg.get("value_dim")) or key_dim
    query = ins[0]
    if heads is None or key_dim is None or value_dim is None or query is None or query[-1] is None:
        return None, query
    key = ins[1] if len(ins) > 1 and ins[1] is not None else query
    q_in, kv_in = query[-1], key[-1] or query[-1]
    out_dim = _int(cfg.get("output_shape")) or q_in
    params = heads * (q_in * key_dim + kv_in * key_dim + kv_in * value_dim) + heads * value_dim * out_dim
    if cfg.get("use_bias", True):
        params += heads * (2 * key_dim + value_dim) + out_dim
    return params, [*query[:-1], out_dim]


def _grouped_attention(cfg: dict[str, Any], ins: list[Shape | None]) -> Result:
    head_dim = _int(cfg.get("head_dim"))
    q_heads, kv_heads = _int(cfg.get("num_query_heads")), _int(cfg.get("num_key_value_heads"))
    query = ins[0]
    if head_dim is None or q_heads is None or kv_heads is None or query is None or query[-1] is None:
        return None, query
    q_in = query[-1]
    params = head_dim * (2 * q_heads * q_in + 2 * kv_heads * q_in)
    if cfg.get("use_bias", True):
        params += head_dim * (q_heads + 2 * kv_heads) + q_in
    if cfg.get("use_gate"):
        params += q_in * q_heads * head_dim + (q_heads * head_dim if cfg.get("use_bias", True) else 0)
    return params, query


def _stft(cfg: dict[str, Any], ins: list[Shape | None]) -> Result:
    frame = _int(cfg.get("frame_length"))
    if frame is None:
        return None, None
    fft = _int(cfg.get("fft_length")) or (1 << max(frame - 1, 0).bit_length())
    return 2 * max(frame, 1) * (fft // 2 + 1), None


def _per_channel(
    factors: Callable[[dict[str, Any]], tuple[int, int]],
) -> Callable[[dict[str, Any], list[Shape | None]], Result]:
    """Variables of ``a * channels + b`` elements, (a, b) from the config."""

    def size(cfg: dict[str, Any], ins: list[Shape | None]) -> Result:
        shape = ins[0]
        channels = shape[-1] if shape else None
        per, extra = factors(cfg)
        return (per * channels + extra if channels is not None else None), shape

    return size


def _flag(cfg: dict[str, Any], key: str) -> int:
    return 0 if cfg.get(key, True) is False else 1


PER_CHANNEL: dict[str, Callable[[dict[str, Any]], tuple[int, int]]] = {
    # gamma and beta when scale and center, and the moving mean and variance
    "BatchNormalization": lambda cfg: (2 + _flag(cfg, "scale") + _flag(cfg, "center"), 0),
    "LayerNormalization": lambda cfg: (_flag(cfg, "scale") + _flag(cfg, "center"), 0),
    "GroupNormalization": lambda cfg: (_flag(cfg, "scale") + _flag(cfg, "center"), 0),
    # mean, variance and a count, unless the config gives mean and variance as constants
    "Normalization": lambda cfg: (0, 0) if cfg.get("mean") is not None else (2, 1),
    "LayerScale": lambda cfg: (1, 0),  # keras.applications ConvNeXt
}


def _flatten(cfg: dict[str, Any], ins: list[Shape | None]) -> Result:
    shape = ins[0]
    return 0, ([shape[0], _prod(shape[1:])] if shape else None)


def _reshape(cfg: dict[str, Any], ins: list[Shape | None]) -> Result:
    target, shape = _shape(cfg.get("target_shape")), ins[0]
    if target is None or shape is None:
        return 0, None
    return 0, [shape[0], *target]


def _concatenate(cfg: dict[str, Any], ins: list[Shape | None]) -> Result:
    if not ins or any(s is None for s in ins) or cfg.get("axis", -1) != -1:
        return 0, None
    shapes = [s for s in ins if s is not None]
    last = [s[-1] for s in shapes]
    total = None if any(d is None for d in last) else sum(d for d in last if d is not None)
    return 0, [*shapes[0][:-1], total]


SIZERS: dict[str, Callable[[dict[str, Any], list[Shape | None]], Result]] = {
    "Dense": _dense,
    "Embedding": _embedding,
    "Conv1D": _conv(1),
    "Conv2D": _conv(2),
    "Conv3D": _conv(3),
    "Conv1DTranspose": _conv(1, True),
    "Conv2DTranspose": _conv(2, True),
    "Conv3DTranspose": _conv(3, True),
    "DepthwiseConv1D": _depthwise(1, False),
    "DepthwiseConv2D": _depthwise(2, False),
    "SeparableConv1D": _depthwise(1, True),
    "SeparableConv2D": _depthwise(2, True),
    "MaxPooling1D": _pool(1),
    "MaxPooling2D": _pool(2),
    "MaxPooling3D": _pool(3),
    "AveragePooling1D": _pool(1),
    "AveragePooling2D": _pool(2),
    "AveragePooling3D": _pool(3),
    "GlobalAveragePooling1D": _global_pool,
    "GlobalAveragePooling2D": _global_pool,
    "GlobalAveragePooling3D": _global_pool,
    "GlobalMaxPooling1D": _global_pool,
    "GlobalMaxPooling2D": _global_pool,
    "GlobalMaxPooling3D": _global_pool,
    "LSTM": _recurrent(4),
    "GRU": _recurrent(3),
    "SimpleRNN": _recurrent(1),
    "MultiHeadAttention": _attention,
    "GroupedQueryAttention": _grouped_attention,
    "GroupQueryAttention": _grouped_attention,
    "STFTSpectrogram": _stft,
    "Flatten": _flatten,
    "Reshape": _reshape,
    "Concatenate": _concatenate,
    **{name: _per_channel(factors) for name, factors in PER_CHANNEL.items()},
}


# --- the graph ------------------------------------------------------------------------------------


def _class(entry: dict[str, Any]) -> str:
    name = entry.get("class_name")
    return name.rsplit(">", 1)[-1].rsplit(".", 1)[-1] if isinstance(name, str) else ""


def _recorded_input(entry: dict[str, Any]) -> Shape | None:
    """The input shape the config records for a layer (``build_config``), a fallback only."""
    build = entry.get("build_config")
    return _shape(build.get("input_shape")) if isinstance(build, dict) else None


def _name(entry: dict[str, Any]) -> str:
    cfg = entry.get("config")
    name = entry.get("name")
    if not isinstance(name, str) and isinstance(cfg, dict):
        name = cfg.get("name")
    return name if isinstance(name, str) else "?"


class _Estimator:
    def __init__(self) -> None:
        self.result = GraphEstimate()
        self.models = 0

    def model(self, entry: dict[str, Any], given: Shape | None) -> Shape | None:
        """Walk one Sequential/Functional config; returns its output shape when known."""
        self.models += 1
        cfg = entry.get("config")
        if self.models > MAX_NESTED_MODELS or not isinstance(cfg, dict):
            self.result.unknown += 1
            return None
        layers = (
            [e for e in cfg.get("layers", []) if isinstance(e, dict)]
            if isinstance(cfg.get("layers"), list)
            else []
        )
        if "input_layers" in cfg or any("inbound_nodes" in e for e in layers):
            return self._functional(layers, cfg)
        shape = given or _shape(cfg.get("build_input_shape")) or _recorded_input(entry)
        for layer in layers:
            shape = self.layer(layer, [shape])
        return shape

    def _functional(self, layers: list[dict[str, Any]], cfg: dict[str, Any]) -> Shape | None:
        outputs: dict[str, Shape | None] = {}
        for layer in layers:
            nodes = layer.get("inbound_nodes")
            ins: list[Shape | None] = []
            if isinstance(nodes, list) and nodes:
                for ref in _node_refs(nodes[0]):
                    ins.append(outputs.get(ref))
            outputs[_name(layer)] = self.layer(layer, ins or [None])
        ends = _node_refs(cfg.get("output_layers"))
        return outputs.get(ends[0]) if len(ends) == 1 else None

    def layer(self, entry: dict[str, Any], ins: list[Shape | None]) -> Shape | None:
        cls = _class(entry)
        cfg = entry.get("config")
        if not isinstance(cfg, dict):
            return None
        if cls == "InputLayer":
            return _shape(cfg.get("batch_shape")) or _shape(cfg.get("batch_input_shape"))
        if cls in MODEL_CLASSES:
            return self.model(entry, ins[0] if ins else None)
        if not ins or ins[0] is None:
            ins = [_recorded_input(entry), *ins[1:]]
        if cls in ("Bidirectional", "TimeDistributed"):
            return self._wrapper(cls, entry, cfg, ins)
        if cls in SAME_SHAPE:
            return ins[0]
        sizer = SIZERS.get(cls)
        if sizer is None:
            self.result.unknown += 1
            return None
        params, out = sizer(cfg, ins)
        if params is None:
            self.result.unknown += 1
        elif params:
            self.result.layers.append(LayerSize(_name(entry), cls, params))
        return out

    def _wrapper(
        self, cls: str, entry: dict[str, Any], cfg: dict[str, Any], ins: list[Shape | None]
    ) -> Shape | None:
        inner = cfg.get("layer")
        shape = ins[0]
        if not isinstance(inner, dict):
            self.result.unknown += 1
            return None
        if cls == "TimeDistributed":
            sub = self.layer(inner, [[shape[0], *shape[2:]] if shape else None])
            return [shape[0], shape[1], *sub[1:]] if shape and sub else None
        before = len(self.result.layers)
        out = self.layer(inner, [shape])
        self.result.layers.extend(self.result.layers[before:])  # forward and backward copies
        if out is not None and cfg.get("merge_mode", "concat") == "concat" and out[-1] is not None:
            return [*out[:-1], 2 * out[-1]]
        return out


def _node_refs(value: Any, budget: int = 10_000) -> list[str]:
    """Names of the layers an inbound node (or ``output_layers``) reads, in order."""
    out: list[str] = []
    stack = [value]
    while stack and budget > 0:
        budget -= 1
        item = stack.pop()
        if isinstance(item, dict):
            if item.get("class_name") == "__keras_tensor__" and isinstance(item.get("config"), dict):
                history = item["config"].get("keras_history")
                if isinstance(history, list) and history and isinstance(history[0], str):
                    out.append(history[0])
                continue
            stack.extend(reversed(list(item.values())))
        elif isinstance(item, list):
            if len(item) >= 3 and isinstance(item[0], str) and _int(item[1]) is not None:
                out.append(item[0])  # Keras 2: [name, node, tensor, kwargs]
            else:
                stack.extend(reversed(item))
    return out


def estimate(config: Any) -> GraphEstimate | None:
    """Parameter elements of the model ``config`` (a Sequential/Functional document), None otherwise."""
    if not isinstance(config, dict) or _class(config) not in MODEL_CLASSES:
        return None
    estimator = _Estimator()
    estimator.model(config, None)
    return estimator.result
