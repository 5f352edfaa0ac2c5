"""Trigger reverse-engineering in the style of Neural Cleanse (Wang et al., IEEE S&P 2019).

For every output class ``k`` the search optimises a mask ``m`` (one value per pixel, shared by the
channels; one per feature for flat inputs) and a pattern ``p`` so that ``(1 - m) * x + m * p`` sends clean
inputs ``x`` to ``k`` while ``|m|_1`` stays small. A class that a backdoor makes reachable needs a far
smaller mask than the others; :mod:`kerasguard.probe.backdoor` turns the norms into anomaly indexes.

All classes are optimised together, step by step. On JAX one Adam step for every class is one
jit-compiled function: ``jax.value_and_grad`` over ``model.stateless_call``, vmapped over chunks of
``class_chunk`` classes, the chunks unrolled (measured on XLA's CPU backend: a ``lax.scan``/``lax.map``
loop around the model ran ~10x slower than unrolled calls; big vmapped batches make convolutions ~2-3x
slower per sample but compile once). The state stays on the device between steps.
On TensorFlow and PyTorch the same loss (written with ``keras.ops``) is differentiated with the
backend's own autodiff.
The cost of the mask norm follows Neural Cleanse's schedule: raised while the attack succeeds, lowered
while it does not; the smallest mask that reached the success threshold is kept.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from kerasguard.errors import ProbeError
from kerasguard.probe.target import Target


@dataclass(frozen=True)
class SearchConfig:
    """Knobs of the trigger search; the defaults suit small image classifiers (docs/probe.md: costs)."""

    epochs: int = 40
    steps_per_epoch: int = 10
    batch_size: int = 32
    learning_rate: float = 0.1
    init_cost: float = 1e-3
    cost_multiplier: float = 1.5
    patience: int = 3
    attack_success_threshold: float = 0.99
    max_samples: int = 1000
    # JAX: classes batched (vmap) into one pass, the chunks unrolled in the step; 0 = all classes for flat
    # inputs (dense layers batch well), 1 for images (XLA's CPU convolutions do not)
    class_chunk: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("epochs", "steps_per_epoch", "batch_size", "patience", "max_samples"):
            if int(getattr(self, name)) < 1:
                raise ProbeError(f"trigger search: {name} must be at least 1")
        if self.class_chunk < 0:
            raise ProbeError("trigger search: class_chunk must not be negative")
        if not 0 < self.attack_success_threshold <= 1:
            raise ProbeError("trigger search: attack_success_threshold must be in (0, 1]")
        if not (self.learning_rate > 0 and self.init_cost > 0 and self.cost_multiplier > 1):
            raise ProbeError("trigger search: learning_rate and init_cost must be > 0, cost_multiplier > 1")


@dataclass(frozen=True)
class Trigger:
    """The smallest trigger found for one class."""

    target: int
    mask: np.ndarray  # values in [0, 1]; shape of the input, channels folded to 1
    pattern: np.ndarray  # shape of the input, inside the data's value range
    l1: float  # sum of the mask
    search_success: float  # share of search samples sent to ``target`` in the kept epoch
    reached_threshold: bool

    def apply(self, x: np.ndarray) -> np.ndarray:
        return np.asarray((1.0 - self.mask) * x + self.mask * self.pattern, dtype=np.float32)


def mask_shape(input_shape: tuple[int, ...]) -> tuple[int, ...]:
    """Images (H, W, C) get one mask value per pixel; other inputs one per feature."""
    if len(input_shape) == 3:
        return (*input_shape[:-1], 1)
    return input_shape


_ADAM_B1, _ADAM_B2, _ADAM_EPS = 0.5, 0.9, 1e-8  # Neural Cleanse's Adam settings
_STRIP_HINT = "the trigger search is white-box; the STRIP detector (--strip-only) needs only predictions"


def _make_class_loss(
    forward: Callable[[Any], Any], n_classes: int, lo: float, hi: float, probabilities: bool
) -> Callable[..., Any]:
    """The Neural Cleanse loss of one class's candidate, written with keras.ops (any backend)."""
    from keras import ops

    def loss(m_raw: Any, p_raw: Any, xb: Any, cost: Any, k: Any) -> Any:
        mask = (ops.tanh(m_raw) + 1.0) / 2.0
        pattern = lo + (ops.tanh(p_raw) + 1.0) / 2.0 * (hi - lo)
        out = forward((1.0 - mask) * xb + mask * pattern)
        logp = ops.log(ops.clip(out, 1e-12, 1.0)) if probabilities else ops.log_softmax(out, axis=-1)
        target = ops.one_hot(k, n_classes)
        ce = -ops.mean(ops.sum(logp * target, axis=-1))
        l1 = ops.sum(ops.abs(mask))
        hits = ops.mean(ops.cast(ops.equal(ops.argmax(logp, axis=-1), k), "float32"))
        return ce + cost * l1, (ce, l1, hits)

    return loss


def search_triggers(target: Target, x: np.ndarray, config: SearchConfig | None = None) -> list[Trigger]:
    """Run the search for every class on clean inputs ``x``; needs the in-process model."""
    import keras

    config = config or SearchConfig()
    target.require_in_process("the trigger search")
    rng = np.random.default_rng(config.seed)
    if len(x) > config.max_samples:
        x = x[rng.choice(len(x), config.max_samples, replace=False)]
    lo, hi = float(x.min()), float(x.max())
    if not hi > lo:
        raise ProbeError("the clean data is constant: the trigger search needs a value range")
    shape = tuple(int(d) for d in x.shape[1:])
    k = target.n_classes
    init_mask = np.arctanh((rng.random((k, *mask_shape(shape))) * 2 - 1) * 0.9).astype(np.float32)
    init_pattern = np.arctanh((rng.random((k, *shape)) * 2 - 1) * 0.9).astype(np.float32)
    backend = keras.backend.backend()
    if backend == "jax":
        chunk = config.class_chunk or (1 if len(shape) >= 3 else k)
        runner: _Runner = _JaxRunner(target, k, lo, hi, chunk)
    elif backend in ("tensorflow", "torch"):
        runner = _EagerRunner(target, k, lo, hi, backend)
    else:
        raise ProbeError(f"the trigger search needs the jax, tensorflow or torch backend, not {backend}")
    params = [init_mask, init_pattern]
    runner.check_gradients(params, x[: min(len(x), config.batch_size)])
    batch = min(config.batch_size, len(x))
    costs = np.full(k, config.init_cost, dtype=np.float32)
    up = np.zeros(k, dtype=np.int64)
    down = np.zeros(k, dtype=np.int64)
    best_l1 = np.full(k, np.inf)
    best_mask = np.zeros((k, *mask_shape(shape)), dtype=np.float32)
    best_pattern = np.zeros((k, *shape), dtype=np.float32)
    best_success = np.zeros(k)
    state = runner.init_state(params)
    success = l1 = np.zeros(k)
    for _ in range(config.epochs):
        index = np.stack([rng.choice(len(x), batch, replace=False) for _ in range(config.steps_per_epoch)])
        state, success, l1 = runner.epoch(state, x[index], costs, config.learning_rate)
        mask, pattern = runner.current(state, lo, hi)
        reached = success >= config.attack_success_threshold
        improved = reached & (l1 < best_l1)
        best_l1 = np.where(improved, l1, best_l1)
        best_success = np.where(improved, success, best_success)
        best_mask[improved] = mask[improved]
        best_pattern[improved] = pattern[improved]
        up = np.where(reached, up + 1, 0)
        down = np.where(reached, 0, down + 1)
        raise_cost = up >= config.patience
        lower_cost = down >= config.patience
        costs = np.where(raise_cost, costs * config.cost_multiplier, costs)
        costs = np.where(lower_cost, costs / config.cost_multiplier**1.5, costs).astype(np.float32)
        up[raise_cost] = 0
        down[lower_cost] = 0
    mask, pattern = runner.current(state, lo, hi)
    triggers = []
    for c in range(k):
        found = bool(np.isfinite(best_l1[c]))
        triggers.append(
            Trigger(
                target=c,
                mask=best_mask[c] if found else mask[c],
                pattern=best_pattern[c] if found else pattern[c],
                l1=float(best_l1[c]) if found else float(l1[c]),
                search_success=float(best_success[c]) if found else float(success[c]),
                reached_threshold=found,
            )
        )
    return triggers


class _Runner:
    """One backend's way to run epochs of the search; state stays on the device between epochs."""

    def init_state(self, params: list[np.ndarray]) -> Any:
        raise NotImplementedError

    def check_gradients(self, params: list[np.ndarray], xb: np.ndarray) -> None:
        raise NotImplementedError

    def epoch(self, state: Any, xs: np.ndarray, costs: np.ndarray, lr: float) -> tuple[Any, Any, Any]:
        raise NotImplementedError

    def current(self, state: Any, lo: float, hi: float) -> tuple[np.ndarray, np.ndarray]:
        m_raw, p_raw = self.params_of(state)
        mask = (np.tanh(m_raw) + 1.0) / 2.0
        pattern = lo + (np.tanh(p_raw) + 1.0) / 2.0 * (hi - lo)
        return mask.astype(np.float32), pattern.astype(np.float32)

    def params_of(self, state: Any) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError


def _check_grads(grads: list[np.ndarray]) -> None:
    if any(g is None for g in grads):
        raise ProbeError(
            "the model has no usable gradients with respect to its input (the gradient is undefined)",
            hint=_STRIP_HINT,
        )
    arrays = [np.asarray(g, dtype=np.float64) for g in grads]
    if not all(np.all(np.isfinite(a)) for a in arrays):
        raise ProbeError(
            "the model has no usable gradients with respect to its input (NaN or infinite gradients)",
            hint=_STRIP_HINT,
        )
    if not np.any(arrays[0]) and not np.any(arrays[1]):
        raise ProbeError(
            "the model has no usable gradients with respect to its input (they are all zero: a "
            "non-differentiable step such as argmax, rounding or stop_gradient)",
            hint=_STRIP_HINT,
        )


class _JaxRunner(_Runner):
    """JAX: an epoch is one jit-compiled scan of Adam steps over ``model.stateless_call``."""

    def __init__(self, target: Target, k: int, lo: float, hi: float, class_chunk: int) -> None:
        import jax
        import jax.numpy as jnp

        model = target.model
        self._trainable = [v.value for v in model.trainable_variables]
        self._non_trainable = [v.value for v in model.non_trainable_variables]
        probabilities = target.outputs_probabilities

        def grads_all(params: Any, xb: Any, costs: Any, tv: Any, ntv: Any) -> Any:
            """Per class: gradients of its own loss, its mask norm and its attack success on ``xb``."""

            def forward(batch: Any) -> Any:
                out, _ = model.stateless_call(tv, ntv, batch, training=False)
                return out

            value_and_grad = jax.value_and_grad(
                _make_class_loss(forward, k, lo, hi, probabilities), argnums=(0, 1), has_aux=True
            )
            batched = jax.vmap(value_and_grad, in_axes=(0, 0, None, 0, 0))
            gm, gp, l1, hits = [], [], [], []
            for start in range(0, k, class_chunk):
                stop = min(k, start + class_chunk)
                (_, (_, norm, hit)), (g_mask, g_pattern) = batched(
                    params[0][start:stop],
                    params[1][start:stop],
                    xb,
                    costs[start:stop],
                    jnp.arange(start, stop),
                )
                gm.append(g_mask)
                gp.append(g_pattern)
                l1.append(norm)
                hits.append(hit)
            return [jnp.concatenate(gm), jnp.concatenate(gp)], jnp.concatenate(l1), jnp.concatenate(hits)

        def step(state: Any, xb: Any, costs: Any, lr: Any, tv: Any, ntv: Any) -> Any:
            params, m1, m2, t = state
            grads, l1, hits = grads_all(params, xb, costs, tv, ntv)
            t = t + 1
            m1 = [_ADAM_B1 * a + (1 - _ADAM_B1) * g for a, g in zip(m1, grads, strict=True)]
            m2 = [_ADAM_B2 * a + (1 - _ADAM_B2) * g * g for a, g in zip(m2, grads, strict=True)]
            c1, c2 = 1 - _ADAM_B1**t, 1 - _ADAM_B2**t
            params = [
                p - lr * (a / c1) / (jnp.sqrt(b / c2) + _ADAM_EPS)
                for p, a, b in zip(params, m1, m2, strict=True)
            ]
            return (params, m1, m2, t), l1, hits

        def one_class_grads(m_raw: Any, p_raw: Any, xb: Any, cost: Any, cls: int) -> Any:
            """Eager (not compiled): the gradient check before the search costs no compilation."""

            def forward(batch: Any) -> Any:
                return model.stateless_call(self._trainable, self._non_trainable, batch, training=False)[0]

            loss = _make_class_loss(forward, k, lo, hi, probabilities)
            return jax.grad(lambda m, p: loss(m, p, xb, cost, cls)[0], argnums=(0, 1))(m_raw, p_raw)

        self._one_class_grads = one_class_grads
        self._step = jax.jit(step)
        self._jnp = jnp

    def init_state(self, params: list[np.ndarray]) -> Any:
        jnp = self._jnp
        ps = [jnp.asarray(p) for p in params]
        return (ps, [jnp.zeros_like(p) for p in ps], [jnp.zeros_like(p) for p in ps], jnp.float32(0.0))

    def check_gradients(self, params: list[np.ndarray], xb: np.ndarray) -> None:
        try:
            grads = self._one_class_grads(params[0][0], params[1][0], xb, np.float32(0.0), 0)
        except ProbeError:
            raise
        except Exception as exc:
            raise ProbeError(
                f"the model has no usable gradients with respect to its input: {type(exc).__name__}: {exc}",
                hint=_STRIP_HINT,
            ) from None
        _check_grads([np.asarray(g) for g in grads])

    def epoch(self, state: Any, xs: np.ndarray, costs: np.ndarray, lr: float) -> tuple[Any, Any, Any]:
        jnp = self._jnp
        costs_d, lr_d = jnp.asarray(costs), jnp.float32(lr)
        hits_sum: Any = 0.0
        l1: Any = None
        for xb in jnp.asarray(xs):
            state, l1, hits = self._step(state, xb, costs_d, lr_d, self._trainable, self._non_trainable)
            hits_sum = hits_sum + hits
        return state, np.asarray(hits_sum, dtype=np.float64) / len(xs), np.asarray(l1, dtype=np.float64)

    def params_of(self, state: Any) -> tuple[np.ndarray, np.ndarray]:
        return np.asarray(state[0][0]), np.asarray(state[0][1])


class _EagerRunner(_Runner):
    """TensorFlow and PyTorch: the same loss, the backend's autodiff, Adam in NumPy."""

    def __init__(self, target: Target, k: int, lo: float, hi: float, backend: str) -> None:
        model = target.model

        def forward(batch: Any) -> Any:
            return model(batch, training=False)

        self._loss = _make_class_loss(forward, k, lo, hi, target.outputs_probabilities)
        self._backend = backend
        self._k = k

    def _total(self, ps: list[Any], xb: Any, costs: np.ndarray) -> tuple[Any, list[Any]]:
        total: Any = 0.0
        aux = []
        for c in range(self._k):
            loss, (_, l1, hits) = self._loss(ps[0][c], ps[1][c], xb, float(costs[c]), c)
            total = total + loss
            aux.append((l1, hits))
        return total, aux

    def _value_and_grad(self, params: list[np.ndarray], xb: np.ndarray, costs: np.ndarray) -> Any:
        from keras import ops

        if self._backend == "tensorflow":
            import tensorflow as tf

            ps = [tf.convert_to_tensor(p) for p in params]
            with tf.GradientTape() as tape:
                for p in ps:
                    tape.watch(p)
                loss, aux = self._total(ps, tf.convert_to_tensor(xb), costs)
            grads = tape.gradient(loss, ps)
        else:
            import torch

            ps = [torch.tensor(p, requires_grad=True) for p in params]
            loss, aux = self._total(ps, ops.convert_to_tensor(xb), costs)
            grads = list(torch.autograd.grad(loss, ps, allow_unused=True))
        l1 = np.array([float(ops.convert_to_numpy(a[0])) for a in aux])
        hits = np.array([float(ops.convert_to_numpy(a[1])) for a in aux])
        to_np = [None if g is None else ops.convert_to_numpy(g) for g in grads]
        return (l1, hits), to_np

    def init_state(self, params: list[np.ndarray]) -> Any:
        return (
            [p.copy() for p in params],
            [np.zeros_like(p) for p in params],
            [np.zeros_like(p) for p in params],
            0,
        )

    def check_gradients(self, params: list[np.ndarray], xb: np.ndarray) -> None:
        try:
            _, grads = self._value_and_grad(params, xb, np.zeros(params[0].shape[0], dtype=np.float32))
        except ProbeError:
            raise
        except Exception as exc:
            raise ProbeError(
                f"the model has no usable gradients with respect to its input: {type(exc).__name__}: {exc}",
                hint=_STRIP_HINT,
            ) from None
        _check_grads(grads)

    def epoch(self, state: Any, xs: np.ndarray, costs: np.ndarray, lr: float) -> tuple[Any, Any, Any]:
        params, m1, m2, t = state
        hits_sum = np.zeros(params[0].shape[0])
        l1 = hits_sum
        for xb in xs:
            (l1, hits), grads = self._value_and_grad(params, xb, costs)
            t += 1
            c1, c2 = 1 - _ADAM_B1**t, 1 - _ADAM_B2**t
            for i, g in enumerate(grads):
                g = np.zeros_like(params[i]) if g is None else g
                m1[i] = _ADAM_B1 * m1[i] + (1 - _ADAM_B1) * g
                m2[i] = _ADAM_B2 * m2[i] + (1 - _ADAM_B2) * g * g
                params[i] = (params[i] - lr * (m1[i] / c1) / (np.sqrt(m2[i] / c2) + _ADAM_EPS)).astype(
                    np.float32
                )
            hits_sum = hits_sum + hits
        return (params, m1, m2, t), hits_sum / len(xs), np.asarray(l1, dtype=np.float64)

    def params_of(self, state: Any) -> tuple[np.ndarray, np.ndarray]:
        return state[0][0], state[0][1]
