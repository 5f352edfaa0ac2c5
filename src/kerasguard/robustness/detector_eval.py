"""How well fitted detectors separate held-out clean data from noise, shifted and adversarial inputs."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from kerasguard.escaping import printable
from kerasguard.robustness.attacks import AttackSpec, run_attack
from kerasguard.robustness.data import Dataset, check_eps
from kerasguard.robustness.detectors import DetectorSet, auroc
from kerasguard.robustness.engines import as_classifier
from kerasguard.robustness.report import table

SETS = ("noise", "shifted", "adversarial")


@dataclass(frozen=True)
class DetectorRow:
    """One detector against one kind of unusual input."""

    detector: str
    inputs: str
    examples: int
    auroc: float
    detection_rate: float


@dataclass
class DetectorReport:
    """Held-out false-positive rates and AUROC / detection rate per detector and input kind."""

    model: str
    data: str
    target_fpr: float
    held_out: int
    thresholds: dict[str, float]
    held_out_fpr: dict[str, float]
    rows: list[DetectorRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    saved_to: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"schema": "kerasguard.robustness.detectors/1", **asdict(self)}

    def _table_rows(self) -> list[list[object]]:
        out: list[list[object]] = []
        for kind, threshold in self.thresholds.items():
            cells: list[object] = [kind, f"{threshold:.4g}", f"{100 * self.held_out_fpr[kind]:.1f}%"]
            for name in SETS:
                row = next((r for r in self.rows if r.detector == kind and r.inputs == name), None)
                cells.append("n/a" if row is None else f"{row.auroc:.3f} / {100 * row.detection_rate:.0f}%")
            out.append(cells)
        return out

    def _headers(self) -> tuple[str, ...]:
        return ("detector", "threshold", "clean FPR", *(f"{s} AUROC / detected" for s in SETS))

    def _head(self) -> str:
        return (
            f"detectors of {printable(self.model, limit=200)} fitted on {printable(self.data, limit=200)}"
            f" at a {100 * self.target_fpr:g}% target FPR; scored on {self.held_out} held-out clean examples"
        )

    def to_text(self) -> str:
        lines = [self._head(), "", table(self._headers(), self._table_rows())]
        lines += [f"note: {printable(n, limit=500)}" for n in self.notes]
        if self.saved_to:
            lines.append(f"saved to {printable(self.saved_to, limit=500)}")
        return "\n".join(lines)

    def to_markdown(self) -> str:
        lines = [
            "# Input detectors",
            "",
            self._head(),
            "",
            table(self._headers(), self._table_rows(), markdown=True),
        ]
        lines += ["", *(f"> {printable(n, limit=500)}" for n in self.notes)] if self.notes else []
        return "\n".join(lines)


def unusual_inputs(
    model: Any, held_out: Dataset, *, eps: float, seed: int = 0, batch_size: int = 256
) -> tuple[dict[str, np.ndarray], list[str]]:
    """Uniform noise, inverted inputs, and the PGD (no gradients: Square) examples that misled the model."""
    rng = np.random.default_rng(seed)
    low, high = held_out.clip_min, held_out.clip_max
    sets = {
        "noise": rng.uniform(low, high, held_out.x.shape).astype(np.float32),
        "shifted": (low + high - held_out.x).astype(np.float32),
    }
    notes = []
    classifier = as_classifier(model)
    check_eps(eps, held_out, "linf")
    spec = (
        AttackSpec("pgd", eps, "linf", steps=20)
        if classifier.has_gradients
        else AttackSpec("square", eps, steps=300)
    )
    outcome = run_attack(classifier, held_out, spec, batch_size=batch_size, seed=seed)
    fooled = outcome.predictions != held_out.y
    sets["adversarial"] = outcome.x_adv[fooled]
    notes.append(f"adversarial: {spec.label} L-inf eps {eps:g}, the {int(fooled.sum())} examples it misled")
    return sets, notes


def evaluate_detectors(
    detectors: DetectorSet,
    model: Any,
    held_out: Dataset,
    *,
    eps: float,
    seed: int = 0,
    model_name: str = "",
    data_name: str = "",
) -> DetectorReport:
    """Clean FPR on ``held_out`` and AUROC / detection rate on noise, shifted and adversarial inputs."""
    clean = detectors.scores(held_out.x)
    report = DetectorReport(
        model=model_name,
        data=data_name or held_out.source,
        target_fpr=detectors.target_fpr,
        held_out=len(held_out),
        thresholds=dict(detectors.thresholds),
        held_out_fpr={k: float(np.mean(v > detectors.thresholds[k])) for k, v in clean.items()},
    )
    sets, notes = unusual_inputs(model, held_out, eps=eps, seed=seed)
    report.notes.extend(notes)
    for name, x in sets.items():
        if len(x) == 0:
            continue
        unusual = detectors.scores(x)
        for kind, values in unusual.items():
            report.rows.append(
                DetectorRow(
                    detector=kind,
                    inputs=name,
                    examples=len(x),
                    auroc=auroc(clean[kind], values),
                    detection_rate=float(np.mean(values > detectors.thresholds[kind])),
                )
            )
    return report
