"""`kerasguard load` (the whole trust pipeline, optionally one prediction) and `sandbox-info`."""

# No `from __future__ import annotations` (typer evaluates the annotations): see kerasguard/cli/__init__.py.

import json
import logging
from pathlib import Path
from typing import IO, TYPE_CHECKING, Annotated, Any

import typer

from kerasguard.cli.app import (
    EXIT_CLEAN,
    EXIT_ERROR,
    EXIT_FINDINGS,
    TextOrJson,
    app,
    print_error,
    say,
    write_output,
)
from kerasguard.cli.scan import IsolatedOption, PolicyOption, resolve_policy
from kerasguard.errors import KerasGuardError
from kerasguard.render.safe_text import printable

if TYPE_CHECKING:
    from kerasguard.loading.events import LoadEventCatcher

VERDICT_EXIT = {"loaded": EXIT_CLEAN, "refused": EXIT_FINDINGS, "failed": EXIT_ERROR}


class _EscapingFormatter(logging.Formatter):
    """Log lines carry names from the model and replies from the child: escaped before the terminal."""

    def format(self, record: logging.LogRecord) -> str:
        return printable(super().format(record), keep_newlines=True)


def _read_inputs(path: Path) -> Any:
    """A .npy array or a .npz of named arrays; pickled objects are refused."""
    import numpy as np

    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise KerasGuardError(f"cannot read inputs {path}: {exc}") from None
    if isinstance(loaded, np.lib.npyio.NpzFile):
        with loaded:
            return {name: loaded[name] for name in loaded.files}
    return loaded


def _write_outputs(result: Any, path: Path) -> None:
    import numpy as np

    if isinstance(result, np.ndarray) and path.suffix != ".npz":
        np.save(path, result, allow_pickle=False)
        return
    if path.suffix != ".npz":
        raise KerasGuardError(f"the model has several outputs: use a .npz file for --output, not {path.name}")
    arrays = result if isinstance(result, dict) else {f"output_{i}": a for i, a in enumerate(result)}
    if isinstance(result, np.ndarray):
        arrays = {"output_0": result}
    np.savez(path, **arrays)


def _describe(result: Any) -> str:
    import numpy as np

    items = (
        result.items()
        if isinstance(result, dict)
        else enumerate(result if isinstance(result, list) else [result])
    )
    lines = []
    for name, arr in items:
        lines.append(f"output {name}: shape {tuple(arr.shape)} {arr.dtype}")
        lines.append(np.array2string(arr, threshold=50, precision=5))
    return "\n".join(lines)


@app.command("load")
def load(
    path: Annotated[Path, typer.Argument(help="Model file (.keras or .h5).")],
    predict: Annotated[
        Path | None, typer.Option("--predict", help="Run one prediction on these inputs (.npy or .npz).")
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write predictions (.npy/.npz).")
    ] = None,
    policy_file: PolicyOption = None,
    digest: Annotated[str | None, typer.Option(help="Expected digest, e.g. sha256:<hex>.")] = None,
    key: Annotated[Path | None, typer.Option(help="Public key (PEM) the signature must verify with.")] = None,
    cert_chain: Annotated[Path | None, typer.Option(help="Trusted root certificates (PEM).")] = None,
    model_name: Annotated[str | None, typer.Option(help="Model name the signature must be for.")] = None,
    model_version: Annotated[
        str | None, typer.Option(help="Model version the signature must be for.")
    ] = None,
    unsafe_deserialization: Annotated[
        bool,
        typer.Option(
            help="Load with safe_mode=False (the policy must set trust.allow_unsafe_deserialization)."
        ),
    ] = False,
    in_process: Annotated[
        bool, typer.Option(help="Load without the sandbox (the policy must allow it).")
    ] = False,
    summary: Annotated[bool, typer.Option(help="Print the model summary.")] = False,
    events: Annotated[
        Path | None, typer.Option("--events", help="Append the JSON load event here (default: stderr).")
    ] = None,
    fmt: Annotated[TextOrJson, typer.Option("--format", "-f")] = TextOrJson.text,
    isolated: IsolatedOption = False,
    memory_samples: Annotated[
        bool,
        typer.Option(
            "--memory-samples",
            help="Keep the child's whole memory curve in the load event (default: peak and count only).",
        ),
    ] = False,
) -> None:
    """Verify, scan and load a model in the sandbox, then optionally predict.

    Exit codes: 0 loaded (and predicted), 1 refused by the policy, verification or findings, 2 error
    (including a sandbox limit broken by the model).
    """
    import dataclasses

    from kerasguard.loading.events import JsonEventFormatter, LoadEventCatcher
    from kerasguard.loading.loader import load_model

    try:
        policy = resolve_policy(policy_file, isolated=isolated)
        inputs = _read_inputs(predict) if predict is not None else None
    except KerasGuardError as exc:
        print_error(exc)
        raise typer.Exit(EXIT_ERROR) from None
    if memory_samples:
        policy = dataclasses.replace(policy, sandbox=dataclasses.replace(policy.sandbox, memory_samples=True))
    catcher = LoadEventCatcher()
    sink: IO[str] | None = events.open("a", encoding="utf-8") if events else None
    printer = logging.StreamHandler(sink) if sink else logging.StreamHandler()
    printer.setFormatter(JsonEventFormatter())
    warnings = logging.StreamHandler()
    warnings.setLevel(logging.WARNING)
    warnings.setFormatter(_EscapingFormatter("kerasguard: %(levelname)s: %(message)s"))
    event_log = logging.getLogger("kerasguard.events")
    loaders = [logging.getLogger(n) for n in ("kerasguard.loader", "kerasguard.sandbox")]
    event_log.addHandler(catcher)
    event_log.addHandler(printer)
    event_log.setLevel(logging.INFO)
    for lg in loaders:
        lg.addHandler(warnings)
    result: Any = None
    info: dict[str, Any] = {}
    loaded = False
    try:
        model: Any = load_model(
            path,
            policy=policy,
            digest=digest,
            key=key,
            cert_chain=cert_chain,
            model_name=model_name,
            model_version=model_version,
            safe_mode=not unsafe_deserialization,
            sandbox=False if in_process else None,
        )
        loaded = True
        try:
            info = _model_info(model)
            if summary:
                text = model.summary() if hasattr(model, "close") else _in_process_summary(model)
                say(text, err=False)
            if inputs is not None:
                result = (
                    model.predict(inputs) if hasattr(model, "close") else model.predict(inputs, verbose=0)
                )
                if output is not None:
                    _write_outputs(result, output)
        finally:
            if hasattr(model, "close"):
                model.close()
    except KerasGuardError as exc:
        verdict = "error" if loaded else _verdict(catcher)  # after loading, only errors remain
        print_error(exc, label=verdict)
        raise typer.Exit(VERDICT_EXIT.get(verdict, EXIT_ERROR)) from None
    finally:
        event_log.removeHandler(catcher)
        event_log.removeHandler(printer)
        for lg in loaders:
            lg.removeHandler(warnings)
        if sink:
            sink.close()
    _report(path, info, result, output, fmt, catcher.event)
    raise typer.Exit(EXIT_CLEAN)


def _verdict(catcher: "LoadEventCatcher") -> str:
    return str((catcher.event or {}).get("verdict", "failed"))


def _model_info(model: Any) -> dict[str, Any]:
    if hasattr(model, "input_spec") and hasattr(model, "close"):
        return {
            "name": model.name,
            "inputs": [{"name": s.name, "shape": list(s.shape), "dtype": s.dtype} for s in model.input_spec],
            "outputs": [
                {"name": s.name, "shape": list(s.shape), "dtype": s.dtype} for s in model.output_spec
            ],
            "sandbox_layers": model.layers,
        }
    return {"name": getattr(model, "name", ""), "in_process": True}


def _in_process_summary(model: Any) -> str:
    lines: list[str] = []
    model.summary(print_fn=lambda line, *a, **k: lines.append(str(line)))
    return "\n".join(lines)


def _report(
    path: Path, info: dict[str, Any], result: Any, output: Path | None, fmt: TextOrJson, event: Any
) -> None:
    if fmt is TextOrJson.json:
        doc: dict[str, Any] = {"path": str(path), "verdict": "loaded", "model": info}
        if event:
            doc["sha256"] = event.get("sha256")
        if result is not None:
            doc["prediction"] = {"written_to": str(output)} if output else {"text": _describe(result)}
        write_output(json.dumps(doc, indent=2, default=str), None)
        return
    where = "in process (no sandbox)" if info.get("in_process") else "in the sandbox"
    lines = [f"loaded {printable(path)} ({printable(info.get('name', ''))}) {where}"]
    for spec in info.get("inputs", []):
        lines.append(
            f"  input  {printable(spec['name'])}: {printable(spec['shape'])} {printable(spec['dtype'])}"
        )
    for spec in info.get("outputs", []):
        lines.append(
            f"  output {printable(spec['name'])}: {printable(spec['shape'])} {printable(spec['dtype'])}"
        )
    if result is not None:
        lines.append(
            f"predictions written to {printable(output)}" if output is not None else _describe(result)
        )
    say("\n".join(lines), err=False)


@app.command("sandbox-info")
def sandbox_info(
    fmt: Annotated[TextOrJson, typer.Option("--format", "-f")] = TextOrJson.text,
) -> None:
    """Report which sandbox layers are active on this machine and which are missing."""
    from kerasguard.sandbox.capabilities import default_required, measure

    info = measure()
    required = default_required()
    refused = [name for name in required if not info.is_active(name)]
    # What limits the child's memory: the launcher falls back to the RSS monitor without a cgroup.
    memory_limit = "memory-cgroup" if info.is_active("memory-cgroup") else "rss-monitor"
    if fmt is TextOrJson.json:
        doc = {
            **info.to_dict(),
            "required": list(required),
            "refused_for": refused,
            "memory_limit": memory_limit,
        }
        write_output(json.dumps(doc, indent=2), None)
        raise typer.Exit(EXIT_CLEAN)
    lines = []
    for layer in info.layers:
        mark = "active " if layer.active else "MISSING"
        lines.append(f"{mark}  {layer.name:18} {layer.detail}")
    if info.missing:
        lines.append(f"\n{len(info.missing)} layer(s) missing: {', '.join(info.missing)}")
    lines.append(f"required by default for this user: {', '.join(required)}")
    if memory_limit == "rss-monitor" and "memory-cgroup" not in required:
        lines.append(
            "memory-cgroup is not required for this user: the parent's RSS monitor kills the child above "
            "memory_mb, and RLIMIT_AS backs it up"
        )
    if refused:
        lines.append(
            f"loads with the default policy are REFUSED here (missing: {', '.join(refused)}); "
            "see docs/sandbox.md for the fix or an explicit [sandbox] require opt-out"
        )
    say("\n".join(lines), err=False)
    raise typer.Exit(EXIT_CLEAN)
