"""Text and JSON renderings of data reports (the JSON is ``to_dict``; the text is for people).

Everything printed that came from the data (column names, cells, file names) was made printable by
``report.shown`` when the finding was made, and is escaped for rich markup here.
"""

from __future__ import annotations

import io
import json

from rich.console import Console
from rich.markup import escape

from kerasguard.data.report import BackdoorReport, DataReport, shown
from kerasguard.findings import Finding, Severity

COLOURS = {
    Severity.CRITICAL: "bold red",
    Severity.HIGH: "red",
    Severity.MEDIUM: "yellow",
    Severity.LOW: "cyan",
    Severity.INFO: "dim",
}


def render_json(report: DataReport | BackdoorReport) -> str:
    return json.dumps(report.to_dict(), indent=2)


def _findings(con: Console, findings: tuple[Finding, ...]) -> None:
    for f in findings:
        colour = COLOURS[f.severity]
        con.print(
            f"  [{colour}]{str(f.severity).upper():8}[/] {f.rule_id} {escape(f.title)}"
            f"\n           at {escape(shown(f.location, 300))}"
            f"\n           {escape(shown(f.message, 2000, newlines=True))}"
        )
        if f.evidence:
            con.print(f"           evidence: {escape(shown(f.evidence, 1000))}")


def _summary(findings: tuple[Finding, ...]) -> str:
    counts = {s: 0 for s in Severity}
    for f in findings:
        counts[f.severity] += 1
    return ", ".join(f"{n} {s}" for s, n in sorted(counts.items(), reverse=True) if n)


def render_text(report: DataReport | BackdoorReport, *, color: bool = False, width: int = 120) -> str:
    buf = io.StringIO()
    con = Console(file=buf, force_terminal=color, no_color=not color, width=width, highlight=False)
    if isinstance(report, DataReport):
        status = "incomplete" if not report.complete else ("findings" if report.findings else "clean")
        con.print(
            f"[bold]{escape(shown(report.target, 300))}[/] {escape(f'[{report.kind}]')} {status}: "
            f"{report.samples} samples, {report.features} numeric features"
        )
        if report.manifest_digest:
            con.print(f"  data manifest digest {report.manifest_digest}")
    else:
        con.print(
            f"[bold]{escape(shown(report.target, 300))}[/] with model {escape(shown(report.model, 300))}: "
            f"{report.samples} samples, activations of {escape(shown(report.layer))}"
        )
        for c in report.classes:
            sil = "-" if c.silhouette is None else f"{c.silhouette:.3f}"
            re = "-" if c.reclassified_fraction is None else f"{c.reclassified_fraction:.0%}"
            flip = "-" if c.trigger_flip is None else f"{c.trigger_flip:.0%}"
            verdict = "  POISONED" if c.poisoned else ""
            con.print(
                f"  class {c.label:>4}: {c.samples:6} samples, {c.candidates:5} outliers, "
                f"silhouette {sil}, reclassified {re}, trigger test {flip}{verdict}"
            )
    _findings(con, report.findings)
    if isinstance(report, BackdoorReport):
        top = sorted(report.suspicious, key=lambda s: -s.score)[:20]
        if top:
            con.print(
                f"  {len(report.flagged_indices)} to remove (confirmed), {len(report.suspicious)} outliers; "
                "most suspicious (index label score -> reclassified as, * = confirmed):"
            )
            for s in top:
                again = "" if s.reclassified_as is None else f" -> {s.reclassified_as}"
                mark = " *" if s.confirmed else ""
                con.print(f"    {s.index:8} {s.label:4} {s.score:8.2f}{again}{mark}")
        if report.retrain is not None:
            r = report.retrain

            def pct(v: float | None) -> str:
                return "n/a" if v is None else f"{v:.1%}"

            con.print(f"  retrained without {r.removed} flagged samples ({r.epochs} epochs):")
            con.print(f"    clean accuracy  {pct(r.clean_accuracy_before)} -> {pct(r.clean_accuracy_after)}")
            con.print(
                f"    attack success  {pct(r.attack_success_before)} -> {pct(r.attack_success_after)}"
                + ("" if r.attack_success_before is not None else " (give --poisoned-test to measure)")
            )
    summary = _summary(report.findings)
    con.print(
        f"\n{len(report.findings)} finding(s)"
        + (f": {summary}" if summary else "")
        + ("" if report.complete else "; INCOMPLETE (part of the data could not be read)")
    )
    return buf.getvalue()
