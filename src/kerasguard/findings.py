"""Findings and reports: the stable data model every renderer and API user sees."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

SCHEMA_VERSION = "1.2"  # 1.1: suppressions; 1.2: suppressions of kind "allow"


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
    # Set by a rule when a policy allowlist entry decided this finding; the policy step
    # (kerasguard.suppressions) turns it into a Suppression record and clears it. Never serialised.
    allowance: Allowance | None = field(default=None, compare=False, repr=False)

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
class Allowance:
    """A policy allowlist entry that matched what a finding is about.

    ``applied``: the entry cleared the finding (False: a found policy may not clear it, so it stays).
    ``cleared``: the finding the entry replaced (a KG205 info finding carries the KG201 it replaced);
    None when the entry cleared the finding that carries it, which then leaves the report.
    """

    kind: str  # "custom_objects" | "modules" | "functions" | "pickle_globals"
    pattern: str
    reason: str
    applied: bool
    cleared: Finding | None = None

    def describe(self) -> str:
        return f"allow.{self.kind} entry {self.pattern!r}: {self.reason}"


@dataclass(frozen=True)
class Suppression:
    """A finding the policy ignored (``kind="ignore"``), downgraded (``kind="severity"``) or cleared with
    an allowlist entry (``kind="allow"``).

    ``finding`` is as the rules reported it. ``applied`` is False when the policy was not allowed to
    suppress it (a code-execution finding and a policy found upwards, not given explicitly): the finding
    then stays in the report at its own severity.
    """

    finding: Finding
    kind: str  # "ignore" | "severity" | "allow"
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
        """0 clean, 1 findings at or above ``fail_on``, 2 error or incomplete scan (:func:`decide`)."""
        return decide(self, fail_on).exit_code

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


@dataclass(frozen=True)
class GateVerdict:
    """Whether a scan report lets the file through: the one answer the CLI, the loader and the store use.

    A file passes only when its scan is complete and no finding is at or above ``fail_on``; an
    incomplete scan cannot vouch for the file, so it refuses even without findings (decision 4).
    """

    fail_on: Severity
    blocking: tuple[Finding, ...] = ()  # the findings at or above fail_on, most severe first
    incomplete: bool = False
    problems: tuple[str, ...] = ()  # what could not be checked: scan errors, then KG9xx findings

    @property
    def passed(self) -> bool:
        return not self.blocking and not self.incomplete

    @property
    def exit_code(self) -> int:
        """0 pass, 1 findings at or above the threshold, 2 incomplete scan (2 wins: decision 4)."""
        if self.incomplete:
            return 2
        return 1 if self.blocking else 0

    @property
    def reason(self) -> str:
        """``pass``, ``findings`` or ``incomplete-scan`` (blocking findings name the danger first)."""
        if self.blocking:
            return "findings"
        return "incomplete-scan" if self.incomplete else "pass"

    def reasons(self) -> tuple[str, ...]:
        """One line per reason to refuse (empty when the file passes)."""
        out: list[str] = []
        if self.blocking:
            worst = self.blocking[0]
            out.append(
                f"scan found {len(self.blocking)} finding(s) at or above {self.fail_on} "
                f"(worst: {worst.rule_id} {worst.severity}: {worst.title})"
            )
        if self.incomplete:
            out.append("scan incomplete: " + ("; ".join(self.problems[:3]) or "a reader could not finish"))
        return tuple(out)


def decide(report: ScanReport | FileReport, fail_on: Severity) -> GateVerdict:
    """The gate's decision on ``report`` at ``fail_on``; :func:`kerasguard.scanning.gate.gate` applies
    a policy."""
    blocking = sort_findings(f for f in report.findings if f.severity >= fail_on)
    errors = report.errors if isinstance(report, ScanReport) else ()
    unjudged = [f"{f.rule_id} {f.message}" for f in report.findings if f.rule_id.startswith("KG9")]
    return GateVerdict(
        fail_on=fail_on,
        blocking=blocking,
        incomplete=not report.complete,
        problems=(*errors, *unjudged),
    )
