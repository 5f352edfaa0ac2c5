"""``adversarial_fit``: PGD adversarial training (Madry et al. 2018), or TRADES (Zhang et al. 2019).

Madry trains on the PGD adversarial example of every batch instead of the clean one. TRADES keeps the
clean cross-entropy and adds ``beta`` times the KL divergence between the model's answers on the clean
input and on an input chosen (by PGD on that KL) to move them apart: usually better clean accuracy at
a similar robustness. Both cost one attack per batch: ``steps + 1`` forward/backward passes per step.

On JAX the attack and the update are jit-compiled over ``stateless_call`` (the optimizer applied with
``stateless_apply``) and the trained weights are written back at the end. On TensorFlow and PyTorch,
Madry runs through ``model.train_on_batch``; TRADES needs JAX.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from kerasguard.escaping import printable
from kerasguard.robustness.attacks import AttackSpec, run_attack
from kerasguard.robustness.data import Dataset, check_eps, check_fits_model
from kerasguard.robustness.engines import (
    Classifier,
    JaxClassifier,
    Norm,
    StepConfig,
    as_classifier,
    attack_loss,
    log_probabilities,
    predict_batched,
    softmax_rows,
)
from kerasguard.robustness.errors import RobustnessError
from kerasguard.robustness.report import table

Method = Literal["pgd", "trades"]
MAX_EPOCHS = 1000


@dataclass(frozen=True)
class Scores:
    """Clean accuracy and PGD accuracy at the training epsilon, on the validation data."""

    clean_accuracy: float
    robust_accuracy: float


@dataclass
class TrainingReport:
    """Before and after, with the settings that produced them."""

    method: str
    eps: float
    norm: str
    steps: int
    eval_steps: int
    epochs: int
    beta: float
    examples: int
    validation_examples: int
    backend: str
    before: Scores
    after: Scores
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {"schema": "kerasguard.robustness.train/1", **asdict(self)}

    def _rows(self) -> list[list[object]]:
        return [
            [
                "before",
                f"{100 * self.before.clean_accuracy:.1f}%",
                f"{100 * self.before.robust_accuracy:.1f}%",
            ],
            ["after", f"{100 * self.after.clean_accuracy:.1f}%", f"{100 * self.after.robust_accuracy:.1f}%"],
        ]

    def _headline(self) -> str:
        extra = f", beta {self.beta:g}" if self.method == "trades" else ""
        return (
            f"{self.method} adversarial training: {self.norm} eps {self.eps:g}, PGD-{self.steps} per batch,"
            f" {self.epochs} epoch(s) on {self.examples} examples{extra}"
            f" ({self.backend}, {self.seconds:.1f} s)"
        )

    def to_text(self) -> str:
        headers = ("model", "clean acc", f"PGD-{self.eval_steps} acc")
        return "\n".join(
            [
                printable(self._headline(), limit=500),
                f"validation: {self.validation_examples} examples",
                "",
                table(headers, self._rows()),
            ]
        )

    def to_markdown(self) -> str:
        headers = ("model", "clean acc", f"PGD-{self.eval_steps} acc")
        return "\n".join(
            ["# Adversarial training", "", self._headline(), "", table(headers, self._rows(), markdown=True)]
        )


def score(
    classifier: Classifier, data: Dataset, eps: float, norm: Norm, steps: int, batch_size: int, seed: int
) -> Scores:
    """Clean and PGD accuracy (random start, one restart)."""
    clean = np.argmax(predict_batched(classifier, data.x, batch_size), axis=1)
    outcome = run_attack(
        classifier, data, AttackSpec("pgd", eps, norm, steps=steps), batch_size=batch_size, seed=seed
    )
    return Scores(float(np.mean(clean == data.y)), outcome.robust_accuracy)


def adversarial_fit(
    model: Any,
    train: Dataset,
    *,
    validation: Dataset | None = None,
    method: Method = "pgd",
    eps: float = 0.1,
    norm: Norm = "linf",
    steps: int = 10,
    step_size: float | None = None,
    epochs: int = 10,
    batch_size: int = 64,
    learning_rate: float = 1e-3,
    beta: float = 6.0,
    eval_steps: int = 20,
    seed: int = 0,
) -> TrainingReport:
    """Train ``model`` (an in-process Keras model) in place against ``norm``-ball attacks of radius ``eps``.

    Scores clean and PGD-``eval_steps`` accuracy on ``validation`` (default: the training data) before
    and after.
    """
    if method not in ("pgd", "trades"):
        raise RobustnessError(f"unknown method {method!r}; choose pgd or trades")
    if not 1 <= epochs <= MAX_EPOCHS:
        raise RobustnessError(f"epochs must be between 1 and {MAX_EPOCHS}")
    if not (0 < learning_rate < 10) or not beta >= 0 or batch_size < 1:
        raise RobustnessError("learning_rate must be in (0, 10), beta >= 0 and batch_size >= 1")
    classifier = as_classifier(model)
    val = validation if validation is not None else train
    for part in (train, val):
        check_fits_model(part, classifier.input_shape, classifier.n_classes)
    check_eps(eps, train, norm)
    attack = AttackSpec("pgd", eps, norm, steps=steps, step_size=step_size)
    classifier.check_gradients(train.x[:64], train.y[:64])
    started = time.perf_counter()
    before = score(classifier, val, eps, norm, eval_steps, 256, seed)
    batch = min(batch_size, len(train))
    if isinstance(classifier, JaxClassifier):
        _fit_jax(classifier, train, attack.step_config(), method, epochs, batch, learning_rate, beta, seed)
    elif method == "trades":
        raise RobustnessError(f"TRADES training needs the jax backend (this is {classifier.backend})")
    else:
        _fit_generic(model, classifier, train, attack.step_config(), epochs, batch, learning_rate, seed)
    classifier.refresh()
    after = score(classifier, val, eps, norm, eval_steps, 256, seed)
    return TrainingReport(
        method=method,
        eps=eps,
        norm=norm,
        steps=steps,
        eval_steps=eval_steps,
        epochs=epochs,
        beta=beta,
        examples=len(train),
        validation_examples=len(val),
        backend=classifier.backend,
        before=before,
        after=after,
        seconds=time.perf_counter() - started,
    )


def _batches(n: int, batch: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Shuffled full batches (the remainder waits for the next epoch's shuffle): one compiled shape."""
    order = rng.permutation(n)
    return [order[i : i + batch] for i in range(0, n - batch + 1, batch)]


def _fit_jax(
    classifier: JaxClassifier,
    train: Dataset,
    config: StepConfig,
    method: Method,
    epochs: int,
    batch: int,
    learning_rate: float,
    beta: float,
    seed: int,
) -> None:
    import jax
    import keras
    from keras import ops

    model = classifier.model
    kind = classifier.output_kind
    optimizer = keras.optimizers.Adam(learning_rate=learning_rate)
    optimizer.build(model.trainable_variables)
    n_classes = classifier.n_classes

    def loss_fn(tv: Any, ntv: Any, x_clean: Any, x_adv: Any, onehot: Any) -> Any:
        if method == "pgd":
            out, ntv = model.stateless_call(tv, ntv, x_adv, training=True)
            return attack_loss(ops, out, onehot, None, kind, "ce", 1.0) / x_adv.shape[0], ntv
        clean, ntv = model.stateless_call(tv, ntv, x_clean, training=True)
        adv, ntv = model.stateless_call(tv, ntv, x_adv, training=True)
        ce = attack_loss(ops, clean, onehot, None, kind, "ce", 1.0)
        p_clean = ops.exp(log_probabilities(ops, clean, kind))
        kl = attack_loss(ops, adv, onehot, p_clean, kind, "kl", 1.0)
        return (ce + beta * kl) / x_adv.shape[0], ntv

    def train_step(tv: Any, ntv: Any, ov: Any, x_clean: Any, x_adv: Any, onehot: Any) -> Any:
        (loss, ntv), grads = jax.value_and_grad(loss_fn, has_aux=True)(tv, ntv, x_clean, x_adv, onehot)
        tv, ov = optimizer.stateless_apply(ov, grads, tv)
        return tv, ntv, ov, loss

    step = jax.jit(train_step)
    tv = [v.value for v in model.trainable_variables]
    ntv = [v.value for v in model.non_trainable_variables]
    ov = [v.value for v in optimizer.variables]
    rng = np.random.default_rng(seed)
    bounds = (train.clip_min, train.clip_max)
    attack_config = (
        config
        if method == "pgd"
        else StepConfig(config.eps, config.step_size, config.steps, config.norm, random_start=True, mode="kl")
    )
    eye = np.eye(n_classes, dtype=np.float32)
    counter = 0
    for _ in range(epochs):
        for idx in _batches(len(train), batch, rng):
            x, y = train.x[idx], train.y[idx]
            classifier.use_state(tv, ntv)
            reference = (
                softmax_rows(classifier.predict(x), kind).astype(np.float32) if method == "trades" else None
            )
            x_adv = classifier.pgd(x, y, attack_config, bounds, seed + counter, reference)
            counter += 1
            tv, ntv, ov, _ = step(tv, ntv, ov, x, x_adv, eye[y])
    for variable, value in zip(model.trainable_variables, tv, strict=True):
        variable.assign(value)
    for variable, value in zip(model.non_trainable_variables, ntv, strict=True):
        variable.assign(value)


def _fit_generic(
    model: Any,
    classifier: Classifier,
    train: Dataset,
    config: StepConfig,
    epochs: int,
    batch: int,
    learning_rate: float,
    seed: int,
) -> None:
    import keras

    loss = (
        "sparse_categorical_crossentropy"
        if classifier.output_kind == "probabilities"
        else (keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    )
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=learning_rate), loss=loss)
    rng = np.random.default_rng(seed)
    bounds = (train.clip_min, train.clip_max)
    counter = 0
    for _ in range(epochs):
        for idx in _batches(len(train), batch, rng):
            x_adv = classifier.pgd(train.x[idx], train.y[idx], config, bounds, seed + counter)
            counter += 1
            model.train_on_batch(x_adv, train.y[idx])
