"""Weight shapes a model config allows, for the layers whose variables are certain (KG408).

Keras reads a weight's data before it compares its shape with the variable it fills, so a dataset
that cannot belong to the architecture is read (and allocated) in full before the load fails. This
module derives, from a model config alone, where each variable of the well-known layers lives
(Keras 3 ``layers/<snake_case_class>[_N]/vars/<i>`` and legacy ``model_weights/<layer>/...``)
and what shape it must have. Unknown layers, quantized or LoRA layers and unknown dimensions are
left open: only what is certain is ever compared.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

Dims = tuple[int | None, ...]
Spec = list[tuple[str, Dims]]

MODEL_CLASSES = frozenset({"Sequential", "Functional", "Model"})
RNN_CELLS = {"LSTM": "lstm_cell", "GRU": "gru_cell", "SimpleRNN": "simple_rnn_cell"}


@dataclass(frozen=True)
class ExpectedVar:
    """One variable of one layer: where Keras stores it and the shape it must have."""

    layer: str  # the layer's name in the config, for messages
    layer_class: str
    var_name: str  # kernel, bias, embeddings...
    shape: Dims  # None = this dimension is not known from the config
    k3_path: str  # "/layers/dense/vars/0" in the Keras 3 weights layout
    owner_path: str  # "/layers/dense/vars": its "name" attribute must equal owner_name
    owner_name: str | None
    legacy_top: str  # the group under /model_weights in a legacy .h5
    legacy_chain: tuple[str, ...]  # sub-layer names that appear in the legacy weight name


_NON_WORD = re.compile(r"\W+")
_WORD_START = re.compile("(.)([A-Z][a-z]+)")
_LOWER_UPPER = re.compile("([a-z])([A-Z])")


def snake_case(name: str) -> str:
    """Keras's naming of saveables in the weights file (``Conv2D`` -> ``conv2d``).

    Class names of ordinary length are cached: every layer of every file asks for the same few.
    """
    return _snake_case(name) if len(name) <= 128 else _snake_case.__wrapped__(name)


@functools.lru_cache(maxsize=1024)
def _snake_case(name: str) -> str:
    name = _NON_WORD.sub("", name)
    name = _WORD_START.sub(r"\1_\2", name)
    return _LOWER_UPPER.sub(r"\1_\2", name).lower()


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _input_shape(entry: dict[str, Any]) -> list[int | None] | None:
    """The layer's input shape: build_config first, else the first inbound tensor's shape."""
    build = entry.get("build_config")
    shape = build.get("input_shape") if isinstance(build, dict) else None
    if shape is None:
        nodes = entry.get("inbound_nodes")
        try:
            tensor = nodes[0]["args"][0]  # type: ignore[index]
            if tensor.get("class_name") == "__keras_tensor__":
                shape = tensor["config"]["shape"]
        except (TypeError, KeyError, IndexError, AttributeError):
            shape = None
    if not isinstance(shape, list) or not shape or any(isinstance(d, list) for d in shape):
        return None  # unknown, or several inputs
    return [_int(d) for d in shape]


def _last(shape: list[int | None] | None) -> int | None:
    return shape[-1] if shape else None


def _plain(cfg: dict[str, Any]) -> bool:
    """False for layer variants whose variables differ (LoRA, quantized, renormalised)."""
    if cfg.get("lora_rank") or cfg.get("quantization_config") or cfg.get("renorm"):
        return False
    dtype = cfg.get("dtype")
    if isinstance(dtype, dict):
        name = str((dtype.get("config") or {}).get("name", ""))
        if "Quantized" in str(dtype.get("class_name", "")) or name.startswith(
            ("int", "float8", "gptq", "awq")
        ):
            return False
    return True


def _dense(cfg: dict[str, Any], shape: list[int | None] | None) -> Spec | None:
    units = _int(cfg.get("units"))
    if units is None:
        return None
    spec: Spec = [("kernel", (_last(shape), units))]
    if cfg.get("use_bias", True):
        spec.append(("bias", (units,)))
    return spec


def _conv(rank: int) -> Callable[[dict[str, Any], list[int | None] | None], Spec | None]:
    def spec(cfg: dict[str, Any], shape: list[int | None] | None) -> Spec | None:
        filters, groups = _int(cfg.get("filters")), _int(cfg.get("groups", 1))
        size = cfg.get("kernel_size")
        sizes = [size] * rank if _int(size) is not None else size
        if filters is None or not groups or not isinstance(sizes, list) or len(sizes) != rank:
            return None
        kernel = [_int(s) for s in sizes]
        if any(k is None for k in kernel):
            return None
        channels = None
        if shape is not None and len(shape) == rank + 2:
            channels = shape[1] if cfg.get("data_format") == "channels_first" else shape[-1]
        per_group = channels // groups if channels is not None and channels % groups == 0 else None
        out: Spec = [("kernel", (*kernel, per_group, filters))]
        if cfg.get("use_bias", True):
            out.append(("bias", (filters,)))
        return out

    return spec


def _embedding(cfg: dict[str, Any], shape: list[int | None] | None) -> Spec | None:
    rows, cols = _int(cfg.get("input_dim")), _int(cfg.get("output_dim"))
    return None if rows is None or cols is None else [("embeddings", (rows, cols))]


def _batch_norm(cfg: dict[str, Any], shape: list[int | None] | None) -> Spec | None:
    axis = cfg.get("axis", -1)
    if isinstance(axis, list) and len(axis) == 1:
        axis = axis[0]
    if not isinstance(axis, int) or isinstance(axis, bool):
        return None
    size = None
    if shape is not None and -len(shape) <= axis < len(shape):
        size = shape[axis]
    spec: Spec = []
    if cfg.get("scale", True):
        spec.append(("gamma", (size,)))
    if cfg.get("center", True):
        spec.append(("beta", (size,)))
    return [*spec, ("moving_mean", (size,)), ("moving_variance", (size,))]


def _rnn(gates: int) -> Callable[[dict[str, Any], list[int | None] | None], Spec | None]:
    def spec(cfg: dict[str, Any], shape: list[int | None] | None) -> Spec | None:
        units = _int(cfg.get("units"))
        if units is None:
            return None
        width = gates * units
        out: Spec = [("kernel", (_last(shape), width)), ("recurrent_kernel", (units, width))]
        if cfg.get("use_bias", True):
            out.append(("bias", (2, width) if gates == 3 and cfg.get("reset_after", True) else (width,)))
        return out

    return spec


LAYER_SPECS: dict[str, Callable[[dict[str, Any], list[int | None] | None], Spec | None]] = {
    "Dense": _dense,
    "Conv1D": _conv(1),
    "Conv2D": _conv(2),
    "Conv3D": _conv(3),
    "Embedding": _embedding,
    "BatchNormalization": _batch_norm,
    "LSTM": _rnn(4),
    "GRU": _rnn(3),
    "SimpleRNN": _rnn(1),
}


def _entry_parts(entry: Any) -> tuple[str, dict[str, Any], str] | None:
    if not isinstance(entry, dict):
        return None
    cls, cfg = entry.get("class_name"), entry.get("config")
    if not isinstance(cls, str) or not isinstance(cfg, dict):
        return None
    name = cfg.get("name", entry.get("name"))
    return cls, cfg, name if isinstance(name, str) else ""


def _name_of(entry: Any) -> str:
    parts = _entry_parts(entry)
    return parts[2] if parts else ""


def _layer_vars(
    entry: dict[str, Any], path: str, top: str, chain: tuple[str, ...], shape: list[int | None] | None
) -> Iterator[ExpectedVar]:
    """Variables of one layer whose Keras 3 group is ``path``; models and wrappers recurse."""
    parts = _entry_parts(entry)
    if parts is None:
        return
    cls, cfg, name = parts
    if cls in MODEL_CLASSES:
        yield from _model_vars(entry, path + "/", top, chain)
    elif cls == "Bidirectional":
        forward, backward = cfg.get("layer"), cfg.get("backward_layer")
        forward_name = _name_of(forward)
        yield from _wrapped(
            forward, f"{path}/forward_layer", top, (*chain, forward_name), shape, forward_name
        )
        if backward is None:  # Keras derives it from the forward layer; its name is not in the config
            yield from _wrapped(forward, f"{path}/backward_layer", top, chain, shape, None)
        else:
            backward_name = _name_of(backward)
            yield from _wrapped(
                backward, f"{path}/backward_layer", top, (*chain, backward_name), shape, backward_name
            )
    elif cls == "TimeDistributed":
        inner = cfg.get("layer")
        inner_name = _name_of(inner)
        inner_shape = [shape[0], *shape[2:]] if shape is not None and len(shape) >= 3 else None
        yield from _wrapped(inner, f"{path}/layer", top, (*chain, inner_name), inner_shape, inner_name)
    else:
        yield from _wrapped(entry, path, top, chain, shape, name)


def _wrapped(
    entry: Any,
    path: str,
    top: str,
    chain: tuple[str, ...],
    shape: list[int | None] | None,
    owner_name: str | None,
) -> Iterator[ExpectedVar]:
    """A plain layer's variables (RNN layers keep theirs in a ``cell`` sub-object)."""
    parts = _entry_parts(entry)
    if parts is None:
        return
    cls, cfg, name = parts
    builder = LAYER_SPECS.get(cls)
    if builder is None or not _plain(cfg):
        return
    spec = builder(cfg, shape)
    if spec is None:
        return
    vars_path = f"{path}/cell/vars" if cls in RNN_CELLS else f"{path}/vars"
    for index, (var_name, dims) in enumerate(spec):
        yield ExpectedVar(
            layer=name,
            layer_class=cls,
            var_name=var_name,
            shape=dims,
            k3_path=f"{vars_path}/{index}",
            owner_path=f"{path}/vars",
            owner_name=owner_name,
            legacy_top=top,
            legacy_chain=chain,
        )


def _model_vars(
    model: dict[str, Any], prefix: str, top: str | None, chain: tuple[str, ...]
) -> Iterator[ExpectedVar]:
    """Layers of a Sequential/Functional model, named as Keras names them in the weights file."""
    parts = _entry_parts(model)
    if parts is None:
        return
    cls, cfg, _name = parts
    layers = cfg.get("layers")
    if cls not in MODEL_CLASSES or not isinstance(layers, list):
        return
    used: dict[str, int] = {}
    for entry in layers:
        entry_parts = _entry_parts(entry)
        if entry_parts is None:
            return  # a layer list we cannot read: naming anything after it would be guesswork
        layer_cls, _cfg, layer_name = entry_parts
        if cls == "Sequential" and layer_cls == "InputLayer":
            continue  # Sequential.layers hides its InputLayer, so it takes no name
        base = snake_case(layer_cls)
        if base in used:
            used[base] += 1
            base = f"{base}_{used[base]}"
        else:
            used[base] = 0
        if layer_cls not in LAYER_SPECS and layer_cls not in _CONTAINER_CLASSES:
            continue  # no certain variables (Activation, Add, ...): named above, nothing to derive
        # legacy .h5: a top-level layer owns /model_weights/<name>; nested layers add their names
        layer_top, layer_chain = (layer_name, ()) if top is None else (top, (*chain, layer_name))
        yield from _layer_vars(entry, f"{prefix}layers/{base}", layer_top, layer_chain, _input_shape(entry))


# Classes _layer_vars looks inside (models and wrappers); any other class without a LAYER_SPECS entry
# yields nothing there.
_CONTAINER_CLASSES = MODEL_CLASSES | {"Bidirectional", "TimeDistributed"}


def expected_vars(config: Any) -> list[ExpectedVar]:
    """Every certain variable of a model config (``config.json`` or a legacy ``model_config``)."""
    if not isinstance(config, dict):
        return []
    return list(_model_vars(config, "/", None, ()))


def shape_fits(expected: Dims, actual: tuple[int, ...]) -> bool:
    """Same rank and every known dimension equal."""
    return len(expected) == len(actual) and all(
        e is None or e == a for e, a in zip(expected, actual, strict=True)
    )


def expected_elements(expected: Dims, actual: tuple[int, ...]) -> int | None:
    """Elements the variable holds; unknown dimensions take the actual size when ranks agree."""
    total = 1
    for i, dim in enumerate(expected):
        if dim is None:
            if len(expected) != len(actual):
                return None
            dim = actual[i]
        total *= dim
    return total
