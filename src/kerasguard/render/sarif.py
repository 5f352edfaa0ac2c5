"""SARIF 2.1.0 output that GitHub code scanning accepts."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

from kerasguard.findings import Finding, ScanReport, Severity, Suppression
from kerasguard.rules import RULES, Rule

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
# The project's home; rule help links point into its docs/rules.md (README: "SARIF and GitHub code
# scanning" says how to point them at a fork or mirror).
INFO_URI = "https://github.com/kerasguard/kerasguard"
RULES_DOC_URI = f"{INFO_URI}/blob/main/docs/rules.md"
SRCROOT = "%SRCROOT%"

LEVELS = {
    Severity.CRITICAL: "error",
    Severity.HIGH: "error",
    Severity.MEDIUM: "warning",
    Severity.LOW: "note",
    Severity.INFO: "note",
}
# GitHub ranks alerts by this CVSS-like number.
SECURITY_SEVERITY = {
    Severity.CRITICAL: "9.5",
    Severity.HIGH: "8.0",
    Severity.MEDIUM: "5.5",
    Severity.LOW: "3.0",
    Severity.INFO: "0.0",
}


def _rule_descriptor(rule: Rule) -> dict[str, Any]:
    tags = ["security", rule.cwe.replace("CWE-", "external/cwe/cwe-"), *rule.cves]
    return {
        "id": rule.id,
        "name": rule.name,
        "shortDescription": {"text": rule.title},
        "fullDescription": {"text": rule.rationale},
        "help": {"text": rule.remediation, "markdown": rule.remediation},
        "helpUri": rule_help_uri(rule),
        "defaultConfiguration": {"level": LEVELS[rule.severity]},
        "properties": {
            "tags": tags,
            "security-severity": SECURITY_SEVERITY[rule.severity],
            "precision": "high",
        },
    }


def rule_help_uri(rule: Rule) -> str:
    """The rule's section of docs/rules.md (GitHub's anchor for ``## KG101 lambda-bytecode``)."""
    return f"{RULES_DOC_URI}#{rule.id.lower()}-{rule.name.lower()}"


class ArtifactLocations:
    """Artifact locations relative to ``%SRCROOT%`` (the base folder), as GitHub code scanning expects.

    A file under the base gets a relative URI (never ``../``); a file outside it an absolute ``file://``
    URI without a base.
    """

    def __init__(self, base: Path) -> None:
        self.base = Path(os.path.abspath(base))

    def location(self, file: str) -> dict[str, str]:
        path = Path(os.path.abspath(file))
        if path.is_relative_to(self.base) and path != self.base:
            return {"uri": quote(path.relative_to(self.base).as_posix(), safe="/"), "uriBaseId": SRCROOT}
        return {"uri": path.as_uri()}

    def original_uri_base_ids(self) -> dict[str, Any]:
        return {SRCROOT: {"uri": self.base.as_uri().rstrip("/") + "/"}}


def _fingerprint(f: Finding, seen: dict[str, int]) -> str:
    """Stable across runs, distinct per result: rule, location and a digest of the message."""
    digest = hashlib.sha256(f"{f.rule_id}\0{f.location}\0{f.message}".encode()).hexdigest()[:32]
    key = f"{f.rule_id}:{digest}"
    seen[key] = seen.get(key, 0) + 1
    return key if seen[key] == 1 else f"{key}:{seen[key]}"


def _result(
    f: Finding, index: dict[str, int], artifacts: ArtifactLocations, seen: dict[str, int]
) -> dict[str, Any]:
    logical = str(f.location)
    result: dict[str, Any] = {
        "ruleId": f.rule_id,
        "level": LEVELS[f.severity],
        "message": {"text": f"{f.title}: {f.message}"},
        "locations": [
            {
                "physicalLocation": {
                    "artifactLocation": artifacts.location(f.location.file),
                    "region": {"startLine": 1},
                },
                "logicalLocations": [{"fullyQualifiedName": logical, "kind": "member"}],
            }
        ],
        "partialFingerprints": {"kerasguard/v2": _fingerprint(f, seen)},
        "properties": {
            "severity": str(f.severity),
            "security-severity": SECURITY_SEVERITY[f.severity],
            "cves": list(f.cves),
            "evidence": f.evidence,
        },
    }
    if f.rule_id in index:
        result["ruleIndex"] = index[f.rule_id]
    return result


def _same(a: Finding, b: Finding) -> bool:
    return (a.rule_id, a.location, a.message) == (b.rule_id, b.location, b.message)


def _results(report: ScanReport, artifacts: ArtifactLocations) -> list[dict[str, Any]]:
    """Every finding; ignored ones too, with an accepted ``suppressions`` entry (GitHub closes them), and
    a rejected one where the policy was not allowed to suppress (the result stays open)."""
    index = {r.id: i for i, r in enumerate(RULES)}
    seen: dict[str, int] = {}
    results = []
    for file in report.files:
        for f in file.findings:
            result = _result(f, index, artifacts, seen)
            for s in file.suppressions:
                if not _same(s.finding, f):
                    continue
                if not s.applied:
                    result.setdefault("suppressions", []).append(_suppression(s, "rejected"))
                elif s.kind == "severity":
                    result["properties"]["severityOverride"] = {
                        "from": str(s.finding.severity),
                        "to": str(s.new_severity),
                        "policy": s.policy,
                        "reason": s.reason,
                    }
            results.append(result)
        for s in file.suppressions:
            if s.applied and s.kind == "ignore":
                result = _result(s.finding, index, artifacts, seen)
                result["suppressions"] = [_suppression(s, "accepted")]
                results.append(result)
    return results


def _suppression(s: Suppression, status: str) -> dict[str, Any]:
    why = f"{s.policy}: {s.reason}"
    if status == "rejected":
        why += " (a policy found upwards cannot suppress a code-execution finding; give it with --policy)"
    return {"kind": "external", "status": status, "justification": why}


def render_sarif(report: ScanReport, *, base: str | os.PathLike[str] | None = None) -> str:
    """SARIF 2.1.0; artifact URIs relative to ``base`` (default: the working directory) as ``%SRCROOT%``."""
    artifacts = ArtifactLocations(Path(base) if base is not None else Path.cwd())
    doc = {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "kerasguard",
                        "informationUri": INFO_URI,
                        "semanticVersion": report.tool_version or "0.0.0",
                        "rules": [_rule_descriptor(r) for r in RULES],
                    }
                },
                "originalUriBaseIds": artifacts.original_uri_base_ids(),
                "results": _results(report, artifacts),
                "invocations": [
                    {
                        "executionSuccessful": report.complete,
                        "toolExecutionNotifications": [
                            {"level": "error", "message": {"text": e}} for e in report.errors
                        ],
                    }
                ],
            }
        ],
    }
    return json.dumps(doc, indent=2)
