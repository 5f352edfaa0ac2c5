"""`kerasguard inspect`: a reviewer's view of an untrusted model."""

# No `from __future__ import annotations` (typer evaluates the annotations): see kerasguard/cli/__init__.py.

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from kerasguard.cli.app import TextOrJson, app, handle_errors, stdout, write_output
from kerasguard.cli.scan import IsolatedOption, PolicyOption, resolve_policy
from kerasguard.render.safe_text import markup_safe as escape

if TYPE_CHECKING:
    from rich.tree import Tree

    from kerasguard.inspect import Inspection, LayerNode


def _add_layers(tree: "Tree", layers: "list[LayerNode]") -> None:
    for layer in layers:
        label = f"[bold]{escape(layer.class_name)}[/] {escape(layer.name)}"
        if layer.details:
            label += " [dim](" + escape(", ".join(f"{k}={v}" for k, v in layer.details.items())) + ")[/]"
        if layer.parameters is not None:
            label += f" [cyan]{layer.parameters:,} params[/]"
        if layer.module and not layer.module.startswith("keras"):
            label += f" [red]module={escape(layer.module)}[/]"
        _add_layers(tree.add(label), layer.children)


def _render(ins: "Inspection") -> None:
    from rich.tree import Tree

    from kerasguard.render.text import COLOURS

    report = ins.report
    root = Tree(f"[bold]{escape(ins.path)}[/] " + escape(f"[{ins.format}]"))
    root.add(
        f"digest: {escape(ins.digest)}"
        if ins.digest
        else f"digest: [red]not computed[/] ({escape(ins.digest_error or 'unknown reason')})"
    )
    claimed = ins.claimed_keras_version
    root.add(
        f"saved by Keras {escape(claimed)} [dim](claimed by the file)[/]"
        if claimed
        else "saved by Keras: [dim]not recorded in the file[/]"
    )
    _add_layers(root.add("architecture"), ins.layers)
    refs = root.add(f"references ({len(ins.references)})")
    for ref in ins.references:
        where = f"{ref.module}." if ref.module else ""
        extra = f" registered as {ref.registered_name}" if ref.kind == "registered" else ""
        refs.add(
            f"{escape(ref.kind)}: {escape(where + ref.name)}{escape(extra)} [dim]{escape(ref.pointer)}[/]"
        )
    assets = root.add(f"assets and other members ({len(ins.assets)})")
    for name, size, kind in ins.assets:
        assets.add(f"{escape(name)} ({size:,} bytes, {escape(kind)})")
    data = ins.to_dict()["weights"]
    weights = root.add(
        f"weights: {data['datasets']} datasets, {data['parameters']:,} parameters, "
        f"{data['declared_bytes']:,} bytes declared, {data['stored_bytes']:,} stored"
    )
    for group in ins.weights:
        weights.add(
            f"{escape(group.path)}: {group.datasets} datasets, {group.parameters:,} params, "
            f"{group.declared_bytes:,} declared / {group.stored_bytes:,} stored"
        )
    findings = root.add(f"findings ({len(report.findings)})" + ("" if report.complete else " INCOMPLETE"))
    for f in report.findings:
        findings.add(
            f"[{COLOURS[f.severity]}]{str(f.severity).upper()}[/] {escape(f.rule_id)} {escape(f.title)}: "
            f"{escape(f.message)} [dim]at {escape(str(f.location))}[/]"
        )
    stdout.print(root, highlight=False)


@app.command()
@handle_errors
def inspect(
    path: Annotated[Path, typer.Argument(help="Model file or directory to review.")],
    fmt: Annotated[TextOrJson, typer.Option("--format", "-f")] = TextOrJson.text,
    policy_file: PolicyOption = None,
    isolated: IsolatedOption = False,
) -> None:
    """Review an untrusted model without loading it: architecture, references, assets, weights, findings.

    Exit codes as for `scan` (threshold: the policy's fail_on).
    """
    from kerasguard.inspect import inspect_model
    from kerasguard.scanning.gate import gate

    policy = resolve_policy(policy_file, isolated=isolated)
    ins = inspect_model(path, policy)
    if fmt is TextOrJson.text:
        _render(ins)
    else:
        write_output(json.dumps(ins.to_dict(), indent=2), None)
    raise typer.Exit(gate(ins.report, policy).exit_code)
