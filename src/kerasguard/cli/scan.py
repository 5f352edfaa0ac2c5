"""`kerasguard scan`, `rules` and `rule`."""

# No `from __future__ import annotations` (typer evaluates the annotations): see kerasguard/cli/__init__.py.

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from kerasguard.cli.app import (
    EXIT_ERROR,
    FailOn,
    OutputFormat,
    TextOrJson,
    app,
    console,
    handle_errors,
    print_error,
    stdout,
    write_output,
)
from kerasguard.errors import KerasGuardError
from kerasguard.render.safe_text import markup_safe

if TYPE_CHECKING:
    from kerasguard.findings import ScanReport
    from kerasguard.policy import Policy

# The scanner, rules, renderers and rich's progress bar are imported inside the commands: every
# command module is imported to build the CLI, so module level stays light (fast start-up).

PolicyOption = Annotated[
    Path | None,
    typer.Option("--policy", help="Policy file (kerasguard.toml or pyproject.toml)."),
]
IsolatedOption = Annotated[
    bool,
    typer.Option(
        "--isolated",
        help="Use the default policy: ignore any kerasguard.toml or pyproject.toml found upwards.",
    ),
]


def resolve_policy(policy_file: Path | None, *, isolated: bool = False) -> "Policy":
    """An explicit --policy, else (unless ``isolated``) kerasguard.toml / [tool.kerasguard] found upwards."""
    from kerasguard.policy import Policy, load_policy

    if policy_file is not None:
        if isolated:
            raise KerasGuardError("--isolated and --policy exclude each other")
        return load_policy(policy_file)
    if isolated:
        return Policy(source="<defaults: --isolated>")
    return load_policy(search_from=Path.cwd())


def render(report: "ScanReport", fmt: OutputFormat, *, color: bool = False, quiet: bool = False) -> str:
    if fmt is OutputFormat.json:
        from kerasguard.render.json import render_json

        return render_json(report)
    if fmt is OutputFormat.sarif:
        from kerasguard.render.sarif import render_sarif

        return render_sarif(report)
    from kerasguard.render.text import render_text

    return render_text(report, color=color, quiet=quiet)


def parse_jobs(value: str) -> int | Literal["auto"]:
    """``auto`` or a number of worker processes from 1 to 64."""
    if value.strip().lower() == "auto":
        return "auto"
    try:
        jobs = int(value)
    except ValueError:
        jobs = 0
    if not 1 <= jobs <= 64:
        raise typer.BadParameter(f"{value!r} is neither auto nor a number from 1 to 64", param_hint="--jobs")
    return jobs


@app.command()
@handle_errors
def scan(
    paths: Annotated[list[Path], typer.Argument(help="Model files or directories to scan.")],
    fmt: Annotated[OutputFormat, typer.Option("--format", "-f")] = OutputFormat.text,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write here.")] = None,
    fail_on: Annotated[
        FailOn | None,
        typer.Option(help="Exit 1 at this severity or above (default: the policy's fail_on, else high)."),
    ] = None,
    jobs: Annotated[
        str,
        typer.Option(
            "--jobs",
            "-j",
            help="Worker processes: a number from 1 to 64, or auto (one per CPU, at most 8, for 8+ files).",
        ),
    ] = "auto",
    policy_file: PolicyOption = None,
    keras_version: Annotated[
        str | None, typer.Option(help="Judge for this Keras version (default: installed).")
    ] = None,
    progress: Annotated[bool | None, typer.Option(help="Progress bar (default: on a TTY).")] = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Text: print only files with findings, and the summary.")
    ] = False,
    isolated: IsolatedOption = False,
    only_models: Annotated[
        bool,
        typer.Option(
            "--only-models",
            help="Skip explicit files that are not models by content (pre-commit hooks pass every file).",
        ),
    ] = False,
) -> None:
    """Scan model files statically; never loads or runs them.

    Exit codes: 0 clean, 1 findings at or above --fail-on, 2 error or incomplete scan.
    """
    import dataclasses

    from kerasguard.findings import Severity
    from kerasguard.scanning.engine import scan_many
    from kerasguard.scanning.gate import gate

    policy = resolve_policy(policy_file, isolated=isolated)
    if keras_version:
        policy = dataclasses.replace(policy, keras_version=keras_version)
    threshold = Severity.parse(fail_on.value) if fail_on else policy.fail_on
    workers = parse_jobs(jobs)
    show_bar = console.is_terminal if progress is None else progress
    if show_bar:
        # No refresh thread (auto_refresh=False): worker processes are forked only while this process
        # runs a single thread. The bar is redrawn as files finish, at most 10 times a second.
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        with Progress(
            TextColumn("scanning"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.description}"),
            console=console,
            transient=True,
            auto_refresh=False,
        ) as bar:
            task = bar.add_task("", total=None)
            drawn = [0.0]

            def advance(name: str) -> None:
                bar.update(task, advance=1, description=markup_safe(name[-40:]))
                if time.monotonic() - drawn[0] >= 0.1:
                    drawn[0] = time.monotonic()
                    bar.refresh()

            def set_total(n: int) -> None:
                bar.update(task, total=n)
                bar.refresh()

            report = scan_many(
                paths,
                policy,
                jobs=workers,
                on_targets=set_total,
                progress=advance,
                only_models=only_models,
            )
    else:
        report = scan_many(paths, policy, jobs=workers, only_models=only_models)
    color = output is None and fmt is OutputFormat.text and stdout.is_terminal
    text = render(report, fmt, color=color, quiet=quiet)
    write_output(text, output, styled=fmt is OutputFormat.text)
    raise typer.Exit(gate(report, policy, fail_on=threshold).exit_code)


@app.command("rules")
def list_rules(
    fmt: Annotated[TextOrJson, typer.Option("--format", "-f")] = TextOrJson.text,
) -> None:
    """List every rule with its ID, severity and title."""
    import json

    from kerasguard.rules import RULES

    if fmt is TextOrJson.json:
        rows = [
            {
                "id": r.id,
                "name": r.name,
                "severity": str(r.severity),
                "title": r.title,
                "cwe": r.cwe,
                "cves": list(r.cves),
            }
            for r in RULES
        ]
        write_output(json.dumps(rows, indent=2), None)
        return
    for r in RULES:
        stdout.print(f"{r.id}  {r.severity!s:8}  {r.name:32}  {r.title}", markup=False)


@app.command("rule")
def show_rule(rule_id: Annotated[str, typer.Argument(help="Rule ID, e.g. KG101.")]) -> None:
    """Print one rule's documentation."""
    from kerasguard.rules import RULES_BY_ID
    from kerasguard.rules.docs import rule_markdown

    rule = RULES_BY_ID.get(rule_id.upper())
    if rule is None:
        print_error(f"no rule {rule_id!r}; see `kerasguard rules`")
        raise typer.Exit(EXIT_ERROR)
    write_output(rule_markdown(rule), None)
