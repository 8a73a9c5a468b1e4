"""Paired, vectorised bootstrap statistics for comparing attacks / model variants on the same images.

A bootstrap resample is a row of multinomial counts over the images (`weights`). Applying the SAME
weights matrix to both sides of a difference (two attacks, two model variants, or pools that are
transforms of the same held-out images) makes the comparison paired: image-to-image variation that
both sides share cancels. Every statistic here takes weights `[B, n]` and returns `[B]` in a few
matrix operations; without weights it returns the point value. This module only computes numbers.

Combining seeds (`combine`). Each seed retrains its models on new splits, so the effect itself varies
from seed to seed, on top of the image sampling that a seed's paired resamples measure. The seeds are
combined as a random-effects meta-analysis: seed s contributes its point y_s and, as its within-seed
variance v_s, the variance of its resamples; the between-seed variance tau² is the DerSimonian–Laird
estimate; the combined value is the mean of the y_s weighted by 1/(v_s + tau²); its variance is the
Hartung–Knapp (Sidik–Jonkman) estimate, the weighted spread of the y_s around that mean divided by
k − 1, and the 95% interval uses the t quantile on k − 1 degrees of freedom. With equal v_s this is
exactly the t interval over the seed points, which is exact under normality whatever the ratio of
between-seed to image variance; tau² and v_s only move the weights. It is chosen because it keeps
its coverage with three seeds, where nothing can be learnt about tau² beyond the seeds' own spread.
The previous two-level bootstrap (seeds drawn with replacement, then images) cannot: simulated with
three seeds and 2,000 repeats, its nominal 95% interval covered 99.3% when seeds do not differ and
96.6% / 89.2% / 79.9% / 72.3% when the between-seed SD is 1× / 2× / 4× / ∞ the image SE; this
combination covered 94.7–95.5% at every ratio (tests/test_coverage.py runs the simulation through
`combine`). The "modified" Hartung–Knapp variance (never below the fixed-effect variance) was not taken:
it covered 99.8–100% when seeds differ little, wider than the evidence needs. The price of honesty with
three seeds is width: the t quantile on 2 degrees of freedom is 4.30, not 1.96, so an interval is
narrow only when the seeds agree. Edge cases: one seed gives the percentile interval of its own
resamples; a seed whose resamples do not vary (v_s = 0, e.g. a rate stuck at 0) takes the mean v of
the others instead of all the weight, and when no seed's resamples vary the interval is the t interval
over seeds; seeds that agree exactly keep the image-sampling variance 1 / sum of weights instead of a
zero width (zero only when their resamples do not vary either); a seed whose point is NaN, or that has
fewer than two finite resamples, is left out (`n_seeds` counts the seeds used). `Interval.p_beyond`
reads one-sided p-values off the same reference, and `holm` adjusts a family of them.

Images every seed shares. A pool that is the same in every seed (the GAN's fakes, scikit-learn's digits) is
resampled with one weight matrix for all seeds, so its sampling error moves every seed's point together and the
seeds' spread does not show it. `shared_variance` reads that common part off the resamples (their mean covariance
across seeds, about 0 when each seed resamples its own images); it is taken out of the within-seed variances
that set the weights and added to the Hartung–Knapp variance of the combined value, whose t reference then
takes Satterthwaite's degrees of freedom (the shared part is known from the resamples, not from k − 1 seeds). Simulated with three seeds
whose shared image SD is twice their own, the interval without it covered about 0.7 of the time; with it,
within [0.92, 0.98] (tests/test_coverage.py).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata, t as t_dist, wasserstein_distance

B_DEFAULT = 2000
_CHUNK_BYTES = 8 * 2**20  # working memory per chunk of resamples (small chunks stay in cache: fastest)


@dataclass(frozen=True)
class Interval:
    """A combined estimate over seeds with its 95% interval, standard error and reference distribution."""

    value: float  # the estimate: random-effects weighted mean of the per-seed points (the point, with one seed)
    lo: float  # lower 95% bound
    hi: float  # upper 95% bound
    n_seeds: int  # seeds used (seeds with a NaN point or no usable resamples are left out)
    n_boot: int  # resamples per seed
    se: float = math.nan  # standard error of `value`
    df: float = math.inf  # degrees of freedom of the reference t distribution (inf: normal)

    def p_beyond(self, bound: float, side: str) -> float:
        """One-sided p-value of H0 "the effect is not beyond `bound` on `side`" (">": effect <= bound, "<":
        effect >= bound), from the interval's own reference: p is 0.025 exactly at `lo` (">") or `hi` ("<").

        The scale on each side is that side's half-width over the 97.5% quantile: the standard error for
        a symmetric interval (every multi-seed one), the percentile interval's own spread with one seed."""
        if side not in (">", "<"):
            raise ValueError(f"p_beyond: side must be '>' or '<', got {side!r}")
        if not all(np.isfinite([self.value, self.lo, self.hi])) or not np.isfinite(bound):
            return math.nan
        gap = self.value - bound if side == ">" else bound - self.value
        half = self.value - self.lo if side == ">" else self.hi - self.value
        if not half > 0:  # a zero-width side: the effect is known exactly on it
            return 0.0 if gap > 0 else 1.0 if gap < 0 else 0.5
        return float(t_dist.sf(gap / half * t_dist.ppf(0.975, self.df), self.df))


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


def wsum(w: np.ndarray, x: np.ndarray) -> np.ndarray:
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
    num = wsum(w, f.astype(w.dtype))  # in w's dtype: exact for float32 counts (totals < 2**24)
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
    num = wsum(w, np.where(m, v, 0.0))  # float64 values: accumulates in float64
    den = wsum(w, m.astype(w.dtype))
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


def ece_draws(conf: np.ndarray, correct: np.ndarray, w: np.ndarray | None = None,
              bins: int = 15) -> np.ndarray | float:
    """ECE of max scores and correctness, per resample: sum over equal-width bins ((b-1)/bins, b/bins] of bin
    mass * |acc - conf|; [B] with resampling weights w, else the float of the sample itself."""
    sums, total = _bin_sums(conf, correct, w, bins)
    return _per_bin(sums, total, w, signed=False)


def signed_oe(conf: np.ndarray, correct: np.ndarray, w: np.ndarray | None = None, bins: int = 15) -> np.ndarray | float:
    """sum_b (n_b/n) * (mean(conf_b) - mean(correct_b)): > 0 over-confident, < 0 under-confident."""
    sums, total = _bin_sums(conf, correct, w, bins)  # equals mean(conf) - accuracy for any binning
    return _per_bin(sums, total, w, signed=True)


def _seed_matrix(points: Sequence[float], draws: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per-seed points [S] and their draws [S, B] as float arrays, or a one-line ValueError."""
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 1 or pts.size == 0 or len(draws) != pts.size:
        raise ValueError(f"combine: need one draws array per point (>= 1), got {pts.size} points, {len(draws)} draws")
    d = [np.asarray(x, dtype=np.float64) for x in draws]
    if any(x.ndim != 1 or x.size == 0 for x in d) or len({x.size for x in d}) != 1:
        raise ValueError(f"combine: draws must be 1-D arrays of one common length, got {[x.shape for x in d]}")
    return pts, np.stack(d)


def shared_variance(mat: np.ndarray) -> float:
    """The image-sampling variance the seeds share: the mean covariance, over pairs of seeds, of their resamples
    [S, B] (NaN resamples left out), floored at 0. Seeds that resample their own images share none (about 0);
    a pool whose images and resampling weights every seed shares (`PoolKind.every_seed`) moves every seed's point
    together, which the seeds' spread cannot show."""
    if mat.shape[0] < 2:
        return 0.0
    c = np.ma.cov(np.ma.masked_invalid(mat)).filled(np.nan)
    off = c[~np.eye(mat.shape[0], dtype=bool)]
    return max(0.0, float(np.nanmean(off))) if np.isfinite(off).any() else 0.0


def _random_effects(y: np.ndarray, v: np.ndarray) -> tuple[float, float]:
    """Weighted mean and Hartung–Knapp standard error of seed points `y` with within-seed variances `v`."""
    if np.all(v == 0):  # no image variance anywhere: the plain t interval over seeds (equal weights)
        w = np.ones_like(y)
    else:
        v = np.where(v > 0, v, v[v > 0].mean())  # a seed whose resamples do not move cannot take all the weight
        w = 1.0 / v
        mean_fixed = np.sum(w * y) / w.sum()
        q_stat = np.sum(w * (y - mean_fixed) ** 2)
        scale = w.sum() - np.sum(w ** 2) / w.sum()
        tau2 = max(0.0, (q_stat - (y.size - 1)) / scale)  # DerSimonian–Laird
        w = 1.0 / (v + tau2)
    if np.ptp(y) == 0:  # seeds agree exactly: the image noise alone (0 when there is none)
        return float(y[0]), float(np.sqrt(1.0 / w.sum())) if np.any(v > 0) else 0.0
    mean = float(np.sum(w * y) / w.sum())
    return mean, float(np.sqrt(np.sum(w * (y - mean) ** 2) / ((y.size - 1) * w.sum())))


def combine(points: Sequence[float], draws: Sequence[np.ndarray], seed: int = 0) -> Interval:
    """Combine per-seed points and their paired resamples [B] into one 95% interval (module docstring).

    `seed` is not used (the combination draws nothing); it stays so that callers need not change."""
    pts, mat = _seed_matrix(points, draws)
    n_boot = mat.shape[1]
    finite = np.isfinite(mat)
    mat = np.where(finite, mat, np.nan)  # an infinite resample counts as missing, like a NaN one
    use = np.isfinite(pts) & (finite.sum(axis=1) >= 2)
    k = int(use.sum())
    if k == 0:
        return Interval(math.nan, math.nan, math.nan, 0, n_boot, math.nan, math.nan)
    if k == 1:  # one seed: the percentile interval of its own resamples
        d = mat[use][0][finite[use][0]]
        lo, hi = (float(x) for x in np.percentile(d, [2.5, 97.5]))
        se = float(np.std(d, ddof=1)) if np.ptp(d) > 0 else 0.0
        return Interval(float(pts[use][0]), lo, hi, 1, n_boot, se, math.inf)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # NaN resamples are left out of the variance
        v = np.nanvar(mat[use], axis=1, ddof=1)
        v[np.nanmax(mat[use], axis=1) == np.nanmin(mat[use], axis=1)] = 0.0  # constant: 0, not rounding noise
    shared = shared_variance(mat[use]) if np.any(v > 0) else 0.0
    value, se_seeds = _random_effects(pts[use], np.where(v > 0, np.maximum(v - shared, 0.01 * v), 0.0))
    se = math.sqrt(se_seeds ** 2 + shared)
    # Satterthwaite: the seeds' part has k - 1 degrees of freedom, the shared part is known from the resamples
    df = float(k - 1) * (se / se_seeds) ** 4 if se_seeds > 0 else math.inf
    half = float(t_dist.ppf(0.975, df)) * se
    return Interval(value, value - half, value + half, k, n_boot, se, df)


def holm(p_values: Sequence[float], alpha: float = 0.05) -> np.ndarray:
    """Holm's step-down rejections (bool, in input order) at family-wise level `alpha`; NaN p-values are not
    tested: never rejected, and not counted in the family."""
    p = np.asarray(p_values, dtype=np.float64)
    if p.ndim != 1:
        raise ValueError(f"holm: need a 1-D sequence of p-values, got shape {p.shape}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"holm: alpha must be in (0, 1), got {alpha!r}")
    tested = ~np.isnan(p)
    if np.any((p[tested] < 0) | (p[tested] > 1)):
        raise ValueError("holm: p-values must lie in [0, 1] (or be NaN)")
    idx = np.flatnonzero(tested)[np.argsort(p[tested], kind="stable")]
    m = idx.size
    passed = p[idx] <= alpha / (m - np.arange(m))  # i-th smallest against alpha / (m - i)
    n_reject = m if passed.all() else int(np.argmin(passed))  # stop at the first that fails
    out = np.zeros(p.size, dtype=bool)
    out[idx[:n_reject]] = True
    return out


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
