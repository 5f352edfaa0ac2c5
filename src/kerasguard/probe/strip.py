"""STRIP (Gao et al., ACSAC 2019): a runtime input check against backdoor triggers, black-box.

An input is superimposed on ``n_perturb`` random clean images (pixel-wise sum, clipped to the data's
range) and the model's predictions on the blends are averaged into an entropy. A clean input's class
dissolves in the blend (high entropy); a trigger keeps dragging every blend to the attacker's class
(low entropy). The threshold is the ``fpr`` quantile of the entropies of held-out clean inputs.

The fitted detector is plain data: the overlay images (float32) and a JSON header, in a ``.npz`` with
two uncompressed members, never pickle. The header carries a SHA-256 digest of both, checked on load,
and optionally the model's SHA-256, so a gateway can refuse a detector fitted for another model.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kerasguard.errors import ProbeError
from kerasguard.npzfile import check_headers
from kerasguard.probe.data import check_fits
from kerasguard.probe.target import Target

SCHEMA = "kerasguard.strip/1"
MAX_DETECTOR_BYTES = 1024**3
MAX_META_BYTES = 1024 * 1024
MAX_PERTURB = 1000
_MEMBERS = {"overlay.npy", "meta.npy"}


def _entropy(proba: np.ndarray) -> np.ndarray:
    return np.asarray(-(proba * np.log(np.clip(proba, 1e-12, 1.0))).sum(axis=-1), dtype=np.float64)


@dataclass
class StripDetector:
    """A fitted STRIP detector. ``bind(model)`` (or ``load(..., model=)``) before ``score``."""

    overlay: np.ndarray
    threshold: float
    fpr: float
    n_perturb: int
    lo: float
    hi: float
    n_classes: int
    model_sha256: str | None = None
    calibration: dict[str, Any] = field(default_factory=dict)
    _target: Target | None = field(default=None, repr=False, compare=False)

    # --- use ---------------------------------------------------------------------------------

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.overlay.shape[1:])

    def bind(self, model: Any) -> StripDetector:
        """Use ``model`` (Keras model or SandboxedModel) for scoring; it must fit the detector."""
        target = model if isinstance(model, Target) else Target.of(model)
        if target.n_classes != self.n_classes:
            raise ProbeError(
                f"the STRIP detector was fitted for {self.n_classes} classes, "
                f"the model has {target.n_classes}"
            )
        want = tuple(target.input_shape)
        if len(want) != len(self.input_shape) or any(
            w is not None and w != g for w, g in zip(want, self.input_shape, strict=True)
        ):
            raise ProbeError(f"the STRIP detector is for inputs {self.input_shape}, the model takes {want}")
        target.calibrate(self.overlay)
        self._target = target
        return self

    def score(self, batch: Any, *, seed: int | None = None) -> np.ndarray:
        """Mean prediction entropy of each input under superimposition (low = likely trojaned).

        Overlays are drawn afresh for each call (``seed`` fixes them for reproducible tests), so a
        client cannot learn one fixed set of blends to optimise against.
        """
        if self._target is None:
            raise ProbeError("the STRIP detector is not bound to a model: call bind(model) first")
        x = self._check_batch(batch)
        rng = np.random.default_rng(seed)
        picks = rng.integers(0, len(self.overlay), size=(len(x), self.n_perturb))
        blends = np.clip(x[:, None] + self.overlay[picks], self.lo, self.hi).astype(np.float32)
        flat = blends.reshape(len(x) * self.n_perturb, *self.input_shape)
        proba = self._target.proba(flat).reshape(len(x), self.n_perturb, self.n_classes)
        return np.asarray(_entropy(proba).mean(axis=1), dtype=np.float64)

    def is_trojaned(self, batch: Any, *, seed: int | None = None) -> np.ndarray:
        """One boolean per input: its entropy is below the fitted threshold."""
        return self.score(batch, seed=seed) < self.threshold

    def _check_batch(self, batch: Any) -> np.ndarray:
        x = np.asarray(batch)
        if x.dtype.kind not in "fiub":
            raise ProbeError(f"STRIP: inputs must be numeric, got dtype {x.dtype}")
        if x.ndim == len(self.input_shape):
            x = x[None]
        if tuple(x.shape[1:]) != self.input_shape:
            raise ProbeError(
                f"STRIP: inputs have shape {tuple(x.shape[1:])}, the detector expects {self.input_shape}"
            )
        x = x.astype(np.float32, copy=False)
        if not np.all(np.isfinite(x)):
            raise ProbeError("STRIP: inputs hold NaN or infinite values")
        return x

    # --- storage -----------------------------------------------------------------------------

    def meta(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "threshold": self.threshold,
            "fpr": self.fpr,
            "n_perturb": self.n_perturb,
            "lo": self.lo,
            "hi": self.hi,
            "n_classes": self.n_classes,
            "input_shape": list(self.input_shape),
            "n_overlay": len(self.overlay),
            "model_sha256": self.model_sha256,
            "calibration": self.calibration,
        }

    @property
    def digest(self) -> str:
        return _digest(self.meta(), self.overlay)

    def save(self, path: str | os.PathLike[str]) -> str:
        """Write the detector atomically; returns its digest (``sha256:<hex>``) to pin on load."""
        target = Path(path)
        meta = {**self.meta(), "digest": self.digest}
        meta_bytes = np.frombuffer(json.dumps(meta, sort_keys=True).encode(), dtype=np.uint8)
        fd, tmp = tempfile.mkstemp(dir=target.parent or ".", prefix=".strip-", suffix=".npz")
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez(fh, overlay=np.ascontiguousarray(self.overlay, dtype=np.float32), meta=meta_bytes)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return str(meta["digest"])

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        *,
        model: Any = None,
        digest: str | None = None,
        max_bytes: int = MAX_DETECTOR_BYTES,
    ) -> StripDetector:
        """Read and check a saved detector (sizes, members, header, digest, optional pinned digest)."""
        overlay, meta = _read(Path(path), max_bytes, str(path))
        detector = _from_meta(meta, overlay)
        stored = meta.get("digest")
        actual = detector.digest
        if stored != actual:
            raise ProbeError(f"STRIP detector {path}: digest mismatch (the file was modified or corrupted)")
        if digest is not None and digest != actual:
            raise ProbeError(f"STRIP detector {path}: digest {actual} is not the pinned {digest}")
        if model is not None:
            detector.bind(model)
        return detector


def from_sealed(blob: bytes, *, model_sha256: str, where: str) -> StripDetector:
    """The detector of a sealed store attachment (``store push --detector FILE.npz``; the store has
    already checked the blob's SHA-256 against its MAC-covered entry), with every check of
    :meth:`StripDetector.load` redone and the model it was fitted on compared with ``model_sha256``."""
    overlay, meta = _read(io.BytesIO(blob), MAX_DETECTOR_BYTES, where)
    detector = _from_meta(meta, overlay)
    if meta.get("digest") != detector.digest:
        raise ProbeError(f"the STRIP detector attached to {where}: digest mismatch (modified or corrupted)")
    if detector.model_sha256 is not None and _bare(detector.model_sha256) != _bare(model_sha256):
        raise ProbeError(f"the STRIP detector attached to {where} was fitted for another model")
    return detector


def _bare(digest: str) -> str:
    return digest.removeprefix("sha256:").lower()


def fit_strip(
    model: Any,
    clean_x: Any,
    *,
    fpr: float = 0.05,
    n_perturb: int = 20,
    max_overlay: int = 200,
    max_calibration: int = 1000,
    seed: int = 0,
    model_sha256: str | None = None,
) -> StripDetector:
    """Fit a detector on clean inputs: half become overlays, half calibrate the threshold at ``fpr``."""
    if not 0 < fpr < 0.5:
        raise ProbeError("STRIP: fpr must be between 0 and 0.5")
    if not 1 <= n_perturb <= MAX_PERTURB:
        raise ProbeError(f"STRIP: n_perturb must be from 1 to {MAX_PERTURB}")
    target = model if isinstance(model, Target) else Target.of(model)
    x = np.asarray(clean_x, dtype=np.float32)
    if x.ndim < 2 or not np.all(np.isfinite(x)):
        raise ProbeError("STRIP: clean inputs must be finite numbers, one row per sample")
    from kerasguard.probe.data import LabelledData

    check_fits(
        LabelledData(x, np.zeros(len(x), dtype=np.int64)),
        target.input_shape,
        target.n_classes,
        what="STRIP clean data",
    )
    minimum = math.ceil(2 / fpr)
    if len(x) < 2 * minimum:
        raise ProbeError(
            f"STRIP at {fpr:.1%} FPR needs at least {2 * minimum} clean samples (half overlays, half "
            f"calibration), got {len(x)}"
        )
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(x))
    half = len(x) // 2
    overlay = x[order[: min(half, max_overlay)]]
    calib = x[order[half:][:max_calibration]]
    detector = StripDetector(
        overlay=np.ascontiguousarray(overlay),
        threshold=0.0,
        fpr=float(fpr),
        n_perturb=int(n_perturb),
        lo=float(x.min()),
        hi=float(x.max()),
        n_classes=target.n_classes,
        model_sha256=model_sha256,
    )
    target.calibrate(x)
    detector._target = target
    entropies = detector.score(calib, seed=seed + 1)
    threshold = float(np.quantile(entropies, fpr))
    detector.threshold = threshold
    detector.calibration = {
        "n": len(calib),
        "fpr_on_calibration": float(np.mean(entropies < threshold)),
        "entropy_min": float(entropies.min()),
        "entropy_median": float(np.median(entropies)),
        "entropy_max": float(entropies.max()),
    }
    return detector


def _digest(meta: dict[str, Any], overlay: np.ndarray) -> str:
    h = hashlib.sha256()
    h.update(SCHEMA.encode() + b"\0")
    h.update(json.dumps({k: v for k, v in meta.items() if k != "digest"}, sort_keys=True).encode() + b"\0")
    h.update(np.ascontiguousarray(overlay, dtype="<f4").tobytes())
    return "sha256:" + h.hexdigest()


def _read(source: Path | io.BytesIO, max_bytes: int, path: str) -> tuple[np.ndarray, dict[str, Any]]:
    try:
        size = source.stat().st_size if isinstance(source, Path) else len(source.getbuffer())
    except OSError as exc:
        raise ProbeError(f"cannot read STRIP detector {path}: {exc.strerror or exc}") from None
    if size > max_bytes:
        raise ProbeError(f"STRIP detector {path} is {size} bytes, above the {max_bytes}-byte limit")
    try:
        with zipfile.ZipFile(source) as zf:
            infos = zf.infolist()
            if {i.filename for i in infos} != _MEMBERS or len(infos) != len(_MEMBERS):
                raise ProbeError(f"STRIP detector {path} must hold exactly overlay.npy and meta.npy")
            for info in infos:
                if info.compress_type != zipfile.ZIP_STORED or info.file_size > max_bytes:
                    raise ProbeError(
                        f"STRIP detector {path}: member {info.filename} is compressed or too large"
                    )
            meta_info = zf.getinfo("meta.npy")
            if meta_info.file_size > MAX_META_BYTES:
                raise ProbeError(f"STRIP detector {path}: header above {MAX_META_BYTES} bytes")
            # NumPy allocates what an array header declares: judge the headers before reading
            check_headers(zf, max_bytes, f"STRIP detector {path}", ProbeError)
        if isinstance(source, io.BytesIO):
            source.seek(0)
        with np.load(source, allow_pickle=False) as npz:
            overlay = npz["overlay"]
            meta_bytes = npz["meta"]
    except ProbeError:
        raise
    except Exception as exc:  # BadZipFile, ValueError (pickled member), OSError
        raise ProbeError(f"cannot read STRIP detector {path}: {type(exc).__name__}: {exc}") from None
    if overlay.dtype != np.float32 or overlay.ndim < 2 or len(overlay) == 0:
        raise ProbeError(f"STRIP detector {path}: overlay must be a non-empty float32 array")
    if meta_bytes.dtype != np.uint8 or meta_bytes.ndim != 1:
        raise ProbeError(f"STRIP detector {path}: header must be UTF-8 bytes")
    try:
        meta = json.loads(meta_bytes.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProbeError(f"STRIP detector {path}: header is not JSON: {exc}") from None
    if not isinstance(meta, dict):
        raise ProbeError(f"STRIP detector {path}: header must be a JSON object")
    if not np.all(np.isfinite(overlay)):
        raise ProbeError(f"STRIP detector {path}: overlay holds NaN or infinite values")
    return overlay, meta


def _from_meta(meta: dict[str, Any], overlay: np.ndarray) -> StripDetector:
    def number(key: str) -> float:
        value = meta.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ProbeError(f"STRIP detector header: {key!r} must be a finite number")
        return float(value)

    def integer(key: str, lo: int, hi: int) -> int:
        value = meta.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise ProbeError(f"STRIP detector header: {key!r} must be an integer from {lo} to {hi}")
        return value

    if meta.get("schema") != SCHEMA:
        raise ProbeError(f"STRIP detector header: schema must be {SCHEMA!r}")
    shape = meta.get("input_shape")
    if shape != list(overlay.shape[1:]) or integer("n_overlay", 1, 10**7) != len(overlay):
        raise ProbeError("STRIP detector header: input_shape/n_overlay do not match the overlay array")
    sha = meta.get("model_sha256")
    if sha is not None and not (isinstance(sha, str) and len(sha) <= 100):
        raise ProbeError("STRIP detector header: model_sha256 must be a string")
    calibration = meta.get("calibration", {})
    if not isinstance(calibration, dict):
        raise ProbeError("STRIP detector header: calibration must be an object")
    fpr = number("fpr")
    if not 0 < fpr < 0.5:
        raise ProbeError("STRIP detector header: fpr must be between 0 and 0.5")
    lo, hi = number("lo"), number("hi")
    if not hi >= lo:
        raise ProbeError("STRIP detector header: hi must not be below lo")
    return StripDetector(
        overlay=overlay,
        threshold=number("threshold"),
        fpr=fpr,
        n_perturb=integer("n_perturb", 1, MAX_PERTURB),
        lo=lo,
        hi=hi,
        n_classes=integer("n_classes", 2, 10**6),
        model_sha256=sha,
        calibration=calibration,
    )
