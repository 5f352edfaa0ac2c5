"""`kerasguard audit` and `kerasguard advisories list|show|update`."""

# No `from __future__ import annotations` (typer evaluates the annotations): see kerasguard/cli/__init__.py.

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from kerasguard.cli.app import (
    EXIT_ERROR,
    FailOn,
    OutputFormat,
    TextOrJson,
    app,
    handle_errors,
    print_error,
    stdout,
    write_output,
)
from kerasguard.cli.scan import IsolatedOption, resolve_policy

if TYPE_CHECKING:
    from kerasguard.advisories.audit import AuditReport
    from kerasguard.advisories.database import AdvisoryDatabase
    from kerasguard.advisories.models import Advisory

# The advisory machinery (packaging, importlib.metadata) is imported inside the commands.

advisories_app = typer.Typer(
    name="advisories",
    help="The offline advisory database: list, show, import OSV records.",
    no_args_is_help=True,
)
app.add_typer(advisories_app)


def _render(report: "AuditReport", fmt: OutputFormat, color: bool) -> str:
    from kerasguard.render.audit import render_audit_json, render_audit_sarif, render_audit_text

    if fmt is OutputFormat.json:
        return render_audit_json(report)
    if fmt is OutputFormat.sarif:
        return render_audit_sarif(report)
    return render_audit_text(report, color=color)


@app.command()
@handle_errors
def audit(
    python: Annotated[
        Path | None, typer.Option("--python", help="Audit this interpreter's environment (never imports it).")
    ] = None,
    requirement: Annotated[
        list[Path] | None,
        typer.Option(
            "--requirement",
            "-r",
            help="Audit pins in a requirements file or lock file (uv.lock, poetry.lock, pdm.lock, "
            "pylock.toml, Pipfile.lock). Repeatable.",
        ),
    ] = None,
    site_packages: Annotated[
        list[Path] | None, typer.Option("--site-packages", help="Audit the distributions in this folder.")
    ] = None,
    fmt: Annotated[OutputFormat, typer.Option("--format", "-f")] = OutputFormat.text,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write here.")] = None,
    fail_on: Annotated[
        FailOn | None, typer.Option(help="Exit 1 at this severity or above (default: policy, else high).")
    ] = None,
    policy_file: Annotated[
        Path | None, typer.Option("--policy", help="Policy file (kerasguard.toml or pyproject.toml).")
    ] = None,
    isolated: IsolatedOption = False,
) -> None:
    """Audit keras, tf-keras, tensorflow and h5py (and any package with imported advisories).

    Default target: the running environment. Exit codes: 0 clean, 1 advisories at or above --fail-on,
    2 the audit could not be completed.
    """
    from kerasguard.advisories.audit import audit_environment
    from kerasguard.findings import Severity

    policy = resolve_policy(policy_file, isolated=isolated)
    threshold = Severity.parse(fail_on.value) if fail_on else None
    report = audit_environment(
        python=python,
        requirements=requirement or (),
        site_packages=site_packages or (),
        policy=policy,
    )
    color = output is None and fmt is OutputFormat.text and stdout.is_terminal
    write_output(_render(report, fmt, color), output, styled=fmt is OutputFormat.text)
    raise typer.Exit(report.exit_code(threshold))


def _print_warnings(db: "AdvisoryDatabase") -> None:
    for warning in db.warnings:
        print_error(warning, label="warning", style="yellow")


@advisories_app.command("list")
@handle_errors
def list_advisories(
    package: Annotated[str | None, typer.Option("--package", "-p", help="Only this package.")] = None,
    fmt: Annotated[TextOrJson, typer.Option("--format", "-f")] = TextOrJson.text,
) -> None:
    """List advisories with severity, affected ranges and origin (shipped or imported)."""
    from kerasguard.advisories.database import load_database

    db = load_database()
    _print_warnings(db)
    rows = [a for a in db.advisories if package is None or a.package(package) is not None]
    if fmt is TextOrJson.json:
        data = [
            {
                "id": a.id,
                "aliases": list(a.aliases),
                "severity": str(a.severity),
                "summary": a.summary,
                "affected": {e.display_name: e.ranges_text for e in a.affected},
                "corrected": bool(a.corrections),
                "withdrawn": a.withdrawn is not None,
                "origin": a.origin,
            }
            for a in rows
        ]
        write_output(json.dumps(data, indent=2), None)
        return
    lines: list[str] = []
    for a in rows:
        ranges = "; ".join(f"{e.display_name} {e.ranges_text}" for e in a.affected)
        flags = ("*" if a.corrections else " ") + ("w" if a.withdrawn else " ")
        lines += [f"{a.id:22} {flags} {a.severity!s:8} {a.summary}", f"{'':34}{ranges}"]
    lines.append(
        f"\n{len(rows)} advisories (* public data corrected, w withdrawn); imported records: {db.user_dir}"
    )
    write_output("\n".join(lines), None)


def _show_text(a: "Advisory") -> str:
    lines = [f"{a.id}  [{a.severity}]  {a.summary}"]
    if a.aliases:
        lines.append(f"aliases: {', '.join(a.aliases)}")
    if a.related:
        lines.append(f"related: {', '.join(a.related)}")
    lines.append(f"modified: {a.modified.isoformat()}  origin: {a.origin}")
    if a.withdrawn:
        lines.append(f"WITHDRAWN {a.withdrawn.isoformat()}")
    lines += ["", a.details, "", "affected:"]
    for e in a.affected:
        fixed = ", ".join(str(v) for v in e.fixed_versions) or "none"
        lines.append(f"  {e.display_name}: {e.ranges_text}  (fixed: {fixed})")
        if e.bundled_hdf5:
            lines.append(f"    judged by bundled HDF5: {' || '.join(str(i) for i in e.bundled_hdf5)}")
    if a.trigger:
        lines += ["", f"trigger: {a.trigger}"]
    if a.rules:
        only = f" (formats: {', '.join(a.formats)})" if a.formats else ""
        lines.append(f"scanner rules: {', '.join(a.rules)}{only}")
    if a.remediation:
        lines.append(f"remediation: {a.remediation}")
    for c in a.corrections:
        lines += ["", f"correction: {c.text}", f"  source: {c.source}"]
        facts = [f"{v} affected" for v in c.affected_versions] + [f"{v} fixed" for v in c.unaffected_versions]
        if facts:
            lines.append(f"  verified: {', '.join(facts)}")
    if a.notes:
        lines += ["", "merge notes:", *(f"  {n}" for n in a.notes)]
    if a.references:
        lines += ["", "references:", *(f"  {r}" for r in a.references)]
    return "\n".join(lines)


@advisories_app.command("show")
@handle_errors
def show_advisory(
    ident: Annotated[str, typer.Argument(help="Advisory id or alias (CVE, GHSA, PYSEC, KGSA).")],
    fmt: Annotated[TextOrJson, typer.Option("--format", "-f")] = TextOrJson.text,
) -> None:
    """Show one advisory as kerasguard judges it, with its corrections and sources."""
    from kerasguard.advisories.database import load_database
    from kerasguard.advisories.models import to_osv

    db = load_database()
    _print_warnings(db)
    adv = db.get(ident)
    if adv is None:
        print_error(f"no advisory {ident!r}; see `kerasguard advisories list`")
        raise typer.Exit(EXIT_ERROR)
    if fmt is TextOrJson.text:
        write_output(_show_text(adv), None)
    else:
        write_output(json.dumps(to_osv(adv), indent=2), None)


@advisories_app.command("update")
@handle_errors
def update_advisories(
    source: Annotated[
        Path, typer.Option("--from", help="OSV JSON file or list, a directory of them, or an OSV zip export.")
    ],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Validate; write nothing.")] = False,
    fmt: Annotated[TextOrJson, typer.Option("--format", "-f")] = TextOrJson.text,
) -> None:
    """Import OSV records offline. Shipped corrections stay unless a newer record says otherwise.

    Exit codes: 0 every record imported, 1 some records rejected, 2 nothing could be read.
    """
    from kerasguard.advisories.importer import import_records

    report = import_records(source, dry_run=dry_run)
    if fmt is TextOrJson.json:
        write_output(json.dumps(report.to_dict(), indent=2), None)
        raise typer.Exit(report.exit_code())
    out = [
        f"read {report.read} record(s) from {report.source}: {len(report.accepted)} accepted, "
        f"{len(report.rejected)} rejected, {len(report.skipped)} skipped"
        + (" (dry run: nothing written)" if dry_run else "")
    ]
    out += [f"rejected: {r}" for r in report.rejected]
    out += [f"skipped: {s}" for s in report.skipped]
    out += [f"added: {a}" for a in report.added]
    out += [f"updated: {u}" for u in report.updated]
    out += [f"note: {n}" for n in report.notes]
    write_output("\n".join(out), None)
    raise typer.Exit(report.exit_code())
