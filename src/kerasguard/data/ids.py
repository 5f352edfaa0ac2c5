"""The KGD finding family: data findings have their own IDs, separate from the scan rule registry.

Scan rules judge model files (KG1xx-KG9xx, ``kerasguard rules``); these judge training data and
training runs. One table, documented in docs/data.md, so that IDs and default severities never drift.
"""

from __future__ import annotations

from dataclasses import dataclass

from kerasguard.findings import Finding, Location, Severity


@dataclass(frozen=True)
class DataCheck:
    """One kind of data finding: ID, default severity and a one-line title."""

    id: str
    severity: Severity
    title: str


_C = DataCheck
CHECKS: dict[str, DataCheck] = {
    c.id: c
    for c in (
        # data check (KGD1xx)
        _C("KGD101", Severity.HIGH, "schema differs from the reference"),
        _C("KGD102", Severity.MEDIUM, "column with mixed or non-numeric values"),
        _C("KGD103", Severity.MEDIUM, "NaN or infinite values"),
        _C("KGD104", Severity.MEDIUM, "values outside the reference range"),
        _C("KGD105", Severity.LOW, "exact duplicate samples"),
        _C("KGD106", Severity.LOW, "near-duplicate samples"),
        _C("KGD107", Severity.HIGH, "identical inputs with conflicting labels"),
        _C("KGD108", Severity.MEDIUM, "class balance differs from the reference"),
        _C("KGD109", Severity.LOW, "robust per-feature outliers"),
        _C("KGD110", Severity.MEDIUM, "label-issue candidates"),
        _C("KGD111", Severity.HIGH, "labels outside the class set"),
        _C("KGD112", Severity.MEDIUM, "empty class"),
        _C("KGD113", Severity.MEDIUM, "too few samples for the statistical checks"),
        _C("KGD114", Severity.HIGH, "data changed since its manifest"),
        _C("KGD115", Severity.INFO, "check skipped"),
        # data backdoor (KGD2xx)
        _C("KGD201", Severity.HIGH, "suspected backdoor poison in a class"),
        _C("KGD202", Severity.LOW, "spectral outliers with no shared trigger, for review"),
        _C("KGD203", Severity.INFO, "class too small for backdoor analysis"),
        # TrainingGuard (KGD3xx)
        _C("KGD301", Severity.HIGH, "training loss spike"),
        _C("KGD302", Severity.MEDIUM, "training loss collapse"),
        _C("KGD303", Severity.MEDIUM, "training accuracy drop"),
        _C("KGD304", Severity.MEDIUM, "per-class loss drift"),
        _C("KGD305", Severity.MEDIUM, "gradient-norm outlier"),
        # reading (KGD9xx): the data could not be read in full, so the report is incomplete (exit 2)
        _C("KGD901", Severity.HIGH, "unreadable sample or file"),
        _C("KGD902", Severity.HIGH, "image refused: decompression bomb"),
    )
}

#: Findings that mean part of the data was not read: the report is incomplete.
INCOMPLETE_IDS = frozenset({"KGD901", "KGD902"})


def finding(
    check_id: str,
    message: str,
    location: Location,
    *,
    evidence: str = "",
    severity: Severity | None = None,
    remediation: str = "",
) -> Finding:
    """A Finding of data check ``check_id`` (its default severity unless one is given)."""
    check = CHECKS[check_id]
    return Finding(
        rule_id=check.id,
        severity=check.severity if severity is None else severity,
        title=check.title,
        message=message,
        location=location,
        evidence=evidence,
        remediation=remediation,
    )
