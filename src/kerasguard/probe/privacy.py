"""``membership_leak``: how well membership-inference attacks tell training samples from holdout ones."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kerasguard.errors import ProbeError
from kerasguard.policy import Policy
from kerasguard.probe.data import as_labelled, check_fits
from kerasguard.probe.membership import (
    LOW_FPRS,
    AttackResult,
    ReferenceTraining,
    evaluate,
    lira_scores,
    true_class_logprob,
)
from kerasguard.probe.target import Target

SCHEMA = "kerasguard.probe.privacy/1"
MIN_PER_SIDE = 20


@dataclass
class PrivacyReport:
    """Attack results and the verdict (``leak`` or ``ok``) against the policy's thresholds."""

    n_members: int
    n_nonmembers: int
    max_auc: float
    max_tpr_at_1pct_fpr: float
    verdict: str
    attacks: list[AttackResult] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    model: str = ""

    def attack(self, name: str) -> AttackResult:
        for a in self.attacks:
            if a.name == name:
                return a
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "model": self.model,
            "verdict": self.verdict,
            "reasons": self.reasons,
            "thresholds": {"max_auc": self.max_auc, "max_tpr_at_1pct_fpr": self.max_tpr_at_1pct_fpr},
            "n_members": self.n_members,
            "n_nonmembers": self.n_nonmembers,
            "attacks": [
                {
                    "name": a.name,
                    "auc": round(a.auc, 4),
                    "tpr_at_fpr": {f"{f:g}": round(v, 4) for f, v in a.tpr_at_fpr.items()},
                    "per_class_auc": {str(c): round(v, 4) for c, v in a.per_class_auc.items()},
                }
                for a in self.attacks
            ],
            "notes": self.notes,
        }


def _check_disjoint(train_x: np.ndarray, holdout_x: np.ndarray) -> None:
    """Members and non-members must be different samples: when most of the holdout also is in the
    training data (the same file given twice, say), no attack can separate them and "OK" would be a
    verdict on nothing."""
    seen = {np.ascontiguousarray(row).tobytes() for row in train_x}
    shared = sum(np.ascontiguousarray(row).tobytes() in seen for row in holdout_x)
    if shared * 2 > len(holdout_x):
        raise ProbeError(
            f"{shared} of the {len(holdout_x)} holdout samples are also in the training data: the probe"
            " needs samples the model never saw",
            hint="give as holdout data that was kept out of training (a held-out split of the same source)",
        )


def membership_leak(
    model: Any,
    train_x: Any,
    train_y: Any,
    holdout_x: Any,
    holdout_y: Any,
    *,
    policy: Policy | None = None,
    references: ReferenceTraining | None = None,
    max_samples: int = 2000,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> PrivacyReport:
    """Run the loss, confidence and (in-process model only) LiRA attacks; judge them by ``[probe]``.

    ``train_*`` are samples the model was trained on; ``holdout_*`` samples from the same distribution it
    never saw. With LiRA, half the holdout trains the reference models and the other half is evaluated.
    """
    policy = policy or Policy()
    settings = policy.probe
    train = as_labelled(train_x, train_y, what="training data")
    holdout = as_labelled(holdout_x, holdout_y, what="holdout data")
    target = Target.of(model)
    check_fits(train, target.input_shape, target.n_classes, what="training data")
    check_fits(holdout, target.input_shape, target.n_classes, what="holdout data")
    _check_disjoint(train.x, holdout.x)
    if references is None:
        references = ReferenceTraining(models=4 if target.in_process else 0, seed=seed)
    use_lira = references.models > 0
    if use_lira:
        target.require_in_process("LiRA (reference models with the target's architecture)")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(holdout))
    if use_lira:
        half = len(holdout) // 2
        reference_data, nonmembers = holdout.subset(order[:half]), holdout.subset(order[half:])
    else:
        reference_data, nonmembers = holdout, holdout.subset(order)
    n = min(len(train), len(nonmembers), max_samples)
    need = MIN_PER_SIDE * (2 if use_lira else 1)
    if n < MIN_PER_SIDE or (use_lira and len(reference_data) < MIN_PER_SIDE):
        raise ProbeError(
            f"membership inference needs at least {MIN_PER_SIDE} training samples and {need} holdout samples "
            f"(half of the holdout trains the LiRA reference models), got {len(train)} and {len(holdout)}"
        )
    members = train.subset(rng.choice(len(train), n, replace=False))
    nonmembers = nonmembers.subset(np.arange(n))
    target.calibrate(np.concatenate([members.x, nonmembers.x]))
    k = target.n_classes
    own_in, logp_in = true_class_logprob(target, members)
    own_out, logp_out = true_class_logprob(target, nonmembers)
    attacks = [
        evaluate("loss", own_in, own_out, members.y, nonmembers.y, k),
        evaluate("confidence", logp_in.max(axis=1), logp_out.max(axis=1), members.y, nonmembers.y, k),
    ]
    notes = [
        f"TPR at FPR f is resolved only down to 1/{n} = {1 / n:.2%} false positives; below that it is "
        "measured with no false positive at all"
    ]
    if use_lira:
        lira_in, lira_out = lira_scores(target, reference_data, members, nonmembers, references, progress)
        attacks.append(evaluate("lira", lira_in, lira_out, members.y, nonmembers.y, k))
        notes.append(
            f"LiRA: {references.models} reference models trained by the tool for {references.epochs} epochs "
            f"on {len(reference_data) // 2} holdout samples each; the target's own recipe is unknown, so "
            "the calibration is approximate"
        )
    elif target.in_process:
        notes.append("LiRA skipped: no reference models were asked for (references = 0)")
    else:
        notes.append("LiRA skipped: it needs the in-process model (its architecture is cloned)")
    reasons = []
    best_auc = max(attacks, key=lambda a: a.auc)
    if best_auc.auc > settings.privacy_max_auc:
        reasons.append(f"{best_auc.name} attack AUC {best_auc.auc:.3f} > {settings.privacy_max_auc}")
    best_tpr = max(attacks, key=lambda a: a.tpr_at_fpr[LOW_FPRS[1]])
    tpr = best_tpr.tpr_at_fpr[LOW_FPRS[1]]
    if tpr > settings.privacy_max_tpr_at_1pct_fpr:
        reasons.append(
            f"{best_tpr.name} attack finds {tpr:.1%} of members at 1% FPR "
            f"> {settings.privacy_max_tpr_at_1pct_fpr:.1%}"
        )
    return PrivacyReport(
        n_members=n,
        n_nonmembers=n,
        max_auc=settings.privacy_max_auc,
        max_tpr_at_1pct_fpr=settings.privacy_max_tpr_at_1pct_fpr,
        verdict="leak" if reasons else "ok",
        attacks=attacks,
        reasons=reasons,
        notes=notes,
        model=str(getattr(model, "name", "")),
    )
