"""Scan helpers shared by rule tests: write bytes, scan end to end, pick one rule's findings."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from kerasguard.findings import FileReport, Finding, ScanReport
from kerasguard.policy import Limits, Policy
from kerasguard.scanning.engine import scan


def scan_bytes(
    tmp_path: Path, data: bytes, name: str = "m.keras", limits: Limits | None = None
) -> ScanReport:
    path = tmp_path / name
    path.write_bytes(data)
    return scan(path, Policy(limits=limits or Limits()))


def scan_path(path: Path, limits: Limits | None = None) -> ScanReport:
    return scan(path, Policy(limits=limits or Limits()))


def hits(found: ScanReport | FileReport | Iterable[Finding], *rule_ids: str) -> list[Finding]:
    """The findings of the given rules, in report order: THE helper for "findings of rule X" in tests.

    Takes a ScanReport, a FileReport or any findings (``run_rules`` output, a list); several rule ids
    select the findings of any of them.
    """
    if not rule_ids:
        raise TypeError("hits() needs at least one rule id")
    findings = found.findings if isinstance(found, ScanReport | FileReport) else found
    return [f for f in findings if f.rule_id in rule_ids]
