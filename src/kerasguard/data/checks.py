"""The data checks: pure functions of a Dataset (and a reference Dataset) that return findings.

Each check works column by column or on 64-bit row hashes, so memory stays near one copy of the
numeric values. Statistics that a reader of the report needs are collected in ``stats``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import numpy.typing as npt

from kerasguard.data.dataset import Dataset, FloatArray, IntArray
from kerasguard.data.ids import finding
from kerasguard.data.report import shown
from kerasguard.findings import Finding, Location, Severity

U64 = npt.NDArray[np.uint64]

MIN_ROWS = 10  # below this, statistical checks (outliers, balance, label issues) are skipped
OUTLIER_Z = 10.0  # robust z-score (median / MAD) beyond which a value is an outlier
NEAR_BIN = 0.1  # near-duplicate bin width, in robust standard deviations of the feature
BALANCE_P = 1e-3  # chi-square p-value below which class balance differs from the reference
LABEL_ISSUE_MAX_ROWS = 20_000
_SHOW = 10
SCALE_SAMPLE = 100_000


def _loc(ds: Dataset, pointer: str | None = None) -> Location:
    return Location(file=ds.source, pointer=pointer)


def _rows(indices: Any) -> str:
    shown_rows = [int(i) for i in list(indices)[:_SHOW]]
    more = len(indices) - len(shown_rows)
    return "rows " + ", ".join(map(str, shown_rows)) + (f" (+{more} more)" if more > 0 else "")


def _scale(col: FloatArray) -> tuple[float, float]:
    """(median, robust standard deviation) of the finite values; scale 0 when more than half of them are
    one value (a sparse column has no robust spread: its outliers are not judged)."""
    if len(col) > SCALE_SAMPLE:  # a fixed stride sample: the median and MAD of 1M values need no more
        col = col[:: len(col) // SCALE_SAMPLE]
    finite = col[np.isfinite(col)]
    if finite.size == 0:
        return 0.0, 0.0
    med = float(np.median(finite))
    mad = float(np.median(np.abs(finite - med)))
    return med, 1.4826 * mad


def _mix(bits: U64) -> U64:
    """splitmix64 finaliser, vectorised (uint64 arithmetic wraps)."""
    z = bits ^ (bits >> np.uint64(30))
    z = z * np.uint64(0xBF58476D1CE4E5B9)
    z = z ^ (z >> np.uint64(27))
    z = z * np.uint64(0x94D049BB133111EB)
    out: U64 = z ^ (z >> np.uint64(31))
    return out


def row_hashes(columns: Iterable[FloatArray], rows: int) -> U64:
    """One 64-bit hash per row over the given columns (-0.0 and 0.0 equal, every NaN equal)."""
    h = np.full(rows, 0x9E3779B97F4A7C15, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j, col in enumerate(columns):
            v = col + 0.0  # a copy in which -0.0 is 0.0
            nan = np.isnan(v)
            if nan.any():
                v[nan] = np.nan  # one NaN bit pattern
            bits = v.view(np.uint64)
            bits ^= np.uint64(j)
            h *= np.uint64(0x100000001B3)
            h ^= bits
            h ^= h >> np.uint64(29)
            h *= np.uint64(0xBF58476D1CE4E5B9)
    h = _mix(h)
    return h


def _groups(h: U64) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """(order, group starts, group sizes) of equal hashes, rows sorted by hash."""
    order = np.argsort(h, kind="stable")
    sorted_h = h[order]
    starts = np.flatnonzero(np.concatenate(([True], sorted_h[1:] != sorted_h[:-1])))
    sizes = np.diff(np.append(starts, len(h)))
    return order, starts, sizes


def check_schema(ds: Dataset, ref: Dataset) -> list[Finding]:
    out: list[Finding] = []
    missing = [n for n in ref.names if n not in ds.names and n not in ds.non_numeric]
    extra = [n for n in ds.names if n not in ref.names and n not in ref.non_numeric]
    retyped = [n for n in ds.non_numeric if n in ref.names] + [n for n in ref.non_numeric if n in ds.names]
    if ds.matrix_shape != ref.matrix_shape and (ds.matrix_shape or ref.matrix_shape):
        out.append(
            finding(
                "KGD101",
                f"sample shape {ds.matrix_shape} differs from the reference's {ref.matrix_shape}",
                _loc(ds),
            )
        )
    elif missing or extra or retyped:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)}: {shown(', '.join(missing[:_SHOW]), 200)}")
        if extra:
            parts.append(f"extra {len(extra)}: {shown(', '.join(extra[:_SHOW]), 200)}")
        if retyped:
            parts.append(f"numeric in one, text in the other: {shown(', '.join(retyped[:_SHOW]), 200)}")
        out.append(finding("KGD101", "columns differ from the reference: " + "; ".join(parts), _loc(ds)))
    return out


def check_finite(ds: Dataset, stats: dict[str, Any]) -> list[Finding]:
    bad: list[tuple[str, int, int]] = []
    rows_hit = np.zeros(ds.rows, dtype=bool)
    for name, col in zip(ds.names, ds.columns, strict=True):
        nan = np.isnan(col)
        inf = np.isinf(col)
        if nan.any() or inf.any():
            bad.append((name, int(nan.sum()), int(inf.sum())))
            rows_hit |= nan | inf
    stats["non_finite_rows"] = int(rows_hit.sum())
    if not bad:
        return []
    detail = ", ".join(f"{shown(n)} ({a} NaN, {b} inf)" for n, a, b in bad[:_SHOW])
    return [
        finding(
            "KGD103",
            f"{int(rows_hit.sum())} row(s) hold NaN or infinite values in {len(bad)} column(s): {detail}",
            _loc(ds),
            evidence=_rows(np.flatnonzero(rows_hit)),
            remediation="drop or impute them before training; NaN in a batch poisons every weight it touches",
        )
    ]


def check_ranges(ds: Dataset, ref: Dataset) -> list[Finding]:
    ref_cols = dict(zip(ref.names, ref.columns, strict=True))
    outside = np.zeros(ds.rows, dtype=bool)
    worst: list[tuple[int, str, float, float]] = []
    for name, col in zip(ds.names, ds.columns, strict=True):
        rc = ref_cols.get(name)
        if rc is None:
            continue
        finite = rc[np.isfinite(rc)]
        if finite.size == 0:
            continue
        lo, hi = float(finite.min()), float(finite.max())
        with np.errstate(invalid="ignore"):
            hit = (col < lo) | (col > hi)
        n = int(hit.sum())
        if n:
            outside |= hit
            worst.append((n, name, lo, hi))
    if not worst:
        return []
    worst.sort(reverse=True)
    detail = ", ".join(f"{shown(n)}: {c} outside [{lo:g}, {hi:g}]" for c, n, lo, hi in worst[:_SHOW])
    return [
        finding(
            "KGD104",
            f"{int(outside.sum())} row(s) have values outside the reference's range in "
            f"{len(worst)} column(s): {detail}",
            _loc(ds),
            evidence=_rows(np.flatnonzero(outside)),
        )
    ]


def check_duplicates(ds: Dataset, stats: dict[str, Any]) -> list[Finding]:
    out: list[Finding] = []
    exact = row_hashes(ds.columns, ds.rows)
    order, starts, sizes = _groups(exact)
    dup_groups = np.flatnonzero(sizes > 1)
    dup_rows = int((sizes[dup_groups] - 1).sum())
    stats["exact_duplicates"] = dup_rows
    if dup_rows:
        first = [order[starts[g] : starts[g] + sizes[g]] for g in dup_groups[:_SHOW]]
        out.append(
            finding(
                "KGD105",
                f"{dup_rows} row(s) repeat another row exactly ({len(dup_groups)} group(s))",
                _loc(ds),
                evidence="; ".join(_rows(sorted(g.tolist())) for g in first[:5]),
            )
        )
    if ds.labels is not None and dup_groups.size:
        labels_sorted = ds.labels[order]
        lo = np.minimum.reduceat(labels_sorted, starts)
        hi = np.maximum.reduceat(labels_sorted, starts)
        conflict = np.flatnonzero((sizes > 1) & (lo != hi))
        stats["conflicting_label_groups"] = int(conflict.size)
        if conflict.size:
            examples = []
            for g in conflict[:5]:
                members = sorted(order[starts[g] : starts[g] + sizes[g]].tolist())
                group_labels = sorted({int(ds.labels[i]) for i in members})
                examples.append(f"{_rows(members)} labelled {group_labels}")
            out.append(
                finding(
                    "KGD107",
                    f"{int(conflict.size)} group(s) of identical inputs carry different labels "
                    "(a label flip, or an ambiguous sample)",
                    _loc(ds),
                    evidence="; ".join(examples),
                    remediation="keep one label per input; flipped labels are a cheap poisoning attack",
                )
            )
    # near duplicates: equal after binning each feature at NEAR_BIN robust standard deviations
    near = row_hashes(_binned(ds.columns), ds.rows)
    n_order, n_starts, n_sizes = _groups(near)
    near_groups = np.flatnonzero(n_sizes > 1)
    near_rows = int((n_sizes[near_groups] - 1).sum()) - dup_rows
    stats["near_duplicates"] = max(near_rows, 0)
    if near_rows > 0:
        examples = []
        for g in near_groups:
            near_members = n_order[n_starts[g] : n_starts[g] + n_sizes[g]]
            if len(set(exact[near_members].tolist())) > 1:
                examples.append(_rows(sorted(near_members.tolist())))
            if len(examples) >= 5:
                break
        out.append(
            finding(
                "KGD106",
                f"{near_rows} row(s) are near-copies of another row (equal within {NEAR_BIN} robust "
                "standard deviations per feature) without being exact copies",
                _loc(ds),
                evidence="; ".join(examples),
            )
        )
    return out


def _binned(columns: list[FloatArray]) -> Iterator[FloatArray]:
    """Each column binned for near-duplicate hashing, one at a time (one column's copy in memory)."""
    for col in columns:
        med, scale = _scale(col)
        if scale <= 0:
            scale = float(np.nanstd(col)) if np.isfinite(col).any() else 0.0
        yield np.floor((col - med) / (NEAR_BIN * scale)) if scale > 0 else col


def check_outliers(ds: Dataset, stats: dict[str, Any]) -> list[Finding]:
    score = np.zeros(ds.rows)
    for col in ds.columns:
        med, scale = _scale(col)
        if scale <= 0:
            continue
        z = col - med
        np.abs(z, out=z)
        z /= scale
        np.fmax(score, z, out=score)  # fmax ignores NaN
    score[np.isinf(score)] = 0.0  # NaN and inf values are KGD103's
    hit = np.flatnonzero(score > OUTLIER_Z)
    stats["outlier_rows"] = int(hit.size)
    if not hit.size:
        return []
    top = hit[np.argsort(-score[hit], kind="stable")]
    return [
        finding(
            "KGD109",
            f"{hit.size} row(s) have a feature more than {OUTLIER_Z:g} robust standard deviations "
            "(median/MAD) from its median",
            _loc(ds),
            evidence="most extreme " + _rows(top) + f"; max robust z {float(score[top[0]]):.1f}",
        )
    ]


def class_set(ds: Dataset, ref: Dataset | None, num_classes: int | None) -> list[int] | None:
    """The classes the labels may take: --num-classes, else the reference's, else folder names."""
    if num_classes is not None:
        return list(range(num_classes))
    if ref is not None and ref.labels is not None:
        if ref.class_names is not None:
            return list(range(len(ref.class_names)))
        return sorted({int(v) for v in np.unique(ref.labels)})
    if ds.class_names is not None and ds.kind == "images":
        return list(range(len(ds.class_names)))
    return None


def _align_class_names(ds: Dataset, ref: Dataset | None) -> None:
    """Table labels given as names: number them as the reference does (unknown names -> -1)."""
    if ref is None or ds.class_names is None or ref.class_names is None or ds.labels is None:
        return
    mapping = {name: i for i, name in enumerate(ref.class_names)}
    remap = np.array([mapping.get(name, -1) for name in ds.class_names], dtype=np.int64)
    ds.labels = remap[ds.labels]


def _label_name(ds: Dataset, ref: Dataset | None, label: int) -> str:
    names = (ref.class_names if ref is not None else None) or ds.class_names
    if names is not None and 0 <= label < len(names):
        return f"{label} ({shown(names[label], 40)})"
    return str(label)


def check_labels(
    ds: Dataset, ref: Dataset | None, classes: list[int] | None, stats: dict[str, Any]
) -> list[Finding]:
    if ds.labels is None:
        return []
    out: list[Finding] = []
    labels: IntArray = ds.labels
    values, counts = np.unique(labels, return_counts=True)
    stats["classes"] = {_label_name(ds, ref, int(v)): int(c) for v, c in zip(values, counts, strict=True)}
    if classes is not None:
        allowed = np.asarray(classes)
        outside = np.flatnonzero(~np.isin(labels, allowed))
        if outside.size:
            bad = sorted({int(v) for v in labels[outside]})[:_SHOW]
            out.append(
                finding(
                    "KGD111",
                    f"{outside.size} sample(s) carry labels outside the class set "
                    f"({len(allowed)} classes): {bad}",
                    _loc(ds, "/labels"),
                    evidence=_rows(outside),
                )
            )
        present = set(values.tolist())
        empty = [c for c in classes if c not in present]
        if empty:
            out.append(
                finding(
                    "KGD112",
                    f"{len(empty)} class(es) have no samples: "
                    + ", ".join(_label_name(ds, ref, c) for c in empty[:_SHOW]),
                    _loc(ds, "/labels"),
                )
            )
    return out


def check_balance(ds: Dataset, ref: Dataset, stats: dict[str, Any]) -> list[Finding]:
    if ds.labels is None or ref.labels is None:
        return []
    from scipy.stats import chi2

    classes = sorted(set(np.unique(ref.labels).tolist()) | set(np.unique(ds.labels).tolist()))
    obs = np.array([np.sum(ds.labels == c) for c in classes], dtype=np.float64)
    ref_counts = np.array([np.sum(ref.labels == c) for c in classes], dtype=np.float64)
    expected_p = (ref_counts + 0.5) / (ref_counts + 0.5).sum()
    expected = expected_p * obs.sum()
    statistic = float(np.sum((obs - expected) ** 2 / expected))
    dof = max(len(classes) - 1, 1)
    p_value = float(chi2.sf(statistic, dof))
    stats["balance_chi2"] = {"statistic": round(statistic, 3), "dof": dof, "p_value": p_value}
    if p_value >= BALANCE_P:
        return []
    share = obs / obs.sum()
    diff = share - expected_p
    worst = np.argsort(-np.abs(diff))[:5]
    detail = ", ".join(
        f"class {_label_name(ds, ref, classes[i])}: {share[i]:.1%} vs {expected_p[i]:.1%}" for i in worst
    )
    return [
        finding(
            "KGD108",
            f"class balance differs from the reference (chi-square {statistic:.1f}, {dof} dof, "
            f"p = {p_value:.2g}): {detail}",
            _loc(ds, "/labels"),
        )
    ]


def check_label_issues(ds: Dataset, stats: dict[str, Any]) -> list[Finding]:
    """Confident-learning label-issue candidates (cleanlab) from cross-validated probabilities."""
    if ds.labels is None:
        return []
    if ds.rows > LABEL_ISSUE_MAX_ROWS:
        return [
            finding("KGD115", f"label-issue check skipped: more than {LABEL_ISSUE_MAX_ROWS} rows", _loc(ds))
        ]
    try:
        from cleanlab.filter import find_label_issues
    except ImportError:
        return [
            finding(
                "KGD115",
                "label-issue check skipped: cleanlab is not installed (pip install 'kerasguard[cleanlab]')",
                _loc(ds),
            )
        ]
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    values, y = np.unique(ds.labels, return_inverse=True)
    counts = np.bincount(y)
    folds = int(min(5, counts.min()))
    if len(values) < 2 or folds < 2:
        return [
            finding("KGD115", "label-issue check skipped: needs two classes with two samples each", _loc(ds))
        ]
    x = ds.matrix().copy()
    x[~np.isfinite(x)] = 0.0
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=300))
    probs = cross_val_predict(model, x, y, cv=folds, method="predict_proba")
    issues = np.asarray(find_label_issues(y, probs, return_indices_ranked_by="self_confidence"))
    stats["label_issues"] = int(issues.size)
    stats["label_issue_rows"] = sorted(int(i) for i in issues[:1000])
    if not issues.size:
        return []
    suggested = probs[issues].argmax(axis=1)
    examples = ", ".join(
        f"row {int(i)}: {_label_name(ds, None, int(values[y[i]]))} -> {_label_name(ds, None, int(values[s]))}"
        for i, s in zip(issues[:_SHOW], suggested[:_SHOW], strict=True)
    )
    return [
        finding(
            "KGD110",
            f"{issues.size} sample(s) look mislabelled (cleanlab confident learning over a "
            "cross-validated logistic regression)",
            _loc(ds, "/labels"),
            evidence=examples,
            remediation="review these labels; flipped labels are a cheap poisoning attack",
        )
    ]


def too_few(ds: Dataset) -> list[Finding]:
    if ds.rows >= MIN_ROWS:
        return []
    return [
        finding(
            "KGD113",
            f"{ds.rows} sample(s): too few for outliers, class balance and label issues (need {MIN_ROWS})",
            _loc(ds),
            severity=Severity.MEDIUM,
        )
    ]


def run_checks(
    ds: Dataset,
    ref: Dataset | None = None,
    *,
    num_classes: int | None = None,
    label_issues: bool = True,
) -> tuple[list[Finding], dict[str, Any]]:
    """Every applicable check on ``ds``; returns the findings and the statistics gathered."""
    stats: dict[str, Any] = {"rows": ds.rows, "numeric_columns": len(ds.columns)}
    findings = list(ds.problems)
    _align_class_names(ds, ref)
    if ref is not None:
        findings += check_schema(ds, ref)
    findings += check_labels(ds, ref, class_set(ds, ref, num_classes), stats)
    if ds.columns:
        findings += check_finite(ds, stats)
        if ref is not None:
            findings += check_ranges(ds, ref)
        findings += check_duplicates(ds, stats)
    small = too_few(ds)
    findings += small
    if small:
        return findings, stats
    if ds.columns:
        findings += check_outliers(ds, stats)
    if ref is not None:
        findings += check_balance(ds, ref, stats)
    if label_issues and ds.columns:
        findings += check_label_issues(ds, stats)
    return findings, stats
