"""TrainingGuard: a Keras callback that watches a training run for signs of poisoned batches.

What it sees, on every backend: Keras 3 hands callbacks the epoch's running (sample-weighted) means
of loss and metrics, not per-batch values; the guard recovers each batch's value from consecutive
means (exact when batches are the same size; the last, smaller batch of an epoch is approximate).
Each batch is judged by a robust z-score against the median and MAD of the recent batches
(anomalies do not enter that history, so a poisoned stream cannot teach the guard it is normal):

- loss spike (KGD301): z above ``z_threshold``; loss collapse (KGD302): z below minus it and under
  half the median (a batch that is suddenly trivial to fit);
- accuracy drop (KGD303): batch accuracy under the median by more than ``accuracy_drop``;
- per-class loss drift (KGD304), with ``monitor_data=(x, y)``: at each epoch end, a class whose mean
  loss rises while the classes' typical change does not (robust z across classes);
- gradient-norm outliers (KGD305), with ``monitor_data``: Keras 3's ``fit`` computes gradients inside
  its compiled train step and gives callbacks none, on any backend. The guard therefore measures the
  gradient norm of the loss on (up to 256 samples of) ``monitor_data`` at each epoch end, with
  ``jax.grad`` over ``stateless_call`` on JAX, ``tf.GradientTape`` on TensorFlow and autograd on
  PyTorch, and judges it against the previous epochs. It is a per-epoch probe, not the norm of the
  gradient each training batch applied.

``action`` is ``log``, ``warn`` or ``stop`` (stop sets ``model.stop_training`` at the first anomaly
of severity ``stop_at`` or above). At the end of training the guard writes a JSON training record
(data manifest digest, hyperparameters, per-epoch metrics, anomalies) that ``kerasguard store push
--training-record`` attaches to the model version.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
import warnings
from collections import deque
from pathlib import Path
from typing import Any

import keras
import numpy as np

from kerasguard._version import __version__
from kerasguard.data.ids import CHECKS
from kerasguard.data.record import RECORD_SCHEMA
from kerasguard.errors import DataError
from kerasguard.findings import Severity

log = logging.getLogger("kerasguard.data.guard")

ACTIONS = ("log", "warn", "stop")
MAX_ANOMALIES = 100
MAX_EPOCHS_RECORDED = 500
_MONITOR_GRAD_SAMPLES = 256


def _robust(history: deque[float], value: float, rel_floor: float) -> tuple[float, float]:
    """(median, robust z of ``value``) against ``history``; the scale has a floor relative to the median."""
    arr = np.asarray(history)
    med = float(np.median(arr))
    mad = float(np.median(np.abs(arr - med)))
    scale = max(1.4826 * mad, rel_floor * abs(med), 1e-8)
    return med, (value - med) / scale


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, bool | int | str) or value is None:
        return value
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)[:200]
    return number if math.isfinite(number) else str(number)


class TrainingGuard(keras.callbacks.Callback):  # type: ignore[misc]
    """Watch ``model.fit`` for loss spikes and collapses, accuracy drops, per-class drift and
    gradient-norm outliers; log, warn or stop; write a training record."""

    def __init__(
        self,
        *,
        action: str = "warn",
        record_path: str | os.PathLike[str] | None = None,
        data_manifest: str | None = None,
        hyperparameters: dict[str, Any] | None = None,
        monitor_data: tuple[Any, Any] | None = None,
        window: int = 64,
        min_history: int = 16,
        z_threshold: float = 8.0,
        accuracy_drop: float = 0.3,
        stop_at: Severity = Severity.HIGH,
        gradient_norms: bool = True,
    ) -> None:
        super().__init__()
        if action not in ACTIONS:
            raise DataError(f"TrainingGuard action must be one of {', '.join(ACTIONS)}, not {action!r}")
        if min_history < 4 or window < min_history:
            raise DataError("TrainingGuard needs window >= min_history >= 4")
        self.action = action
        self.record_path = Path(record_path) if record_path is not None else None
        self.data_manifest = data_manifest
        self.hyperparameters = dict(hyperparameters or {})
        self.monitor = monitor_data
        self.min_history = min_history
        self.z_threshold = z_threshold
        self.accuracy_drop = accuracy_drop
        self.stop_at = stop_at
        self.gradient_norms = gradient_norms
        self.anomalies: list[dict[str, Any]] = []
        self.epochs: list[dict[str, Any]] = []
        self.stopped_reason: str | None = None
        self._losses: deque[float] = deque(maxlen=window)
        self._accs: deque[float] = deque(maxlen=window)
        self._prev: dict[str, float] = {}
        self._epoch = 0
        self._batches = 0
        self._class_loss: dict[int, float] | None = None
        self._grad_norms: list[float] = []
        self._started = time.time()
        self.record: dict[str, Any] | None = None

    # -- per batch ------------------------------------------------------------------------------

    def _batch_value(self, key: str, mean: float, batch: int) -> float:
        """Recover this batch's value from the epoch's running mean after ``batch + 1`` batches."""
        previous = self._prev.get(key)
        self._prev[key] = mean
        if batch == 0 or previous is None:
            return mean
        return (batch + 1) * mean - batch * previous

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._epoch = epoch
        self._prev = {}

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        logs = logs or {}
        self._batches += 1
        if "loss" in logs:
            loss = self._batch_value("loss", float(logs["loss"]), batch)
            self._judge_loss(loss, batch)
        acc_key = next(
            (
                k
                for k in (
                    "accuracy",
                    "acc",
                    "sparse_categorical_accuracy",
                    "categorical_accuracy",
                    "binary_accuracy",
                )
                if k in logs
            ),
            None,
        )
        if acc_key is not None:
            acc = self._batch_value(acc_key, float(logs[acc_key]), batch)
            self._judge_accuracy(acc, batch)

    def _judge_loss(self, loss: float, batch: int) -> None:
        if not math.isfinite(loss):
            self._anomaly("KGD301", batch, loss, None, "loss is not finite")
            return
        if len(self._losses) >= self.min_history:
            med, z = _robust(self._losses, loss, 0.05)
            if z > self.z_threshold:
                self._anomaly(
                    "KGD301",
                    batch,
                    loss,
                    med,
                    f"batch loss {loss:.4g} is {z:.1f} robust SDs above the recent median {med:.4g}",
                )
                return
            if z < -self.z_threshold and loss < 0.5 * med:
                self._anomaly(
                    "KGD302",
                    batch,
                    loss,
                    med,
                    f"batch loss {loss:.4g} collapsed to {loss / med:.0%} "
                    f"of the recent median {med:.4g} ({z:.1f} robust SDs)",
                )
                return
        self._losses.append(loss)

    def _judge_accuracy(self, acc: float, batch: int) -> None:
        if len(self._accs) >= self.min_history:
            med, z = _robust(self._accs, acc, 0.02)
            if med - acc > self.accuracy_drop and z < -self.z_threshold / 2:
                self._anomaly(
                    "KGD303",
                    batch,
                    acc,
                    med,
                    f"batch accuracy {acc:.3f} fell from the recent median {med:.3f}",
                )
                return
        self._accs.append(acc)

    # -- per epoch ------------------------------------------------------------------------------

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        entry: dict[str, Any] = {"epoch": epoch, **_jsonable(dict(logs or {}))}
        if self.monitor is not None:
            x, y = self.monitor
            per_class = self._per_class_loss(x, np.asarray(y))
            entry["per_class_loss"] = {str(k): round(v, 6) for k, v in per_class.items()}
            self._judge_drift(per_class, epoch)
            if self.gradient_norms:
                norm = gradient_norm(
                    self.model, x[:_MONITOR_GRAD_SAMPLES], np.asarray(y)[:_MONITOR_GRAD_SAMPLES]
                )
                if norm is not None:
                    entry["monitor_gradient_norm"] = round(norm, 6)
                    self._judge_gradient(norm, epoch)
        if len(self.epochs) < MAX_EPOCHS_RECORDED:
            self.epochs.append(entry)

    def _per_class_loss(self, x: Any, y: Any) -> dict[int, float]:
        probs = np.asarray(self.model.predict(x, verbose=0, batch_size=256), dtype=np.float64)
        if probs.ndim == 2 and probs.shape[1] > 1:
            labels = y.reshape(-1).astype(np.int64)
            picked = probs[np.arange(len(labels)), labels]
        else:
            labels = y.reshape(-1).astype(np.int64)
            p = probs.reshape(-1)
            picked = np.where(labels == 1, p, 1 - p)
        losses = -np.log(np.clip(picked, 1e-7, 1.0))
        return {int(c): float(losses[labels == c].mean()) for c in np.unique(labels)}

    def _judge_drift(self, per_class: dict[int, float], epoch: int) -> None:
        previous = self._class_loss
        self._class_loss = per_class
        if previous is None or len(per_class) < 3:
            return
        common = sorted(set(previous) & set(per_class))
        deltas = np.asarray([per_class[c] - previous[c] for c in common])
        med = float(np.median(deltas))
        scale = max(1.4826 * float(np.median(np.abs(deltas - med))), 0.02)
        for c, d in zip(common, deltas, strict=True):
            z = (d - med) / scale
            if d > 0.1 and z > self.z_threshold / 2:
                self._anomaly(
                    "KGD304",
                    None,
                    float(per_class[c]),
                    float(previous[c]),
                    f"class {c}: loss on the monitor data rose by {d:.3f} in one epoch while the "
                    f"classes' median change was {med:+.3f}",
                    epoch=epoch,
                )

    def _judge_gradient(self, norm: float, epoch: int) -> None:
        history = self._grad_norms
        if len(history) >= 4:
            med, z = _robust(deque(history), norm, 0.1)
            if abs(z) > self.z_threshold:
                self._anomaly(
                    "KGD305",
                    None,
                    norm,
                    med,
                    f"gradient norm on the monitor data {norm:.4g} is "
                    f"{z:+.1f} robust SDs from the previous epochs' median {med:.4g}",
                    epoch=epoch,
                )
                return
        history.append(norm)

    # -- anomalies and the record ---------------------------------------------------------------

    def _anomaly(
        self,
        check_id: str,
        batch: int | None,
        value: float,
        baseline: float | None,
        message: str,
        *,
        epoch: int | None = None,
    ) -> None:
        check = CHECKS[check_id]
        entry = {
            "id": check_id,
            "severity": str(check.severity),
            "title": check.title,
            "epoch": self._epoch if epoch is None else epoch,
            "batch": batch,
            "value": _jsonable(value),
            "baseline": _jsonable(baseline),
            "message": message,
        }
        if len(self.anomalies) < MAX_ANOMALIES:
            self.anomalies.append(entry)
        text = f"{check_id} {check.title} (epoch {entry['epoch']}, batch {batch}): {message}"
        if self.action == "log":
            log.info("%s", text)
        else:
            log.warning("%s", text)
        if self.action == "warn":
            warnings.warn(f"kerasguard TrainingGuard: {text}", RuntimeWarning, stacklevel=2)
        if self.action == "stop" and check.severity >= self.stop_at and self.stopped_reason is None:
            self.stopped_reason = text
            self.model.stop_training = True

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        self.record = self.build_record()
        if self.record_path is not None:
            text = json.dumps(self.record, indent=2, sort_keys=True) + "\n"
            try:
                self.record_path.write_text(text, encoding="utf-8")
            except OSError as exc:  # the trained model matters more than its record: say so, do not crash
                log.error("TrainingGuard could not write the training record %s: %s", self.record_path, exc)
                warnings.warn(
                    f"kerasguard TrainingGuard: training record not written: {exc}",
                    RuntimeWarning,
                    stacklevel=2,
                )

    def build_record(self) -> dict[str, Any]:
        """The training record: what was trained on, how, what was measured, what went wrong."""
        optimizer = getattr(self.model, "optimizer", None)
        opt: dict[str, Any] = {}
        if optimizer is not None:
            try:
                config = optimizer.get_config()
                opt = {k: _jsonable(v) for k, v in config.items() if isinstance(v, int | float | str | bool)}
            except (AttributeError, TypeError, ValueError):
                opt = {"name": type(optimizer).__name__}
        return {
            "schema": RECORD_SCHEMA,
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "duration_s": round(time.time() - self._started, 3),
            "kerasguard_version": __version__,
            "keras_version": keras.__version__,
            "backend": keras.backend.backend(),
            "data_manifest": self.data_manifest,
            "hyperparameters": _jsonable(
                {**self.hyperparameters, "fit": dict(self.params or {}), "optimizer": opt}
            ),
            "guard": {
                "action": self.action,
                "z_threshold": self.z_threshold,
                "accuracy_drop": self.accuracy_drop,
                "stop_at": str(self.stop_at),
            },
            "batches": self._batches,
            "metrics": self.epochs,
            "anomalies": self.anomalies,
            "stopped": self.stopped_reason is not None,
            "stop_reason": self.stopped_reason,
        }


def gradient_norm(model: Any, x: Any, y: Any) -> float | None:
    """Global L2 norm of the loss gradient on (x, y) for the current weights, or None when the
    backend offers no way the guard knows."""
    outputs = int(model.outputs[0].shape[-1]) if getattr(model, "outputs", None) else 1
    loss_fn = (
        keras.losses.SparseCategoricalCrossentropy() if outputs > 1 else keras.losses.BinaryCrossentropy()
    )
    x = np.asarray(x, dtype=np.float32)
    y = np.asarray(y)
    backend = keras.backend.backend()
    try:
        if backend == "jax":
            import jax

            trainable = [v.value for v in model.trainable_variables]
            frozen = [v.value for v in model.non_trainable_variables]

            def loss_of(weights: list[Any]) -> Any:
                pred, _ = model.stateless_call(weights, frozen, x, training=False)
                return loss_fn(y, pred)

            grads = jax.grad(loss_of)(trainable)
            return float(math.sqrt(sum(float((g**2).sum()) for g in grads)))
        if backend == "tensorflow":
            import tensorflow as tf

            with tf.GradientTape() as tape:
                loss = loss_fn(y, model(x, training=False))
            grads = tape.gradient(loss, model.trainable_variables)
            return float(math.sqrt(sum(float(tf.reduce_sum(g**2)) for g in grads if g is not None)))
        if backend == "torch":
            import torch

            model.zero_grad()
            loss = loss_fn(torch.as_tensor(y), model(torch.as_tensor(x), training=False))
            loss.backward()
            total = sum(
                float((v.value.grad**2).sum()) for v in model.trainable_variables if v.value.grad is not None
            )
            model.zero_grad()
            return float(math.sqrt(total))
    except Exception as exc:  # a monitoring probe must never break the user's training run
        log.warning("gradient norm unavailable on %s: %s", backend, exc)
    return None
