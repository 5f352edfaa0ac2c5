"""SandboxedModel: a loaded model that lives in the confined child; the caller only sees arrays."""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from kerasguard.errors import ModelError, SandboxError
from kerasguard.sandbox.ipc import MAX_SQUEEZED, check_dtype, flatten, unflatten
from kerasguard.sandbox.launcher import ChildProcess

log = logging.getLogger("kerasguard.sandbox")


class Served(NamedTuple):
    """What one gateway batch brings back from the child (``SandboxedModel.serve``)."""

    outputs: Any
    features: Any = None  # the named layer's input (None: not asked)
    entropy: Any = None  # the STRIP entropy per row (None: not asked)
    squeezed: tuple[Any, ...] = ()  # the outputs on each squeezed copy, in the order sent


@dataclass(frozen=True)
class TensorSpec:
    """Name, shape (None for a free dimension) and dtype of one model input or output."""

    name: str
    shape: tuple[int | None, ...]
    dtype: str

    @classmethod
    def parse(cls, raw: Any) -> TensorSpec:
        """Validate one spec sent by the child."""
        if not isinstance(raw, dict):
            raise SandboxError("bad tensor spec from the sandboxed child", limit="protocol")
        name, shape, dtype = raw.get("name"), raw.get("shape"), raw.get("dtype")
        if (
            not isinstance(name, str)
            or not isinstance(dtype, str)
            or not isinstance(shape, list)
            or len(shape) > 64
            or not all(
                d is None or (isinstance(d, int) and not isinstance(d, bool) and d >= 0) for d in shape
            )
        ):
            raise SandboxError("bad tensor spec from the sandboxed child", limit="protocol")
        return cls(name[:200], tuple(shape), dtype[:40])


class SandboxedModel:
    """A Keras model loaded and run in a confined child process.

    ``predict`` sends the inputs as ``.npy`` bytes and returns NumPy arrays; nothing is pickled in
    either direction. A limit broken during a call kills the child and raises
    :class:`~kerasguard.errors.SandboxError` naming it. Use as a context manager or call
    :meth:`close`; a model that is garbage-collected unclosed has its child killed.
    """

    def __init__(
        self, child: ChildProcess, load_reply: dict[str, Any], on_close: Callable[[], None] | None = None
    ):
        self._child = child
        self.name = str(load_reply.get("name", ""))[:200]
        self.input_spec = tuple(TensorSpec.parse(s) for s in _spec_list(load_reply.get("inputs")))
        self.output_spec = tuple(TensorSpec.parse(s) for s in _spec_list(load_reply.get("outputs")))
        params = load_reply.get("params")
        self.params = params if isinstance(params, int) and not isinstance(params, bool) else None
        self.event: dict[str, Any] | None = None  # the load event, set by the loader
        self._finalizer = weakref.finalize(self, _close_quietly, child, on_close)

    @property
    def layers(self) -> dict[str, str]:
        """The isolation layers the child applied (name -> detail)."""
        return dict(self._child.stats.layers)

    @property
    def pid(self) -> int:
        return self._child.stats.pid

    @property
    def closed(self) -> bool:
        return not self._finalizer.alive

    def _checked_inputs(self, x: Any) -> tuple[Any, list[Any]]:
        """(structure, arrays) of an input the child may be sent: open model, numeric dtypes, shapes."""
        if self.closed:
            raise SandboxError("this SandboxedModel is closed", limit=None)
        structure, arrays = flatten(x)
        for arr in arrays:
            check_dtype(arr.dtype)
        self._check_shapes(arrays)
        return structure, arrays

    def predict(self, x: Any, *, batch_size: int | None = None) -> Any:
        """Run ``model.predict`` in the child; ``x`` is an array, a list of arrays or a dict of arrays."""
        structure, arrays = self._checked_inputs(x)
        header: dict[str, Any] = {"structure": structure}
        if batch_size is not None:
            header["batch_size"] = int(batch_size)
        reply, outputs = self._child.request("predict", header, [np.ascontiguousarray(a) for a in arrays])
        return unflatten(reply.get("structure"), outputs)

    def layer_input(self, x: Any, layer: str, *, batch_size: int | None = None) -> Any:
        """The input of the named layer for ``x``, computed in the child (features for input detectors)."""
        structure, arrays = self._checked_inputs(x)
        header: dict[str, Any] = {"structure": structure, "layer": str(layer)[:200]}
        if batch_size is not None:
            header["batch_size"] = int(batch_size)
        reply, outputs = self._child.request("layer_input", header, [np.ascontiguousarray(a) for a in arrays])
        return unflatten(reply.get("structure"), outputs)

    def serve(
        self, x: Any, *, layer: str | None = None, strip_picks: Any = None, squeezed: Sequence[Any] = ()
    ) -> Served:
        """One gateway batch in one round trip: the outputs, and on request the named layer's input,
        the STRIP entropy per row (``strip_picks``: rows x n_perturb overlay indices, after
        :meth:`strip_setup`) and the outputs on each of ``squeezed`` (copies of a one-input batch, for
        feature squeezing). Runs the child's compiled predict function (``predict_on_batch``); the
        squeezed copies have the batch's shape, so they need no other compiled size."""
        structure, arrays = self._checked_inputs(x)
        header: dict[str, Any] = {"structure": structure}
        if layer is not None:
            header["layer"] = str(layer)[:200]
        payload = [np.ascontiguousarray(a) for a in arrays]
        if squeezed:
            if len(arrays) != 1 or len(squeezed) > MAX_SQUEEZED:
                raise ModelError(f"squeezed copies need a model with one input (at most {MAX_SQUEEZED})")
            copies = [np.ascontiguousarray(c) for c in squeezed]
            for copy in copies:
                check_dtype(copy.dtype)
                if copy.shape != arrays[0].shape:
                    raise ModelError(f"a squeezed copy has shape {copy.shape}, the batch {arrays[0].shape}")
            header["squeezed"] = len(copies)
            payload.extend(copies)
        if strip_picks is not None:
            header["strip"] = True
            payload.append(np.ascontiguousarray(strip_picks, dtype=np.int32))
        reply, outputs = self._child.request("serve", header, payload)
        entropy = None
        if strip_picks is not None:
            if reply.get("strip") is not True or not outputs:
                raise SandboxError("the sandboxed child sent no STRIP entropies", limit="protocol")
            entropy, outputs = outputs[-1], outputs[:-1]
        squeezed_outputs: tuple[Any, ...] = ()
        if squeezed:
            if reply.get("squeezed") != len(squeezed) or len(outputs) <= len(squeezed):
                raise SandboxError("the sandboxed child sent no outputs on squeezed copies", limit="protocol")
            squeezed_outputs, outputs = tuple(outputs[-len(squeezed) :]), outputs[: -len(squeezed)]
        if layer is not None:
            if reply.get("features") is not True or len(outputs) != 2:
                raise SandboxError("the sandboxed child sent no features", limit="protocol")
            return Served(outputs[0], outputs[1], entropy, squeezed_outputs)
        return Served(unflatten(reply.get("structure"), outputs), None, entropy, squeezed_outputs)

    def strip_setup(self, overlay: Any, lo: float, hi: float, *, logits: bool) -> None:
        """Give the child a STRIP detector's overlays (clean samples) for :meth:`serve`."""
        if self.closed:
            raise SandboxError("this SandboxedModel is closed", limit=None)
        header = {"lo": float(lo), "hi": float(hi), "logits": bool(logits)}
        self._child.request("strip_setup", header, [np.ascontiguousarray(overlay, dtype=np.float32)])

    def _check_shapes(self, arrays: list[Any]) -> None:
        """Refuse inputs that cannot fit the model before they reach it (a failed call can leave
        Keras's predict function broken for later calls)."""
        specs = self.input_spec
        if not specs or len(arrays) != len(specs):
            if specs and len(arrays) != len(specs):
                raise ModelError(
                    f"the model takes {len(specs)} input(s), got {len(arrays)}", error_type="ValueError"
                )
            return
        for i, (arr, spec) in enumerate(zip(arrays, specs, strict=True)):
            fits = arr.ndim == len(spec.shape) and all(
                want is None or want == got for want, got in zip(spec.shape, arr.shape, strict=True)
            )
            if not fits:
                expected = "(" + ", ".join("None" if d is None else str(d) for d in spec.shape) + ")"
                raise ModelError(
                    f"input {i} ({spec.name}) has shape {tuple(arr.shape)}, the model expects {expected}",
                    error_type="ValueError",
                )

    def summary(self) -> str:
        """The model summary as text (computed in the child)."""
        if self.closed:
            raise SandboxError("this SandboxedModel is closed", limit=None)
        reply, _ = self._child.request("summary")
        text = reply.get("text")
        return text if isinstance(text, str) else ""

    def ping(self) -> None:
        """One empty round trip (measures the IPC cost)."""
        self._child.request("ping")

    def close(self) -> None:
        """Stop the child and delete its scratch directory and the private model copy."""
        self._finalizer()

    def __enter__(self) -> SandboxedModel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"pid {self.pid}"
        return f"<SandboxedModel {self.name!r} ({state})>"


def _spec_list(raw: Any) -> list[Any]:
    if not isinstance(raw, list) or len(raw) > 1000:
        raise SandboxError("bad tensor specs from the sandboxed child", limit="protocol")
    return raw


def _close_quietly(child: ChildProcess, on_close: Callable[[], None] | None) -> None:
    try:
        child.close()
    finally:
        if on_close is not None:
            on_close()
