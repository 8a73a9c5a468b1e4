"""Paired, vectorised bootstrap statistics for comparing attacks / model variants on the same images.

A bootstrap resample is a row of multinomial counts over the images (`weights`). Applying the SAME
weights matrix to both sides of a difference (two attacks, two model variants, or pools that are
transforms of the same held-out images) makes the comparison paired: image-to-image variation that
both sides share cancels. Every statistic here takes weights `[B, n]` and returns `[B]` in a few
matrix operations; without weights it returns the point value. This module only computes numbers.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import binomtest, rankdata, wasserstein_distance

from .metrics import allowed_false_positives

B_DEFAULT = 2000
_CHUNK_BYTES = 8 * 2**20  # working memory per chunk of resamples (small chunks stay in cache: fastest)


@dataclass(frozen=True)
class Interval:
    """A point estimate with a percentile 95% bootstrap interval."""

    value: float  # the point estimate (mean over seeds of the per-seed point values)
    lo: float  # 2.5% percentile
    hi: float  # 97.5% percentile
    n_seeds: int
    n_boot: int


def _vec(x: np.ndarray, name: str, dtype: type = np.float64) -> np.ndarray:
    """A non-empty finite 1-D array, or a one-line ValueError."""
    a = np.asarray(x)
    if a.ndim != 1 or a.size == 0:
        raise ValueError(f"{name}: need a non-empty 1-D array, got shape {a.shape}")
    if dtype is bool and a.dtype != bool and not np.all((a == 0) | (a == 1)):
        raise ValueError(f"{name}: need booleans (or 0/1), got other values")
    a = a.astype(dtype, copy=False)
    if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
        raise ValueError(f"{name}: contains NaN or inf; drop or fix those entries")
    return a


def _w(w: np.ndarray, n: int, name: str) -> np.ndarray:
    """A finite non-negative weights matrix [B, n], or a one-line ValueError."""
    a = np.asarray(w)
    if a.ndim != 2 or a.shape[1] != n or a.shape[0] == 0:
        raise ValueError(f"{name}: need weights of shape [B, {n}], got {a.shape}")
    if a.dtype.kind not in "fiub":
        raise ValueError(f"{name}: weights must be numeric, got dtype {a.dtype}")
    if a.dtype.kind != "f":
        a = a.astype(np.float64)
    if not np.all(np.isfinite(a)) or np.any(a < 0):
        raise ValueError(f"{name}: weights must be finite and >= 0")
    return a


def _wsum(w: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Per-resample weighted sum w @ x as float64 [B] (einsum: no BLAS threads, which stall on busy cores)."""
    return np.einsum("bn,n->b", w, x).astype(np.float64)


def weights(n: int, n_boot: int, seed: int) -> np.ndarray:
    """Bootstrap resampling as multinomial counts: [n_boot, n] float32 rows summing to n (rng = default_rng(seed))."""
    if not (isinstance(n, (int, np.integer)) and isinstance(n_boot, (int, np.integer)) and n >= 1 and n_boot >= 1):
        raise ValueError(f"weights: need integers n >= 1 and n_boot >= 1, got {n!r}, {n_boot!r}")
    rng = np.random.default_rng(seed)
    out = np.empty((n_boot, n), dtype=np.float32)
    chunk = max(1, _CHUNK_BYTES // (16 * n))
    for s in range(0, n_boot, chunk):  # chunks of resamples, not single ones: memory stays bounded
        k = min(n_boot, s + chunk) - s
        idx = rng.integers(0, n, size=(k, n)) + (np.arange(k) * n)[:, None]
        out[s:s + k] = np.bincount(idx.ravel(), minlength=k * n).reshape(k, n)
    return out


def rate(flags: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted share of True among `flags` [n] under each resample `w` [B, n] -> [B] (FPR, TPR at a fixed rule)."""
    f = _vec(flags, "rate: flags", dtype=bool)
    w = _w(w, f.size, "rate")
    num = _wsum(w, f.astype(w.dtype))  # in w's dtype: exact for float32 counts (totals < 2**24)
    den = w.sum(axis=1).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def group_mean(values: np.ndarray, mask: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted mean of values[mask] per resample -> [B]; NaN where a resample has no weight in the mask."""
    m = _vec(mask, "group_mean: mask", dtype=bool)
    v = np.asarray(values, dtype=np.float64)
    if v.shape != m.shape:
        raise ValueError(f"group_mean: values {v.shape} and mask {m.shape} must have the same 1-D shape")
    if not np.all(np.isfinite(v[m])):
        raise ValueError("group_mean: values inside the mask contain NaN or inf")
    w = _w(w, m.size, "group_mean")
    num = _wsum(w, np.where(m, v, 0.0))  # float64 values: accumulates in float64
    den = _wsum(w, m.astype(w.dtype))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def auroc(
    pos: np.ndarray, neg: np.ndarray, w_pos: np.ndarray | None = None, w_neg: np.ndarray | None = None
) -> np.ndarray | float:
    """AUROC = P(score_pos > score_neg) + 0.5 P(tie), exact with ties; with weights -> [B], without -> float.

    Either weights matrix may be None while the other is given (that side is then not resampled).
    """
    p = _vec(pos, "auroc: pos")
    q = _vec(neg, "auroc: neg")
    if w_pos is None and w_neg is None:
        return float(auroc(p, q, np.ones((1, p.size)), np.ones((1, q.size)))[0])
    if w_pos is not None:
        w_pos = _w(w_pos, p.size, "auroc: w_pos")
    if w_neg is not None:
        w_neg = _w(w_neg, q.size, "auroc: w_neg")
    if w_pos is None:
        w_pos = np.ones((w_neg.shape[0], p.size))
    if w_neg is None:
        w_neg = np.ones((w_pos.shape[0], q.size))
    if w_pos.shape[0] != w_neg.shape[0]:
        b_pos, b_neg = w_pos.shape[0], w_neg.shape[0]
        raise ValueError(f"auroc: w_pos and w_neg need the same number of resamples, got {b_pos}, {b_neg}")
    order = np.argsort(q, kind="stable")
    q_sorted = q[order]
    left = np.searchsorted(q_sorted, p, side="left")  # negatives strictly below each positive
    right = np.searchsorted(q_sorted, p, side="right")  # negatives at or below each positive
    n_boot = w_pos.shape[0]
    out = np.empty(n_boot)
    chunk = max(1, _CHUNK_BYTES // (8 * (2 * q.size + 3 * p.size + 1)))
    for s in range(0, n_boot, chunk):  # chunks of resamples only to bound memory
        e = min(n_boot, s + chunk)
        wn = w_neg[s:e, order].astype(np.float64)
        cum = np.zeros((e - s, q.size + 1))
        np.cumsum(wn, axis=1, out=cum[:, 1:])  # cum[:, k] = weight of the k lowest negatives
        wp = w_pos[s:e].astype(np.float64)
        below_or_half = cum[:, left] + cum[:, right]  # 2 * (weight below + 0.5 * weight tied)
        num = 0.5 * np.einsum("bi,bi->b", wp, below_or_half)
        den = wp.sum(axis=1) * cum[:, -1]
        with np.errstate(invalid="ignore", divide="ignore"):
            out[s:e] = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)
    return out


def _bin_sums(conf: np.ndarray, correct: np.ndarray, w: np.ndarray | None, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Per resample and bin, weighted sum of (conf - correct) [B, bins], and total weight [B] (B = 1 without w)."""
    c = _vec(conf, "ece: conf")
    y = _vec(correct, "ece: correct")
    if c.shape != y.shape:
        raise ValueError(f"ece: conf {c.shape} and correct {y.shape} must have the same shape")
    if np.any((c < 0) | (c > 1)):
        raise ValueError("ece: conf must lie in [0, 1]")
    if not (isinstance(bins, (int, np.integer)) and bins >= 1):
        raise ValueError(f"ece: bins must be an integer >= 1, got {bins!r}")
    w = np.ones((1, c.size)) if w is None else _w(w, c.size, "ece")
    edges = np.linspace(0.0, 1.0, bins + 1)
    idx = np.clip(np.digitize(c, edges[1:-1], right=True), 0, bins - 1)  # bin b: (b/bins, (b+1)/bins]
    gap = np.zeros((c.size, bins))
    gap[np.arange(c.size), idx] = c - y
    return w @ gap, w.sum(axis=1).astype(np.float64)  # [B, n] @ [n, bins]: one BLAS call, float64


def _per_bin(sums: np.ndarray, total: np.ndarray, w: np.ndarray | None, signed: bool) -> np.ndarray | float:
    """Sum over bins of (signed or absolute) gap mass divided by total weight; [B] or float."""
    agg = sums.sum(axis=1) if signed else np.abs(sums).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(total > 0, agg / np.where(total > 0, total, 1.0), np.nan)
    return float(out[0]) if w is None else out


def ece(conf: np.ndarray, correct: np.ndarray, w: np.ndarray | None = None, bins: int = 15) -> np.ndarray | float:
    """ECE: sum over equal-width bins ((b-1)/bins, b/bins] of bin mass * |acc - conf|; [B] with w, else float."""
    sums, total = _bin_sums(conf, correct, w, bins)
    return _per_bin(sums, total, w, signed=False)


def signed_oe(conf: np.ndarray, correct: np.ndarray, w: np.ndarray | None = None, bins: int = 15) -> np.ndarray | float:
    """sum_b (n_b/n) * (mean(conf_b) - mean(correct_b)): > 0 over-confident, < 0 under-confident."""
    sums, total = _bin_sums(conf, correct, w, bins)  # equals mean(conf) - accuracy for any binning
    return _per_bin(sums, total, w, signed=True)


def combine(points: Sequence[float], draws: Sequence[np.ndarray], seed: int = 0) -> Interval:
    """Mean of per-seed points with a two-level (seeds with replacement, then their image resamples) 95% interval."""
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 1 or pts.size == 0 or len(draws) != pts.size:
        raise ValueError(f"combine: need one draws array per point (>= 1), got {pts.size} points, {len(draws)} draws")
    d = [np.asarray(x, dtype=np.float64) for x in draws]
    if any(x.ndim != 1 or x.size == 0 for x in d) or len({x.size for x in d}) != 1:
        raise ValueError(f"combine: draws must be 1-D arrays of one common length, got {[x.shape for x in d]}")
    mat = np.stack(d)  # [S, B]
    n_seeds, n_boot = mat.shape
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices give NaN, by design
        value = float(np.nanmean(pts))
        if n_seeds == 1:
            boot = mat[0]
        else:
            pick = np.random.default_rng(seed).integers(0, n_seeds, size=(n_boot, n_seeds))
            boot = np.nanmean(mat[pick, np.arange(n_boot)[:, None]], axis=1)
        if np.all(np.isnan(boot)):
            lo = hi = float("nan")
        else:
            lo, hi = (float(x) for x in np.nanpercentile(boot, [2.5, 97.5]))
    return Interval(value=value, lo=lo, hi=hi, n_seeds=n_seeds, n_boot=n_boot)


def fit_size(n: int) -> int:
    """How many of n non-members fix a split threshold (the larger half; the rest check it)."""
    return n - n // 2


def split_threshold(neg_scores: np.ndarray, alpha: float, seed: int) -> tuple[float, np.ndarray]:
    """The threshold of tpr_at_fpr and the boolean mask of the held-back half B (fit half A = ~mask)."""
    q = _vec(neg_scores, "split_threshold: neg_scores")
    if not (0.0 <= alpha < 1.0):
        raise ValueError(f"split_threshold: alpha must be in [0, 1), got {alpha}")
    if q.size < 2:
        raise ValueError(f"split_threshold: need >= 2 non-member scores to split, got {q.size}")
    perm = np.random.default_rng(seed).permutation(q.size)
    n_fit = fit_size(q.size)
    held = np.zeros(q.size, dtype=bool)
    held[perm[n_fit:]] = True
    fit_sorted = np.sort(q[perm[:n_fit]])
    # smallest t with #(fit > t) <= c: the (c+1)-th largest fit score (ties only lower the count above it)
    threshold = float(fit_sorted[n_fit - 1 - allowed_false_positives(n_fit, alpha)])
    return threshold, held


def _cp(k: int, n: int) -> tuple[float, float]:
    """Clopper–Pearson 95% interval for k successes out of n."""
    ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
    return float(ci.low), float(ci.high)


def tpr_at_fpr(pos_scores: np.ndarray, neg_scores: np.ndarray, alpha: float, seed: int) -> dict[str, float]:
    """TPR at FPR alpha (threshold fit on non-member half A) with Clopper–Pearson 95% TPR and held-back FPR."""
    p = _vec(pos_scores, "tpr_at_fpr: pos_scores")
    q = _vec(neg_scores, "tpr_at_fpr: neg_scores")
    t, held = split_threshold(q, alpha, seed)
    k_pos = int(np.sum(p > t))
    k_neg = int(np.sum(q[held] > t))
    n_test = int(held.sum())
    tpr_lo, tpr_hi = _cp(k_pos, p.size)
    fpr_lo, fpr_hi = _cp(k_neg, n_test)
    return {
        "tpr": k_pos / p.size, "tpr_lo": tpr_lo, "tpr_hi": tpr_hi,
        "fpr": k_neg / n_test, "fpr_lo": fpr_lo, "fpr_hi": fpr_hi,
        "threshold": t, "n_pos": p.size, "n_neg_fit": q.size - n_test, "n_neg_test": n_test,
    }


def w1_quantile(a: np.ndarray, b: np.ndarray) -> float:
    """Wasserstein-1 between a and b after mapping both through the pooled empirical CDF (scale-free, in [0, 0.5])."""
    x = _vec(a, "w1_quantile: a")
    y = _vec(b, "w1_quantile: b")
    r = rankdata(np.concatenate([x, y])) / (x.size + y.size)  # average ranks: ties map to one value
    return float(wasserstein_distance(r[:x.size], r[x.size:]))


def w1_quantile_draws(a: np.ndarray, b: np.ndarray, w_a: np.ndarray, w_b: np.ndarray) -> np.ndarray:
    """`w1_quantile` under each resample (rows of w_a [B, n_a], w_b [B, n_b]) -> [B].

    The pooled-CDF transform is fitted once on the observed sample; each resample reweights the two
    empirical CDFs on the sorted transformed values: W1 = sum_k |F_a(k) - F_b(k)| * gap_k.
    """
    x = _vec(a, "w1_quantile_draws: a")
    y = _vec(b, "w1_quantile_draws: b")
    wa, wb = _w(w_a, x.size, "w_a"), _w(w_b, y.size, "w_b")
    if wa.shape[0] != wb.shape[0]:
        raise ValueError(f"w1_quantile_draws: {wa.shape[0]} and {wb.shape[0]} resamples")
    r = rankdata(np.concatenate([x, y])) / (x.size + y.size)
    order = np.argsort(r, kind="stable")
    gaps = np.diff(r[order])  # distance from sorted point k to k+1
    side = order < x.size  # which sample each sorted point belongs to
    out = np.empty(wa.shape[0])
    step = max(1, int(2 ** 21 // max(1, r.size)))
    for s in range(0, wa.shape[0], step):
        w = np.zeros((min(step, wa.shape[0] - s), r.size))
        w[:, side] = (wa[s:s + step] / wa[s:s + step].sum(1, keepdims=True))[:, order[side]]
        v = np.zeros_like(w)
        v[:, ~side] = (wb[s:s + step] / wb[s:s + step].sum(1, keepdims=True))[:, order[~side] - x.size]
        diff = np.abs(np.cumsum(w - v, axis=1)[:, :-1])
        out[s:s + step] = diff @ gaps
    return out
