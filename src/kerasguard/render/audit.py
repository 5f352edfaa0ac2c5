"""Audit reports as text, JSON and SARIF, following the scan renderers' conventions."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

from rich.console import Console

from kerasguard.advisories.audit import AuditReport, Vulnerability
from kerasguard.findings import Severity
from kerasguard.render.safe_text import markup_safe as escape
from kerasguard.render.sarif import INFO_URI, LEVELS, SARIF_SCHEMA, SECURITY_SEVERITY, ArtifactLocations
from kerasguard.render.text import COLOURS

_MAX_RELATED = 6


def _names(v: Vulnerability) -> str:
    adv = v.advisory
    parts = list(adv.aliases)
    if adv.related:
        shown = ", ".join(adv.related[:_MAX_RELATED])
        more = len(adv.related) - _MAX_RELATED
        parts.append(f"related: {shown}" + (f" and {more} more" if more > 0 else ""))
    return f" ({'; '.join(parts)})" if parts else ""


def render_audit_text(report: AuditReport, *, color: bool = False, width: int = 120) -> str:
    buf = io.StringIO()
    con = Console(
        file=buf, force_terminal=color, no_color=not color, width=width, highlight=False, soft_wrap=True
    )
    con.print(f"[bold]audit of {escape(report.target)}[/]")
    for err in report.errors:
        con.print(f"[red]error:[/] {escape(err)}")
    for warn in report.warnings:
        con.print(f"[yellow]warning:[/] {escape(warn)}")
    current = None
    upgrade = ""
    for v in report.vulnerabilities:
        pkg = v.package
        key = (pkg.key, pkg.version, pkg.source)
        if key != current:
            if upgrade:
                con.print(f"  smallest safe upgrade: {escape(upgrade)}")
            current = key
            upgrade = v.upgrade_text()
            where = f"{pkg.source}:{pkg.line}" if pkg.line else pkg.source
            hdf5 = f" [bundles HDF5 {pkg.hdf5_version}]" if pkg.hdf5_version else ""
            con.print(f"\n[bold]{escape(pkg.name)} {escape(pkg.version)}[/]{escape(hdf5)}  {escape(where)}")
        colour = COLOURS[v.severity]
        con.print(
            f"  [{colour}]{str(v.severity).upper():8}[/] {escape(v.advisory.id)}{escape(_names(v))}\n"
            f"           {escape(v.advisory.summary)}"
            + ("" if v.advisory.severity_known else " (the record gives no severity: assumed high)")
            + "\n"
            f"           trigger: {escape(v.advisory.trigger or 'see the advisory')}\n"
            f"           {escape(v.fix_text())}"
            + (f"; all fixes: {escape(', '.join(v.fixed))}" if len(v.fixed) > 1 else "")
        )
        if v.advisory.corrections:
            con.print(
                f"           note: public data corrected ({len(v.advisory.corrections)}); "
                f"see `kerasguard advisories show {escape(v.advisory.id)}`"
            )
    if upgrade:
        con.print(f"  smallest safe upgrade: {escape(upgrade)}")
    for s in report.suppressed:
        con.print(
            f"\n[dim]accepted by policy: {escape(s.vulnerability.advisory.id)} on "
            f"{escape(s.vulnerability.package.name)} {escape(s.vulnerability.package.version)}: "
            f"{escape(s.reason)}[/]"
        )
    important = report.unaudited_covered
    if important:
        con.print("\n[yellow]could not audit packages that have advisories:[/]")
        for note in important:
            con.print(f"  {escape(str(note))}")
    others = [n for n in report.notes if n not in important]
    if others:
        con.print(f"\nnot auditable ({len(others)}):")
        for note in others:
            con.print(f"  {escape(str(note))}")
    counts = {s: 0 for s in Severity}
    for v in report.vulnerabilities:
        counts[v.severity] += 1
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items(), reverse=True) if n)
    vulnerable = len({v.package.key for v in report.vulnerabilities})
    con.print(
        f"\n{len(report.packages)} package(s) audited, {vulnerable} vulnerable, "
        f"{len(report.vulnerabilities)} advisory match(es)"
        + (f": {summary}" if summary else "")
        + (f"; {len(report.suppressed)} accepted by policy" if report.suppressed else "")
        + (f"; {len(report.notes)} not auditable" if report.notes else "")
        + ("" if report.complete else "; audit INCOMPLETE")
    )
    return buf.getvalue()


def render_audit_json(report: AuditReport) -> str:
    return json.dumps(report.to_dict(), indent=2)


def _rule(v: Vulnerability) -> dict[str, Any]:
    adv = v.advisory
    tags = ["security", "vulnerable-dependency", *adv.cve_ids]
    return {
        "id": adv.id,
        "name": adv.id,
        "shortDescription": {"text": adv.summary or adv.id},
        "fullDescription": {"text": adv.details or adv.summary or adv.id},
        "help": {"text": f"Trigger: {adv.trigger}\nRemediation: {adv.remediation}".strip()},
        "helpUri": adv.references[0] if adv.references else INFO_URI,
        "defaultConfiguration": {"level": LEVELS[adv.severity]},
        "properties": {
            "tags": tags,
            "security-severity": SECURITY_SEVERITY[adv.severity],
            "precision": "high",
        },
    }


def render_audit_sarif(report: AuditReport, *, base: str | os.PathLike[str] | None = None) -> str:
    """SARIF 2.1.0; package sources (requirement files, metadata folders) relative to ``%SRCROOT%``."""
    artifacts = ArtifactLocations(Path(base) if base is not None else Path.cwd())
    rules: dict[str, dict[str, Any]] = {}
    for v in report.vulnerabilities:
        rules.setdefault(v.advisory.id, _rule(v))
    index = {rid: i for i, rid in enumerate(rules)}
    results = []
    for v in report.vulnerabilities:
        pkg = v.package
        results.append(
            {
                "ruleId": v.advisory.id,
                "ruleIndex": index[v.advisory.id],
                "level": LEVELS[v.severity],
                "message": {
                    "text": f"{pkg.name} {pkg.version} is affected by {v.advisory.id}{_names(v)}: "
                    f"{v.advisory.summary}. {v.fix_text()}. Smallest safe upgrade: {v.upgrade_text()}."
                },
                "locations": [
                    {
                        "physicalLocation": {
                            "artifactLocation": artifacts.location(pkg.source),
                            "region": {"startLine": pkg.line or 1},
                        },
                        "logicalLocations": [
                            {"fullyQualifiedName": f"{pkg.name}=={pkg.version}", "kind": "package"}
                        ],
                    }
                ],
                "partialFingerprints": {
                    "kerasguard/v2": f"{v.advisory.id}:{pkg.key}:{pkg.version}:{pkg.source}:{pkg.line or 0}"
                },
                "properties": {
                    "severity": str(v.severity),
                    "security-severity": SECURITY_SEVERITY[v.severity],
                    "cves": list(v.advisory.cve_ids),
                    "fixed_versions": list(v.fixed),
                    "smallest_safe_upgrade": v.upgrade,
                },
            }
        )
    notifications = [{"level": "error", "message": {"text": e}} for e in report.errors]
    notifications += [{"level": "warning", "message": {"text": str(n)}} for n in report.notes]
    notifications += [{"level": "warning", "message": {"text": w}} for w in report.warnings]
    doc = {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "kerasguard-audit",
                        "informationUri": INFO_URI,
                        "semanticVersion": report.tool_version or "0.0.0",
                        "rules": list(rules.values()),
                    }
                },
                "originalUriBaseIds": artifacts.original_uri_base_ids(),
                "results": results,
                "invocations": [
                    {"executionSuccessful": report.complete, "toolExecutionNotifications": notifications}
                ],
            }
        ],
    }
    return json.dumps(doc, indent=2)
