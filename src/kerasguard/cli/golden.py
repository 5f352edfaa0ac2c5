"""`kerasguard golden record|check`: re-check a model's predictions after a stack upgrade.

kerasguard.golden (numpy, and keras when a model is loaded) is imported only when a golden command runs,
so other commands start fast.
"""

# No `from __future__ import annotations` (typer evaluates the annotations): see kerasguard/cli/__init__.py.

import json
from pathlib import Path
from typing import Annotated

import typer

from kerasguard.cli.app import TextOrJson, app, handle_errors, write_output
from kerasguard.cli.scan import resolve_policy

golden_app = typer.Typer(
    name="golden",
    help="Record reference predictions; check them again after upgrading keras, the backend or h5py.",
    no_args_is_help=True,
)
app.add_typer(golden_app)

PolicyOption = Annotated[Path | None, typer.Option("--policy", help="Policy file.")]


@golden_app.command("record")
@handle_errors
def record(
    model: Annotated[Path, typer.Argument(help="The model file (.keras, .h5) or model directory.")],
    inputs: Annotated[Path, typer.Option("--inputs", help="Reference inputs: .npy, or .npz for several.")],
    atol: Annotated[
        float | None, typer.Option(min=0.0, help="Absolute tolerance stored with the record [default: 1e-5].")
    ] = None,
    rtol: Annotated[
        float | None, typer.Option(min=0.0, help="Relative tolerance stored with the record [default: 1e-4].")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing record.")] = False,
    policy_file: PolicyOption = None,
) -> None:
    """Scan and load MODEL, run it on the inputs, store <MODEL>.golden/ (inputs, outputs, versions)."""
    from kerasguard import golden

    policy = resolve_policy(policy_file)
    folder = golden.record(
        model,
        inputs,
        policy=policy,
        atol=golden.DEFAULT_ATOL if atol is None else atol,
        rtol=golden.DEFAULT_RTOL if rtol is None else rtol,
        force=force,
    )
    write_output(f"recorded {folder}", None)


@golden_app.command("check")
@handle_errors
def check(
    model: Annotated[Path, typer.Argument(help="The model file or directory that was recorded.")],
    atol: Annotated[float | None, typer.Option(min=0.0, help="Override the recorded tolerance.")] = None,
    rtol: Annotated[float | None, typer.Option(min=0.0, help="Override the recorded tolerance.")] = None,
    allow_changed_model: Annotated[
        bool, typer.Option("--allow-changed-model", help="Compare even if the model file changed (re-saved).")
    ] = False,
    top: Annotated[int, typer.Option(min=1, max=1000, help="How many worst differences to print.")] = 10,
    fmt: Annotated[TextOrJson, typer.Option("--format", "-f")] = TextOrJson.text,
    policy_file: PolicyOption = None,
) -> None:
    """Reload MODEL under the current stack and compare with its golden record.

    Exit codes: 0 outputs within tolerance, 1 regression, 2 error (no record, model changed, refused by scan).
    """
    from kerasguard import golden

    policy = resolve_policy(policy_file)
    result = golden.check(
        model, policy=policy, atol=atol, rtol=rtol, allow_changed_model=allow_changed_model, top=top
    )
    if fmt is TextOrJson.text:
        write_output(golden.render_result(result), None)
    else:
        write_output(json.dumps(result.to_dict(), indent=2), None)
    raise typer.Exit(result.exit_code())
