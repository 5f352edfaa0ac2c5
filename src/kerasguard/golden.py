"""Golden checks: after upgrading keras / the backend / h5py, does the model still predict the same?

``record`` stores reference inputs and outputs next to the model (``<model>.golden/``) with the model's
sha256 and the library versions that produced them. ``check`` verifies the model is the recorded one,
scans it, loads it through :func:`load_predictor` (the secure, sandboxed loader) under the current
stack and compares outputs with absolute and relative tolerances.

Needs keras (the ``keras`` extra); it is imported only when a model is loaded.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from kerasguard.errors import GoldenError, IntegrityError
from kerasguard.policy import Policy

SCHEMA = "kerasguard-golden/1"
META = "meta.json"
DEFAULT_ATOL = 1e-5
DEFAULT_RTOL = 1e-4
STACK = ("keras", "jax", "jaxlib", "tensorflow", "torch", "numpy", "h5py", "kerasguard")

Array = npt.NDArray[Any]
Predictor = Callable[[list[Array]], list[Array]]


def golden_dir(model: Path) -> Path:
    """Where the golden record of ``model`` lives: ``<model>.golden`` beside it."""
    return model.with_name(model.name + ".golden")


def model_digest(model: Path) -> str:
    """sha256 of a model file; of a model directory, sha256 over sorted (relative path, file sha256)."""
    if model.is_file():
        with model.open("rb") as fh:
            return hashlib.file_digest(fh, "sha256").hexdigest()
    if model.is_dir():
        outer = hashlib.sha256()
        for path in sorted(p for p in model.rglob("*") if p.is_file()):
            with path.open("rb") as fh:
                inner = hashlib.file_digest(fh, "sha256").hexdigest()
            outer.update(f"{path.relative_to(model).as_posix()}\0{inner}\n".encode())
        return outer.hexdigest()
    raise GoldenError(f"{model}: no such model file or directory")


def stack_versions() -> dict[str, str | None]:
    """Installed versions of the libraries that decide what a model computes (from metadata only)."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in STACK:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    out["keras_backend"] = os.environ.get("KERAS_BACKEND") or None
    return out


def load_predictor(model: Path, policy: Policy) -> Predictor:
    """Load ``model`` through the secure loader and return its predict.

    ``kerasguard.load_model`` checks the source, verifies when the policy asks, scans (refusing at or above
    ``policy.fail_on``) and loads the same bytes in a sandboxed child (unless the policy turns it off).
    """
    try:
        from kerasguard.loading.loader import load_model
    except ImportError as exc:  # pragma: no cover - the loader ships with kerasguard
        raise GoldenError(f"golden checks need the loader: {exc}") from None
    try:
        loaded = load_model(model, policy=policy, compile=False)
    except ModuleNotFoundError as exc:
        raise GoldenError(
            f"golden checks load the model and need keras: {exc}", hint="install kerasguard[keras]"
        ) from None

    def predict(inputs: list[Array]) -> list[Array]:
        out = loaded.predict(inputs[0] if len(inputs) == 1 else inputs)
        return [np.asarray(o) for o in _flatten(out)]

    return predict


def _flatten(out: Any) -> list[Any]:
    """Model outputs (an array, or nested lists / dicts of arrays) in Keras's flatten order."""
    if isinstance(out, dict):
        return [leaf for key in sorted(out) for leaf in _flatten(out[key])]
    if isinstance(out, list | tuple):
        return [leaf for item in out for leaf in _flatten(item)]
    return [out]


def _load_arrays(path: Path) -> list[Array]:
    """Arrays from .npy (one) or .npz (several, in file order). Never unpickles."""
    try:
        with path.open("rb") as fh:
            loaded = np.load(fh, allow_pickle=False)
            if isinstance(loaded, np.lib.npyio.NpzFile):
                with loaded:
                    return [loaded[name] for name in loaded.files]
            return [np.asarray(loaded)]
    except OSError as exc:
        raise GoldenError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except (ValueError, EOFError) as exc:
        raise GoldenError(f"{path}: not a .npy/.npz array file without pickles: {exc}") from None


def _save_arrays(folder: Path, stem: str, arrays: Sequence[Array]) -> str:
    if len(arrays) == 1:
        name = f"{stem}.npy"
        np.save(folder / name, arrays[0], allow_pickle=False)
    else:
        name = f"{stem}.npz"
        np.savez(folder / name, *arrays)
    return name


@dataclass(frozen=True)
class GoldenMeta:
    """meta.json of a golden record."""

    model: str
    model_sha256: str
    created: str
    versions: dict[str, str | None]
    atol: float
    rtol: float
    inputs: str
    outputs: str

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA, **self.__dict__}

    @classmethod
    def read(cls, folder: Path) -> GoldenMeta:
        path = folder / META
        try:
            data = json.loads(path.read_text("utf-8"))
        except FileNotFoundError:
            raise GoldenError(
                f"no golden record at {folder}",
                hint="record one with `kerasguard golden record MODEL --inputs X.npy`",
            ) from None
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise GoldenError(f"{path}: unreadable golden metadata: {exc}") from None
        if not isinstance(data, dict) or data.get("schema") != SCHEMA:
            raise GoldenError(f"{path}: not a kerasguard golden record (schema {SCHEMA})")
        try:
            meta = cls(
                model=str(data["model"]),
                model_sha256=str(data["model_sha256"]),
                created=str(data["created"]),
                versions={str(k): (None if v is None else str(v)) for k, v in dict(data["versions"]).items()},
                atol=float(data["atol"]),
                rtol=float(data["rtol"]),
                inputs=str(data["inputs"]),
                outputs=str(data["outputs"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise GoldenError(f"{path}: invalid golden metadata: {exc}") from None
        for name in (meta.inputs, meta.outputs):
            if Path(name).name != name or not name.endswith((".npy", ".npz")):
                raise GoldenError(f"{path}: array file name {name!r} must be a plain .npy/.npz name")
        if not (meta.atol >= 0 and meta.rtol >= 0):
            raise GoldenError(f"{path}: tolerances must be non-negative")
        return meta


def record(
    model: str | os.PathLike[str],
    inputs: str | os.PathLike[str],
    *,
    policy: Policy | None = None,
    atol: float = DEFAULT_ATOL,
    rtol: float = DEFAULT_RTOL,
    force: bool = False,
    predictor: Predictor | None = None,
) -> Path:
    """Run ``model`` on ``inputs`` (.npy/.npz) and store the golden record; returns its folder."""
    model_path = Path(model)
    if atol < 0 or rtol < 0:
        raise GoldenError("tolerances must be non-negative")
    target = golden_dir(model_path)
    if target.exists() and not force:
        raise GoldenError(f"{target} already exists", hint="pass --force to replace it")
    arrays = _load_arrays(Path(inputs))
    digest = model_digest(model_path)
    predict = predictor or load_predictor(model_path, policy or Policy())
    outputs = predict(arrays)
    staging = Path(tempfile.mkdtemp(prefix=".golden-", dir=model_path.parent))
    try:
        meta = GoldenMeta(
            model=model_path.name,
            model_sha256=digest,
            created=datetime.now(UTC).isoformat(timespec="seconds"),
            versions=stack_versions(),
            atol=atol,
            rtol=rtol,
            inputs=_save_arrays(staging, "inputs", arrays),
            outputs=_save_arrays(staging, "outputs", outputs),
        )
        (staging / META).write_text(json.dumps(meta.to_dict(), indent=2) + "\n", "utf-8")
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


@dataclass(frozen=True)
class Difference:
    """One element whose value moved: which output, where, recorded vs now."""

    output: int
    index: tuple[int, ...]
    expected: float
    actual: float
    abs_diff: float
    rel_diff: float


@dataclass(frozen=True)
class OutputComparison:
    index: int
    shape: tuple[int, ...]
    max_abs: float
    max_rel: float
    mismatched: int
    total: int
    problem: str = ""  # shape or count mismatch

    @property
    def passed(self) -> bool:
        return not self.problem and self.mismatched == 0


@dataclass(frozen=True)
class GoldenResult:
    """The verdict of one golden check."""

    model: str
    atol: float
    rtol: float
    outputs: tuple[OutputComparison, ...]
    worst: tuple[Difference, ...]
    recorded_versions: dict[str, str | None]
    current_versions: dict[str, str | None]
    model_changed: bool = False
    problems: tuple[str, ...] = field(default=())

    @property
    def passed(self) -> bool:
        return not self.problems and all(o.passed for o in self.outputs)

    def exit_code(self) -> int:
        return 0 if self.passed else 1

    @property
    def changed_versions(self) -> dict[str, tuple[str | None, str | None]]:
        keys = sorted(set(self.recorded_versions) | set(self.current_versions))
        return {
            k: (self.recorded_versions.get(k), self.current_versions.get(k))
            for k in keys
            if self.recorded_versions.get(k) != self.current_versions.get(k)
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "passed": self.passed,
            "atol": self.atol,
            "rtol": self.rtol,
            "model_changed": self.model_changed,
            "problems": list(self.problems),
            "outputs": [o.__dict__ | {"passed": o.passed} for o in self.outputs],
            "worst": [d.__dict__ for d in self.worst],
            "changed_versions": {k: list(v) for k, v in self.changed_versions.items()},
        }


def compare(
    expected: Sequence[Array], actual: Sequence[Array], *, atol: float, rtol: float, top: int = 10
) -> tuple[tuple[OutputComparison, ...], tuple[Difference, ...], tuple[str, ...]]:
    """Element-wise |actual - expected| <= atol + rtol * |expected| (NaN equals NaN), worst first."""
    problems: list[str] = []
    if len(expected) != len(actual):
        problems.append(f"the model now has {len(actual)} output(s); the golden record has {len(expected)}")
    results: list[OutputComparison] = []
    diffs: list[Difference] = []
    for i, (exp, act) in enumerate(zip(expected, actual, strict=False)):
        e = np.asarray(exp, dtype=np.float64)
        a = np.asarray(act, dtype=np.float64)
        if e.shape != a.shape:
            results.append(
                OutputComparison(
                    i,
                    tuple(a.shape),
                    float("inf"),
                    float("inf"),
                    int(e.size),
                    int(e.size),
                    f"shape {tuple(a.shape)} != recorded {tuple(e.shape)}",
                )
            )
            continue
        with np.errstate(invalid="ignore", divide="ignore"):
            abs_diff = np.abs(a - e)
            both_nan = np.isnan(a) & np.isnan(e)
            abs_diff = np.where(both_nan, 0.0, abs_diff)
            abs_diff = np.where(np.isnan(abs_diff), np.inf, abs_diff)
            rel_diff = abs_diff / np.maximum(np.abs(e), np.finfo(np.float64).tiny)
            bad = ~np.isclose(a, e, atol=atol, rtol=rtol, equal_nan=True)
        results.append(
            OutputComparison(
                i,
                tuple(a.shape),
                float(abs_diff.max(initial=0.0)),
                float(rel_diff.max(initial=0.0)),
                int(bad.sum()),
                int(e.size),
            )
        )
        flat = abs_diff.ravel()
        order = np.argsort(flat, kind="stable")[::-1][:top]
        for k in order:
            if flat[k] == 0.0:
                break
            idx = tuple(int(x) for x in np.unravel_index(int(k), e.shape)) if e.shape else ()
            diffs.append(
                Difference(
                    i,
                    idx,
                    float(e.ravel()[k]),
                    float(a.ravel()[k]),
                    float(flat[k]),
                    float(rel_diff.ravel()[k]),
                )
            )
    diffs.sort(key=lambda d: d.abs_diff, reverse=True)
    return tuple(results), tuple(diffs[:top]), tuple(problems)


def check(
    model: str | os.PathLike[str],
    *,
    policy: Policy | None = None,
    atol: float | None = None,
    rtol: float | None = None,
    allow_changed_model: bool = False,
    top: int = 10,
    predictor: Predictor | None = None,
) -> GoldenResult:
    """Reload ``model`` under the current stack and compare with its golden record.

    Raises IntegrityError when the model file is not the recorded one (unless ``allow_changed_model``,
    e.g. after re-saving it with the new Keras), GoldenError when there is no usable record.
    """
    model_path = Path(model)
    folder = golden_dir(model_path)
    meta = GoldenMeta.read(folder)
    digest = model_digest(model_path)
    changed = digest != meta.model_sha256
    if changed and not allow_changed_model:
        raise IntegrityError(
            f"{model_path}: sha256 {digest[:16]}... differs from the recorded {meta.model_sha256[:16]}...",
            hint="this is not the model that was recorded; re-record it, or pass --allow-changed-model to "
            "compare a re-saved copy",
        )
    inputs = _load_arrays(folder / meta.inputs)
    expected = _load_arrays(folder / meta.outputs)
    predict = predictor or load_predictor(model_path, policy or Policy())
    actual = predict(inputs)
    a_tol = meta.atol if atol is None else atol
    r_tol = meta.rtol if rtol is None else rtol
    outputs, worst, problems = compare(expected, actual, atol=a_tol, rtol=r_tol, top=top)
    return GoldenResult(
        model=str(model_path),
        atol=a_tol,
        rtol=r_tol,
        outputs=outputs,
        worst=worst,
        recorded_versions=meta.versions,
        current_versions=stack_versions(),
        model_changed=changed,
        problems=problems,
    )


def render_result(result: GoldenResult) -> str:
    """A short human-readable verdict with the worst differences."""
    verdict = "PASS" if result.passed else "REGRESSION"
    lines = [f"{verdict}: {result.model} (atol={result.atol:g}, rtol={result.rtol:g})"]
    if result.model_changed:
        lines.append("  note: the model file differs from the recorded one (--allow-changed-model)")
    for name, (old, new) in result.changed_versions.items():
        lines.append(f"  stack: {name} {old or '-'} -> {new or '-'}")
    lines += [f"  {p}" for p in result.problems]
    for o in result.outputs:
        state = "ok" if o.passed else (o.problem or f"{o.mismatched}/{o.total} elements out of tolerance")
        lines.append(
            f"  output {o.index} {o.shape}: max |diff| {o.max_abs:.3g}, max rel {o.max_rel:.3g}: {state}"
        )
    if result.worst and not result.passed:
        lines.append("  worst differences (output, index: recorded -> now, |diff|, rel):")
        for d in result.worst:
            moved = f"{d.expected:.6g} -> {d.actual:.6g}"
            lines.append(f"    {d.output}, {d.index}: {moved}, {d.abs_diff:.3g}, {d.rel_diff:.3g}")
    return "\n".join(lines)
