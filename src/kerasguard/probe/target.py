"""The model under probe: one classifier input and output, seen as class probabilities.

A probe gets either the real Keras model (in process: white-box, gradients available) or a
:class:`~kerasguard.sandbox.SandboxedModel` (black-box: ``predict`` only). ``Target`` hides the
difference for the probes that need only predictions (STRIP, membership inference) and says which
probes can run at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from kerasguard.errors import KerasGuardError, ProbeError

PREDICT_BATCH = 512


@dataclass
class Target:
    """A classifier with one input and one ``(batch, classes)`` output."""

    model: Any
    input_shape: tuple[int | None, ...]
    n_classes: int
    in_process: bool
    outputs_probabilities: bool = True  # False: the model outputs logits

    @classmethod
    def of(cls, model: Any) -> Target:
        """Inspect a Keras model or a SandboxedModel; refuse what is not a single-output classifier."""
        if hasattr(model, "input_spec") and hasattr(model, "close") and hasattr(model, "output_spec"):
            ins, outs = model.input_spec, model.output_spec
            if len(ins) != 1 or len(outs) != 1:
                raise ProbeError(
                    f"the probes need one input and one output, the model has {len(ins)} and {len(outs)}"
                )
            in_shape, out_shape, in_process = tuple(ins[0].shape[1:]), tuple(outs[0].shape), False
        elif hasattr(model, "stateless_call") and hasattr(model, "inputs"):
            inputs, outputs = getattr(model, "inputs", None), getattr(model, "outputs", None)
            if not inputs or not outputs or len(inputs) != 1 or len(outputs) != 1:
                raise ProbeError("the probes need a built model with one input and one output")
            in_shape = tuple(inputs[0].shape[1:])
            out_shape, in_process = tuple(outputs[0].shape), True
        else:
            raise ProbeError(
                f"cannot probe a {type(model).__name__}: pass a Keras model or a kerasguard SandboxedModel"
            )
        if len(out_shape) != 2 or out_shape[1] is None or out_shape[1] < 2:
            raise ProbeError(
                f"the probes need a classifier output of shape (batch, classes >= 2), got {out_shape}"
            )
        return cls(model, in_shape, int(out_shape[1]), in_process)

    def raw_predict(self, x: np.ndarray) -> np.ndarray:
        """The model's own outputs, in batches; a Keras error becomes a ProbeError."""
        parts = []
        for start in range(0, len(x), PREDICT_BATCH):
            chunk = x[start : start + PREDICT_BATCH]
            try:
                out = self.model.predict_on_batch(chunk) if self.in_process else self.model.predict(chunk)
            except KerasGuardError:
                raise
            except Exception as exc:
                raise ProbeError(f"the model failed to predict: {type(exc).__name__}: {exc}") from None
            arr = np.asarray(out, dtype=np.float64)
            if arr.shape != (len(chunk), self.n_classes):
                raise ProbeError(
                    f"the model returned shape {arr.shape} for {len(chunk)} samples, "
                    f"expected ({len(chunk)}, {self.n_classes})"
                )
            parts.append(arr)
        return np.concatenate(parts) if parts else np.zeros((0, self.n_classes))

    def calibrate(self, x: np.ndarray) -> None:
        """Decide from real outputs whether the model ends in a softmax (probabilities) or in logits."""
        out = self.raw_predict(x[:256])
        if not np.all(np.isfinite(out)):
            raise ProbeError("the model returns NaN or infinite outputs on the clean data")
        sums = out.sum(axis=1)
        self.outputs_probabilities = bool(
            np.all(out >= -1e-6) and np.all(out <= 1 + 1e-6) and np.allclose(sums, 1.0, atol=1e-3)
        )

    def log_proba(self, x: np.ndarray) -> np.ndarray:
        """Log class probabilities, float64, shape (n, classes)."""
        out = self.raw_predict(x)
        if not np.all(np.isfinite(out)):
            raise ProbeError("the model returned NaN or infinite outputs")
        if self.outputs_probabilities:
            return np.asarray(np.log(np.clip(out, 1e-12, 1.0)), dtype=np.float64)
        shifted = out - out.max(axis=1, keepdims=True)
        return np.asarray(shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True)), dtype=np.float64)

    def proba(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(np.exp(self.log_proba(x)), dtype=np.float64)

    def require_in_process(self, probe: str) -> None:
        if not self.in_process:
            raise ProbeError(
                f"{probe} needs the real model in this process (white-box); got a sandboxed model",
                hint="load it with kerasguard.load_model(..., sandbox=False) (the policy must set "
                "[sandbox] allow_unsafe_in_process = true), or run the STRIP detector only",
            )
