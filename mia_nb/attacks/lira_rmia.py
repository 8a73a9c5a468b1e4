"""Reference-model membership attacks (LiRA, RMIA) computed from cached logits / probabilities only.

Pure numpy / scipy; no models, no file IO. Shapes: target values on candidates `[N]`, or `[V, N]` with one
row per test-time view; reference values `[M, N]` or `[M, V, N]`; logits carry a last class axis;
`in_mask` bool `[M, N]` (True where candidate n was in reference model m's training set). Every score is
"higher = more member-like".

One fit, many scored sets. `fit_lira` and `fit_rmia` estimate every parameter that is shared between
images (LiRA's spreads and IN−OUT shift, RMIA's population ratios with its `a` and gamma) once, from the
reference models' values on in-distribution candidates. `lira_online`, `lira_offline` and `rmia_score`
then score any set with that fit, each image from its own reference values only, so an image's score does
not depend on the set it is scored in.

The reference code's choices, each an option (read for facts only; notebook 08 lists them):
- LiRA (Carlini et al., S&P 2022; tensorflow/privacy research/mi_lira_2021). Statistic phi = log p_y −
  log(1 − p_y) (score.py `load_one`). plot.py `generate_ours`: centres `np.median(dat_in, 1)` (option
  `center`: median | mean); fixed variance `std_in = std_out = np.std(dat_in)`, one std of all raw IN
  values for both sides (option `spread`: global | per_side, the latter a pooled within-candidate std per
  side); score −logpdf_in + logpdf_out, averaged over augmentations `score.mean(1)` (per-view scores;
  the alternative, one statistic of view-averaged logits, is made by the caller). `generate_ours_offline`:
  `np.std(dat_out)` and `logpdf(x; mu_out, std_out)` swept as −score, i.e. two-sided (option `sides`:
  two_sided | one_sided, the paper's log Phi((x − mu_out) / s_out)). Per-example spreads (np.std, ddof 0)
  from PER_EXAMPLE_FROM reference models on, as the paper does for many models.
- RMIA (Zarifzadeh et al., ICML 2024; privacytrustlab/ml_privacy_meter modules/mia/attacks/rmia.py
  `run_rmia`): ratio(x) = p(x|target) / Pr(x); offline Pr(x) = (1 + a)/2 · mean_OUT p(x) + (1 − a)/2;
  online Pr(x) = mean over all references; score(x) = share of population z with ratio(x) / ratio(z) >
  gamma (the code: `ratios > 1.0`, gamma = 1); `a` on a grid of 0, 0.1, ..., 1 by AUROC against a
  reference model (`tune_offline_a`), here against up to four held-out reference models.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import norm
from sklearn.metrics import roc_auc_score

from mia_nb.config import LIRA_CENTERS, LIRA_OFFLINE_SIDES, LIRA_SPREADS

_STD_FLOOR = 1e-12  # smallest Gaussian std LiRA uses (identical reference values would give 0)
_TINY = 1e-300  # probabilities are clipped here before logs (underflowed softmax values)
PER_EXAMPLE_FROM = 64  # reference models from which LiRA estimates each image's own spread (fixed below)


# ---------------------------------------------------------------- input checks


def _labels(labels: np.ndarray, n: int, k: int) -> np.ndarray:
    """Integer labels [n] in [0, k), or a one-line ValueError (−1 must be resolved first)."""
    y = np.asarray(labels)
    if y.ndim != 1 or y.shape[0] != n or y.dtype.kind not in "iu":
        raise ValueError(f"labels: need an integer array of shape [{n}], got {y.dtype} {y.shape}")
    if np.any(y < 0):
        raise ValueError("labels: contains -1 (no true label); give each model its own predicted class with "
                         "own_labels(logits, labels) first")
    if np.any(y >= k):
        raise ValueError(f"labels: values must be < K={k}")
    return y.astype(np.int64, copy=False)


def _logits(logits: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Finite float64 logits [..., N, K] (K >= 2) and matching labels [N] (one per image) or [..., N] (one per
    model and image, `own_labels`), or a one-line ValueError."""
    z = np.asarray(logits, dtype=np.float64)
    if z.ndim < 2 or z.shape[-1] < 2:
        raise ValueError(f"logits: need shape [..., N, K] with K >= 2, got {z.shape}")
    if not np.all(np.isfinite(z)):
        raise ValueError("logits: contains NaN or inf; fix the cached logits")
    y = np.asarray(labels)
    if y.ndim > 1 and y.shape == z.shape[:-1]:
        return z, _labels(y.reshape(-1), y.size, z.shape[-1]).reshape(y.shape)
    return z, _labels(labels, z.shape[-2], z.shape[-1])


def _finite(x: np.ndarray, name: str, ndim: int | tuple[int, ...]) -> np.ndarray:
    """A non-empty finite float64 array with `ndim` dimensions (one of them), or a one-line ValueError."""
    a = np.asarray(x, dtype=np.float64)
    dims = (ndim,) if isinstance(ndim, int) else ndim
    if a.ndim not in dims or a.size == 0:
        raise ValueError(f"{name}: need a non-empty {' or '.join(map(str, dims))}-D array, got shape {a.shape}")
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


def _ref_views(ref: np.ndarray, in_mask: np.ndarray, name: str = "ref_stat") -> tuple[np.ndarray, np.ndarray]:
    """References as [M, V, N] (a 2-D [M, N] gets V = 1) and the checked in_mask [M, N]."""
    r = _finite(ref, name, (2, 3))
    r = r[:, None, :] if r.ndim == 2 else r
    return r, _mask(in_mask, (r.shape[0], r.shape[2]), "in_mask")


def _target_views(target: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """The target statistic as [V, N] matching references [M, V, N], or a one-line ValueError."""
    t = _finite(target, "target_stat", (1, 2))
    t = t[None, :] if t.ndim == 1 else t
    if t.shape != ref.shape[1:]:
        raise ValueError(f"target_stat: need shape [N] or [V, N] = {list(ref.shape[1:])} to match ref_stat, "
                         f"got {list(t.shape)}")
    return t


def _probs(x: np.ndarray, name: str, ndim: int) -> np.ndarray:
    """A finite array of probabilities in [0, 1], or a one-line ValueError."""
    p = _finite(x, name, ndim)
    if p.min() < 0 or p.max() > 1:
        raise ValueError(f"{name}: need probabilities in [0, 1]")
    return p


def _choice(value: str, allowed: tuple[str, ...], name: str) -> str:
    """`value` if it is one of `allowed`, or a one-line ValueError naming the choices."""
    if value not in allowed:
        raise ValueError(f"{name}: unknown value {value!r} (choose one of: {', '.join(allowed)})")
    return value


# ---------------------------------------------------------------- per-example statistics


def own_labels(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Labels for every model's logits [..., N, K], shape [..., N]: an image's label where it has one; where it has
    none (−1: digits, noise, other datasets), each model's own predicted class, the target's and every reference
    model's alike, so that no model is judged at a class another model picked."""
    z = np.asarray(logits)
    y = np.asarray(labels)
    if z.ndim < 2 or y.ndim != 1 or y.shape[0] != z.shape[-2] or y.dtype.kind not in "iu":
        raise ValueError(f"labels: need an integer array of shape [{z.shape[-2] if z.ndim >= 2 else 'N'}] "
                         f"for logits [..., N, K], got {y.dtype} {y.shape}")
    if np.any(y < -1):
        raise ValueError("labels: only -1 may be negative")
    return np.where(y == -1, np.argmax(z, axis=-1), y).astype(np.int64)


def logit_scaled_confidence(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """LiRA's statistic log(p_y / (1 - p_y)) = z_y - logsumexp_{k != y} z_k on [..., N, K]; finite for any finite logits."""
    z, y = _logits(logits, labels)
    idx = np.broadcast_to(y[..., None], z.shape[:-1] + (1,))
    z_y = np.take_along_axis(z, idx, axis=-1)[..., 0]
    rest = z.copy()
    np.put_along_axis(rest, idx, -np.inf, axis=-1)
    top = rest.max(axis=-1)
    return z_y - top - np.log(np.exp(rest - top[..., None]).sum(axis=-1))


def true_class_prob(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Softmax probability of the label class, p_y, on [..., N, K] (stable; RMIA's input)."""
    z, y = _logits(logits, labels)
    idx = np.broadcast_to(y[..., None], z.shape[:-1] + (1,))
    top = z.max(axis=-1, keepdims=True)
    log_norm = np.log(np.exp(z - top).sum(axis=-1)) + top[..., 0]
    return np.exp(np.take_along_axis(z, idx, axis=-1)[..., 0] - log_norm)


# ---------------------------------------------------------------- LiRA


@dataclass(frozen=True)
class Side:
    """One side (IN or OUT) of every image's references: count [N], centre, mean and std [V, N] (NaN where empty)."""

    n: np.ndarray
    centre: np.ndarray
    mean: np.ndarray
    std: np.ndarray


def side(ref: np.ndarray, mask: np.ndarray, center: str) -> Side:
    """Per image and view: the count, centre (median or mean), mean and std (ddof 0) of `ref` [M, V, N] where `mask`."""
    _choice(center, LIRA_CENTERS, "center")
    n = mask.sum(axis=0)
    m3 = np.broadcast_to(mask[:, None, :], ref.shape)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(m3, ref, 0.0).sum(axis=0) / n
        std = np.sqrt(np.where(m3, (ref - mean) ** 2, 0.0).sum(axis=0) / n)
    if center == "mean":
        return Side(n, mean, mean, std)
    s = np.sort(np.where(m3, ref, np.inf), axis=0)  # this side's values first, in order
    lo, hi = np.maximum((n - 1) // 2, 0), np.maximum(n // 2, 0)
    idx = np.broadcast_to(np.stack([lo, hi])[:, None, :], (2,) + ref.shape[1:])
    mid = np.take_along_axis(s, idx, axis=0)
    return Side(n, np.where(n > 0, mid.mean(axis=0), np.nan), mean, std)


@dataclass(frozen=True)
class LiraFit:
    """LiRA's shared parameters, fitted once on in-distribution candidates (`fit_lira`); every set is scored with it."""

    center: str  # how an image's own IN / OUT references are centred: median | mean
    spread: str  # global | per_side (how the fixed spreads below were estimated)
    shift: float  # mean over fitting candidates of centre_IN − centre_OUT: an image without IN models gets it
    s_in: float  # online: std of the IN Gaussian
    s_out: float  # online: std of the OUT Gaussian
    s_offline: float  # offline: std of the OUT Gaussian
    n_candidates: int  # how many candidates it was fitted on


def _pooled(s: Side) -> float:
    """Pooled within-candidate std of one side (ddof 1 per candidate); NaN when no candidate has 2 values on it."""
    df = np.maximum(s.n - 1, 0).sum() * s.mean.shape[0]
    if df > 0:
        return float(np.sqrt((s.std**2 * s.n).sum() / df))
    return float("nan")


def _raw_std(ref: np.ndarray, mask: np.ndarray) -> float:
    """std (ddof 0) of every value of `ref` [M, V, N] where `mask` [M, N], over models, views and candidates."""
    return float(np.std(np.moveaxis(ref, 1, 0)[:, mask]))


def fit_lira(ref_stat: np.ndarray, in_mask: np.ndarray, center: str = "median", spread: str = "global") -> LiraFit:
    """LiRA's shared parameters from the reference models' statistics on in-distribution candidates (the population).

    Every candidate needs IN and OUT references (complementary pairs give each K/2). spread="global": one std of
    all raw IN values for both online sides and of all raw OUT values offline (plot.py `generate_ours` /
    `generate_ours_offline`, `np.std(dat_in)` / `np.std(dat_out)`); "per_side": the pooled within-candidate std of
    each side (the raw std of a side where every candidate has one value on it, K = 2).
    """
    ref, mask = _ref_views(ref_stat, in_mask)
    _choice(spread, LIRA_SPREADS, "spread")
    s_in, s_out = side(ref, mask, center), side(ref, ~mask, center)
    if np.any(s_in.n == 0) or np.any(s_out.n == 0):
        raise ValueError("in_mask: fit_lira needs every candidate IN for some and OUT for other reference models "
                         "(fit on the population, not on a pool)")
    shift = float(np.mean(s_in.centre - s_out.centre))
    raw_in, raw_out = _raw_std(ref, mask), _raw_std(ref, ~mask)
    if spread == "global":
        g_in, g_out, g_off = raw_in, raw_in, raw_out
    else:
        p_in, p_out = _pooled(s_in), _pooled(s_out)
        g_in = raw_in if np.isnan(p_in) else p_in
        g_out = raw_out if np.isnan(p_out) else p_out
        g_off = g_out
    return LiraFit(center, spread, shift, max(g_in, _STD_FLOOR), max(g_out, _STD_FLOOR), max(g_off, _STD_FLOOR),
                   int(mask.shape[1]))


def _spread(s: Side, fixed: float, per_example: bool) -> np.ndarray | float:
    """The image's own std where asked for and it has 2+ references on this side, else the fitted one."""
    if not per_example:
        return fixed
    return np.maximum(np.where(s.n >= 2, s.std, fixed), _STD_FLOOR)


def lira_online(fit: LiraFit, target_stat: np.ndarray, ref_stat: np.ndarray, in_mask: np.ndarray,
                per_example: bool = False) -> np.ndarray:
    """Online LiRA score [N]: mean over views of log N(x; c_in, s_in) − log N(x; c_out, s_out) (higher = member).

    c_in / c_out: the image's own IN / OUT centre (fit.center); an image without IN (OUT) references takes
    c_out + fit.shift (c_in − fit.shift). Spreads: fit's, or the image's own (ddof 0) with per_example and 2+
    references on that side.
    """
    ref, mask = _ref_views(ref_stat, in_mask)
    x = _target_views(target_stat, ref)
    a, b = side(ref, mask, fit.center), side(ref, ~mask, fit.center)
    c_in = np.where(a.n > 0, a.centre, b.centre + fit.shift)
    c_out = np.where(b.n > 0, b.centre, a.centre - fit.shift)
    llr = (norm.logpdf(x, c_in, _spread(a, fit.s_in, per_example))
           - norm.logpdf(x, c_out, _spread(b, fit.s_out, per_example)))
    return llr.mean(axis=0)


def lira_offline(fit: LiraFit, target_stat: np.ndarray, ref_stat: np.ndarray, in_mask: np.ndarray,
                 per_example: bool = False, sides: str = "two_sided") -> np.ndarray:
    """Offline LiRA score [N] from OUT references only, averaged over views (higher = member).

    two_sided: −log N(x; c_out, s) (the reference code: far from the OUT centre either way); one_sided:
    log Phi((x − c_out) / s) (the paper: above it). An image without OUT references takes c_in − fit.shift.
    """
    _choice(sides, LIRA_OFFLINE_SIDES, "sides")
    ref, mask = _ref_views(ref_stat, in_mask)
    x = _target_views(target_stat, ref)
    a, b = side(ref, mask, fit.center), side(ref, ~mask, fit.center)
    c_out = np.where(b.n > 0, b.centre, a.centre - fit.shift)
    s = _spread(b, fit.s_offline, per_example)
    out = -norm.logpdf(x, c_out, s) if sides == "two_sided" else norm.logcdf((x - c_out) / s)
    return out.mean(axis=0)


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


def _log_ratio(p: np.ndarray, pr: np.ndarray) -> np.ndarray:
    """log p(x|θ) − log Pr(x), both clipped away from 0."""
    return np.log(np.maximum(p, _TINY)) - np.log(np.maximum(pr, _TINY))


def _share_above(lr_x: np.ndarray, lr_z_sorted: np.ndarray, gamma: float) -> np.ndarray:
    """Share of z with lr(x) − lr(z) > log gamma, by one search in the sorted z log-ratios."""
    return np.searchsorted(lr_z_sorted, lr_x - np.log(gamma), side="left") / lr_z_sorted.size


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


@dataclass(frozen=True)
class RmiaFit:
    """RMIA's shared parameters (`fit_rmia`): a, gamma, and the population's sorted log-ratios every set meets."""

    a: float
    gamma: float
    offline: bool
    lr_z: np.ndarray  # sorted log p(z|θ) − log Pr(z) of the population z


def fit_rmia(pop_target_probs_y: np.ndarray, pop_ref_probs_y: np.ndarray, gamma: float = 1.0,
             a: float | None = None, offline: bool = True, pop_in_mask: np.ndarray | None = None) -> RmiaFit:
    """RMIA's fit: the population z's likelihood ratios under the target (Pr(z) as in rmia_score), a and gamma."""
    p_z, pop_ref, pop_mask = _stats(pop_target_probs_y, pop_ref_probs_y,
                                    np.zeros(np.shape(pop_ref_probs_y), bool) if pop_in_mask is None else pop_in_mask,
                                    "pop_target_probs_y", "pop_ref_probs_y")
    _probs(p_z, "pop_target_probs_y", 1)
    _probs(pop_ref, "pop_ref_probs_y", 2)
    gamma = _check_gamma(gamma)
    a = _check_a(a) if offline else 0.0
    lr_z = np.sort(_log_ratio(p_z, _marginal(*_ref_means(pop_ref, pop_mask), a, offline)))
    return RmiaFit(a, gamma, offline, lr_z)


def rmia_score(fit: RmiaFit, target_probs_y: np.ndarray, ref_probs_y: np.ndarray, in_mask: np.ndarray) -> np.ndarray:
    """RMIA score [N] in [0, 1]: share of population z with [p(x|θ)/Pr(x)] / [p(z|θ)/Pr(z)] > gamma.

    Pr(x): offline ((1 + a) · mean over the image's OUT references + (1 − a)) / 2 (the mean over all its
    references where it has no OUT one); online the mean over all its references.
    """
    p_x, ref, mask = _stats(target_probs_y, ref_probs_y, in_mask, "target_probs_y", "ref_probs_y")
    _probs(p_x, "target_probs_y", 1)
    _probs(ref, "ref_probs_y", 2)
    return _share_above(_log_ratio(p_x, _marginal(*_ref_means(ref, mask), fit.a, fit.offline)), fit.lr_z, fit.gamma)


def rmia_scores(target_probs_y: np.ndarray, ref_probs_y: np.ndarray, in_mask: np.ndarray,
                pop_target_probs_y: np.ndarray, pop_ref_probs_y: np.ndarray, pop_in_mask: np.ndarray | None = None,
                gamma: float = 1.0, a: float | None = None, offline: bool = True) -> np.ndarray:
    """rmia_score with the fit made from this population (fit_rmia); pop_in_mask None = population OUT for all."""
    if np.shape(pop_ref_probs_y)[:1] != np.shape(ref_probs_y)[:1]:
        raise ValueError(f"pop_ref_probs_y: need {np.shape(ref_probs_y)[0]} reference models, "
                         f"got {np.shape(pop_ref_probs_y)[0]}")
    fit = fit_rmia(pop_target_probs_y, pop_ref_probs_y, gamma, a, offline, pop_in_mask)
    return rmia_score(fit, target_probs_y, ref_probs_y, in_mask)


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
            lr_z = np.sort(_log_ratio(pop[j], _marginal(*means_z, a, True)))
            s = _share_above(_log_ratio(ref[j], _marginal(*means_x, a, True)), lr_z, gamma)
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
