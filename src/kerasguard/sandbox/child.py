"""The sandboxed child: confine itself, import Keras, load the private copy, answer requests.

Started by :mod:`kerasguard.sandbox.launcher` as ``python -I -c <bootstrap> ROOT READ_FD WRITE_FD``
with a scrubbed environment. It reads its :class:`ChildConfig` from the control pipe, applies
every layer it was asked for (or reports the failure and exits), then serves ``load``, ``predict``,
``layer_input`` (what one named layer receives: features for input detectors), ``serve`` (the
gateway's one round trip per batch: outputs through the compiled predict function, plus the features
and STRIP entropies its detectors need), ``strip_setup``, ``summary``, ``ping`` and ``close``. Its
stdout and stderr are only logs for the parent; the protocol runs on the dedicated pipe descriptors.
"""

from __future__ import annotations

import importlib
import os
import re
import select
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

# Only the standard library and these light modules run before the child confines itself.
from kerasguard.sandbox import confine
from kerasguard.sandbox.config import ChildConfig
from kerasguard.sandbox.ipc import MAX_SQUEEZED, Array, Channel, ChannelClosed, flatten, unflatten

EXIT_CONFINE_FAILED = 3
EXIT_PARENT_GONE = 4
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_MEMORY_MARKERS = ("RESOURCE_EXHAUSTED", "Out of memory", "out of memory", "bad_alloc", "Unable to allocate")


def _trim(text: str, limit: int = 1000) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def error_reply(exc: BaseException, stage: str) -> dict[str, Any]:
    """An exception as a control message; the parent maps ``memory``/``errno`` to a limit.

    Keras re-raises a layer's error as a new exception of the same type with a longer message,
    losing ``errno``; the causes are searched too.
    """
    chain: list[BaseException] = [exc]
    for _ in range(4):
        inner = chain[-1].__cause__ or chain[-1].__context__
        if inner is None:
            break
        chain.append(inner)
    parts = [_trim(str(exc))] + [f"caused by {type(e).__name__}: {_trim(str(e))}" for e in chain[1:]]
    message = _ANSI.sub("", "\n".join(parts))
    codes = [code for e in chain if isinstance(code := getattr(e, "errno", None), int)]
    return {
        "ok": False,
        "error": {
            "stage": stage,
            "type": type(exc).__name__,
            "message": message,
            "errno": codes[0] if codes else None,
            "memory": any(isinstance(e, MemoryError) for e in chain)
            or any(m in message for m in _MEMORY_MARKERS),
        },
    }


def watch_parent(read_fd: int) -> None:
    """Exit as soon as the parent's end of the control pipe closes, even mid-load.

    What the thread calls is bound now, before any model code runs: a payload that replaces
    ``os._exit`` later does not reach it. Code in the same process can still dig into this closure;
    the kernel's parent-death signal, which seccomp keeps set, is the guard that holds.
    """
    exit_now = os._exit
    poller = select.poll()
    poller.register(read_fd, 0)  # only POLLHUP / POLLERR, never consumes data
    wait = poller.poll
    gone = select.POLLHUP | select.POLLERR | select.POLLNVAL

    def run() -> None:
        while True:
            for _, event in wait():
                if event & gone:
                    exit_now(EXIT_PARENT_GONE)

    threading.Thread(target=run, name="kerasguard-watchdog", daemon=True).start()


def resolve(reference: str) -> Any:
    """Import ``module:qualname`` (the caller's own custom objects)."""
    module_name, _, qualname = reference.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


class Server:
    """Holds the loaded model and answers the parent's requests."""

    def __init__(self, config: ChildConfig, keras: Any, custom_objects: dict[str, Any]) -> None:
        self.config = config
        self.keras = keras
        self.custom_objects = custom_objects
        self.model: Any = None
        self._taps: dict[str, Any] = {}
        self._joint: dict[str, Any] = {}  # layer -> a model giving the outputs and that layer's input
        self._strip: tuple[Any, float, float, bool] | None = None  # overlays, lo, hi, outputs are logits

    def handle(
        self, op: str, header: dict[str, Any], arrays: list[Array]
    ) -> tuple[dict[str, Any], list[Array]]:
        handlers: dict[str, Callable[[dict[str, Any], list[Array]], tuple[dict[str, Any], list[Array]]]] = {
            "load": self.load,
            "predict": self.predict,
            "layer_input": self.layer_input,
            "serve": self.serve,
            "strip_setup": self.strip_setup,
            "summary": self.summary,
            "ping": lambda h, a: ({"ok": True}, []),
        }
        if op not in handlers:
            return {
                "ok": False,
                "error": {"stage": op, "type": "ProtocolError", "message": f"unknown op {op!r}"},
            }, []
        if op in ("predict", "layer_input", "serve", "strip_setup", "summary") and self.model is None:
            return {
                "ok": False,
                "error": {"stage": op, "type": "ProtocolError", "message": "no model loaded"},
            }, []
        return handlers[op](header, arrays)

    def load(self, header: dict[str, Any], arrays: list[Array]) -> tuple[dict[str, Any], list[Array]]:
        started = time.perf_counter()
        self.model = self.keras.saving.load_model(
            self.config.model_path,
            custom_objects=self.custom_objects or None,
            compile=self.config.compile,
            safe_mode=self.config.safe_mode,
        )
        return {
            "ok": True,
            "name": str(getattr(self.model, "name", "")),
            "inputs": self._specs("inputs"),
            "outputs": self._specs("outputs"),
            "params": int(self.model.count_params()) if self.model.built else None,
            "load_s": time.perf_counter() - started,
        }, []

    def _specs(self, attr: str) -> list[dict[str, Any]]:
        try:
            tensors = list(getattr(self.model, attr) or [])
        except (AttributeError, ValueError, TypeError):
            return []
        names = [str(getattr(t, "name", "")) for t in tensors]
        if attr == "outputs":  # an output's tensor is named keras_tensor_<a counter>: its layer names it
            try:
                layers = [str(n) for n in self.model.output_names]
            except (AttributeError, ValueError, TypeError):
                layers = []
            if len(layers) == len(names):
                names = layers
        return [
            {
                "name": name,
                "shape": [d if isinstance(d, int) else None for d in t.shape],
                "dtype": str(t.dtype),
            }
            for name, t in zip(names, tensors, strict=True)
        ]

    def predict(self, header: dict[str, Any], arrays: list[Array]) -> tuple[dict[str, Any], list[Array]]:
        x = unflatten(header.get("structure"), arrays)
        batch_size = header.get("batch_size")
        started = time.perf_counter()
        y = self.model.predict(x, batch_size=batch_size if isinstance(batch_size, int) else None, verbose=0)
        compute_s = time.perf_counter() - started
        structure, outputs = flatten(y)
        return {"ok": True, "structure": structure, "compute_s": compute_s}, outputs

    def layer_input(self, header: dict[str, Any], arrays: list[Array]) -> tuple[dict[str, Any], list[Array]]:
        """What one named layer receives (penultimate features for the robustness detectors)."""
        layer = header.get("layer")
        if not isinstance(layer, str) or not 0 < len(layer) <= 200:
            raise ValueError("layer_input needs a layer name")
        tap = self._taps.get(layer)
        if tap is None:
            tap = self.keras.Model(self.model.inputs, self.model.get_layer(layer).input)
            self._taps[layer] = tap
        x = unflatten(header.get("structure"), arrays)
        batch_size = header.get("batch_size")
        y = tap.predict(x, batch_size=batch_size if isinstance(batch_size, int) else None, verbose=0)
        structure, outputs = flatten(y)
        return {"ok": True, "structure": structure}, outputs

    def serve(self, header: dict[str, Any], arrays: list[Array]) -> tuple[dict[str, Any], list[Array]]:
        """One batch for the gateway, in one round trip: the outputs, and on request the input of the
        named layer (OOD features), the outputs on ``squeezed`` copies of the batch (feature squeezing,
        sent after the inputs) and each row's STRIP entropy (``picks``: the overlay indices per row,
        drawn by the parent, sent as the last array). ``predict_on_batch`` runs the compiled predict
        function directly: ``predict`` builds a data adapter, an iterator and callbacks on every call."""
        import numpy as np

        layer = header.get("layer")
        strip = bool(header.get("strip"))
        squeezed = header.get("squeezed", 0)
        if not isinstance(squeezed, int) or isinstance(squeezed, bool) or not 0 <= squeezed <= MAX_SQUEEZED:
            raise ValueError("serve: bad count of squeezed copies")
        body = arrays[:-1] if strip else arrays
        if squeezed and (len(body) != 1 + squeezed or len(self.model.outputs) != 1):
            raise ValueError("squeezed copies need a model with one input and one output")
        inputs, copies = body[: len(body) - squeezed], body[len(body) - squeezed :]
        x = unflatten(header.get("structure"), inputs)
        started = time.perf_counter()
        if isinstance(layer, str) and 0 < len(layer) <= 200:
            joint = self._joint.get(layer)
            if joint is None:
                if len(self.model.outputs) != 1:
                    raise ValueError("features need a model with one output")
                joint = self.keras.Model(
                    self.model.inputs, [self.model.outputs[0], self.model.get_layer(layer).input]
                )
                self._joint[layer] = joint
            y, features = joint.predict_on_batch(x)
            structure, outputs = {"kind": "array"}, [np.asarray(y), np.asarray(features)]
        elif layer is not None:
            raise ValueError("serve: bad layer name")
        else:
            structure, outputs = flatten(self.model.predict_on_batch(x))
        reply: dict[str, Any] = {"ok": True, "structure": structure, "features": layer is not None}
        if squeezed:
            outputs.extend(np.asarray(self.model.predict_on_batch(copy)) for copy in copies)
            reply["squeezed"] = squeezed
        if strip:
            outputs.append(self._strip_entropy(inputs, arrays[-1]))
            reply["strip"] = True
        reply["compute_s"] = time.perf_counter() - started
        return reply, outputs

    def strip_setup(self, header: dict[str, Any], arrays: list[Array]) -> tuple[dict[str, Any], list[Array]]:
        """Keep a STRIP detector's overlays (clean samples) for ``serve``."""
        import numpy as np

        lo, hi = header.get("lo"), header.get("hi")
        if len(arrays) != 1 or not isinstance(lo, int | float) or not isinstance(hi, int | float):
            raise ValueError("strip_setup needs the overlays and lo, hi")
        overlay = np.array(arrays[0], dtype=np.float32)
        self._strip = (overlay, float(lo), float(hi), bool(header.get("logits")))
        return {"ok": True}, []

    def _strip_entropy(self, inputs: list[Array], picks: Array) -> Array:
        import numpy as np

        if self._strip is None or len(inputs) != 1:
            raise ValueError("STRIP needs strip_setup first and a model with one input")
        overlay, lo, hi, logits = self._strip
        x = np.asarray(inputs[0], dtype=np.float32)
        picks = np.asarray(picks)
        if picks.ndim != 2 or len(picks) != len(x) or picks.dtype.kind not in "iu":
            raise ValueError("STRIP picks must be (rows, n_perturb) integers")
        if picks.size and (picks.min() < 0 or picks.max() >= len(overlay)):
            raise ValueError("STRIP picks out of range")
        k = picks.shape[1]
        blends = np.clip(x[:, None] + overlay[picks], lo, hi).reshape(len(x) * k, *x.shape[1:])
        out = np.asarray(self.model.predict_on_batch(blends), dtype=np.float64).reshape(len(x), k, -1)
        if logits:
            out = out - out.max(axis=-1, keepdims=True)
            out = np.exp(out)
            out /= out.sum(axis=-1, keepdims=True)
        entropy = -(out * np.log(np.clip(out, 1e-12, 1.0))).sum(axis=-1)
        return np.asarray(entropy.mean(axis=1), dtype=np.float64)

    def summary(self, header: dict[str, Any], arrays: list[Array]) -> tuple[dict[str, Any], list[Array]]:
        lines: list[str] = []
        self.model.summary(print_fn=lambda line, *args, **kwargs: lines.append(str(line)))
        return {"ok": True, "text": "\n".join(lines)[:1_000_000]}, []


def main(argv: list[str]) -> int:
    read_fd, write_fd = int(argv[0]), int(argv[1])
    channel = Channel(read_fd, write_fd, max_payload=1 << 20)
    header, _ = channel.recv()
    config = ChildConfig.from_dict(header["config"])
    channel.max_payload = config.max_payload
    started = time.perf_counter()
    stage = "confine"
    try:
        applied = confine.early(config)
        os.chdir(config.scratch)
        watch_parent(read_fd)
        stage = "import"
        sys.path[1:1] = [p for p in config.sys_path if p not in sys.path]
        import keras
        import numpy as np

        keras.ops.convert_to_tensor(np.zeros(1, "float32"))  # start the backend before seccomp
        custom = {name: resolve(ref) for name, ref in config.custom_objects.items()}
        stage = "confine"
        applied.update(confine.late(config))
    except BaseException as exc:  # report why, then exit: the parent fails closed on this
        channel.send(error_reply(exc, stage))
        return EXIT_CONFINE_FAILED
    channel.send(
        {
            "ok": True,
            "layers": applied,
            "backend": keras.backend.backend(),
            "keras_version": keras.__version__,
            "startup_s": time.perf_counter() - started,
        }
    )
    server = Server(config, keras, custom)
    while True:
        try:
            request, arrays = channel.recv()
        except ChannelClosed:
            return EXIT_PARENT_GONE
        op = str(request.get("op", ""))
        if op == "close":
            channel.send({"ok": True})
            return 0
        try:
            reply, outputs = server.handle(op, request, arrays)
            channel.send(reply, outputs)
        except ChannelClosed:
            return EXIT_PARENT_GONE
        except Exception as exc:  # a model error (or an unsendable output) is an answer, not a crash
            channel.send(error_reply(exc, op))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
