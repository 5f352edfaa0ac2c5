"""Membership inference: does the model tell its training samples from unseen ones?

Three attacks, each a score per sample (higher = "was in the training set"), judged on a balanced set of
members (a sample of the training data) and non-members (holdout data the model never saw):

- ``loss``: minus the cross-entropy of the true label (Yeom et al. 2018). Black-box.
- ``confidence``: the top predicted probability (Salem et al. 2019). Black-box.
- ``lira``: offline LiRA (Carlini et al. 2022). Reference models with the target's architecture are
  trained by the tool on half of the holdout; every evaluated sample is *out* of every reference model,
  so its logit-scaled confidence ``log p_y - log(1 - p_y)`` under the references is the null
  distribution, and the score is how far the target's value lies above its mean, in units of the
  references' pooled standard deviation (fixed variance: few reference models). Needs the in-process
  model, whose architecture is cloned (``keras.models.clone_model``) with fresh weights.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from kerasguard.errors import ProbeError
from kerasguard.probe.data import LabelledData
from kerasguard.probe.metrics import roc_auc, tpr_at_fpr
from kerasguard.probe.target import Target

LOW_FPRS = (0.001, 0.01)


@dataclass(frozen=True)
class ReferenceTraining:
    """How the LiRA reference models are trained (the target's own recipe is unknown: match it if you can)."""

    models: int = 4
    epochs: int = 30
    batch_size: int = 32
    learning_rate: float = 1e-3
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.models <= 64:
            raise ProbeError("LiRA: the number of reference models must be from 0 to 64")
        if self.epochs < 1 or self.batch_size < 1 or not self.learning_rate > 0:
            raise ProbeError("LiRA: epochs and batch size must be at least 1, the learning rate above 0")


@dataclass(frozen=True)
class AttackResult:
    """One attack's success: AUC, TPR at low FPRs, and the AUC per class."""

    name: str
    auc: float
    tpr_at_fpr: dict[float, float]
    per_class_auc: dict[int, float]


def true_class_logprob(target: Target, data: LabelledData) -> tuple[np.ndarray, np.ndarray]:
    """Log-probability of the true class and the full log-probabilities."""
    logp = target.log_proba(data.x)
    return logp[np.arange(len(data)), data.y], logp


def logit_confidence(logp: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``log p_y - log(sum_{k != y} p_k)``, computed stably from log-probabilities."""
    own = logp[np.arange(len(y)), y]
    others = logp.copy()
    others[np.arange(len(y)), y] = -np.inf
    top = others.max(axis=1, keepdims=True)
    rest = top[:, 0] + np.log(np.exp(others - top).sum(axis=1))
    return np.asarray(own - rest, dtype=np.float64)


def evaluate(
    name: str,
    scores_in: np.ndarray,
    scores_out: np.ndarray,
    y_in: np.ndarray,
    y_out: np.ndarray,
    n_classes: int,
) -> AttackResult:
    per_class = {}
    for c in range(n_classes):
        a, b = scores_in[y_in == c], scores_out[y_out == c]
        if len(a) >= 2 and len(b) >= 2:
            per_class[c] = roc_auc(a, b)
    return AttackResult(
        name=name,
        auc=roc_auc(scores_in, scores_out),
        tpr_at_fpr={f: tpr_at_fpr(scores_in, scores_out, f) for f in LOW_FPRS},
        per_class_auc=per_class,
    )


def lira_scores(
    target: Target,
    reference_data: LabelledData,
    members: LabelledData,
    nonmembers: LabelledData,
    training: ReferenceTraining,
    progress: Callable[[str], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Offline LiRA scores for ``members`` and ``nonmembers`` (reference models see neither)."""
    import keras

    target.require_in_process("LiRA (reference models with the target's architecture)")
    evaluated = np.concatenate([members.x, nonmembers.x])
    labels = np.concatenate([members.y, nonmembers.y])
    own_logp = target.log_proba(evaluated)
    phi_target = logit_confidence(own_logp, labels)
    rng = np.random.default_rng(training.seed)
    phis = []
    for i in range(training.models):
        if progress:
            progress(f"training reference model {i + 1}/{training.models}")
        keras.utils.set_random_seed(training.seed + i)
        pick = rng.choice(len(reference_data), max(2, len(reference_data) // 2), replace=False)
        try:
            ref = keras.models.clone_model(target.model)
            loss = keras.losses.SparseCategoricalCrossentropy(from_logits=not target.outputs_probabilities)
            ref.compile(optimizer=keras.optimizers.Adam(training.learning_rate), loss=loss)
            ref.fit(
                reference_data.x[pick],
                reference_data.y[pick],
                epochs=training.epochs,
                batch_size=training.batch_size,
                verbose=0,
            )
        except Exception as exc:
            raise ProbeError(
                f"LiRA: cannot train a reference model with the target's architecture: "
                f"{type(exc).__name__}: {exc}",
                hint="run the loss and confidence attacks only (references=0)",
            ) from None
        ref_target = Target(ref, target.input_shape, target.n_classes, True, target.outputs_probabilities)
        phis.append(logit_confidence(ref_target.log_proba(evaluated), labels))
    stacked = np.stack(phis)  # (models, samples)
    mean = stacked.mean(axis=0)
    spread = float(np.std(stacked - mean)) if len(phis) > 1 else 1.0
    score = (phi_target - mean) / max(spread, 1e-6)
    return score[: len(members)], score[len(members) :]
