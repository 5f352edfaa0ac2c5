"""Findings and reports: the stable data model every renderer and API user sees."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

SCHEMA_VERSION = "1.1"  # 1.1: suppressions


class Severity(IntEnum):
    """Ordered severities; comparisons follow risk."""

    INFO = 0
    LOW = 1
    MEDIUM = 2
    HIGH = 3
    CRITICAL = 4

    @classmethod
    def parse(cls, text: str) -> Severity:
        try:
            return cls[text.strip().upper()]
        except KeyError:
            names = ", ".join(s.name.lower() for s in cls)
            raise ValueError(f"unknown severity {text!r} (expected one of: {names})") from None

    def __str__(self) -> str:
        return self.name.lower()


@dataclass(frozen=True)
class Location:
    """Where a finding points: a file, then optionally a member, a JSON pointer or an HDF5 path.

    Nested archive members are joined with ``!/`` (``outer.keras!/assets/inner.zip!/a.pkl``).
    """

    file: str
    member: str | None = None
    pointer: str | None = None
    h5path: str | None = None

    def child(
        self,
        *,
        member: str | None = None,
        pointer: str | None = None,
        h5path: str | None = None,
    ) -> Location:
        """A location inside this one (a nested member, a pointer or an HDF5 path)."""
        new_member = self.member
        if member is not None:
            new_member = f"{self.member}!/{member}" if self.member else member
        return Location(
            file=self.file,
            member=new_member,
            pointer=pointer if pointer is not None else self.pointer,
            h5path=h5path if h5path is not None else self.h5path,
        )

    def __str__(self) -> str:
        text = self.file
        if self.member:
            text += f"!/{self.member}"
        if self.pointer is not None:
            text += f"#{self.pointer}"
        if self.h5path:
            text += f":{self.h5path}"
        return text

    def to_dict(self) -> dict[str, str]:
        out = {"file": self.file}
        if self.member:
            out["member"] = self.member
        if self.pointer is not None:
            out["pointer"] = self.pointer
        if self.h5path:
            out["h5path"] = self.h5path
        return out


@dataclass(frozen=True)
class Finding:
    """One problem found by one rule at one location."""

    rule_id: str
    severity: Severity
    title: str
    message: str
    location: Location
    evidence: str = ""
    cves: tuple[str, ...] = ()
    cwe: str | None = None
    remediation: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule_id": self.rule_id,
            "severity": str(self.severity),
            "title": self.title,
            "message": self.message,
            "location": self.location.to_dict(),
            "evidence": self.evidence,
            "cves": list(self.cves),
            "cwe": self.cwe,
            "remediation": self.remediation,
        }


@dataclass(frozen=True)
class Suppression:
    """A finding the policy ignored (``kind="ignore"``) or downgraded (``kind="severity"``).

    ``finding`` is as the rules reported it. ``applied`` is False when the policy was not allowed to
    suppress it (a code-execution finding and a policy found upwards, not given explicitly): the finding
    then stays in the report at its own severity.
    """

    finding: Finding
    kind: str  # "ignore" | "severity"
    reason: str
    policy: str
    applied: bool = True
    new_severity: Severity | None = None  # kind "severity": what the policy set

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule_id": self.finding.rule_id,
            "kind": self.kind,
            "applied": self.applied,
            "reason": self.reason,
            "policy": self.policy,
            "severity": str(self.finding.severity),
            "new_severity": None if self.new_severity is None else str(self.new_severity),
            "finding": self.finding.to_dict(),
        }


@dataclass(frozen=True)
class FileReport:
    """The result for one scanned artifact (a file or a model directory)."""

    path: str
    format: str
    findings: tuple[Finding, ...] = ()
    complete: bool = True
    size: int = 0
    duration_s: float = 0.0
    suppressed: int = 0  # findings removed by ignores (the applied "ignore" suppressions)
    suppressions: tuple[Suppression, ...] = ()

    @property
    def max_severity(self) -> Severity | None:
        return max((f.severity for f in self.findings), default=None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "format": self.format,
            "complete": self.complete,
            "size": self.size,
            "duration_s": round(self.duration_s, 6),
            "suppressed": self.suppressed,
            "findings": [f.to_dict() for f in self.findings],
            "suppressions": [s.to_dict() for s in self.suppressions],
        }


@dataclass(frozen=True)
class ScanReport:
    """The result of one scan run over one or more paths."""

    files: tuple[FileReport, ...]
    errors: tuple[str, ...] = ()
    tool_version: str = ""
    target_keras_version: str | None = None
    skipped: tuple[str, ...] = field(default=())

    @property
    def findings(self) -> tuple[Finding, ...]:
        return tuple(f for report in self.files for f in report.findings)

    @property
    def complete(self) -> bool:
        return not self.errors and all(r.complete for r in self.files)

    @property
    def suppressions(self) -> tuple[Suppression, ...]:
        return tuple(s for report in self.files for s in report.suppressions)

    @property
    def max_severity(self) -> Severity | None:
        return max((f.severity for f in self.findings), default=None)

    def at_or_above(self, threshold: Severity) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity >= threshold)

    def exit_code(self, fail_on: Severity) -> int:
        """0 clean, 1 findings at or above ``fail_on``, 2 error or incomplete scan."""
        if not self.complete:
            return 2
        return 1 if self.at_or_above(fail_on) else 0

    def to_dict(self) -> dict[str, Any]:
        counts = {str(s): 0 for s in Severity}
        for f in self.findings:
            counts[str(f.severity)] += 1
        return {
            "schema_version": SCHEMA_VERSION,
            "tool": {"name": "kerasguard", "version": self.tool_version},
            "target_keras_version": self.target_keras_version,
            "complete": self.complete,
            "summary": {
                "files": len(self.files),
                "findings": len(self.findings),
                "by_severity": counts,
                "skipped": len(self.skipped),
                "suppressed": sum(1 for s in self.suppressions if s.applied),
            },
            "errors": list(self.errors),
            "skipped": list(self.skipped),
            "files": [r.to_dict() for r in self.files],
        }


def sort_findings(findings: Iterable[Finding]) -> tuple[Finding, ...]:
    """Most severe first, then by location and rule, so reports are stable."""
    return tuple(sorted(findings, key=lambda f: (-int(f.severity), str(f.location), f.rule_id, f.message)))
