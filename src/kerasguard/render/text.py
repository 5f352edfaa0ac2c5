"""Human-readable report for terminals and logs."""

from __future__ import annotations

import io

from rich.console import Console

from kerasguard.findings import ScanReport, Severity, Suppression
from kerasguard.render.safe_text import markup_safe as escape

COLOURS = {
    Severity.CRITICAL: "bold red",
    Severity.HIGH: "red",
    Severity.MEDIUM: "yellow",
    Severity.LOW: "cyan",
    Severity.INFO: "dim",
}


def render_text(report: ScanReport, *, color: bool = False, width: int = 120, quiet: bool = False) -> str:
    """The report for people; every name and message from a file is escaped. ``quiet``: clean files
    are left out (files with findings, incomplete files, errors and the summary stay)."""
    buf = io.StringIO()
    con = Console(
        file=buf, force_terminal=color, no_color=not color, width=width, highlight=False, soft_wrap=True
    )
    for err in report.errors:
        con.print(f"[red]error:[/] {escape(err)}")
    for file in report.files:
        if quiet and file.complete and not file.findings and not file.suppressions:
            continue
        status = "incomplete" if not file.complete else ("findings" if file.findings else "clean")
        con.print(
            f"[bold]{escape(file.path)}[/] {escape(f'[{file.format}]')} {status}"
            + (f" ({file.suppressed} suppressed by policy)" if file.suppressed else "")
        )
        for f in file.findings:
            colour = COLOURS[f.severity]
            con.print(
                f"  [{colour}]{str(f.severity).upper():8}[/] {f.rule_id} {escape(f.title)}"
                f"\n           at {escape(str(f.location))}\n           {escape(f.message)}"
            )
            if f.evidence:
                con.print(f"           evidence: {escape(f.evidence)}")
            if f.cves:
                con.print(f"           cves: {escape(', '.join(f.cves))}")
        for s in file.suppressions:
            con.print(_suppression_line(s))
    counts = {s: 0 for s in Severity}
    for f in report.findings:
        counts[f.severity] += 1
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items(), reverse=True) if n)
    applied = sum(1 for s in report.suppressions if s.applied)
    refused = sum(1 for s in report.suppressions if not s.applied)
    con.print(
        f"\n{len(report.files)} artifact(s) scanned, {len(report.findings)} finding(s)"
        + (f": {summary}" if summary else "")
        + ("" if report.complete else "; scan INCOMPLETE")
        + (f"; {len(report.skipped)} file(s) skipped" if report.skipped else "")
        + (f"; {applied} suppressed or downgraded by policy" if applied else "")
        + (f"; {refused} suppression(s) REFUSED" if refused else "")
    )
    return buf.getvalue()


def _suppression_line(s: Suppression) -> str:
    f = s.finding
    what = f"{escape(f.rule_id)} {escape(f.title)}\n           at {escape(str(f.location))}"
    by = f"by {escape(s.policy)}: {escape(s.reason)}"
    if not s.applied:
        return (
            f"  [bold red]REFUSED[/]  policy {s.kind} of {str(f.severity).upper()} {what}\n"
            f"           {by}\n           a code-execution finding can only be suppressed by an explicit"
            " --policy file; it stays reported"
        )
    if s.kind == "severity":
        change = f"{str(f.severity).upper()} -> {str(s.new_severity).upper()}"
        return f"  [dim]DOWNGRADED {change} {what}\n           {by}[/]"
    return (
        f"  [dim]SUPPRESSED {str(f.severity).upper()} {what}\n           {escape(f.message)}"
        f"\n           ignored {by}[/]"
    )
