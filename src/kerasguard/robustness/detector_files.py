"""Fitted detectors on disk: ``detector.json`` + ``detector.npz`` (plain arrays), never a pickle.

The JSON holds the settings, thresholds, the array names, shapes and dtypes, the SHA-256 of the
``.npz`` bytes and a SHA-256 over its own canonical form. Loading reads each file once, checks both
digests and every array against the JSON before anything is used, and refuses object arrays: an
edited or corrupted file is a :class:`DetectorFileError`, never a silently different detector. The
digests detect edits and corruption, not a forger who rewrites them: keep the folder where only
trusted writers can change it, or sign it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import math
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from kerasguard import npzfile
from kerasguard.robustness.detectors import KINDS, DetectorSet, Squeezers
from kerasguard.robustness.errors import DetectorFileError, RobustnessError

FORMAT = "kerasguard.detector/1"
JSON_NAME = "detector.json"
ARRAYS_NAME = "detector.npz"
MAX_JSON_BYTES = 1 << 20
MAX_ARRAY_BYTES = 512 << 20
_ARRAYS = ("kernel", "bias", "means", "precision")


def _canonical(doc: dict[str, Any]) -> bytes:
    body = {k: v for k, v in doc.items() if k != "digest"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def save_detectors(detectors: DetectorSet, folder: str | os.PathLike[str]) -> Path:
    """Write the two files into ``folder`` (created if needed), each atomically; returns the folder."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    arrays = {name: np.ascontiguousarray(getattr(detectors, name), np.float64) for name in _ARRAYS}
    buffer = io.BytesIO()
    np.savez(buffer, allow_pickle=False, **arrays)
    blob = buffer.getvalue()
    doc: dict[str, Any] = {
        "format": FORMAT,
        "model_sha256": detectors.model_sha256,
        "head": detectors.head,
        "input_shape": list(detectors.input_shape),
        "n_classes": detectors.n_classes,
        "clip_min": detectors.clip_min,
        "clip_max": detectors.clip_max,
        "target_fpr": detectors.target_fpr,
        "primary": detectors.primary,
        "thresholds": detectors.thresholds,
        "calibration_fpr": detectors.calibration_fpr,
        "squeeze": {"bits": detectors.squeezers.bits, "median": detectors.squeezers.median},
        "arrays": {name: {"shape": list(a.shape), "dtype": str(a.dtype)} for name, a in arrays.items()},
        "arrays_sha256": hashlib.sha256(blob).hexdigest(),
    }
    if detectors.reference is not None:
        doc["reference"] = detectors.reference
    doc["digest"] = hashlib.sha256(_canonical(doc)).hexdigest()
    _write_atomic(out / ARRAYS_NAME, blob)
    _write_atomic(out / JSON_NAME, json.dumps(doc, indent=2, allow_nan=False).encode() + b"\n")
    return out


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read_bounded(path: Path, limit: int) -> bytes:
    try:
        with path.open("rb") as fh:
            data = fh.read(limit + 1)
    except OSError as exc:
        raise DetectorFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(data) > limit:
        raise DetectorFileError(f"{path} is larger than {limit} bytes")
    return data


def load_detectors(folder: str | os.PathLike[str], *, model_sha256: str | None = None) -> DetectorSet:
    """Read and check a saved detector; with ``model_sha256``, refuse one fitted on another model."""
    base = Path(folder)
    raw = _read_bounded(base / JSON_NAME, MAX_JSON_BYTES)
    _document(raw, str(base))  # a foreign or edited JSON is named before the arrays are read
    blob = _read_bounded(base / ARRAYS_NAME, MAX_ARRAY_BYTES)
    return detectors_from_bytes(raw, blob, where=str(base), model_sha256=model_sha256)


def _document(raw: bytes, where: str) -> dict[str, Any]:
    """The detector JSON, parsed, of the right format and with its own digest intact."""
    json_name = f"{where}/{JSON_NAME}"
    try:
        doc = json.loads(raw, parse_constant=_refuse_constant)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise DetectorFileError(f"{json_name} is not valid JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise DetectorFileError(f"{json_name} is not a {FORMAT} file")
    digest = doc.get("digest")
    if not isinstance(digest, str) or not hmac.compare_digest(
        digest, hashlib.sha256(_canonical(doc)).hexdigest()
    ):
        raise DetectorFileError(
            f"{json_name} was changed after it was written (digest mismatch)",
            hint="refit the detectors (kerasguard robustness detectors ... --out DIR)",
        )
    return doc


def detectors_from_bytes(
    raw: bytes, blob: bytes, *, where: str, model_sha256: str | None = None, bound_by_store: bool = False
) -> DetectorSet:
    """The checks of :func:`load_detectors` on the two files' bytes (``where`` names them in errors).

    Files on disk must record the model they were fitted on when a model is named (their digest is
    unkeyed, so a null model is no binding); a store attachment (``bound_by_store``) is bound to its
    version by the store's MAC-covered entry, and may record none (fitted in Python without one)."""
    json_name, arrays_name = f"{where}/{JSON_NAME}", f"{where}/{ARRAYS_NAME}"
    if len(raw) > MAX_JSON_BYTES or len(blob) > MAX_ARRAY_BYTES:
        raise DetectorFileError(f"the detector in {where} is too large")
    doc = _document(raw, where)
    if not hmac.compare_digest(str(doc.get("arrays_sha256")), hashlib.sha256(blob).hexdigest()):
        raise DetectorFileError(
            f"{arrays_name} was changed after it was written (sha256 mismatch)",
            hint="refit the detectors (kerasguard robustness detectors ... --out DIR)",
        )
    fitted_on = doc.get("model_sha256")
    if model_sha256 is not None and fitted_on is None and not bound_by_store:
        raise DetectorFileError(
            f"the detectors in {where} do not record the model they were fitted on",
            hint="fit them with the model's file (kerasguard robustness detectors MODEL ...) or pass"
            " model_sha256= to fit_detectors",
        )
    if model_sha256 is not None and fitted_on is not None and _bare(fitted_on) != _bare(model_sha256):
        raise DetectorFileError(
            f"the detectors in {where} were fitted on another model (sha256 {fitted_on!s:.80})"
        )
    try:
        return _build(doc, _arrays(blob, doc))
    except DetectorFileError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise DetectorFileError(f"{json_name} is malformed: {type(exc).__name__}: {exc}") from None


def _bare(digest: Any) -> str:
    text = str(digest)
    return text.removeprefix("sha256:").lower()


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


def _arrays(blob: bytes, doc: dict[str, Any]) -> dict[str, np.ndarray]:
    declared = doc["arrays"]
    try:
        with zipfile.ZipFile(io.BytesIO(blob)) as zf:
            npzfile.check_headers(zf, MAX_ARRAY_BYTES, "detector arrays", DetectorFileError)
        with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
            if sorted(npz.files) != sorted(_ARRAYS):
                raise DetectorFileError(
                    f"detector arrays are {sorted(npz.files)}, expected {sorted(_ARRAYS)}"
                )
            arrays = {name: npz[name] for name in _ARRAYS}
    except DetectorFileError:
        raise
    except RobustnessError as exc:
        raise DetectorFileError(exc.message) from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, MemoryError) as exc:
        raise DetectorFileError(f"detector arrays are unreadable: {type(exc).__name__}: {exc}") from None
    for name, arr in arrays.items():
        want = declared[name]
        if (
            list(arr.shape) != list(want["shape"])
            or str(arr.dtype) != want["dtype"]
            or arr.dtype != np.float64
        ):
            raise DetectorFileError(
                f"detector array {name} is {arr.dtype} {arr.shape}, the JSON says otherwise"
            )
        if not np.all(np.isfinite(arr)):
            raise DetectorFileError(f"detector array {name} holds NaN or infinity")
    return arrays


def _build(doc: dict[str, Any], arrays: dict[str, np.ndarray]) -> DetectorSet:
    kernel, bias, means, precision = (arrays[n] for n in _ARRAYS)
    n_classes = int(doc["n_classes"])
    width = kernel.shape[0] if kernel.ndim == 2 else -1
    if (
        kernel.shape != (width, n_classes)
        or bias.shape != (n_classes,)
        or means.shape != (n_classes, width)
        or precision.shape != (width, width)
    ):
        raise DetectorFileError("detector arrays do not fit together (features, classes)")
    thresholds = {str(k): float(v) for k, v in dict(doc["thresholds"]).items()}
    if not thresholds or any(k not in KINDS or not math.isfinite(v) for k, v in thresholds.items()):
        raise DetectorFileError(
            f"detector thresholds must be finite numbers for known kinds ({', '.join(KINDS)})"
        )
    shape = doc["input_shape"]
    if not isinstance(shape, list) or not all(d is None or (isinstance(d, int) and d > 0) for d in shape):
        raise DetectorFileError("detector input_shape is malformed")
    squeeze = dict(doc["squeeze"])
    clip_min, clip_max = float(doc["clip_min"]), float(doc["clip_max"])
    primary = str(doc["primary"])
    bits = int(squeeze["bits"])
    if primary not in thresholds or not 1 <= bits <= 16 or not clip_min < clip_max:
        raise DetectorFileError("detector settings are inconsistent (primary, bits or range)")
    sha = doc.get("model_sha256")
    reference = _reference(doc.get("reference"), n_classes)
    return DetectorSet(
        head=str(doc["head"]),
        input_shape=tuple(shape),
        n_classes=n_classes,
        clip_min=clip_min,
        clip_max=clip_max,
        kernel=kernel,
        bias=bias,
        means=means,
        precision=precision,
        squeezers=Squeezers(bits, bool(squeeze["median"]), clip_min, clip_max),
        thresholds=thresholds,
        target_fpr=float(doc["target_fpr"]),
        calibration_fpr={str(k): float(v) for k, v in dict(doc["calibration_fpr"]).items()},
        primary=primary,
        model_sha256=sha if isinstance(sha, str) else None,
        reference=reference,
    )


def _reference(value: Any, n_classes: int) -> dict[str, Any] | None:
    """The optional reference statistics (detectors fitted before they existed have none)."""
    if value is None:
        return None
    fractions = value.get("class_fractions") if isinstance(value, dict) else None
    confidence = value.get("confidence_mean") if isinstance(value, dict) else None
    count = value.get("count") if isinstance(value, dict) else None
    ok = (
        isinstance(fractions, list)
        and len(fractions) == n_classes
        and all(isinstance(f, int | float) and 0.0 <= f <= 1.0 for f in fractions)
        and abs(sum(fractions) - 1.0) < 1e-6
        and isinstance(confidence, int | float)
        and 0.0 <= confidence <= 1.0
        and isinstance(count, int)
        and count > 0
    )
    if not ok or not isinstance(fractions, list) or not isinstance(confidence, int | float):
        raise DetectorFileError("detector reference statistics are malformed")
    return {
        "confidence_mean": float(confidence),
        "class_fractions": [float(f) for f in fractions],
        "count": count,
    }


ATTACHMENT_FORMAT = "kerasguard.detector-attachment/1"
MAX_ATTACHMENT_BYTES = 48 << 10  # the store keeps provenance up to 64 KiB


def attachment(folder: str | os.PathLike[str], *, model_sha256: str | None = None) -> dict[str, Any]:
    """The saved detector as a JSON object for the store's provenance (both files base64).

    The detector is loaded first (every check of :func:`load_detectors`), and must have reference
    statistics (``kerasguard serve`` applies every fitted kind and compares drift windows with them).
    """
    base = Path(folder)
    raw = _read_bounded(base / JSON_NAME, MAX_JSON_BYTES)
    blob = _read_bounded(base / ARRAYS_NAME, MAX_ARRAY_BYTES)
    if len(raw) + len(blob) > MAX_ATTACHMENT_BYTES * 3 // 4:
        raise DetectorFileError(
            f"the detector in {base} is {len(raw) + len(blob)} bytes; the store attaches at most"
            f" {MAX_ATTACHMENT_BYTES * 3 // 4}",
            hint="fit on a narrower penultimate layer, or keep the detector beside the store",
        )
    detectors = detectors_from_bytes(raw, blob, where=str(base), model_sha256=model_sha256)
    check_servable(detectors, str(base))
    return {
        "format": ATTACHMENT_FORMAT,
        "json": base64.b64encode(raw).decode("ascii"),
        "npz": base64.b64encode(blob).decode("ascii"),
    }


def sealed_container(
    folder: str | os.PathLike[str], *, model_sha256: str | None
) -> tuple[bytes, DetectorSet]:
    """The saved detector as the bytes of a sealed store attachment (the attachment JSON object, any
    size up to the files' own limits), after every check of :func:`load_detectors` and servability."""
    base = Path(folder)
    raw = _read_bounded(base / JSON_NAME, MAX_JSON_BYTES)
    blob = _read_bounded(base / ARRAYS_NAME, MAX_ARRAY_BYTES)
    detectors = detectors_from_bytes(raw, blob, where=str(base), model_sha256=model_sha256)
    check_servable(detectors, str(base))
    value = {
        "format": ATTACHMENT_FORMAT,
        "json": base64.b64encode(raw).decode("ascii"),
        "npz": base64.b64encode(blob).decode("ascii"),
    }
    return json.dumps(value, sort_keys=True).encode("ascii"), detectors


def from_sealed(data: bytes, *, model_sha256: str | None, where: str) -> DetectorSet:
    """The detector of a sealed attachment's bytes (see :func:`sealed_container`), every check redone."""
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise DetectorFileError(f"the detector attached to {where} is not JSON: {exc}") from None
    return from_attachment(value, model_sha256=model_sha256, where=where, max_bytes=len(data))


def from_attachment(
    value: Any, *, model_sha256: str | None, where: str, max_bytes: int = MAX_ATTACHMENT_BYTES
) -> DetectorSet:
    """The detector of a store attachment, with every check of :func:`load_detectors` redone.

    ``max_bytes`` bounds each base64 part: the inline provenance form (before sealed attachments) is
    small; a sealed attachment blob is bounded by the store's ``max_attachment_bytes``.
    """
    if not isinstance(value, dict) or value.get("format") != ATTACHMENT_FORMAT:
        raise DetectorFileError(f"the detector attached to {where} is not a {ATTACHMENT_FORMAT} object")
    parts = []
    for key in ("json", "npz"):
        text = value.get(key)
        if not isinstance(text, str) or len(text) > max_bytes:
            raise DetectorFileError(f"the detector attached to {where} has no valid {key!r} part")
        try:
            parts.append(base64.b64decode(text, validate=True))
        except ValueError:
            raise DetectorFileError(f"the detector attached to {where}: {key!r} is not base64") from None
    detectors = detectors_from_bytes(
        parts[0], parts[1], where=where, model_sha256=model_sha256, bound_by_store=True
    )
    check_servable(detectors, where)
    return detectors


def check_servable(detectors: DetectorSet, where: str) -> None:
    """``kerasguard serve`` applies every fitted kind and compares drift windows with the reference
    statistics: a detector needs the latter (written by every fit since they were introduced)."""
    if not detectors.kinds or detectors.reference is None:
        raise DetectorFileError(
            f"the detector in {where} cannot be served: it needs at least one fitted kind and reference"
            " statistics",
            hint="refit with kerasguard robustness detectors ... --out DIR",
        )
