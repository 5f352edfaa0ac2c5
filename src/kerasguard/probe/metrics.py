"""Small statistics shared by the probes: MAD anomaly index, ROC AUC, TPR at a fixed FPR."""

from __future__ import annotations

import numpy as np

MAD_CONSISTENCY = 1.4826  # makes the MAD estimate the standard deviation of normal data


def anomaly_indexes(norms: np.ndarray) -> np.ndarray:
    """How many (consistent) MADs each norm lies *below* the median; negative above it.

    Neural Cleanse flags a class whose trigger is abnormally small, so only the low side counts.
    """
    norms = np.asarray(norms, dtype=np.float64)
    median = float(np.median(norms))
    mad = MAD_CONSISTENCY * float(np.median(np.abs(norms - median)))
    if mad <= 1e-12:
        # Identical norms carry no outlier; any norm strictly below them is an infinite outlier.
        return np.where(norms < median - 1e-12, np.inf, 0.0)
    return (median - norms) / mad


def roc_auc(member_scores: np.ndarray, nonmember_scores: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U with mid-ranks for ties); 0.5 is chance."""
    pos = np.asarray(member_scores, dtype=np.float64)
    neg = np.asarray(nonmember_scores, dtype=np.float64)
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    scores = np.concatenate([pos, neg])
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), dtype=np.float64)
    sorted_scores = scores[order]
    # mid-ranks for ties
    boundaries = np.flatnonzero(np.diff(sorted_scores)) + 1
    starts = np.concatenate([[0], boundaries])
    ends = np.concatenate([boundaries, [len(scores)]])
    for s, e in zip(starts, ends, strict=True):
        ranks[order[s:e]] = (s + e + 1) / 2.0
    u = ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2.0
    return float(u / (len(pos) * len(neg)))


def tpr_at_fpr(member_scores: np.ndarray, nonmember_scores: np.ndarray, fpr: float) -> float:
    """Share of members scored strictly above a threshold that at most ``fpr`` of non-members pass.

    With n non-members the smallest FPR that can be told apart from 0 is 1/n; below it the threshold is
    the highest non-member score (no false positive at all), which is the conservative reading.
    """
    pos = np.asarray(member_scores, dtype=np.float64)
    neg = np.sort(np.asarray(nonmember_scores, dtype=np.float64))[::-1]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    allowed = int(np.floor(fpr * len(neg)))  # false positives allowed
    threshold = neg[allowed] if allowed < len(neg) else -np.inf
    return float(np.mean(pos > threshold))
