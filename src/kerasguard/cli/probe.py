"""`kerasguard probe backdoor|privacy`: what a model does (docs/probe.md).

Exit codes: 0 nothing found (no backdoor flagged / no leak above the policy's thresholds), 1 a threshold
crossed or the model refused by the trust pipeline, 2 error (bad data, no gradients, a broken model).
"""

# No `from __future__ import annotations` (typer evaluates the annotations): see kerasguard/cli/__init__.py.

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from kerasguard.cli.app import EXIT_CLEAN, EXIT_ERROR, EXIT_FINDINGS, app, print_error, write_output
from kerasguard.cli.scan import PolicyOption, resolve_policy
from kerasguard.errors import MODEL_REFUSALS, KerasGuardError
from kerasguard.escaping import printable

probe_app = typer.Typer(
    name="probe",
    help="Behavioural probes: find a backdoor (trigger search, STRIP) or measure membership leakage.",
    no_args_is_help=True,
)
app.add_typer(probe_app)


class ReportFormat(StrEnum):
    text = "text"
    json = "json"
    markdown = "markdown"


FormatOption = Annotated[ReportFormat, typer.Option("--format", "-f", help="text, json or markdown.")]
OutputOption = Annotated[Path | None, typer.Option("--output", "-o", help="Write the report here.")]
DigestOption = Annotated[str | None, typer.Option(help="Expected model digest, e.g. sha256:<hex>.")]
KeyOption = Annotated[
    Path | None, typer.Option(help="Public key (PEM) the model's signature must verify with.")
]
InProcessOption = Annotated[
    bool,
    typer.Option(
        "--in-process",
        help="Load the real model into this process after verify + scan (the policy must set "
        "sandbox.allow_unsafe_in_process = true). Required by the white-box parts: trigger search, LiRA.",
    ),
]
SeedOption = Annotated[int, typer.Option(help="Random seed (samples, initial masks, reference models).")]


class _Refused(Exception):
    """The trust pipeline refused the model (exit 1, like `kerasguard load`)."""


@contextmanager
def _loaded(
    path: Path, policy: Any, digest: str | None, key: Path | None, in_process: bool
) -> Iterator[tuple[Any, str | None]]:
    """The model through kerasguard.load_model (sandboxed unless --in-process), and its SHA-256."""
    from kerasguard.loading.events import caught_load_event
    from kerasguard.loading.loader import load_model

    try:
        with caught_load_event() as catcher:  # only the event's sha256 is kept, nothing printed
            model = load_model(
                path, policy=policy, digest=digest, key=key, sandbox=False if in_process else None
            )
    except MODEL_REFUSALS as exc:  # the trust pipeline, or the policy refused a switch (in-process)
        raise _Refused(exc.diagnostics()) from None
    event = getattr(model, "event", None) or catcher.event or {}
    sha = event.get("sha256") if isinstance(event, dict) else None
    try:
        yield model, sha if isinstance(sha, str) else None
    finally:
        if hasattr(model, "close"):
            model.close()


def _parse_shape(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        dims = tuple(int(p) for p in text.lower().replace(",", "x").split("x"))
    except ValueError:
        dims = ()
    if len(dims) not in (2, 3) or any(d < 1 for d in dims):
        raise typer.BadParameter(f"{text!r} is not H x W or H x W x C", param_hint="--image-shape")
    return dims


def _emit(
    report: Any,
    fmt: ReportFormat,
    output: Path | None,
    markdown: Callable[[Any], str],
    text: Callable[[Any], str],
    *,
    found: bool,
) -> typer.Exit:
    """Write the report in ``fmt`` (JSON is ``report.to_dict()``); the exit: 1 when ``found``, else 0."""
    if fmt is ReportFormat.json:
        body = json.dumps(report.to_dict(), indent=2)
    else:
        body = (markdown if fmt is ReportFormat.markdown else text)(report)
    write_output(body, str(output) if output else None)
    return typer.Exit(EXIT_FINDINGS if found else EXIT_CLEAN)


def _fail(exc: KerasGuardError) -> typer.Exit:
    print_error(exc)
    return typer.Exit(EXIT_ERROR)


@probe_app.command("backdoor")
def backdoor(
    model_path: Annotated[Path, typer.Argument(metavar="MODEL", help="Model file (.keras or .h5).")],
    clean_data: Annotated[
        Path, typer.Argument(help="Clean labelled samples: .npz with arrays x and y (no pickle).")
    ],
    policy_file: PolicyOption = None,
    digest: DigestOption = None,
    key: KeyOption = None,
    in_process: InProcessOption = False,
    strip_only: Annotated[
        bool, typer.Option("--strip-only", help="Skip the trigger search; fit only STRIP (works sandboxed).")
    ] = False,
    no_strip: Annotated[bool, typer.Option("--no-strip", help="Skip the STRIP detector.")] = False,
    strip_out: Annotated[
        Path | None, typer.Option("--strip-out", help="Save the fitted STRIP detector here (.npz).")
    ] = None,
    trigger_dir: Annotated[
        Path | None, typer.Option("--trigger-dir", help="Write each class's recovered trigger as PNG here.")
    ] = None,
    image_shape: Annotated[
        str | None, typer.Option("--image-shape", help="H x W[x C] of flat inputs, for the PNGs (e.g. 8x8).")
    ] = None,
    epochs: Annotated[int, typer.Option(min=1, max=10_000, help="Trigger-search epochs.")] = 40,
    seed: SeedOption = 0,
    fmt: FormatOption = ReportFormat.text,
    output: OutputOption = None,
) -> None:
    """Reverse-engineer a trigger per class (Neural Cleanse + MAD) and fit a STRIP input detector.

    The trigger search is white-box and needs --in-process; STRIP (--strip-only) needs only predictions
    and runs on the sandboxed model. Exit codes: 0 no class flagged, 1 a class flagged (or the model
    refused by the policy), 2 error.
    """
    from kerasguard.probe.backdoor import find_backdoor, png_shape
    from kerasguard.probe.data import read_npz
    from kerasguard.probe.render import backdoor_markdown, backdoor_text
    from kerasguard.probe.trigger import SearchConfig

    shape = _parse_shape(image_shape)
    try:
        if not strip_only and not in_process:
            raise KerasGuardError(
                "the trigger search is white-box: it needs the model in this process",
                hint="pass --in-process (the policy must set [sandbox] allow_unsafe_in_process = true), "
                "or --strip-only to fit the STRIP detector on the sandboxed model",
            )
        if strip_only and no_strip:
            raise KerasGuardError("--strip-only and --no-strip leave nothing to do")
        policy = resolve_policy(policy_file)
        data = read_npz(clean_data, what="clean data")
        if trigger_dir is not None and not strip_only:  # before a search of minutes, not after it
            png_shape(data.x.shape[1:], shape)
            if trigger_dir.exists() and not trigger_dir.is_dir():
                raise KerasGuardError(
                    f"--trigger-dir {printable(trigger_dir, limit=300)} exists and is not a folder",
                    hint="name a folder (it is created) for the trigger PNGs",
                )
        with _loaded(model_path, policy, digest, key, in_process) as (model, sha):
            report = find_backdoor(
                model,
                data.x,
                data.y,
                policy=policy,
                config=SearchConfig(epochs=epochs, seed=seed),
                search=not strip_only,
                strip=not no_strip,
                model_sha256=sha,
                seed=seed,
            )
            report.model = report.model or model_path.name
            if trigger_dir is not None and report.triggers:
                lo, hi = float(data.x.min()), float(data.x.max())
                report.write_trigger_images(trigger_dir, image_shape=shape, lo=lo, hi=hi)
            if strip_out is not None and report.detector is not None and report.strip is not None:
                report.strip.saved_to = str(strip_out)
                try:
                    report.detector.save(strip_out)
                except OSError as exc:
                    raise KerasGuardError(f"cannot write {strip_out}: {exc.strerror or exc}") from None
    except _Refused as exc:
        print_error(str(exc), label="refused")
        raise typer.Exit(EXIT_FINDINGS) from None
    except KerasGuardError as exc:
        raise _fail(exc) from None
    raise _emit(report, fmt, output, backdoor_markdown, backdoor_text, found=report.verdict == "backdoor")


@probe_app.command("privacy")
def privacy(
    model_path: Annotated[Path, typer.Argument(metavar="MODEL", help="Model file (.keras or .h5).")],
    train_data: Annotated[Path, typer.Argument(help="Samples the model was trained on (.npz: x, y).")],
    holdout_data: Annotated[
        Path, typer.Argument(help="Samples it never saw, same distribution (.npz: x, y).")
    ],
    policy_file: PolicyOption = None,
    digest: DigestOption = None,
    key: KeyOption = None,
    in_process: InProcessOption = False,
    references: Annotated[
        int | None,
        typer.Option(min=0, max=64, help="LiRA reference models (default 4 with --in-process, else 0)."),
    ] = None,
    reference_epochs: Annotated[
        int, typer.Option(min=1, max=10_000, help="Epochs per reference model.")
    ] = 30,
    max_samples: Annotated[
        int, typer.Option(min=20, help="Members (and non-members) evaluated at most.")
    ] = 2000,
    seed: SeedOption = 0,
    fmt: FormatOption = ReportFormat.text,
    output: OutputOption = None,
) -> None:
    """Membership inference: loss, confidence and (with --in-process) LiRA attacks; AUC, TPR at low FPR.

    Loss and confidence attacks need only predictions and run on the sandboxed model; LiRA clones the
    architecture to train reference models on half the holdout and needs --in-process. Exit codes: 0 no
    leak above the policy's probe thresholds, 1 a leak (or the model refused), 2 error.
    """
    from kerasguard.probe.data import read_npz
    from kerasguard.probe.membership import ReferenceTraining
    from kerasguard.probe.privacy import membership_leak
    from kerasguard.probe.render import privacy_markdown, privacy_text

    try:
        n_refs = references if references is not None else (4 if in_process else 0)
        if n_refs and not in_process:
            raise KerasGuardError(
                "LiRA reference models clone the model's architecture: they need --in-process",
                hint="pass --in-process, or --references 0 for the black-box attacks only",
            )
        policy = resolve_policy(policy_file)
        train = read_npz(train_data, what="training data")
        holdout = read_npz(holdout_data, what="holdout data")
        with _loaded(model_path, policy, digest, key, in_process) as (model, _sha):
            report = membership_leak(
                model,
                train.x,
                train.y,
                holdout.x,
                holdout.y,
                policy=policy,
                references=ReferenceTraining(models=n_refs, epochs=reference_epochs, seed=seed),
                max_samples=max_samples,
                seed=seed,
            )
            report.model = report.model or model_path.name
    except _Refused as exc:
        print_error(str(exc), label="refused")
        raise typer.Exit(EXIT_FINDINGS) from None
    except KerasGuardError as exc:
        raise _fail(exc) from None
    raise _emit(report, fmt, output, privacy_markdown, privacy_text, found=report.verdict == "leak")
