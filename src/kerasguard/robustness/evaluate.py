"""``evaluate``: clean accuracy, then robust accuracy for each attack at each epsilon."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kerasguard.robustness.attacks import (
    GRADIENT_ATTACKS,
    AttackName,
    AttackOutcome,
    AttackSpec,
    TargetMode,
    choose_targets,
    run_attack,
)
from kerasguard.robustness.data import Dataset, check_eps, check_fits_model
from kerasguard.robustness.engines import Norm, as_classifier, predict_batched
from kerasguard.robustness.errors import RobustnessError

REPORT_SCHEMA = "kerasguard.robustness/1"


@dataclass(frozen=True)
class AttackRow:
    """One attack at one epsilon."""

    attack: str
    norm: str
    eps: float
    steps: int
    restarts: int
    targeted: bool
    robust_accuracy: float
    success_rate: float
    examples: int
    seconds: float
    examples_per_second: float


@dataclass
class RobustnessReport:
    """Everything ``kerasguard robustness evaluate`` shows; ``to_dict`` is the JSON report."""

    model: str
    data: str
    backend: str
    examples: int
    clip_min: float
    clip_max: float
    clean_accuracy: float
    seed: int
    rows: list[AttackRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"schema": REPORT_SCHEMA, **asdict(self)}

    def worst_accuracy(self) -> float:
        """The lowest accuracy seen, clean included."""
        return min([self.clean_accuracy, *(r.robust_accuracy for r in self.rows)])


def _row(outcome: AttackOutcome) -> AttackRow:
    spec = outcome.spec
    return AttackRow(
        attack=spec.label,
        norm=spec.norm,
        eps=spec.eps,
        steps=spec.steps if spec.name != "fgsm" else 1,
        restarts=spec.restarts if spec.name == "pgd" else 1,
        targeted=spec.targeted,
        robust_accuracy=outcome.robust_accuracy,
        success_rate=outcome.success_rate,
        examples=len(outcome.labels),
        seconds=outcome.seconds,
        examples_per_second=outcome.examples_per_second,
    )


def evaluate(
    model: Any,
    data: Dataset,
    *,
    attacks: Sequence[AttackName] = ("fgsm", "pgd"),
    eps: Sequence[float] = (0.05, 0.1, 0.2),
    norm: Norm = "linf",
    steps: int = 20,
    step_size: float | None = None,
    restarts: int = 1,
    targeted: bool = False,
    target_mode: TargetMode = "random",
    square_queries: int = 300,
    batch_size: int = 256,
    seed: int = 0,
    model_name: str = "",
    save_adversarial: str | os.PathLike[str] | None = None,
) -> RobustnessReport:
    """Robust accuracy of ``model`` (a Keras model, a SandboxedModel or a Classifier) under each attack.

    With no attack, only clean accuracy is measured: the way to score a precomputed adversarial set
    against a sandboxed model. ``save_adversarial`` (a folder) receives one ``.npz`` (x, y) per row.
    """
    classifier = as_classifier(model)
    check_fits_model(data, classifier.input_shape, classifier.n_classes)
    specs = _specs(attacks, eps, data, norm, steps, step_size, restarts, targeted, square_queries)
    if any(s.name in GRADIENT_ATTACKS for s in specs) and not classifier.has_gradients:
        classifier.check_gradients(data.x[:1], data.y[:1])  # raises NoGradientError naming Square
    targets = None
    if targeted:
        targets = (
            data.target
            if data.target is not None
            else choose_targets(data.y, classifier.n_classes, target_mode, seed)
        )
        if np.any(targets == data.y):
            raise RobustnessError("some targets equal the true class; a targeted attack needs other classes")
    clean = np.argmax(predict_batched(classifier, data.x, batch_size), axis=1)
    report = RobustnessReport(
        model=model_name or str(getattr(model, "name", "")),
        data=data.source,
        backend=classifier.backend,
        examples=len(data),
        clip_min=data.clip_min,
        clip_max=data.clip_max,
        clean_accuracy=float(np.mean(clean == data.y)),
        seed=seed,
    )
    if classifier.backend == "sandbox":
        report.notes.append(
            "sandboxed model: only predictions cross the sandbox, so only the gradient-free Square Attack"
            " runs (or the scoring of a precomputed adversarial set with no attack)"
        )
    out_dir = Path(save_adversarial) if save_adversarial is not None else None
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    for spec in specs:
        outcome = run_attack(classifier, data, spec, batch_size=batch_size, seed=seed, targets=targets)
        report.rows.append(_row(outcome))
        if out_dir is not None:
            name = f"{spec.label}-{spec.norm}-eps{spec.eps:g}{'-targeted' if spec.targeted else ''}.npz"
            np.savez(
                out_dir / name, x=outcome.x_adv, y=data.y, range=np.array([data.clip_min, data.clip_max])
            )
    return report


def _specs(
    attacks: Sequence[AttackName],
    eps: Sequence[float],
    data: Dataset,
    norm: Norm,
    steps: int,
    step_size: float | None,
    restarts: int,
    targeted: bool,
    square_queries: int,
) -> list[AttackSpec]:
    if attacks and not eps:
        raise RobustnessError("give at least one epsilon")
    specs = []
    for name in attacks:
        for e in eps:
            value = check_eps(float(e), data, "linf" if name == "square" else norm)
            if name == "square":
                specs.append(AttackSpec("square", value, "linf", steps=square_queries, targeted=targeted))
            elif name == "fgsm":
                specs.append(AttackSpec("fgsm", value, norm, steps=1, targeted=targeted))
            else:
                specs.append(
                    AttackSpec(
                        "pgd",
                        value,
                        norm,
                        steps=steps,
                        step_size=step_size,
                        restarts=restarts,
                        targeted=targeted,
                    )
                )
    return specs
