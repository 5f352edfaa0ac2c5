"""Report objects of ``kerasguard data``: what the Python API returns and the renderers print.

Findings reuse :class:`kerasguard.findings.Finding` (with KGD IDs, :mod:`kerasguard.data.ids`), so a
data report reads and exits like a scan report: 0 clean, 1 findings at or above ``fail_on``, 2 when
part of the data could not be read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kerasguard._version import __version__
from kerasguard.findings import Finding, Severity, sort_findings
from kerasguard.render.safe_text import printable

SCHEMA_VERSION = "1.0"


def shown(value: object, limit: int = 80, *, newlines: bool = False) -> str:
    """Text from the data (a column name, a cell, a file name) made safe to print: long values cut,
    then escaped as all outside text is (:func:`kerasguard.render.safe_text.printable`)."""
    text = str(value)
    if len(text) > limit:
        text = text[:limit] + "..."
    return printable(text, keep_newlines=newlines)


def _counts(findings: tuple[Finding, ...]) -> dict[str, int]:
    counts = {str(s): 0 for s in Severity}
    for f in findings:
        counts[str(f.severity)] += 1
    return counts


class _FindingsReport:
    """What both reports share: findings kept sorted, the gate and exit code, the JSON head."""

    target: str
    findings: tuple[Finding, ...]
    complete: bool

    def __post_init__(self) -> None:
        object.__setattr__(self, "findings", sort_findings(self.findings))

    def at_or_above(self, threshold: Severity) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity >= threshold)

    def exit_code(self, fail_on: Severity) -> int:
        """0 clean, 1 findings at or above ``fail_on``, 2 when part of the data was not read."""
        if not self.complete:
            return 2
        return 1 if self.at_or_above(fail_on) else 0

    def _head(self, report: str) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "report": report,
            "tool": {"name": "kerasguard", "version": __version__},
            "target": self.target,
        }


@dataclass(frozen=True)
class DataReport(_FindingsReport):
    """The result of ``data check`` on one dataset."""

    target: str
    kind: str
    samples: int
    features: int
    findings: tuple[Finding, ...]
    complete: bool = True
    stats: dict[str, Any] = field(default_factory=dict)
    manifest_digest: str | None = None

    @property
    def max_severity(self) -> Severity | None:
        return max((f.severity for f in self.findings), default=None)

    def to_dict(self) -> dict[str, Any]:
        return {
            **self._head("data-check"),
            "kind": self.kind,
            "complete": self.complete,
            "samples": self.samples,
            "features": self.features,
            "manifest_digest": self.manifest_digest,
            "summary": {"findings": len(self.findings), "by_severity": _counts(self.findings)},
            "stats": self.stats,
            "findings": [f.to_dict() for f in self.findings],
        }


@dataclass(frozen=True)
class SuspiciousSample:
    """One training sample flagged as possible backdoor poison, with why."""

    index: int
    label: int
    score: float  # robust distance over the class's threshold (> 1 = candidate)
    spectral: float  # classic centred spectral-signature score
    reclassified_as: int | None  # the class exclusionary reclassification gave it, if not its label
    confirmed: bool = False  # in a class confirmed poisoned, and poison by the trigger test: remove it

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "label": self.label,
            "score": round(self.score, 6),
            "spectral": round(self.spectral, 6),
            "reclassified_as": self.reclassified_as,
            "confirmed": self.confirmed,
        }


@dataclass(frozen=True)
class ClassAnalysis:
    """What the detector measured in one class."""

    label: int
    samples: int
    silhouette: float | None
    candidates: int
    reclassified_fraction: float | None
    reclassified_as: int | None
    trigger_flip: float | None = None  # share of other classes the candidates' shared difference moves here
    poisoned: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "samples": self.samples,
            "silhouette": None if self.silhouette is None else round(self.silhouette, 4),
            "candidates": self.candidates,
            "reclassified_fraction": (
                None if self.reclassified_fraction is None else round(self.reclassified_fraction, 4)
            ),
            "reclassified_as": self.reclassified_as,
            "trigger_flip": None if self.trigger_flip is None else round(self.trigger_flip, 4),
            "poisoned": self.poisoned,
        }


@dataclass(frozen=True)
class RetrainResult:
    """Clean accuracy and attack success of the user's model and of one retrained on the filtered set."""

    removed: int
    epochs: int
    clean_accuracy_before: float | None
    clean_accuracy_after: float | None
    attack_success_before: float | None
    attack_success_after: float | None

    def to_dict(self) -> dict[str, Any]:
        def r(v: float | None) -> float | None:
            return None if v is None else round(v, 4)

        return {
            "removed": self.removed,
            "epochs": self.epochs,
            "clean_accuracy_before": r(self.clean_accuracy_before),
            "clean_accuracy_after": r(self.clean_accuracy_after),
            "attack_success_before": r(self.attack_success_before),
            "attack_success_after": r(self.attack_success_after),
        }


@dataclass(frozen=True)
class BackdoorReport(_FindingsReport):
    """The result of ``data backdoor``: suspicious samples, per-class measurements, optional retrain."""

    target: str
    model: str
    samples: int
    findings: tuple[Finding, ...]
    suspicious: tuple[SuspiciousSample, ...]
    classes: tuple[ClassAnalysis, ...]
    layer: str
    retrain: RetrainResult | None = None
    complete: bool = True

    @property
    def flagged_indices(self) -> tuple[int, ...]:
        """The samples to remove: in classes confirmed poisoned, the outliers that look like another class
        and the samples the model moves out of the class once the trigger is subtracted."""
        return tuple(sorted(s.index for s in self.suspicious if s.confirmed))

    @property
    def candidate_indices(self) -> tuple[int, ...]:
        """Every robust spectral outlier, confirmed or only for review."""
        return tuple(sorted(s.index for s in self.suspicious))

    def to_dict(self) -> dict[str, Any]:
        return {
            **self._head("data-backdoor"),
            "model": self.model,
            "layer": self.layer,
            "complete": self.complete,
            "samples": self.samples,
            "summary": {
                "findings": len(self.findings),
                "by_severity": _counts(self.findings),
                "suspicious": len(self.suspicious),
            },
            "classes": [c.to_dict() for c in self.classes],
            "suspicious": [s.to_dict() for s in sorted(self.suspicious, key=lambda s: -s.score)],
            "retrain": None if self.retrain is None else self.retrain.to_dict(),
            "findings": [f.to_dict() for f in self.findings],
        }
