"""Thresholds at a false-positive rate: the one home of the "threshold at FPR alpha" rule.

The budget of false positives at FPR alpha, the threshold that keeps to it, the split threshold (fixed
on one half of the non-members, checked on the other) and TPR at low FPR with Clopper-Pearson intervals.
Used by the attack metrics (`mia_nb.attacks.metrics`), the paired claims (`mia_nb.claims.paired`) and
the reference attacks' operating points (`mia_nb.attacks.reference_models`).
"""

from __future__ import annotations

import numpy as np
from scipy.stats import binomtest


def _scores(x: np.ndarray, name: str) -> np.ndarray:
    """A non-empty finite 1-D float array, or a one-line ValueError."""
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 1 or a.size == 0:
        raise ValueError(f"{name}: need a non-empty 1-D array, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name}: contains NaN or inf; drop or fix those entries")
    return a


def allowed_false_positives(n_nonmembers: int, alpha: float) -> int:
    """Largest number of false positives c with c / n_nonmembers <= alpha (the budget TPR@alpha rests on)."""
    if not (isinstance(n_nonmembers, (int, np.integer)) and n_nonmembers >= 1 and 0 <= alpha <= 1):
        raise ValueError(
            f"allowed_false_positives: need n_nonmembers >= 1 and alpha in [0, 1], got {n_nonmembers}, {alpha}"
        )
    c = int(np.floor(alpha * n_nonmembers))
    while (c + 1) / n_nonmembers <= alpha:  # guard float rounding of alpha * n
        c += 1
    while c > 0 and c / n_nonmembers > alpha:
        c -= 1
    return c


def fit_size(n: int) -> int:
    """How many of n non-members fix a split threshold (the larger half; the rest check it)."""
    return n - n // 2


def threshold_at_fpr(neg_scores: np.ndarray, alpha: float) -> float:
    """Smallest t with share(neg > t) <= alpha (member iff score > t): the (c+1)-th largest score, c =
    allowed_false_positives(n, alpha) (ties only lower the count above it); −inf when c = n (alpha = 1)."""
    s = np.asarray(neg_scores, dtype=np.float64)
    if s.ndim != 1 or s.size == 0 or np.any(np.isnan(s)):
        raise ValueError(f"neg_scores: need a non-empty 1-D array without NaN, got shape {s.shape}")
    if not np.isfinite(alpha) or not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha: need a value in [0, 1], got {alpha}")
    c = allowed_false_positives(s.size, alpha)
    if c >= s.size:
        return float("-inf")
    return float(np.partition(s, s.size - c - 1)[s.size - c - 1])


def split_threshold(neg_scores: np.ndarray, alpha: float, seed: int) -> tuple[float, np.ndarray]:
    """The threshold of tpr_at_fpr and the boolean mask of the held-back half B (fit half A = ~mask)."""
    q = _scores(neg_scores, "split_threshold: neg_scores")
    if not (0.0 <= alpha < 1.0):
        raise ValueError(f"split_threshold: alpha must be in [0, 1), got {alpha}")
    if q.size < 2:
        raise ValueError(f"split_threshold: need >= 2 non-member scores to split, got {q.size}")
    perm = np.random.default_rng(seed).permutation(q.size)
    n_fit = fit_size(q.size)
    held = np.zeros(q.size, dtype=bool)
    held[perm[n_fit:]] = True
    return threshold_at_fpr(q[perm[:n_fit]], alpha), held


def clopper_pearson(k: int, n: int) -> tuple[float, float]:
    """Clopper–Pearson 95% interval for k successes out of n."""
    ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
    return float(ci.low), float(ci.high)


def tpr_at_fpr(pos_scores: np.ndarray, neg_scores: np.ndarray, alpha: float, seed: int) -> dict[str, float]:
    """TPR at FPR alpha (threshold fit on non-member half A) with Clopper–Pearson 95% TPR and held-back FPR."""
    p = _scores(pos_scores, "tpr_at_fpr: pos_scores")
    q = _scores(neg_scores, "tpr_at_fpr: neg_scores")
    t, held = split_threshold(q, alpha, seed)
    k_pos = int(np.sum(p > t))
    k_neg = int(np.sum(q[held] > t))
    n_test = int(held.sum())
    tpr_lo, tpr_hi = clopper_pearson(k_pos, p.size)
    fpr_lo, fpr_hi = clopper_pearson(k_neg, n_test)
    return {
        "tpr": k_pos / p.size, "tpr_lo": tpr_lo, "tpr_hi": tpr_hi,
        "fpr": k_neg / n_test, "fpr_lo": fpr_lo, "fpr_hi": fpr_hi,
        "threshold": t, "n_pos": p.size, "n_neg_fit": q.size - n_test, "n_neg_test": n_test,
    }


def rates_at_thresholds(member_scores: np.ndarray, nonmember_scores: np.ndarray,
                        thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """TPR, FPR and precision of the rule "member iff score > t" for each threshold t.

    Precision is NaN where no image is called member. One array per rate, aligned with `thresholds`.
    """
    sm = np.sort(_scores(member_scores, "rates_at_thresholds: member_scores"))
    sn = np.sort(_scores(nonmember_scores, "rates_at_thresholds: nonmember_scores"))
    t = np.atleast_1d(np.asarray(thresholds, dtype=np.float64))
    tp = sm.size - np.searchsorted(sm, t, side="right")
    fp = sn.size - np.searchsorted(sn, t, side="right")
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), np.nan)
    return tp / sm.size, fp / sn.size, precision
