"""One classifier interface over JAX, TensorFlow, PyTorch and the sandbox: predict, and PGD steps.

The attacks and the training loop talk only to a :class:`Classifier`:

- ``JaxClassifier`` (the default Keras backend) runs the whole PGD loop as one jit-compiled XLA
  program over ``model.stateless_call`` (``jax.grad`` inside ``lax.fori_loop``);
- ``TapeClassifier`` is the generic path for TensorFlow (``tf.GradientTape``) and PyTorch
  (``torch.autograd``): the same loss through ``keras.ops``, one gradient per step;
- ``PredictOnlyClassifier`` wraps anything that only predicts (a
  :class:`~kerasguard.sandbox.SandboxedModel`, the NumPy backend): only the gradient-free Square
  Attack and plain evaluation work there, and asking it for a gradient says so.

The step arithmetic (signed or normalised step, projection onto the epsilon ball, clipping to the
valid range) is written once against an array namespace, so NumPy and ``jax.numpy`` run the same code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np

from kerasguard.robustness.errors import NoGradientError, RobustnessError

Norm = Literal["linf", "l2"]
LossMode = Literal["ce", "kl"]
OutputKind = Literal["probabilities", "logits"]
_TINY = 1e-12

GRADIENT_FREE_HINT = (
    "use the gradient-free Square Attack (--attack square / attack='square'), or load the model"
    " in process (--in-process) on a backend with gradients (jax, tensorflow, torch)"
)
# for a model already in process whose gradients are missing, masked or broken
IN_PROCESS_GRADIENT_HINT = (
    "use the gradient-free Square Attack (--attack square / attack='square'); a gradient-masking layer"
    " hides the model's weakness from gradient attacks, it does not remove it"
)


@dataclass(frozen=True)
class StepConfig:
    """One PGD run: epsilon ball, step, steps, loss direction."""

    eps: float
    step_size: float
    steps: int
    norm: Norm
    targeted: bool = False
    random_start: bool = True
    mode: LossMode = "ce"


class Classifier(Protocol):
    """What the attacks need from a model."""

    backend: str
    output_kind: OutputKind
    input_shape: tuple[int | None, ...]
    n_classes: int
    has_gradients: bool

    def predict(self, x: np.ndarray) -> np.ndarray: ...

    def refresh(self) -> None: ...

    def pgd(
        self,
        x: np.ndarray,
        labels: np.ndarray,
        config: StepConfig,
        bounds: tuple[float, float],
        seed: int,
        reference: np.ndarray | None = None,
    ) -> np.ndarray: ...

    def check_gradients(self, x: np.ndarray, labels: np.ndarray) -> None: ...


# --- the arithmetic shared by every backend (xp is numpy or jax.numpy) ----------------------------


def _per_example(xp: Any, values: Any) -> Any:
    """Reduce over every axis but the batch axis, keeping dims for broadcasting."""
    axes = tuple(range(1, values.ndim))
    return xp.sqrt(xp.sum(values * values, axis=axes, keepdims=True))


def project(xp: Any, x: Any, x0: Any, eps: Any, norm: Norm, lo: float, hi: float) -> Any:
    """Back into the epsilon ball around ``x0``, then into the valid input range."""
    delta = x - x0
    if norm == "linf":
        delta = xp.clip(delta, -eps, eps)
    else:
        length = _per_example(xp, delta)
        delta = delta * xp.minimum(1.0, eps / xp.maximum(length, _TINY))
    return xp.clip(x0 + delta, lo, hi)


def ascend(xp: Any, x: Any, grad: Any, step: Any, norm: Norm) -> Any:
    """One steepest-ascent step of the given norm."""
    if norm == "linf":
        return x + step * xp.sign(grad)
    return x + step * grad / xp.maximum(_per_example(xp, grad), _TINY)


def log_probabilities(ops: Any, outputs: Any, kind: OutputKind) -> Any:
    """Log-probabilities from a classifier's outputs (softmax probabilities or logits)."""
    if kind == "logits":
        return ops.log_softmax(outputs, axis=-1)
    return ops.log(ops.clip(outputs, _TINY, 1.0))


def attack_loss(
    ops: Any, outputs: Any, onehot: Any, reference: Any, kind: OutputKind, mode: LossMode, sign: float
) -> Any:
    """The summed loss the attack climbs: cross-entropy (``sign`` -1 for targeted) or TRADES' KL."""
    logp = log_probabilities(ops, outputs, kind)
    if mode == "kl":
        ref_logp = ops.log(ops.clip(reference, _TINY, 1.0))
        return ops.sum(reference * (ref_logp - logp))
    return sign * -ops.sum(onehot * logp)


def softmax_rows(outputs: np.ndarray, kind: OutputKind) -> np.ndarray:
    """Probabilities as NumPy rows, whatever the model outputs."""
    if kind == "probabilities":
        return outputs.astype(np.float64)
    shifted = outputs - outputs.max(axis=1, keepdims=True)
    e = np.exp(shifted.astype(np.float64))
    return np.asarray(e / e.sum(axis=1, keepdims=True))


def _onehot(labels: np.ndarray, n: int) -> np.ndarray:
    return np.asarray(np.eye(n, dtype=np.float32)[labels])


def pgd_random_start(
    xp: Any,
    x0: Any,
    eps: Any,
    norm: Norm,
    mode: LossMode,
    normal: Callable[[tuple[int, ...]], Any],
    uniform: Callable[[Any, Any, tuple[int, ...]], Any],
) -> Any:
    """PGD's random start, the same on every engine: ``normal(shape)`` and ``uniform(lo, hi, shape)``
    draw float32 from the engine's generator (a NumPy ``Generator``, or JAX keys inside a jit)."""
    if mode == "kl":
        return x0 + 0.001 * normal(x0.shape)
    if norm == "linf":
        return x0 + uniform(-eps, eps, x0.shape)
    direction = normal(x0.shape)
    direction = direction / xp.maximum(_per_example(xp, direction), _TINY)
    radius = uniform(0, 1, (x0.shape[0],) + (1,) * (x0.ndim - 1))
    return x0 + eps * radius * direction


def _random_start_np(rng: np.random.Generator, x: np.ndarray, config: StepConfig) -> np.ndarray:
    start = pgd_random_start(
        np,
        x,
        config.eps,
        config.norm,
        config.mode,
        lambda shape: rng.standard_normal(shape).astype(np.float32),
        lambda lo, hi, shape: rng.uniform(lo, hi, shape).astype(np.float32),
    )
    return np.asarray(start)


# --- model introspection ---------------------------------------------------------------------------


def keras_output_kind(model: Any) -> OutputKind | None:
    """'probabilities' when the model ends in a softmax, 'logits' when it ends linear, else None."""
    layer = model.layers[-1] if getattr(model, "layers", None) else None
    if layer is None:
        return None
    kind = type(layer).__name__
    if kind == "Softmax":
        return "probabilities"
    activation = getattr(layer, "activation", None)
    name = getattr(activation, "__name__", "")
    if name == "softmax":
        return "probabilities"
    if name == "linear" and kind in ("Dense", "EinsumDense"):
        return "logits"
    return None


def infer_output_kind(outputs: np.ndarray) -> OutputKind:
    """Rows of non-negative numbers summing to one are probabilities; anything else logits."""
    sums = outputs.sum(axis=1)
    looks_like_probabilities = bool(np.all(outputs >= -1e-6) and np.allclose(sums, 1.0, atol=1e-3))
    return "probabilities" if looks_like_probabilities else "logits"


def _single_output_shape(model: Any) -> tuple[tuple[int | None, ...], int]:
    try:
        inputs = list(model.inputs)
        outputs = list(model.outputs)
    except (AttributeError, ValueError) as exc:
        raise RobustnessError(f"the model has no defined inputs/outputs (is it built?): {exc}") from None
    if len(inputs) != 1 or len(outputs) != 1:
        raise RobustnessError(
            f"robustness tools need a classifier with one input and one output; this model has"
            f" {len(inputs)} input(s) and {len(outputs)} output(s)"
        )
    out_shape = tuple(outputs[0].shape)
    if len(out_shape) != 2 or not isinstance(out_shape[1], int) or out_shape[1] < 2:
        raise RobustnessError(f"the model's output {out_shape} is not (batch, classes) with >= 2 classes")
    return tuple(d if isinstance(d, int) else None for d in inputs[0].shape), int(out_shape[1])


# --- JAX: the whole attack as one compiled program -------------------------------------------------


class JaxClassifier:
    """A Keras model on the JAX backend; PGD runs as one jit-compiled XLA program per shape."""

    backend = "jax"
    has_gradients = True

    def __init__(self, model: Any) -> None:
        import jax

        self.model = model
        self.input_shape, self.n_classes = _single_output_shape(model)
        self.output_kind: OutputKind = keras_output_kind(model) or "probabilities"
        self._kind_known = keras_output_kind(model) is not None
        self._gradients_ok = False
        self.refresh()

        def forward(tv: Any, ntv: Any, x: Any) -> Any:
            return model.stateless_call(tv, ntv, x, training=False)[0]

        self.forward = forward
        self._forward_jit = jax.jit(forward)
        self._pgd_jit = jax.jit(
            self._pgd_program, static_argnames=("steps", "norm", "sign", "mode", "random_start", "kind")
        )

    def refresh(self) -> None:
        """Take the model's current weights (after training)."""
        self._tv = [v.value for v in self.model.trainable_variables]
        self._ntv = [v.value for v in self.model.non_trainable_variables]

    def use_state(self, trainable: list[Any], non_trainable: list[Any]) -> None:
        """Attack with these weights (the training loop's current state) instead of the model's."""
        self._tv, self._ntv = trainable, non_trainable

    def predict(self, x: np.ndarray) -> np.ndarray:
        out = np.asarray(self._forward_jit(self._tv, self._ntv, x))
        if not self._kind_known:
            self.output_kind, self._kind_known = infer_output_kind(out), True
        return out

    def _pgd_program(
        self,
        tv: Any,
        ntv: Any,
        x0: Any,
        onehot: Any,
        reference: Any,
        key: Any,
        eps: Any,
        step_size: Any,
        lo: Any,
        hi: Any,
        *,
        steps: int,
        norm: Norm,
        sign: float,
        mode: LossMode,
        random_start: bool,
        kind: OutputKind,
    ) -> Any:
        import jax
        import jax.numpy as jnp
        from keras import ops

        def loss(xa: Any) -> Any:
            return attack_loss(ops, self.forward(tv, ntv, xa), onehot, reference, kind, mode, sign)

        grad = jax.grad(loss)
        x = x0
        if random_start:
            # one key per draw as before: the L2 start splits it (direction, radius), the others use it
            k_normal, k_uniform = jax.random.split(key) if norm == "l2" and mode != "kl" else (key, key)
            x = pgd_random_start(
                jnp,
                x0,
                eps,
                norm,
                mode,
                lambda shape: jax.random.normal(k_normal, shape, x0.dtype),
                lambda a, b, shape: jax.random.uniform(k_uniform, shape, x0.dtype, a, b),
            )
            x = project(jnp, x, x0, eps, norm, lo, hi)

        def body(_: Any, xa: Any) -> Any:
            return project(jnp, ascend(jnp, xa, grad(xa), step_size, norm), x0, eps, norm, lo, hi)

        return jax.lax.fori_loop(0, steps, body, x)

    def pgd(
        self,
        x: np.ndarray,
        labels: np.ndarray,
        config: StepConfig,
        bounds: tuple[float, float],
        seed: int,
        reference: np.ndarray | None = None,
    ) -> np.ndarray:
        import jax

        if not self._kind_known:
            self.predict(x[:1])
        ref = np.zeros((x.shape[0], self.n_classes), np.float32) if reference is None else reference
        out = self._pgd_jit(
            self._tv,
            self._ntv,
            x,
            _onehot(labels, self.n_classes),
            ref.astype(np.float32),
            jax.random.PRNGKey(seed),
            np.float32(config.eps),
            np.float32(config.step_size),
            np.float32(bounds[0]),
            np.float32(bounds[1]),
            steps=config.steps,
            norm=config.norm,
            sign=-1.0 if config.targeted else 1.0,
            mode=config.mode,
            random_start=config.random_start,
            kind=self.output_kind,
        )
        return np.asarray(out)

    def _input_gradient(self, tv: Any, ntv: Any, x: Any, onehot: Any, *, kind: OutputKind) -> Any:
        import jax
        from keras import ops

        def loss(xa: Any) -> Any:
            return attack_loss(ops, self.forward(tv, ntv, xa), onehot, None, kind, "ce", 1.0)

        return jax.grad(loss)(x)

    def check_gradients(self, x: np.ndarray, labels: np.ndarray) -> None:
        import jax

        if self._gradients_ok:
            return
        if not self._kind_known:
            self.predict(x[:1])
        try:
            program = jax.jit(self._input_gradient, static_argnames=("kind",))
            grad = np.asarray(
                program(self._tv, self._ntv, x, _onehot(labels, self.n_classes), kind=self.output_kind)
            )
        except Exception as exc:
            raise NoGradientError(
                f"the model cannot be differentiated on the jax backend ({type(exc).__name__}: "
                f"{str(exc)[:300]})",
                hint=IN_PROCESS_GRADIENT_HINT,
            ) from None
        _judge_gradient(grad, "jax")
        self._gradients_ok = True


def _judge_gradient(grad: np.ndarray | None, backend: str) -> None:
    if grad is None:
        raise NoGradientError(
            f"the model's output does not depend differentiably on its input on the {backend} backend",
            hint=IN_PROCESS_GRADIENT_HINT,
        )
    if not np.all(np.isfinite(grad)):
        raise NoGradientError(
            f"the model's input gradients are NaN or infinite on the {backend} backend",
            hint=IN_PROCESS_GRADIENT_HINT,
        )
    if not np.any(grad):
        raise NoGradientError(
            f"the model's input gradients are zero everywhere on the {backend} backend (a non-differentiable"
            " or gradient-masking layer?)",
            hint=IN_PROCESS_GRADIENT_HINT,
        )


# --- TensorFlow and PyTorch: one gradient per step ----------------------------------------------------


class TapeClassifier:
    """A Keras model on TensorFlow or PyTorch: the gradient of the same keras.ops loss, step by step."""

    has_gradients = True

    def __init__(self, model: Any, backend: str) -> None:
        self.model = model
        self.backend = backend
        self.input_shape, self.n_classes = _single_output_shape(model)
        self.output_kind: OutputKind = keras_output_kind(model) or "probabilities"
        self._kind_known = keras_output_kind(model) is not None
        self._gradient: Callable[[np.ndarray, np.ndarray, np.ndarray, float, LossMode], np.ndarray | None]
        self._gradient = self._tf_gradient if backend == "tensorflow" else self._torch_gradient

    def refresh(self) -> None:
        """Nothing to take: the model is called directly."""

    def predict(self, x: np.ndarray) -> np.ndarray:
        from keras import ops

        out = np.asarray(ops.convert_to_numpy(self.model(ops.convert_to_tensor(x), training=False)))
        if not self._kind_known:
            self.output_kind, self._kind_known = infer_output_kind(out), True
        return out

    def _tf_gradient(
        self, x: np.ndarray, onehot: np.ndarray, reference: np.ndarray, sign: float, mode: LossMode
    ) -> np.ndarray | None:
        import tensorflow as tf
        from keras import ops

        xt = tf.convert_to_tensor(x)
        with tf.GradientTape() as tape:
            tape.watch(xt)
            loss = attack_loss(
                ops, self.model(xt, training=False), onehot, reference, self.output_kind, mode, sign
            )
        grad = tape.gradient(loss, xt)
        return None if grad is None else np.asarray(grad.numpy())

    def _torch_gradient(
        self, x: np.ndarray, onehot: np.ndarray, reference: np.ndarray, sign: float, mode: LossMode
    ) -> np.ndarray | None:
        import torch
        from keras import ops

        xt = torch.tensor(x, requires_grad=True)
        loss = attack_loss(
            ops,
            self.model(xt, training=False),
            torch.from_numpy(onehot),
            torch.from_numpy(reference),
            self.output_kind,
            mode,
            sign,
        )
        try:
            loss.backward()
        except RuntimeError:  # "element 0 of tensors does not require grad": no path to the input
            return None
        return None if xt.grad is None else np.asarray(xt.grad.detach().cpu().numpy())

    def pgd(
        self,
        x: np.ndarray,
        labels: np.ndarray,
        config: StepConfig,
        bounds: tuple[float, float],
        seed: int,
        reference: np.ndarray | None = None,
    ) -> np.ndarray:
        if not self._kind_known:
            self.predict(x[:1])
        lo, hi = bounds
        onehot = _onehot(labels, self.n_classes)
        ref = np.zeros_like(onehot) if reference is None else reference.astype(np.float32)
        sign = -1.0 if config.targeted else 1.0
        eps, step = np.float32(config.eps), np.float32(config.step_size)
        xa = x
        if config.random_start:
            xa = project(
                np, _random_start_np(np.random.default_rng(seed), x, config), x, eps, config.norm, lo, hi
            )
        for _ in range(config.steps):
            grad = self._gradient(xa.astype(np.float32), onehot, ref, sign, config.mode)
            if grad is None:
                _judge_gradient(None, self.backend)
                raise AssertionError("unreachable")
            xa = project(np, ascend(np, xa, grad, step, config.norm), x, eps, config.norm, lo, hi)
        return np.asarray(xa, dtype=np.float32)

    def check_gradients(self, x: np.ndarray, labels: np.ndarray) -> None:
        if not self._kind_known:
            self.predict(x[:1])
        onehot = _onehot(labels, self.n_classes)
        try:
            grad = self._gradient(x, onehot, np.zeros_like(onehot), 1.0, "ce")
        except Exception as exc:
            raise NoGradientError(
                f"the model cannot be differentiated on the {self.backend} backend ({type(exc).__name__}:"
                f" {str(exc)[:300]})",
                hint=IN_PROCESS_GRADIENT_HINT,
            ) from None
        _judge_gradient(grad, self.backend)


# --- predict only: the sandbox, the NumPy backend ------------------------------------------------------


class PredictOnlyClassifier:
    """A model that only answers predictions (sandboxed, or a backend without gradients)."""

    has_gradients = False

    def __init__(
        self,
        predict: Callable[[np.ndarray], np.ndarray],
        input_shape: tuple[int | None, ...],
        n_classes: int,
        backend: str,
        output_kind: OutputKind | None = None,
    ) -> None:
        self._predict = predict
        self.input_shape = input_shape
        self.n_classes = n_classes
        self.backend = backend
        self.output_kind: OutputKind = output_kind or "probabilities"
        self._kind_known = output_kind is not None

    def refresh(self) -> None:
        """Nothing to take."""

    def predict(self, x: np.ndarray) -> np.ndarray:
        out = np.asarray(self._predict(x))
        if out.ndim != 2 or out.shape[0] != x.shape[0] or out.shape[1] != self.n_classes:
            raise RobustnessError(f"the model answered shape {out.shape} for {x.shape[0]} inputs")
        if not np.all(np.isfinite(out)):
            raise RobustnessError("the model's outputs contain NaN or infinity")
        if not self._kind_known:
            self.output_kind, self._kind_known = infer_output_kind(out), True
        return out.astype(np.float32)

    def pgd(
        self,
        x: np.ndarray,
        labels: np.ndarray,
        config: StepConfig,
        bounds: tuple[float, float],
        seed: int,
        reference: np.ndarray | None = None,
    ) -> np.ndarray:
        self.check_gradients(x, labels)
        raise AssertionError("unreachable")

    def check_gradients(self, x: np.ndarray, labels: np.ndarray) -> None:
        where = (
            "a sandboxed model (only predictions cross the sandbox)"
            if self.backend == "sandbox"
            else (f"the {self.backend} backend")
        )
        raise NoGradientError(
            f"white-box attacks need input gradients, which {where} does not give", hint=GRADIENT_FREE_HINT
        )


def as_classifier(model: Any) -> Classifier:
    """Wrap a Keras model (in process) or a SandboxedModel for the attacks."""
    if hasattr(model, "pgd") and hasattr(model, "check_gradients"):
        return model  # type: ignore[no-any-return]
    from kerasguard.sandbox.model import SandboxedModel

    if isinstance(model, SandboxedModel):
        return _sandboxed(model)
    try:
        import keras
    except ImportError:
        raise RobustnessError(
            "robustness tools need the keras extra: pip install 'kerasguard[keras]'"
        ) from None
    if not isinstance(model, keras.Model):
        raise RobustnessError(f"expected a Keras model or a SandboxedModel, got {type(model).__name__}")
    backend = keras.backend.backend()
    if backend == "jax":
        return JaxClassifier(model)
    if backend in ("tensorflow", "torch"):
        return TapeClassifier(model, backend)
    shape, n = _single_output_shape(model)

    def predict(x: np.ndarray) -> np.ndarray:
        return np.asarray(model.predict(x, verbose=0))

    return PredictOnlyClassifier(predict, shape, n, backend, keras_output_kind(model))


def _sandboxed(model: Any) -> Classifier:
    if len(model.input_spec) != 1 or len(model.output_spec) != 1:
        raise RobustnessError(
            f"robustness tools need a classifier with one input and one output; this model has"
            f" {len(model.input_spec)} input(s) and {len(model.output_spec)} output(s)"
        )
    out = model.output_spec[0].shape
    if len(out) != 2 or not isinstance(out[1], int) or out[1] < 2:
        raise RobustnessError(f"the model's output {out} is not (batch, classes) with >= 2 classes")

    def predict(x: np.ndarray) -> np.ndarray:
        return np.asarray(model.predict(x))

    return PredictOnlyClassifier(predict, tuple(model.input_spec[0].shape), int(out[1]), "sandbox")


def predict_batched(classifier: Classifier, x: np.ndarray, batch_size: int) -> np.ndarray:
    """Outputs for all of ``x``, in fixed-size batches (the last one padded: one compiled shape)."""
    parts = []
    for start in range(0, len(x), batch_size):
        chunk = x[start : start + batch_size]
        parts.append(classifier.predict(pad_batch(chunk, batch_size))[: len(chunk)])
    return np.concatenate(parts) if parts else np.zeros((0, classifier.n_classes), np.float32)


def pad_batch(x: np.ndarray, size: int) -> np.ndarray:
    """Repeat the last example so every batch has the same shape (no recompilation)."""
    if len(x) >= size:
        return x
    return np.concatenate([x, np.repeat(x[-1:], size - len(x), axis=0)])
