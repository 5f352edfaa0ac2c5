"""`kerasguard robustness evaluate|train|detectors`: attacks, adversarial training, input detectors.

The model goes through ``kerasguard.load_model`` (source, verification, scan) first. By default it is
loaded in the sandbox, where only predictions cross: the gradient-free Square Attack and the scoring
of precomputed adversarial sets work there. White-box attacks, training and fitting detectors need
the real model: ``--in-process``, which the policy must allow. Exit codes: 0 done, 1 refused (policy,
verification, findings) or ``--fail-under`` crossed, 2 error (bad data, parameters, no gradients).
"""

# No `from __future__ import annotations` (typer evaluates the annotations): see kerasguard/cli/__init__.py.

from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from kerasguard.cli.app import EXIT_CLEAN, EXIT_ERROR, EXIT_FINDINGS, app, console, print_error, write_output
from kerasguard.cli.scan import PolicyOption, resolve_policy
from kerasguard.errors import MODEL_REFUSALS, KerasGuardError

robustness_app = typer.Typer(
    name="robustness",
    help="Measure and raise a model's resistance to adversarial inputs; fit input detectors.",
    no_args_is_help=True,
)
app.add_typer(robustness_app)


class ReportFormat(StrEnum):
    text = "text"
    json = "json"
    markdown = "markdown"


ModelArg = Annotated[Path, typer.Argument(help="The model file (.keras or .h5).")]
DataArg = Annotated[Path, typer.Argument(help="Labelled data: .npz with x and y (see docs/robustness.md).")]
DigestOption = Annotated[str | None, typer.Option(help="Expected model digest, e.g. sha256:<hex>.")]
InProcessOption = Annotated[
    bool,
    typer.Option(
        "--in-process",
        help="Load the real model in this process (needed for gradients; the policy must allow it).",
    ),
]
ClipMinOption = Annotated[
    float | None, typer.Option(help="Smallest valid input value [default: data's min].")
]
ClipMaxOption = Annotated[float | None, typer.Option(help="Largest valid input value [default: data's max].")]
FormatOption = Annotated[ReportFormat, typer.Option("--format", "-f", help="text, json or markdown.")]
OutputOption = Annotated[Path | None, typer.Option("--output", "-o", help="Write the report here.")]
SeedOption = Annotated[int, typer.Option(min=0, help="Random seed (attack starts, splits).")]


def _floats(text: str, what: str) -> list[float]:
    from kerasguard.robustness.errors import RobustnessError

    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise RobustnessError(f"{what} must be comma-separated numbers, got {text!r}") from None
    if not values or len(values) > 100:
        raise RobustnessError(f"give between 1 and 100 values for {what}")
    return values


@contextmanager
def _loaded(
    path: Path, policy_file: Path | None, digest: str | None, in_process: bool
) -> Iterator[tuple[Any, str]]:
    """The model after the trust pipeline, and its sha256; a sandboxed one is closed afterwards."""
    from kerasguard.loading.events import caught_load_event
    from kerasguard.loading.loader import load_model

    policy = resolve_policy(policy_file)
    with caught_load_event() as catcher:
        model = load_model(path, policy=policy, digest=digest, sandbox=False if in_process else None)
    sha = str((catcher.event or {}).get("sha256") or "")
    try:
        yield model, sha
    finally:
        if hasattr(model, "close"):
            model.close()


@contextmanager
def _exit_codes() -> Iterator[None]:
    """Refusals exit 1, every other kerasguard error 2; the message, never a traceback."""
    try:
        yield
    except MODEL_REFUSALS as exc:
        print_error(exc, label="refused")
        raise typer.Exit(EXIT_FINDINGS) from None
    except KerasGuardError as exc:
        print_error(exc)
        raise typer.Exit(EXIT_ERROR) from None


def _emit(report: Any, fmt: ReportFormat, output: Path | None) -> None:
    from kerasguard.robustness.report import render

    write_output(render(report, fmt.value), str(output) if output else None)


@robustness_app.command("evaluate")
def evaluate_command(
    model_path: ModelArg,
    data_path: DataArg,
    attack: Annotated[
        str, typer.Option(help="Comma-separated: fgsm, pgd, square, or none (clean accuracy only).")
    ] = "fgsm,pgd",
    eps: Annotated[str, typer.Option(help="Comma-separated epsilons (in input units).")] = "0.05,0.1,0.2",
    norm: Annotated[str, typer.Option(help="linf or l2 (FGSM/PGD; Square is L-inf).")] = "linf",
    steps: Annotated[int, typer.Option(min=1, max=10_000, help="PGD steps.")] = 20,
    step_size: Annotated[float | None, typer.Option(help="PGD step [default: 2.5 * eps / steps].")] = None,
    restarts: Annotated[int, typer.Option(min=1, max=100, help="PGD random restarts.")] = 1,
    targeted: Annotated[
        bool, typer.Option("--targeted", help="Targeted attacks (see --target-mode).")
    ] = False,
    target_mode: Annotated[
        str, typer.Option(help="random or next: targets when the data has no 'target' array.")
    ] = "random",
    queries: Annotated[int, typer.Option(min=1, max=10_000, help="Square Attack queries per example.")] = 300,
    limit: Annotated[int | None, typer.Option(min=1, help="Use only the first N examples.")] = None,
    batch_size: Annotated[int, typer.Option(min=1, max=65_536)] = 256,
    plot: Annotated[Path | None, typer.Option(help="Write a PNG of accuracy against epsilon.")] = None,
    save_adversarial: Annotated[
        Path | None, typer.Option(help="Folder for the adversarial examples (.npz per attack and eps).")
    ] = None,
    fail_under: Annotated[
        float | None, typer.Option(min=0.0, max=1.0, help="Exit 1 if any accuracy is below this (0-1).")
    ] = None,
    clip_min: ClipMinOption = None,
    clip_max: ClipMaxOption = None,
    in_process: InProcessOption = False,
    digest: DigestOption = None,
    policy_file: PolicyOption = None,
    seed: SeedOption = 0,
    fmt: FormatOption = ReportFormat.text,
    output: OutputOption = None,
) -> None:
    """Robust accuracy of MODEL on DATA under FGSM / PGD / Square at each epsilon."""
    with _exit_codes():
        from kerasguard.robustness.data import check_eps, load_dataset
        from kerasguard.robustness.engines import GRADIENT_FREE_HINT
        from kerasguard.robustness.errors import NoGradientError, RobustnessError
        from kerasguard.robustness.evaluate import evaluate
        from kerasguard.robustness.report import plot_accuracy

        names = [a.strip().lower() for a in attack.split(",") if a.strip()]
        names = [] if names == ["none"] else names
        bad = [a for a in names if a not in ("fgsm", "pgd", "square")]
        if bad or norm not in ("linf", "l2") or target_mode not in ("random", "next"):
            raise RobustnessError(
                f"unknown attack {', '.join(bad)}"
                if bad
                else f"unknown norm or target mode: {norm}, {target_mode}",
                hint="--attack fgsm,pgd,square|none --norm linf|l2 --target-mode random|next",
            )
        if "square" in names and norm != "linf":  # never a silent L-inf run under an L2 label
            raise RobustnessError(
                "the Square Attack is implemented for the L-inf norm only",
                hint="run it with --norm linf (the default), and the L2 attacks in a run of their own",
            )
        if not in_process and any(n in ("fgsm", "pgd") for n in names):
            raise NoGradientError(
                "white-box attacks (fgsm, pgd) need input gradients, which a sandboxed model does not give"
                " (only predictions cross the sandbox)",
                hint=GRADIENT_FREE_HINT,
            )
        data = load_dataset(data_path, clip_min=clip_min, clip_max=clip_max).take(limit)
        epsilons = _floats(eps, "--eps") if names else []
        for value in epsilons:  # before the model is loaded: fail fast
            check_eps(value, data, "linf" if names == ["square"] else norm)
        with _loaded(model_path, policy_file, digest, in_process) as (model, _):
            report = evaluate(
                model,
                data,
                attacks=names,  # type: ignore[arg-type]
                eps=epsilons,
                norm=norm,  # type: ignore[arg-type]
                steps=steps,
                step_size=step_size,
                restarts=restarts,
                targeted=targeted,
                target_mode=target_mode,  # type: ignore[arg-type]
                square_queries=queries,
                batch_size=batch_size,
                seed=seed,
                model_name=model_path.name,
                save_adversarial=save_adversarial,
            )
        if plot is not None:
            plot_accuracy(report, plot)
        _emit(report, fmt, output)
        if fail_under is not None and report.worst_accuracy() < fail_under:
            console.print(
                f"accuracy {100 * report.worst_accuracy():.1f}% is below --fail-under {100 * fail_under:g}%",
                highlight=False,
                markup=False,
            )
            raise typer.Exit(EXIT_FINDINGS)
    raise typer.Exit(EXIT_CLEAN)


@robustness_app.command("train")
def train_command(
    model_path: ModelArg,
    data_path: DataArg,
    out: Annotated[Path, typer.Option("--out", help="Where to save the trained model (.keras).")],
    method: Annotated[str, typer.Option(help="pgd (Madry) or trades.")] = "pgd",
    eps: Annotated[float, typer.Option(help="Training epsilon (input units).")] = 0.1,
    norm: Annotated[str, typer.Option(help="linf or l2.")] = "linf",
    steps: Annotated[int, typer.Option(min=1, max=1000, help="PGD steps per batch.")] = 10,
    step_size: Annotated[float | None, typer.Option(help="PGD step [default: 2.5 * eps / steps].")] = None,
    epochs: Annotated[int, typer.Option(min=1, max=1000)] = 10,
    batch_size: Annotated[int, typer.Option(min=1, max=65_536)] = 64,
    learning_rate: Annotated[float, typer.Option(help="Adam learning rate.")] = 1e-3,
    beta: Annotated[float, typer.Option(min=0.0, help="TRADES: weight of the robustness term.")] = 6.0,
    validation: Annotated[
        Path | None, typer.Option(help="Validation data (.npz) [default: a held-out part of DATA].")
    ] = None,
    validation_fraction: Annotated[float, typer.Option(min=0.01, max=0.9)] = 0.2,
    clip_min: ClipMinOption = None,
    clip_max: ClipMaxOption = None,
    in_process: InProcessOption = False,
    digest: DigestOption = None,
    policy_file: PolicyOption = None,
    seed: SeedOption = 0,
    fmt: FormatOption = ReportFormat.text,
    output: OutputOption = None,
) -> None:
    """Adversarially train MODEL on DATA (PGD or TRADES); report clean and PGD accuracy before and after."""
    with _exit_codes():
        from kerasguard.robustness.data import load_dataset
        from kerasguard.robustness.errors import RobustnessError
        from kerasguard.robustness.training import adversarial_fit
        from kerasguard.saving import save_model

        if not in_process:
            raise RobustnessError(
                "training changes the model's weights, which needs the real model in this process",
                hint="add --in-process (the policy must set [sandbox] allow_unsafe_in_process = true)",
            )
        if method not in ("pgd", "trades") or norm not in ("linf", "l2"):
            raise RobustnessError(
                f"unknown method or norm: {method}, {norm}", hint="--method pgd|trades --norm linf|l2"
            )
        if out.suffix != ".keras":
            raise RobustnessError(f"--out must name a .keras file, got {out.name}")
        data = load_dataset(data_path, clip_min=clip_min, clip_max=clip_max)
        if validation is not None:
            train, val = data, load_dataset(validation, clip_min=data.clip_min, clip_max=data.clip_max)
        else:
            train, val = data.split(validation_fraction, seed)
        with _loaded(model_path, policy_file, digest, True) as (model, _):
            report = adversarial_fit(
                model,
                train,
                validation=val,
                method=method,  # type: ignore[arg-type]
                eps=eps,
                norm=norm,  # type: ignore[arg-type]
                steps=steps,
                step_size=step_size,
                epochs=epochs,
                batch_size=batch_size,
                learning_rate=learning_rate,
                beta=beta,
                seed=seed,
            )
            save_model(model, out)
        _emit(report, fmt, output)
        console.print(f"saved {out}", highlight=False, markup=False)
    raise typer.Exit(EXIT_CLEAN)


@robustness_app.command("detectors")
def detectors_command(
    model_path: ModelArg,
    data_path: DataArg,
    out: Annotated[
        Path | None, typer.Option("--out", help="Folder for detector.json + detector.npz.")
    ] = None,
    fpr: Annotated[float, typer.Option(help="Target false-positive rate on clean data.")] = 0.05,
    kinds: Annotated[
        str, typer.Option(help="Comma-separated: mahalanobis, max-softmax, energy, squeeze.")
    ] = "mahalanobis,max-softmax,energy,squeeze",
    eps: Annotated[float, typer.Option(help="L-inf epsilon of the adversarial inputs scored.")] = 0.1,
    bits: Annotated[int, typer.Option(min=1, max=16, help="Feature squeezing: bit depth.")] = 4,
    test: Annotated[
        Path | None, typer.Option(help="Held-out clean data (.npz) [default: a held-out part of DATA].")
    ] = None,
    test_fraction: Annotated[float, typer.Option(min=0.05, max=0.9)] = 0.3,
    clip_min: ClipMinOption = None,
    clip_max: ClipMaxOption = None,
    in_process: InProcessOption = False,
    digest: DigestOption = None,
    policy_file: PolicyOption = None,
    seed: SeedOption = 0,
    fmt: FormatOption = ReportFormat.text,
    output: OutputOption = None,
) -> None:
    """Fit input detectors on clean DATA (not the training data) and report their AUROC.

    Scored against uniform noise, inverted inputs and PGD examples; with --out the fitted detectors
    are saved (plain arrays and JSON with digests) for `kerasguard.robustness.load_detectors`.
    """
    with _exit_codes():
        from kerasguard.robustness.data import load_dataset
        from kerasguard.robustness.detector_eval import evaluate_detectors
        from kerasguard.robustness.detector_files import save_detectors
        from kerasguard.robustness.detectors import fit_detectors
        from kerasguard.robustness.errors import RobustnessError

        if not in_process:
            raise RobustnessError(
                "fitting detectors needs the real model in this process (its last layer's weights and"
                " penultimate features); scoring can run in the sandbox later (docs/robustness.md)",
                hint="add --in-process (the policy must set [sandbox] allow_unsafe_in_process = true)",
            )
        data = load_dataset(data_path, clip_min=clip_min, clip_max=clip_max)
        if test is not None:
            reference, held_out = data, load_dataset(test, clip_min=data.clip_min, clip_max=data.clip_max)
        else:
            reference, held_out = data.split(test_fraction, seed)
        names = [k.strip() for k in kinds.split(",") if k.strip()]
        with _loaded(model_path, policy_file, digest, True) as (model, sha):
            fitted = fit_detectors(
                model, reference, kinds=names, fpr=fpr, bits=bits, seed=seed, model_sha256=sha or None
            )
            report = evaluate_detectors(
                fitted,
                model,
                held_out,
                eps=eps,
                seed=seed,
                model_name=model_path.name,
                data_name=str(data_path),
            )
        if out is not None:
            report.saved_to = str(save_detectors(fitted, out))
        _emit(report, fmt, output)
    raise typer.Exit(EXIT_CLEAN)
