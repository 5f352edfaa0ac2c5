"""Files that can be attached to a model version in the store, each checked by its own reader.

``detector`` (an input detector folder from ``robustness detectors --out``, or a STRIP detector
``.npz`` from ``probe backdoor --strip-out``), ``training_record`` (TrainingGuard JSON) and
``probe_report`` (the JSON report of ``probe backdoor|privacy -f json -o``) each return a
:class:`kerasguard.store.NewAttachment`: the file's bytes, exactly as they will be sealed, and a short
summary (kind, verdict, key numbers) that ``store show`` and the console display without decrypting.
The summary holds text from the file: every display escapes it.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kerasguard.errors import StoreError

if TYPE_CHECKING:
    from kerasguard.store import NewAttachment

TEXT_LIMIT = 200  # characters of any text copied from a file into a summary
PROBE_SCHEMAS = ("kerasguard.probe.backdoor/1", "kerasguard.probe.privacy/1")


def _text(value: Any, limit: int = TEXT_LIMIT) -> str | None:
    return None if value is None else str(value)[:limit]


def _number(value: Any) -> float | int | str | None:
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    return _text(value, 40)


def _name(path: Path, fallback: str) -> str:
    from kerasguard.store.records import safe_filename

    cleaned = safe_filename(path.name)[:128]
    return cleaned if cleaned != "model.bin" else fallback


def _read(path: Path, max_bytes: int, what: str) -> bytes:
    try:
        with path.open("rb") as fh:
            data = fh.read(max_bytes + 1)
    except OSError as exc:
        raise StoreError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    if len(data) > max_bytes:
        raise StoreError(
            f"{what} {path} is over the store's limit of {max_bytes} bytes",
            hint="raise [store] max_attachment_bytes in the policy, or attach a smaller file",
        )
    return data


def _check_detector_path(source: Path) -> None:
    """A path that is neither kind of detector is named as such, not read as a STRIP file."""
    from kerasguard.escaping import printable

    shown = printable(source, limit=300)
    if not source.exists():
        raise StoreError(
            f"no detector at {shown}",
            hint="give the folder written by `kerasguard robustness detectors --out DIR` or the STRIP"
            " detector file written by `kerasguard probe backdoor --strip-out FILE.npz`",
        )
    part = source.name in ("detector.json", "detector.npz")
    if source.is_file() and part and (source.parent / "detector.json").is_file():
        raise StoreError(
            f"{shown} is one file of an input detector",
            hint=f"give its folder: --detector {printable(source.parent, limit=300)}",
        )


def detector(path: str | os.PathLike[str], *, model_sha256: str | None, max_bytes: int) -> NewAttachment:
    """An input detector folder (kind ``detector``) or a STRIP detector file (kind ``strip``),
    checked like the gateway checks it (digests, fitted on this model, servable)."""
    from kerasguard.store import NewAttachment

    source = Path(path)
    _check_detector_path(source)
    if source.is_dir():
        from kerasguard.robustness.detector_files import sealed_container

        data, fitted = sealed_container(source, model_sha256=model_sha256)
        width = int(fitted.kernel.shape[0])
        served, primary = fitted.kinds, fitted.primary
        summary: dict[str, Any] = {
            "detector": "+".join(served),  # the kinds kerasguard serve applies
            "head": _text(fitted.head),
            "threshold": _number(fitted.thresholds[primary]),
            "thresholds": {k: _number(fitted.thresholds[k]) for k in served},
            "target_fpr": _number(fitted.target_fpr),
            "features": width,
            "classes": fitted.n_classes,
        }
        return NewAttachment("detector", _name(source, "detector"), data, summary)
    from kerasguard.probe.strip import StripDetector

    data = _read(source, max_bytes, "STRIP detector")
    strip = StripDetector.load(source, max_bytes=max_bytes)
    bare = (model_sha256 or "").removeprefix("sha256:")
    fitted_on = str(strip.model_sha256 or "").removeprefix("sha256:")
    if bare and not fitted_on:
        raise StoreError(
            f"the STRIP detector {source} does not record the model it was fitted on",
            hint="fit it with `kerasguard probe backdoor MODEL ... --strip-out FILE.npz`",
        )
    if bare and fitted_on and bare != fitted_on:
        raise StoreError(f"the STRIP detector {source} was fitted on another model (sha256 {fitted_on:.80})")
    summary = {
        "detector": "strip",
        "threshold": _number(strip.threshold),
        "fpr": _number(strip.fpr),
        "perturbations": strip.n_perturb,
        "classes": strip.n_classes,
        "detector_digest": strip.digest,
    }
    return NewAttachment("strip", _name(source, "strip.npz"), data, summary)


def training_record(path: str | os.PathLike[str], *, max_bytes: int) -> NewAttachment:
    """A TrainingGuard record, with the summary ``store show`` and the console print."""
    from kerasguard.data.record import read_training_record
    from kerasguard.store import NewAttachment

    source = Path(path)
    data = _read(source, max_bytes, "training record")
    record, digest = read_training_record(source, max_bytes=max_bytes)
    if digest != "sha256:" + hashlib.sha256(data).hexdigest():
        raise StoreError(f"training record {source} changed while it was read")
    return NewAttachment("training_record", _name(source, "training.json"), data, training_summary(record))


def training_summary(record: dict[str, Any]) -> dict[str, Any]:
    """What the store shows of a training record (also computed for records stored inline)."""
    metrics = record.get("metrics") if isinstance(record.get("metrics"), list) else []
    anomalies = record.get("anomalies") if isinstance(record.get("anomalies"), list) else []
    return {
        "schema": _text(record.get("schema")),
        "data_manifest": _text(record.get("data_manifest")),
        "epochs": len(metrics or []),
        "batches": _number(record.get("batches")),
        "keras_version": _text(record.get("keras_version"), 40),
        "backend": _text(record.get("backend"), 40),
        "anomaly_count": len(anomalies or []),
        "anomalies": [
            {k: _text(a.get(k)) for k in ("id", "epoch", "batch", "message")}
            for a in (anomalies or [])[:10]
            if isinstance(a, dict)
        ],
        "stopped": _text(record.get("stop_reason")) if record.get("stopped") else None,
    }


def probe_report(path: str | os.PathLike[str], *, max_bytes: int) -> NewAttachment:
    """A ``probe backdoor`` or ``probe privacy`` JSON report, with its verdict and key numbers."""
    from kerasguard.store import NewAttachment

    source = Path(path)
    data = _read(source, max_bytes, "probe report")
    try:
        report = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise StoreError(f"probe report {source} is not JSON: {exc}") from None
    if not isinstance(report, dict) or report.get("schema") not in PROBE_SCHEMAS:
        raise StoreError(
            f"{source} is not a probe report (schema {', '.join(PROBE_SCHEMAS)})",
            hint="write one with kerasguard probe backdoor|privacy ... -f json -o FILE",
        )
    try:
        summary = probe_summary(report)
    except (TypeError, ValueError, AttributeError, KeyError) as exc:
        raise StoreError(f"probe report {source} is malformed: {type(exc).__name__}") from None
    return NewAttachment("probe_report", _name(source, "probe.json"), data, summary)


def probe_summary(report: dict[str, Any]) -> dict[str, Any]:
    """The verdict and the numbers that decide it."""
    schema = str(report["schema"])
    out: dict[str, Any] = {
        "probe": "backdoor" if schema.endswith("backdoor/1") else "privacy",
        "verdict": _text(report.get("verdict"), 40),
        "model": _text(report.get("model")),
    }
    if out["probe"] == "backdoor":
        classes = [c for c in report.get("classes") or [] if isinstance(c, dict)]
        indices = [c.get("anomaly_index") for c in classes]
        numeric = [v for v in indices if isinstance(v, int | float) and not isinstance(v, bool)]
        flagged = report.get("flagged_classes") or []
        out.update(
            flagged_classes=[_number(c) for c in flagged[:20]] if isinstance(flagged, list) else [],
            anomaly_threshold=_number(report.get("anomaly_threshold")),
            max_anomaly_index=_number(max(numeric)) if numeric else None,
            classes=_number(report.get("n_classes")),
            samples=_number(report.get("n_samples")),
        )
    else:
        attacks = [a for a in report.get("attacks") or [] if isinstance(a, dict)]
        aucs = [float(a["auc"]) for a in attacks if isinstance(a.get("auc"), int | float)]
        rates = [a.get("tpr_at_fpr") for a in attacks]
        tprs = [
            float(r["0.01"]) for r in rates if isinstance(r, dict) and isinstance(r.get("0.01"), int | float)
        ]
        reasons = report.get("reasons") or []
        out.update(
            max_auc=_number(max(aucs)) if aucs else None,
            max_tpr_at_1pct_fpr=_number(max(tprs)) if tprs else None,
            attacks=[_text(a.get("name"), 40) for a in attacks[:10]],
            reasons=[_text(r) for r in reasons[:5]] if isinstance(reasons, list) else [],
        )
    return out


def build(
    *,
    model: str | os.PathLike[str] | None,
    max_bytes: int,
    detectors: list[Path] | None = None,
    training_records: list[Path] | None = None,
    probe_reports: list[Path] | None = None,
    model_sha256: str | None = None,
) -> list[NewAttachment]:
    """Every attachment a ``store push`` or ``store attach`` was given, each checked; KerasGuardError
    (a StoreError, DetectorFileError, ProbeError or DataError) when one is refused."""
    out: list[NewAttachment] = []
    if detectors and model_sha256 is None and model is not None:
        try:
            with open(model, "rb") as fh:
                model_sha256 = hashlib.file_digest(fh, "sha256").hexdigest()
        except OSError as exc:
            raise StoreError(f"cannot read {model}: {exc.strerror or exc}") from None
    for path in detectors or []:
        out.append(detector(path, model_sha256=model_sha256, max_bytes=max_bytes))
    for path in training_records or []:
        out.append(training_record(path, max_bytes=max_bytes))
    for path in probe_reports or []:
        out.append(probe_report(path, max_bytes=max_bytes))
    return out


__all__ = ["build", "detector", "probe_report", "probe_summary", "training_record"]
