"""The two pipelines of ``kerasguard data``, as the Python API.

check:        read (npy | npz | csv | parquet | image folder) -> manifest digest (and verify it)
              -> checks (schema, NaN/inf, ranges, duplicates, conflicting labels, balance, outliers,
              label issues) -> DataReport
find_backdoor: model (a keras.Model, or a file loaded by kerasguard.load_model after its scan)
              -> penultimate activations -> per-class spectral scores + robust outliers
              -> exclusionary reclassification (probe, or the retrained model) -> BackdoorReport
              (+ clean accuracy and attack success before/after when retraining)
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from kerasguard.data import backdoor as bd
from kerasguard.data.activations import activations
from kerasguard.data.checks import run_checks
from kerasguard.data.dataset import Dataset, FloatArray, IntArray, from_arrays
from kerasguard.data.ids import INCOMPLETE_IDS, finding
from kerasguard.data.manifest import data_manifest, verify_data_manifest
from kerasguard.data.readers import open_dataset
from kerasguard.data.report import (
    BackdoorReport,
    ClassAnalysis,
    DataReport,
    RetrainResult,
    SuspiciousSample,
    shown,
)
from kerasguard.data.retrain import accuracy, predict_classes, retrain
from kerasguard.errors import DataError, IntegrityError
from kerasguard.findings import Finding, Location
from kerasguard.integrity.errors import ManifestMismatchError
from kerasguard.policy import Policy

DataLike = str | os.PathLike[str] | Dataset | Any
Split = tuple[Any, Any]


def load(data: DataLike, labels: Any = None, **read: Any) -> Dataset:
    """A Dataset from a path (any supported kind), a Dataset, or arrays (with ``labels``)."""
    if isinstance(data, Dataset):
        return data
    if isinstance(data, str | os.PathLike):
        if labels is not None:
            raise DataError("labels come from the dataset file; pass them only with arrays")
        return open_dataset(data, **read)
    return from_arrays(data, labels)


def check(
    data: DataLike,
    labels: Any = None,
    *,
    reference: DataLike | None = None,
    reference_labels: Any = None,
    manifest: str | os.PathLike[str] | None = None,
    num_classes: int | None = None,
    label_issues: bool = True,
    label: str | None = None,
) -> DataReport:
    """Check a training set (and against a reference set); never raises for what it can report."""
    findings: list[Finding] = []
    with ThreadPoolExecutor(1) as pool:
        # the manifest's SHA-256 pass reads the files while the reader parses them: both release the GIL
        pending = pool.submit(_manifest_of, data, manifest) if isinstance(data, str | os.PathLike) else None
        ds = load(data, labels, label=label)
        ref = None
        if reference is not None:
            ref = load(reference, reference_labels, label=label)
        digest, problem = pending.result() if pending is not None else (None, None)
    if problem is not None:
        findings.append(problem)
    found, stats = run_checks(ds, ref, num_classes=num_classes, label_issues=label_issues)
    findings += found
    return DataReport(
        target=ds.source,
        kind=ds.kind,
        samples=ds.rows,
        features=len(ds.columns),
        findings=tuple(findings),
        complete=not any(f.rule_id in INCOMPLETE_IDS for f in findings),
        stats=stats,
        manifest_digest=digest,
    )


def _manifest_of(
    data: str | os.PathLike[str], manifest: str | os.PathLike[str] | None
) -> tuple[str | None, Finding | None]:
    """(the data's manifest digest, or the finding that says why there is none): checked against
    ``manifest`` when one is given, else computed."""
    target = os.fspath(data)
    if manifest is not None:
        try:
            return verify_data_manifest(data, manifest).digest(), None
        except ManifestMismatchError as exc:
            return None, finding(
                "KGD114",
                shown(exc.message, 2000),
                Location(file=target),
                remediation="find out who changed the data; retrain only on data you can vouch for",
            )
    try:
        return data_manifest(data).digest(), None
    except IntegrityError as exc:  # a link or special file inside: no provable digest
        return None, finding("KGD901", f"no data manifest: {shown(exc.message, 500)}", Location(file=target))


def load_user_model(path: str | os.PathLike[str], policy: Policy | None = None) -> Any:
    """The user's own model, in this process, only after kerasguard's trust pipeline and scan passed.

    Backdoor analysis needs the live model (its layers, and a clone to retrain), which the sandbox
    does not hand out; the policy must allow in-process loading (``[sandbox]
    allow_unsafe_in_process = true``), and kerasguard.load_model logs it as an unsafe switch.
    """
    from kerasguard.loading.loader import load_model

    return load_model(path, policy=policy, sandbox=False)


def _check_labels(labels: IntArray, model: Any, source: str) -> None:
    """Labels must be classes the model can predict: 0 .. n-1, n the width of its output (2 for one
    sigmoid unit). Anything else is a mislabelled file, not a class to analyse."""
    outputs = getattr(model, "outputs", None) or []
    width = outputs[0].shape[-1] if len(outputs) == 1 and len(outputs[0].shape) >= 2 else None
    if not isinstance(width, int):
        return
    n = 2 if width == 1 else width
    bad = np.flatnonzero((labels < 0) | (labels >= n))
    if bad.size:
        row = int(bad[0])
        raise DataError(
            f"{source}: {bad.size} label(s) are not classes of the model (0 to {n - 1}); row {row} has"
            f" {int(labels[row])}",
            hint="fix the label column (or give the labels the model was trained with)",
        )


def _split(split: Split | str | os.PathLike[str] | None) -> tuple[FloatArray, IntArray] | None:
    if split is None:
        return None
    ds = load(split) if isinstance(split, str | os.PathLike) else from_arrays(split[0], split[1])
    if ds.labels is None:
        raise DataError(f"{ds.source}: a test set needs labels")
    return ds.inputs(), ds.labels


def _judge_class(
    cls: bd.ClassScores, predicted: dict[int, int], test: _TriggerTest | None, loc: Location
) -> tuple[list[Finding], ClassAnalysis, list[SuspiciousSample]]:
    """One class's finding (KGD201 confirmed poisoned, KGD202 for review, KGD203 too small), its
    measurements and its suspicious samples. In a poisoned class, the confirmed ones are the outliers
    that look like another class and the samples that leave the class once the trigger is subtracted."""
    if cls.skipped:
        message = f"class {cls.label}: {len(cls.indices)} samples, fewer than {bd.MIN_CLASS}; not analysed"
        return (
            [finding("KGD203", message, loc)],
            ClassAnalysis(cls.label, len(cls.indices), None, 0, None, None),
            [],
        )
    fraction, other = bd.reclassification(cls, predicted)
    members = cls.indices[cls.candidate]
    elsewhere = [int(i) for i in members if predicted[int(i)] != cls.label]
    flip = None if test is None else test.flip
    poisoned = test is not None and bd.confirmed(len(elsewhere), flip)
    untriggered = test.untriggered if test is not None and poisoned else {}
    norm = bd.normalised(cls)
    samples = []
    for pos in np.flatnonzero(cls.candidate | np.isin(cls.indices, list(untriggered))):
        index = int(cls.indices[pos])
        poison = poisoned and (index in untriggered or index in elsewhere)
        again: int | None = untriggered.get(index, predicted.get(index, cls.label))
        samples.append(SuspiciousSample(index, cls.label, float(norm[pos]), float(cls.spectral[pos]),
                                        None if again == cls.label else again,
                                        confirmed=poison))  # fmt: skip
    analysis = ClassAnalysis(
        cls.label, len(cls.indices), cls.silhouette, int(members.size), fraction, other, flip, poisoned
    )
    if not members.size:
        return [], analysis, samples
    top = members[np.argsort(-norm[cls.candidate])][:10].tolist()
    flip_text = "not measured" if flip is None else f"{flip:.0%}"
    evidence = (
        f"{len(elsewhere)} of {members.size} outliers look like other classes"
        + (f" (mostly {other})" if other is not None else "")
        + (
            f"; their shared difference, pasted on other classes' samples, sends {flip_text} of them to "
            f"class {cls.label}"
            if flip is not None
            else f"; trigger test not run (fewer than {bd.MIN_RECLASSIFIED} look like other classes)"
        )
        + f"; top samples {top}"
    )
    if poisoned:
        message = (
            f"class {cls.label}: {len(elsewhere)} outliers look like other classes and share a difference "
            f"that acts as a trigger on the model ({flip_text} of other classes' samples flip to "
            f"{cls.label}); {len(untriggered)} of its samples leave it once the difference is subtracted: "
            "likely backdoor poison"
        )
        remediation = "remove the confirmed samples the report lists, retrain, and find where they came from"
        return (
            [finding("KGD201", message, loc, evidence=evidence, remediation=remediation)],
            analysis,
            samples,
        )
    message = (
        f"class {cls.label}: {members.size} of {len(cls.indices)} samples are robust spectral outliers; "
        "no shared trigger found (the tail of a varied class, most likely); review if in doubt"
    )
    return [finding("KGD202", message, loc, evidence=evidence)], analysis, samples


@dataclass(frozen=True)
class _TriggerTest:
    """A class's trigger test: the share of other classes' samples its outliers' shared difference
    sends into it, and (when that confirms it) its samples the model moves elsewhere once the
    difference is subtracted, with the class it then gives them."""

    flip: float
    untriggered: dict[int, int]


def _trigger_tests(
    model: Any,
    x: npt.NDArray[np.float32],
    z: npt.NDArray[np.float32],
    y: IntArray,
    classes: list[bd.ClassScores],
    flagged: Any,
    predicted: dict[int, int],
    seed: int,
) -> dict[int, _TriggerTest]:
    """Per class with enough reclassified outliers: paste their shared difference on other classes'
    clean samples (does the model follow it into the class?), and for a class that passes, subtract it
    from the class's own samples (which ones does the model then put elsewhere?). ``z`` is
    ``bd.scaled_inputs(x, clean)``; nothing here copies the whole of ``x`` (issue 13)."""
    flat = x.reshape(len(x), -1)
    clean = np.ones(len(y), dtype=bool)
    clean[flagged] = False
    if not clean.any():
        return {}
    low, high = flat.min(axis=0), flat.max(axis=0)
    tests: dict[int, _TriggerTest] = {}
    for cls in classes:
        if cls.skipped:
            continue
        members = np.asarray([int(i) for i in cls.indices[cls.candidate] if predicted[int(i)] != cls.label])
        if members.size < bd.MIN_RECLASSIFIED:
            continue
        looks_like = np.asarray([predicted[int(i)] for i in members], dtype=np.int64)
        diff = bd.shared_difference(flat, z, y, clean, members, looks_like).astype(np.float32)
        rows = bd.transplant_rows(y, clean, cls.label, seed)
        if not rows.size:
            continue
        before = predict_classes(model, x[rows])
        pasted = np.clip(flat[rows] + diff, low, high).reshape(len(rows), *x.shape[1:])
        after = predict_classes(model, pasted)
        moved = before != cls.label
        flip = float(np.mean(after[moved] == cls.label)) if moved.any() else 0.0
        untriggered: dict[int, int] = {}
        if bd.confirmed(members.size, flip):
            own = cls.indices
            removed = np.clip(flat[own] - diff, low, high).reshape(len(own), *x.shape[1:])
            gives = predict_classes(model, removed)
            untriggered = {int(i): int(g) for i, g in zip(own, gives, strict=True) if g != cls.label}
        tests[cls.label] = _TriggerTest(flip, untriggered)
    return tests


def find_backdoor(
    model: Any,
    data: DataLike,
    labels: Any = None,
    *,
    layer: str | None = None,
    retrain_filtered: bool = False,
    epochs: int = 20,
    batch_size: int = 32,
    test: Split | str | os.PathLike[str] | None = None,
    poisoned_test: Split | str | os.PathLike[str] | None = None,
    policy: Policy | None = None,
    seed: int = 0,
    directions: int = bd.DIRECTIONS,
    quantile: float = bd.QUANTILE,
) -> BackdoorReport:
    """Find likely backdoor poison in a training set with the model trained on it.

    ``model`` is a keras.Model or a model file (scanned and loaded by kerasguard.load_model in
    process). ``poisoned_test`` is inputs with the trigger labelled with the attacker's target: the
    attack success rate is reported only when it is given.
    """
    model_name = "<keras.Model>"
    if isinstance(model, str | os.PathLike):
        model_name = os.fspath(model)
        model = load_user_model(model, policy)
    ds = load(data, labels)
    if ds.labels is None:
        raise DataError(f"{ds.source}: backdoor analysis needs labels")
    y = ds.labels
    _check_labels(y, model, ds.source)
    x = ds.inputs().astype(np.float32, copy=False)
    if not np.isfinite(x).all():
        bad = int((~np.isfinite(x.reshape(len(x), -1))).any(axis=1).sum())
        raise DataError(
            f"{ds.source}: {bad} sample(s) hold NaN or infinite values; the analysis needs finite inputs",
            hint="run `kerasguard data check` to find them (KGD103), then fix or drop them",
        )
    acts, layer_name = activations(model, x, layer)
    classes = bd.score_classes(acts, y, directions=directions, quantile=quantile, seed=seed)
    parts = [c.indices[c.candidate] for c in classes]
    candidates = np.unique(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.intp)
    clean, poisoned = _split(test), _split(poisoned_test)  # read (and refused) before a long retrain
    predicted: dict[int, int] = {}
    tests: dict[int, _TriggerTest] = {}
    if candidates.size:
        fit = np.ones(len(y), dtype=bool)
        fit[candidates] = False
        z = bd.scaled_inputs(x, fit) if fit.any() else np.zeros((0, 0), dtype=np.float32)
        again = bd.input_reclassify(z, y, candidates) if fit.any() else y[candidates]
        predicted = dict(zip(candidates.tolist(), again.tolist(), strict=True))
        tests = _trigger_tests(model, x, z, y, classes, candidates, predicted, seed)
    findings: list[Finding] = []
    analyses: list[ClassAnalysis] = []
    suspicious: list[SuspiciousSample] = []
    for cls in classes:
        found, analysis, samples = _judge_class(cls, predicted, tests.get(cls.label), Location(
            file=ds.source, pointer=f"/classes/{cls.label}"))  # fmt: skip
        findings += found
        analyses.append(analysis)
        suspicious += samples
    flagged = np.asarray(sorted(s.index for s in suspicious if s.confirmed), dtype=np.intp)
    retrained = None
    if retrain_filtered:
        keep = np.ones(len(y), dtype=bool)
        keep[flagged] = False
        retrained = retrain(model, x[keep], y[keep], epochs=epochs, batch_size=batch_size, seed=seed)
    result = None
    if retrained is not None:
        result = RetrainResult(
            removed=int(flagged.size),
            epochs=epochs,
            clean_accuracy_before=accuracy(model, clean),
            clean_accuracy_after=accuracy(retrained, clean),
            attack_success_before=accuracy(model, poisoned),
            attack_success_after=accuracy(retrained, poisoned),
        )
    return BackdoorReport(
        target=ds.source,
        model=model_name,
        samples=ds.rows,
        findings=tuple(findings),
        suspicious=tuple(suspicious),
        classes=tuple(analyses),
        layer=layer_name,
        retrain=result,
    )
