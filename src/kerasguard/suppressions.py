"""The policy's last word on findings: ``[[ignore]]`` entries and ``[severity]`` overrides, every one shown.

A suppression is never silent: each ignored or downgraded finding is recorded as a
:class:`~kerasguard.findings.Suppression` that the text, JSON and SARIF reports show. Code-execution
findings (critical findings of the KG1xx and KG2xx families: bytecode, pickles, foreign code) cannot be
ignored or downgraded by a policy that was *found* (a ``kerasguard.toml`` or ``pyproject.toml`` upwards
from the working directory, which anyone who can write to the repository can add); only a policy given
explicitly (``--policy``, or a Policy built in code) can, and the attempt by a found policy is shown as
refused (docs/decisions.md 31).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from kerasguard.findings import Finding, Severity, Suppression
from kerasguard.policy import Policy

PROTECTED_FAMILIES = ("KG1", "KG2")


def is_protected(finding: Finding) -> bool:
    """A code-execution finding: only an explicit policy may suppress it."""
    return finding.severity is Severity.CRITICAL and finding.rule_id.startswith(PROTECTED_FAMILIES)


def apply_policy(
    findings: Iterable[Finding], policy: Policy, path: str
) -> tuple[list[Finding], list[Suppression]]:
    """Findings after the policy's severity overrides and ignores, and the record of what it suppressed.

    ``findings`` carry their rules' own severities; the overrides are applied here, once.
    """
    kept: list[Finding] = []
    record: list[Suppression] = []
    for original in findings:
        finding = original
        refuse = policy.found_implicitly and is_protected(original)
        override = policy.severity.get(original.rule_id)
        if override is not None and override != original.severity:
            if override < original.severity and refuse:
                reason = _override_reason(override)
                record.append(_record(original, "severity", reason, policy, False, override))
            else:
                finding = dataclasses.replace(original, severity=override)
                if override < original.severity:
                    reason = _override_reason(override)
                    record.append(_record(original, "severity", reason, policy, True, override))
        ignore = policy.ignored(finding.rule_id, path)
        if ignore is not None:
            if refuse:
                record.append(_record(original, "ignore", ignore.reason, policy, False))
            else:
                record.append(_record(finding, "ignore", ignore.reason, policy, True))
                continue
        kept.append(finding)
    return kept, record


def _override_reason(severity: Severity) -> str:
    return f"[severity] sets it to {severity}"


def _record(
    finding: Finding,
    kind: str,
    reason: str,
    policy: Policy,
    applied: bool,
    severity: Severity | None = None,
) -> Suppression:
    return Suppression(
        finding=finding,
        kind=kind,
        reason=reason,
        policy=policy.source,
        applied=applied,
        new_severity=severity,
    )
