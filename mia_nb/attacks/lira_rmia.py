"""Reference-model membership attacks (LiRA, RMIA) computed from cached logits / probabilities only.

Pure numpy / scipy; no models, no file IO. Shapes: target values on candidates `[N]` (or logits `[N, K]`),
reference values `[M, N]` (or logits `[M, N, K]`), `in_mask` bool `[M, N]` (True where candidate n was in
reference model m's training set). Every score is "higher = more member-like".

Methods (read from the authors' code for facts only):
- LiRA (Carlini et al., S&P 2022; tensorflow/privacy research/mi_lira_2021 score.py, plot.py):
  statistic phi = log p_y - log(1 - p_y); online score log N(phi; mu_in, s_in) - log N(phi; mu_out, s_out);
  offline score log Phi((phi - mu_out) / s_out) (one-sided). The authors' code uses the median of the
  reference statistics and, for a fixed variance, the std of all raw values; here the mean is used and the
  fixed variance is the pooled within-candidate variance (the spread of candidates' difficulties is not noise).
- RMIA (Zarifzadeh et al., ICML 2024; privacytrustlab/ml_privacy_meter modules/mia/attacks/rmia.py, LeakPro
  rmia.py): ratio(x) = p(x|target) / Pr(x); offline Pr(x) = ((1 + a) * mean_OUT p(x) + (1 - a)) / 2, which
  follows from the linear fit p_IN = a * p_OUT + (1 - a); online Pr(x) = mean over all references;
  score(x) = share of population z with ratio(x) / ratio(z) > gamma.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import norm
from sklearn.metrics import roc_auc_score

_STD_FLOOR = 1e-12  # smallest Gaussian std LiRA uses (identical reference values would give 0)
_TINY = 1e-300  # probabilities are clipped here before logs (underflowed softmax values)


# ---------------------------------------------------------------- input checks


def _labels(labels: np.ndarray, n: int, k: int) -> np.ndarray:
    """Integer labels [n] in [0, k), or a one-line ValueError (−1 must be resolved first)."""
    y = np.asarray(labels)
    if y.ndim != 1 or y.shape[0] != n or y.dtype.kind not in "iu":
        raise ValueError(f"labels: need an integer array of shape [{n}], got {y.dtype} {y.shape}")
    if np.any(y < 0):
        raise ValueError("labels: contains -1 (no true label); replace with resolve_labels(target_logits, labels) first")
    if np.any(y >= k):
        raise ValueError(f"labels: values must be < K={k}")
    return y.astype(np.int64, copy=False)


def _logits(logits: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Finite float64 logits [..., N, K] (K >= 2) and matching labels [N], or a one-line ValueError."""
    z = np.asarray(logits, dtype=np.float64)
    if z.ndim < 2 or z.shape[-1] < 2:
        raise ValueError(f"logits: need shape [..., N, K] with K >= 2, got {z.shape}")
    if not np.all(np.isfinite(z)):
        raise ValueError("logits: contains NaN or inf; fix the cached logits")
    return z, _labels(labels, z.shape[-2], z.shape[-1])


def _finite(x: np.ndarray, name: str, ndim: int) -> np.ndarray:
    """A non-empty finite float64 array with `ndim` dimensions, or a one-line ValueError."""
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != ndim or a.size == 0:
        raise ValueError(f"{name}: need a non-empty {ndim}-D array, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name}: contains NaN or inf")
    return a


def _mask(mask: np.ndarray, shape: tuple[int, ...], name: str) -> np.ndarray:
    """A boolean array of exactly `shape`, or a one-line ValueError."""
    m = np.asarray(mask)
    if m.shape != shape:
        raise ValueError(f"{name}: need shape {shape}, got {m.shape}")
    if m.dtype != bool:
        if not np.all((m == 0) | (m == 1)):
            raise ValueError(f"{name}: need booleans (or 0/1)")
        m = m.astype(bool)
    return m


def _stats(target: np.ndarray, ref: np.ndarray, in_mask: np.ndarray, tname: str, rname: str
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Checked target [N], references [M, N] and in_mask [M, N]."""
    t = _finite(target, tname, 1)
    r = _finite(ref, rname, 2)
    if r.shape[1] != t.shape[0]:
        raise ValueError(f"{rname}: need shape [M, {t.shape[0]}] to match {tname}, got {r.shape}")
    return t, r, _mask(in_mask, r.shape, "in_mask")


def _probs(x: np.ndarray, name: str, ndim: int) -> np.ndarray:
    """A finite array of probabilities in [0, 1], or a one-line ValueError."""
    p = _finite(x, name, ndim)
    if p.min() < 0 or p.max() > 1:
        raise ValueError(f"{name}: need probabilities in [0, 1]")
    return p


# ---------------------------------------------------------------- per-example statistics


def resolve_labels(target_logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Labels [N] with every −1 replaced by the target model's predicted class (use the result for ALL models)."""
    z = np.asarray(target_logits)
    if z.ndim != 2:
        raise ValueError(f"target_logits: need shape [N, K], got {z.shape}")
    y = np.asarray(labels)
    if y.ndim != 1 or y.shape[0] != z.shape[0] or y.dtype.kind not in "iu":
        raise ValueError(f"labels: need an integer array of shape [{z.shape[0]}], got {y.dtype} {y.shape}")
    if np.any(y < -1):
        raise ValueError("labels: only -1 may be negative")
    return np.where(y == -1, np.argmax(z, axis=1), y).astype(np.int64)


def logit_scaled_confidence(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """LiRA's statistic log(p_y / (1 - p_y)) = z_y - logsumexp_{k != y} z_k on [..., N, K]; finite for any finite logits."""
    z, y = _logits(logits, labels)
    idx = np.broadcast_to(y[:, None], z.shape[:-1] + (1,))
    z_y = np.take_along_axis(z, idx, axis=-1)[..., 0]
    rest = z.copy()
    np.put_along_axis(rest, idx, -np.inf, axis=-1)
    top = rest.max(axis=-1)
    return z_y - top - np.log(np.exp(rest - top[..., None]).sum(axis=-1))


def true_class_prob(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Softmax probability of the label class, p_y, on [..., N, K] (stable; RMIA's input)."""
    z, y = _logits(logits, labels)
    idx = np.broadcast_to(y[:, None], z.shape[:-1] + (1,))
    top = z.max(axis=-1, keepdims=True)
    log_norm = np.log(np.exp(z - top).sum(axis=-1)) + top[..., 0]
    return np.exp(np.take_along_axis(z, idx, axis=-1)[..., 0] - log_norm)


# ---------------------------------------------------------------- LiRA


def _side(ref: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-candidate count, mean (NaN where empty) and residual sum of squares of ref where mask."""
    n = mask.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mu = np.where(mask, ref, 0.0).sum(axis=0) / n
    ss = np.where(mask, (ref - np.where(n > 0, mu, 0.0)) ** 2, 0.0).sum(axis=0)
    return n, mu, ss


def _pooled_std(ref: np.ndarray, mask: np.ndarray, n: np.ndarray, ss: np.ndarray) -> float:
    """Pooled within-candidate std of one side; std of the raw values if no candidate has 2+; NaN if empty."""
    df = np.maximum(n - 1, 0).sum()
    if df > 0:
        return float(np.sqrt(ss.sum() / df))
    return float(np.std(ref[mask])) if mask.any() else float("nan")


def global_in_shift(ref_stat: np.ndarray, in_mask: np.ndarray) -> float:
    """Mean over candidates with both IN and OUT references of (mean IN − mean OUT) statistic."""
    r = _finite(ref_stat, "ref_stat", 2)
    m = _mask(in_mask, r.shape, "in_mask")
    n_in, mu_in, _ = _side(r, m)
    n_out, mu_out, _ = _side(r, ~m)
    both = (n_in > 0) & (n_out > 0)
    if not both.any():
        raise ValueError("in_mask: no candidate has both IN and OUT references; pass in_shift from another pool")
    return float(np.mean(mu_in[both] - mu_out[both]))


def _gaussians(ref: np.ndarray, in_mask: np.ndarray, fixed_variance: bool, in_shift: float | None,
               need_in: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-candidate (mu_in, s_in, mu_out, s_out); a missing side is the other side ± the global IN shift."""
    n_in, mu_in, ss_in = _side(ref, in_mask)
    n_out, mu_out, ss_out = _side(ref, ~in_mask)
    if (need_in and np.any(n_in == 0)) or np.any(n_out == 0):
        shift = global_in_shift(ref, in_mask) if in_shift is None else float(in_shift)
        mu_in = np.where(n_in > 0, mu_in, mu_out + shift)
        mu_out = np.where(n_out > 0, mu_out, mu_in - shift)
    g_in = _pooled_std(ref, in_mask, n_in, ss_in)
    g_out = _pooled_std(ref, ~in_mask, n_out, ss_out)
    g_in = g_out if np.isnan(g_in) else g_in
    g_out = g_in if np.isnan(g_out) else g_out
    if fixed_variance:
        s_in, s_out = np.full_like(mu_in, g_in), np.full_like(mu_out, g_out)
    else:
        with np.errstate(invalid="ignore", divide="ignore"):
            s_in = np.where(n_in >= 2, np.sqrt(ss_in / (n_in - 1)), g_in)
            s_out = np.where(n_out >= 2, np.sqrt(ss_out / (n_out - 1)), g_out)
    return mu_in, np.maximum(s_in, _STD_FLOOR), mu_out, np.maximum(s_out, _STD_FLOOR)


def lira_online(target_stat: np.ndarray, ref_stat: np.ndarray, in_mask: np.ndarray, fixed_variance: bool = True,
                *, in_shift: float | None = None) -> np.ndarray:
    """Online LiRA score [N]: log N(x; mu_in, s_in) − log N(x; mu_out, s_out) per candidate (higher = member).

    Means are per candidate over its IN / OUT references. fixed_variance=True: one pooled within-candidate std per
    side; False: per-candidate std (ddof=1), the pooled std where a side has < 2 references. A candidate with no IN
    (OUT) reference takes mu_in = mu_out + shift (mu_out = mu_in − shift), shift = `in_shift` or else the mean
    IN−OUT difference over candidates with both (ValueError if there is none, e.g. an all-OUT OOD pool: pass
    in_shift = global_in_shift(...) of an in-distribution pool).
    """
    x, ref, mask = _stats(target_stat, ref_stat, in_mask, "target_stat", "ref_stat")
    mu_in, s_in, mu_out, s_out = _gaussians(ref, mask, fixed_variance, in_shift)
    z_in, z_out = (x - mu_in) / s_in, (x - mu_out) / s_out
    return 0.5 * (z_out**2 - z_in**2) + np.log(s_out) - np.log(s_in)


def lira_offline(target_stat: np.ndarray, ref_stat: np.ndarray, in_mask: np.ndarray,
                 fixed_variance: bool = True) -> np.ndarray:
    """Offline LiRA score [N]: log Phi((x − mu_out) / s_out), OUT references only; below its OUT mean ⇒ < log(0.5).

    s_out as in lira_online. A candidate with no OUT reference takes mu_out = mean IN − global IN shift.
    """
    x, ref, mask = _stats(target_stat, ref_stat, in_mask, "target_stat", "ref_stat")
    _, _, mu_out, s_out = _gaussians(ref, mask, fixed_variance, None, need_in=False)
    return norm.logcdf((x - mu_out) / s_out)


# ---------------------------------------------------------------- RMIA


def _ref_means(ref: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-sample mean over OUT references (0 where none), mean over all references, and whether any OUT exists."""
    out = ~mask
    n_out = out.sum(axis=0)
    mean_out = np.where(out, ref, 0.0).sum(axis=0) / np.maximum(n_out, 1)
    return mean_out, ref.mean(axis=0), n_out > 0


def _marginal(mean_out: np.ndarray, mean_all: np.ndarray, has_out: np.ndarray, a: float, offline: bool) -> np.ndarray:
    """Pr(x): offline ((1 + a) mean_OUT + (1 − a)) / 2 (mean of all refs where no OUT exists); online mean of all."""
    if not offline:
        return mean_all
    return np.where(has_out, 0.5 * ((1.0 + a) * mean_out + (1.0 - a)), mean_all)


def _rmia(p_x: np.ndarray, pr_x: np.ndarray, p_z: np.ndarray, pr_z: np.ndarray, gamma: float) -> np.ndarray:
    """Share of z with [p(x|θ)/Pr(x)] / [p(z|θ)/Pr(z)] > gamma, via one sort of the z log-ratios."""
    lr_x = np.log(np.maximum(p_x, _TINY)) - np.log(np.maximum(pr_x, _TINY))
    lr_z = np.sort(np.log(np.maximum(p_z, _TINY)) - np.log(np.maximum(pr_z, _TINY)))
    return np.searchsorted(lr_z, lr_x - np.log(gamma), side="left") / lr_z.size


def _check_a(a: float) -> float:
    """The offline constant a in [0, 1], or a one-line ValueError."""
    if a is None or not np.isfinite(a) or not 0.0 <= a <= 1.0:
        raise ValueError(f"a: offline RMIA needs a in [0, 1] (choose it with choose_rmia_a), got {a}")
    return float(a)


def _check_gamma(gamma: float) -> float:
    """gamma > 0, or a one-line ValueError."""
    if not np.isfinite(gamma) or gamma <= 0:
        raise ValueError(f"gamma: need a finite value > 0, got {gamma}")
    return float(gamma)


def rmia_scores(target_probs_y: np.ndarray, ref_probs_y: np.ndarray, in_mask: np.ndarray,
                pop_target_probs_y: np.ndarray, pop_ref_probs_y: np.ndarray, pop_in_mask: np.ndarray | None = None,
                gamma: float = 1.0, a: float | None = None, offline: bool = True) -> np.ndarray:
    """RMIA score [N] in [0, 1]: share of population z with [p(x|θ)/Pr(x)] / [p(z|θ)/Pr(z)] > gamma.

    Pr(·): offline ((1 + a) · mean over OUT references + (1 − a)) / 2 (a required; a sample with no OUT reference
    uses the mean over all its references); online the mean over all references. pop_in_mask None = population
    OUT for every reference model.
    """
    p_x, ref, mask = _stats(target_probs_y, ref_probs_y, in_mask, "target_probs_y", "ref_probs_y")
    p_z, pop_ref, pop_mask = _stats(pop_target_probs_y, pop_ref_probs_y,
                                    np.zeros(np.shape(pop_ref_probs_y), bool) if pop_in_mask is None else pop_in_mask,
                                    "pop_target_probs_y", "pop_ref_probs_y")
    for arr, name in ((p_x, "target_probs_y"), (ref, "ref_probs_y"), (p_z, "pop_target_probs_y"),
                      (pop_ref, "pop_ref_probs_y")):
        _probs(arr, name, arr.ndim)
    if pop_ref.shape[0] != ref.shape[0]:
        raise ValueError(f"pop_ref_probs_y: need {ref.shape[0]} reference models, got {pop_ref.shape[0]}")
    gamma = _check_gamma(gamma)
    a = _check_a(a) if offline else 0.0
    pr_x = _marginal(*_ref_means(ref, mask), a, offline)
    pr_z = _marginal(*_ref_means(pop_ref, pop_mask), a, offline)
    return _rmia(p_x, pr_x, p_z, pr_z, gamma)


def choose_rmia_a(ref_probs_y: np.ndarray, in_mask: np.ndarray, pop_ref_probs_y: np.ndarray,
                  grid: np.ndarray = np.linspace(0, 1, 11), gamma: float = 1.0,
                  *, pop_in_mask: np.ndarray | None = None) -> float:
    """The `a` in grid with the best mean AUROC of offline RMIA on up to 4 evenly spaced held-out reference models."""
    ref = _probs(ref_probs_y, "ref_probs_y", 2)
    mask = _mask(in_mask, ref.shape, "in_mask")
    pop = _probs(pop_ref_probs_y, "pop_ref_probs_y", 2)
    pop_mask = np.zeros(pop.shape, bool) if pop_in_mask is None else _mask(pop_in_mask, pop.shape, "pop_in_mask")
    g = np.asarray(grid, dtype=np.float64)
    if g.ndim != 1 or g.size == 0 or not np.all(np.isfinite(g)) or g.min() < 0 or g.max() > 1:
        raise ValueError("grid: need a non-empty 1-D array of values in [0, 1]")
    gamma = _check_gamma(gamma)
    m = ref.shape[0]
    if pop.shape[0] != m:
        raise ValueError(f"pop_ref_probs_y: need {m} reference models, got {pop.shape[0]}")
    if m < 2:
        raise ValueError("ref_probs_y: need >= 2 reference models to hold one out as a pseudo-target")
    aucs, used = np.zeros(g.size), 0
    for j in np.unique(np.round(np.linspace(0, m - 1, min(4, m))).astype(int)):
        members = mask[j]
        if members.all() or not members.any():
            continue  # AUROC undefined for this pseudo-target
        keep = np.arange(m) != j
        means_x = _ref_means(ref[keep], mask[keep])
        means_z = _ref_means(pop[keep], pop_mask[keep])
        for i, a in enumerate(g):
            s = _rmia(ref[j], _marginal(*means_x, a, True), pop[j], _marginal(*means_z, a, True), gamma)
            aucs[i] += roc_auc_score(members, s)
        used += 1
    if used == 0:
        raise ValueError("in_mask: no pseudo-target has both IN and OUT candidates")
    return float(g[int(np.argmax(aucs))])


# ---------------------------------------------------------------- splits


def complementary_splits(population: np.ndarray, n_models: int, seed: int) -> np.ndarray:
    """in_mask [n_models, len(population)]: model 2j IN on a random half (floor), model 2j+1 IN on the rest."""
    n = len(np.asarray(population))
    if n == 0:
        raise ValueError("population: need at least one candidate")
    if isinstance(n_models, bool) or not isinstance(n_models, (int, np.integer)) or n_models < 2 or n_models % 2:
        raise ValueError(f"n_models: need an even integer >= 2, got {n_models!r}")
    rng = np.random.default_rng(seed)
    mask = np.zeros((n_models, n), dtype=bool)
    for j in range(0, n_models, 2):
        mask[j, rng.permutation(n)[: n // 2]] = True
        mask[j + 1] = ~mask[j]
    return mask
