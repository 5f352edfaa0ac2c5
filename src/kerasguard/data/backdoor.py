"""Backdoor-poison detection on penultimate activations, class by class.

Poisoned samples carry the target label but look like other classes plus a trigger; in the
trained model's penultimate layer they sit apart from the clean samples of the target class,
along few directions. Per class:

1. **Spectral signatures, centred.** The activations are centred and projected on their top
   singular directions. The classic score (Tran et al.) is the squared projection on the first one
   (``spectral``); the decision uses the first ``directions`` of them (5 by default), whitened by a
   robust covariance (minimum covariance determinant), so that a poison group that is not the
   class's largest variation, or a third of the class, is still an outlier: a sample is a candidate
   when its robust squared distance exceeds the chi-square quantile ``quantile``.
2. **Exclusionary reclassification in input space.** A k-nearest-neighbour probe over the *inputs*
   (robustly scaled and clipped, so that a trigger pixel that is 0 everywhere else cannot dominate)
   fitted on every sample but the candidates says which class each candidate looks like. Poison
   looks like its source class; so does the tail of a clean class whose odd members resemble a
   neighbour (a digits "1" written like a "2"): reclassification alone cannot tell them apart.
3. **The trigger test, which can.** Poison shares one thing the rest of the data lacks: the trigger.
   The per-feature median of (candidate - mean of its 5 nearest clean neighbours in the class it was
   reclassified as) estimates that shared difference. It is pasted onto clean samples of the other
   classes and the model is asked: if it now sends at least TRIGGER_MIN of them to the class, the
   difference is a working trigger and the class is confirmed poisoned (KGD201, high). The samples
   to remove are its reclassified candidates and the samples of the class that the model moves to
   another class once the difference is subtracted (poison that was not a spectral outlier).
   A clean tail's difference is a writing style, not a switch: on clean digits and breast-cancer
   data it moved at most 26% (docs/data.md).
   Candidates of classes not confirmed are listed at low severity (KGD202), for review only.

Activation clustering's silhouette of the candidates against the rest of the class is still measured
and reported, but it does not decide: on digits it separates neither poison nor clean tails.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from kerasguard.data.dataset import FloatArray, IntArray

DIRECTIONS = 5
QUANTILE = 0.995
MIN_CLASS = 20
NEIGHBOURS = 10
TRIGGER_MIN = 0.35
MIN_RECLASSIFIED = 3
TRANSPLANT_MAX = 2000
_MCD_FIT_MAX = 5000
_CHUNK_VALUES = 1 << 20  # values per step where a full-size temporary would be needed (8 MiB float64)
Float32Array = npt.NDArray[np.float32]


@dataclass(frozen=True)
class ClassScores:
    """Per-class result: indices (into the dataset), scores, which are candidates, the evidence."""

    label: int
    indices: npt.NDArray[np.intp]
    score: FloatArray  # robust squared distance over the top directions
    spectral: FloatArray  # classic centred spectral-signature score (first direction)
    candidate: npt.NDArray[np.bool_]
    silhouette: float | None
    skipped: bool = False
    threshold: float = 1.0  # the chi-square quantile the score was judged against


def _class_scores(
    acts: FloatArray, label: int, indices: npt.NDArray[np.intp], directions: int, quantile: float, seed: int
) -> ClassScores:
    from scipy.stats import chi2
    from sklearn.covariance import MinCovDet
    from sklearn.metrics import silhouette_score

    a = acts[indices]
    centred = a - a.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    spectral = (centred @ vt[0]) ** 2
    k = max(1, min(directions, vt.shape[0], len(indices) // 5))
    proj = centred @ vt[:k].T
    rng = np.random.default_rng(seed)
    fit = proj if len(proj) <= _MCD_FIT_MAX else proj[rng.choice(len(proj), _MCD_FIT_MAX, replace=False)]
    try:
        mcd = MinCovDet(random_state=seed).fit(fit)
        score = np.asarray(mcd.mahalanobis(proj), dtype=np.float64)
    except (ValueError, np.linalg.LinAlgError):
        # degenerate activations (dead units, identical samples): fall back to the classic score
        score = spectral / (np.median(spectral) + 1e-12)
        cut = float(np.quantile(score, quantile))
        return ClassScores(label, indices, score, spectral, score > cut, None, threshold=max(cut, 1e-12))
    threshold = float(chi2.ppf(quantile, k))
    candidate = score > threshold
    silhouette = None
    if 2 <= candidate.sum() <= len(candidate) - 2:
        silhouette = float(silhouette_score(proj, candidate.astype(int), random_state=seed))
    return ClassScores(label, indices, score, spectral, candidate, silhouette, threshold=threshold)


def score_classes(
    acts: FloatArray,
    labels: IntArray,
    *,
    directions: int = DIRECTIONS,
    quantile: float = QUANTILE,
    seed: int = 0,
) -> list[ClassScores]:
    """Scores and candidates for every class with at least MIN_CLASS samples."""
    out = []
    for label in np.unique(labels):
        indices = np.flatnonzero(labels == label)
        if len(indices) < MIN_CLASS:
            empty = np.zeros(len(indices))
            out.append(
                ClassScores(int(label), indices, empty, empty, np.zeros(len(indices), bool), None, True)
            )
            continue
        out.append(_class_scores(acts, int(label), indices, directions, quantile, seed))
    return out


def scaled_inputs(x: Float32Array, fit: npt.NDArray[np.bool_]) -> Float32Array:
    """Inputs standardised on the ``fit`` rows and clipped to +-5: a feature that is constant on clean
    data (a corner pixel) gets a floor on its scale, so a trigger there cannot dominate distances.

    float32 out, built in row chunks: its only full-size allocation is the result (issue 13: float64
    copies of a dataset at the reader's cap came to several GiB); statistics accumulate in float64."""
    flat = x.reshape(len(x), -1)
    step = max(1, _CHUNK_VALUES // max(flat.shape[1], 1))
    n_fit = int(fit.sum())
    total = np.zeros(flat.shape[1])
    for start in range(0, len(flat), step):
        rows = flat[start : start + step][fit[start : start + step]]
        total += rows.sum(axis=0, dtype=np.float64)
    mean = total / max(n_fit, 1)
    squares = np.zeros(flat.shape[1])
    for start in range(0, len(flat), step):
        rows = flat[start : start + step][fit[start : start + step]]
        squares += ((rows - mean) ** 2).sum(axis=0)
    sd = np.sqrt(squares / max(n_fit, 1))
    floor = 0.1 * float(np.median(sd)) if np.any(sd > 0) else 1.0
    scale = np.maximum(sd, max(floor, 1e-12))
    out = np.empty(flat.shape, dtype=np.float32)
    for start in range(0, len(flat), step):
        part = (flat[start : start + step] - mean) / scale
        out[start : start + step] = np.clip(part, -5.0, 5.0)
    return out


def nearest(
    z: Float32Array, queries: npt.NDArray[np.floating[Any]], k: int, allowed: npt.NDArray[np.bool_]
) -> npt.NDArray[np.intp]:
    """Row indices (len(queries), <= k) of the ``k`` rows of ``z`` among ``allowed`` nearest to each query
    (Euclidean, nearest first): ``z`` is read in blocks, never copied whole (issue 13)."""
    q = np.asarray(queries, dtype=np.float64)
    q_norm = (q * q).sum(axis=1)
    best_d = np.empty((len(q), 0))
    best_i = np.empty((len(q), 0), dtype=np.intp)
    step = max(1, _CHUNK_VALUES // max(z.shape[1], len(q), 1))
    for start in range(0, len(z), step):
        rows = start + np.flatnonzero(allowed[start : start + step])
        if not rows.size:
            continue
        block = z[rows].astype(np.float64)
        d = q_norm[:, None] - 2.0 * (q @ block.T) + (block * block).sum(axis=1)[None, :]
        all_d = np.concatenate([best_d, d], axis=1)
        all_i = np.concatenate([best_i, np.broadcast_to(rows, d.shape)], axis=1)
        if all_d.shape[1] > k:
            keep = np.argpartition(all_d, k - 1, axis=1)[:, :k]
            all_d, all_i = np.take_along_axis(all_d, keep, 1), np.take_along_axis(all_i, keep, 1)
        best_d, best_i = all_d, all_i
    order = np.lexsort((best_i, best_d), axis=1)  # nearest first; equal distances by row
    return np.take_along_axis(best_i, order, 1)


def input_reclassify(z: Float32Array, labels: IntArray, excluded: npt.NDArray[np.intp]) -> IntArray:
    """Exclusionary reclassification: a k-NN on the scaled inputs of every sample but ``excluded``
    predicts the classes of ``excluded`` (majority of the k nearest; the smallest class on a tie)."""
    keep = np.ones(len(labels), dtype=bool)
    keep[excluded] = False
    k = max(1, min(NEIGHBOURS, int(keep.sum())))
    out = np.empty(len(excluded), dtype=np.int64)
    step = max(1, _CHUNK_VALUES // max(z.shape[1], 1))
    for start in range(0, len(excluded), step):
        near = nearest(z, z[excluded[start : start + step]], k, keep)
        for i, row in enumerate(near):
            out[start + i] = int(np.argmax(np.bincount(labels[row])))
    return out


def shared_difference(
    x: Float32Array,
    z: Float32Array,
    labels: IntArray,
    clean: npt.NDArray[np.bool_],
    members: npt.NDArray[np.intp],
    looks_like: IntArray,
) -> FloatArray:
    """Per-feature median, over ``members``, of (member - mean of its 5 nearest clean samples of the
    class it looks like), in input units: the trigger, if the members are poison."""
    diffs = np.empty((len(members), x.shape[1]))
    for other in np.unique(looks_like):
        pool = clean & (labels == other)
        rows = np.flatnonzero(looks_like == other)
        if not pool.any():
            diffs[rows] = 0.0
            continue
        near = nearest(z, z[members[rows]], 5, pool)
        diffs[rows] = x[members[rows]] - x[near].mean(axis=1, dtype=np.float64)
    return np.asarray(np.median(diffs, axis=0), dtype=np.float64)


def transplant_rows(
    labels: IntArray, clean: npt.NDArray[np.bool_], label: int, seed: int
) -> npt.NDArray[np.intp]:
    """Clean samples of the other classes to paste a shared difference onto (at most TRANSPLANT_MAX)."""
    rows = np.flatnonzero(clean & (labels != label))
    if rows.size > TRANSPLANT_MAX:
        rows = np.sort(np.random.default_rng(seed).choice(rows, TRANSPLANT_MAX, replace=False))
    return rows


def reclassification(cls: ClassScores, predicted: dict[int, int]) -> tuple[float | None, int | None]:
    """(fraction of the class's candidates predicted as another class, the most common such class)."""
    members = [int(i) for i in cls.indices[cls.candidate]]
    if not members:
        return None, None
    others = [predicted[i] for i in members if predicted[i] != cls.label]
    if not others:
        return 0.0, None
    return len(others) / len(members), Counter(others).most_common(1)[0][0]


def confirmed(reclassified: int, trigger_flip: float | None) -> bool:
    """A poisoned class: enough candidates look like other classes, and what they share with each
    other but not with those classes works as a trigger on the model."""
    return reclassified >= MIN_RECLASSIFIED and trigger_flip is not None and trigger_flip >= TRIGGER_MIN


def normalised(cls: ClassScores) -> FloatArray:
    """Scores comparable across classes: distance over the class's threshold."""
    return np.asarray(cls.score / cls.threshold, dtype=np.float64)
