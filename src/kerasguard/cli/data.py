"""`kerasguard data ...`: check training data, write and verify its manifest, find backdoor poison.

Exit codes: 0 clean, 1 findings at or above --fail-on (or data changed since its manifest, or the model of
`backdoor` refused by the trust pipeline or the policy), 2 error or
part of the data unreadable. numpy, pyarrow, Pillow and Keras are imported inside the commands.
"""

# No `from __future__ import annotations` (typer evaluates the annotations): see kerasguard/cli/__init__.py.

from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, ParamSpec, TypeVar

import typer

from kerasguard.cli.app import (
    EXIT_ERROR,
    EXIT_FINDINGS,
    EXTRA_FOR_MODULE,
    TextOrJson,
    app,
    console,
    print_error,
    stdout,
    write_output,
)
from kerasguard.cli.scan import PolicyOption, resolve_policy
from kerasguard.errors import MODEL_REFUSALS, DataError, KerasGuardError

if TYPE_CHECKING:
    from kerasguard.data.report import BackdoorReport, DataReport
    from kerasguard.findings import Severity

data_app = typer.Typer(
    name="data",
    help="Training data: checks, manifests, backdoor-poison detection (needs the ml extra).",
    no_args_is_help=True,
)
app.add_typer(data_app)

P = ParamSpec("P")
R = TypeVar("R")

Format = Annotated[TextOrJson, typer.Option("--format", "-f", help="text or json.")]
Output = Annotated[Path | None, typer.Option("--output", "-o", help="Write the report here.")]
FailOn = Annotated[
    str | None, typer.Option(help="Exit 1 at this severity or above (default: policy's, high).")
]
LabelColumn = Annotated[str | None, typer.Option("--label", help="Label column of a CSV/Parquet table.")]


def _fails_closed(func: Callable[P, R]) -> Callable[P, R]:
    """Errors become a message and exit 2: kerasguard's own, and anything a hostile file provokes in
    numpy, pyarrow or Pillow (never a traceback)."""

    @wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        from rich.markup import escape

        from kerasguard.data.report import shown

        try:
            return func(*args, **kwargs)
        except (typer.Exit, typer.Abort, KeyboardInterrupt):
            raise
        except ImportError as exc:
            named = (
                isinstance(exc, ModuleNotFoundError) and (exc.name or "").split(".")[0] in EXTRA_FOR_MODULE
            )
            print_error(exc if named else f"{shown(exc, 300)}\nhint: pip install 'kerasguard[ml]'")
        except KerasGuardError as exc:
            console.print(
                f"[bold red]error:[/] {escape(shown(exc.diagnostics(), 3000, newlines=True))}",
                highlight=False,
                soft_wrap=True,
            )
        except MemoryError:
            console.print(
                "[bold red]error:[/] out of memory reading the data", highlight=False, soft_wrap=True
            )
        except Exception as exc:
            console.print(
                f"[bold red]error:[/] could not process the data: {type(exc).__name__}: "
                f"{escape(shown(exc, 300))}",
                highlight=False,
                soft_wrap=True,
            )
        raise typer.Exit(EXIT_ERROR)

    return wrapper


def _threshold(fail_on: str | None, policy_file: Path | None) -> "Severity":
    from kerasguard.findings import Severity

    if fail_on:
        try:
            return Severity.parse(fail_on)
        except ValueError as exc:
            raise DataError(f"--fail-on: {exc}") from None
    return resolve_policy(policy_file).fail_on


def _emit(report: "DataReport | BackdoorReport", fmt: TextOrJson, output: Path | None) -> None:
    from kerasguard.data.render import render_json, render_text

    if fmt is TextOrJson.json:
        text = render_json(report)
    else:
        text = render_text(report, color=output is None and stdout.is_terminal)
    write_output(text, str(output) if output else None)


@data_app.command("check")
@_fails_closed
def check_command(
    data: Annotated[
        Path, typer.Argument(help=".npy, .npz, .csv, .parquet, or a folder of class sub-folders.")
    ],
    reference: Annotated[
        Path | None, typer.Option("--reference", "-r", help="Trusted reference data.")
    ] = None,
    manifest: Annotated[
        Path | None, typer.Option("--manifest", "-m", help="Data manifest the data must still match.")
    ] = None,
    num_classes: Annotated[int | None, typer.Option(help="Labels must lie in 0..N-1.", min=1)] = None,
    label: LabelColumn = None,
    label_issues: Annotated[bool, typer.Option(help="Look for mislabelled samples (cleanlab).")] = True,
    fmt: Format = TextOrJson.text,
    output: Output = None,
    fail_on: FailOn = None,
    policy_file: PolicyOption = None,
) -> None:
    """Check training data: schema, NaN/inf, ranges, duplicates, conflicting labels, balance, outliers."""
    from kerasguard.data.pipeline import check

    threshold = _threshold(fail_on, policy_file)
    report = check(
        data,
        reference=reference,
        manifest=manifest,
        num_classes=num_classes,
        label=label,
        label_issues=label_issues,
    )
    _emit(report, fmt, output)
    raise typer.Exit(report.exit_code(threshold))


@data_app.command("manifest")
@_fails_closed
def manifest_command(
    data: Annotated[Path, typer.Argument(help="Dataset file or folder.")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the manifest (JSON) here; default: stdout.")
    ] = None,
) -> None:
    """Write the dataset's manifest: per-file SHA-256 digests and one root digest."""
    from kerasguard.data.manifest import data_manifest

    manifest = data_manifest(data)
    write_output(manifest.to_json(), str(output) if output else None)
    console.print(f"digest: {manifest.digest()}", highlight=False, markup=False)


@data_app.command("verify")
@_fails_closed
def verify_command(
    data: Annotated[Path, typer.Argument(help="Dataset file or folder.")],
    manifest: Annotated[
        Path, typer.Option("--manifest", "-m", help="Manifest from `kerasguard data manifest`.")
    ],
) -> None:
    """Check that the data has not changed since its manifest. Exit 1 if it has."""
    from rich.markup import escape

    from kerasguard.data.manifest import verify_data_manifest
    from kerasguard.data.report import shown
    from kerasguard.integrity.errors import ManifestMismatchError

    try:
        actual = verify_data_manifest(data, manifest)
    except ManifestMismatchError as exc:
        console.print(
            f"[bold red]changed:[/] {escape(shown(exc.message, 3000, newlines=True))}", highlight=False
        )
        raise typer.Exit(EXIT_FINDINGS) from None
    console.print(f"ok: {len(actual)} file(s) match; digest {actual.digest()}", highlight=False, markup=False)


@data_app.command("backdoor")
@_fails_closed
def backdoor_command(
    model: Annotated[
        Path, typer.Argument(help="The model trained on DATA (scanned, then loaded in process).")
    ],
    data: Annotated[Path, typer.Argument(help="Its labelled training data (.npz, table or image folder).")],
    layer: Annotated[str | None, typer.Option(help="Layer to analyse (default: input of the head).")] = None,
    retrain: Annotated[
        bool, typer.Option("--retrain", help="Retrain on the filtered set and report before/after.")
    ] = False,
    epochs: Annotated[int, typer.Option(help="Epochs of the retraining.", min=1, max=10_000)] = 20,
    batch_size: Annotated[int, typer.Option(help="Batch size of the retraining.", min=1)] = 32,
    test: Annotated[Path | None, typer.Option(help="Clean labelled test data (clean accuracy).")] = None,
    poisoned_test: Annotated[
        Path | None,
        typer.Option(
            help="Test inputs WITH the trigger, labelled with the attacker's target (attack success)."
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed (clustering, retraining).")] = 0,
    fmt: Format = TextOrJson.text,
    output: Output = None,
    fail_on: FailOn = None,
    policy_file: PolicyOption = None,
) -> None:
    """Find likely backdoor poison with the model's penultimate activations, class by class.

    The model is loaded in this process only after kerasguard's trust checks and scan pass, and only
    if the policy allows in-process loading ([sandbox] allow_unsafe_in_process = true).
    """
    from kerasguard.data.pipeline import find_backdoor
    from kerasguard.loading.events import caught_load_event

    threshold = _threshold(fail_on, policy_file)
    if (test is not None or poisoned_test is not None) and not retrain:
        raise DataError("--test and --poisoned-test measure the retrained model; add --retrain")
    try:
        with caught_load_event():  # the load event is the loader's record, not this command's output
            report = find_backdoor(
                model,
                data,
                layer=layer,
                retrain_filtered=retrain,
                epochs=epochs,
                batch_size=batch_size,
                test=test,
                poisoned_test=poisoned_test,
                policy=resolve_policy(policy_file),
                seed=seed,
            )
    except MODEL_REFUSALS as exc:  # a verdict on the model: exit 1, as robustness and probe do
        print_error(exc, label="refused")
        raise typer.Exit(EXIT_FINDINGS) from None
    _emit(report, fmt, output)
    raise typer.Exit(report.exit_code(threshold))
