"""Paired vectorised bootstrap statistics: exactness against sklearn / explicit resampling, pairing, coverage, speed."""

from __future__ import annotations

import time

import numpy as np
import pytest
from scipy.stats import norm
from scipy.stats import t as t_dist
from sklearn.metrics import roc_auc_score

from mia_nb.attacks import thresholds
from mia_nb.claims import paired
from mia_nb.attacks.metrics import ece as metrics_ece


def _sk_auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """sklearn AUROC with members as the positive class."""
    return float(roc_auc_score(np.r_[np.ones(pos.size), np.zeros(neg.size)], np.r_[pos, neg]))


def _ties(n_pos: int, n_neg: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Overlapping scores rounded to one decimal: many ties within and across classes."""
    rng = np.random.default_rng(seed)
    return np.round(rng.normal(0.4, 1, n_pos), 1), np.round(rng.normal(0, 1, n_neg), 1)


# ---------------------------------------------------------------- weights


def test_weights_are_multinomial_counts_reproducible_per_seed():
    w = paired.weights(300, 400, seed=3)
    assert w.shape == (400, 300) and w.dtype == np.float32
    assert np.all(w.sum(axis=1) == 300) and np.all(w == np.round(w)) and w.min() >= 0
    assert np.array_equal(w, paired.weights(300, 400, seed=3))
    assert not np.array_equal(w, paired.weights(300, 400, seed=4))
    assert abs(w.mean() - 1) < 1e-6 and 0.9 < w.var() < 1.1  # multinomial(n, 1/n): var 1 - 1/n
    assert paired.B_DEFAULT == 2000


@pytest.mark.parametrize("args", [(0, 10, 0), (10, 0, 0), (2.5, 10, 0)])
def test_weights_rejects_bad_sizes(args):
    with pytest.raises(ValueError, match="weights"):
        paired.weights(*args)


# ---------------------------------------------------------------- auroc


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auroc_matches_sklearn_with_ties(seed):
    pos, neg = _ties(157, 211, seed)
    assert len(np.unique(np.r_[pos, neg])) < 100  # really tied
    assert paired.auroc(pos, neg) == pytest.approx(_sk_auc(pos, neg), abs=1e-12)
    ones = paired.auroc(pos, neg, np.ones((4, pos.size)), np.ones((4, neg.size)))
    assert ones.shape == (4,) and np.allclose(ones, _sk_auc(pos, neg), atol=1e-12)


def test_auroc_edge_cases_all_tied_and_separated():
    assert paired.auroc(np.ones(5), np.ones(7)) == 0.5
    assert paired.auroc(np.arange(5) + 10.0, np.arange(7)) == 1.0
    assert paired.auroc(np.arange(5.0), np.arange(7) + 10.0) == 0.0


def test_auroc_weights_equal_duplicating_samples():
    pos, neg = _ties(120, 90, seed=5)
    wp, wn = paired.weights(pos.size, 6, seed=1), paired.weights(neg.size, 6, seed=2)
    got = paired.auroc(pos, neg, wp, wn)
    for b in range(6):
        ref = _sk_auc(np.repeat(pos, wp[b].astype(int)), np.repeat(neg, wn[b].astype(int)))
        assert got[b] == pytest.approx(ref, abs=1e-12)


def test_auroc_one_side_weighted_equals_duplicating_that_side():
    pos, neg = _ties(80, 60, seed=6)
    wn = paired.weights(neg.size, 3, seed=7)
    got = paired.auroc(pos, neg, None, wn)
    for b in range(3):
        assert got[b] == pytest.approx(_sk_auc(pos, np.repeat(neg, wn[b].astype(int))), abs=1e-12)


def test_auroc_chunking_does_not_change_values(monkeypatch):
    pos, neg = _ties(50, 40, seed=8)
    wp, wn = paired.weights(50, 37, seed=1), paired.weights(40, 37, seed=2)
    whole = paired.auroc(pos, neg, wp, wn)
    monkeypatch.setattr(paired, "_CHUNK_BYTES", 1)  # one resample per chunk
    assert np.array_equal(paired.auroc(pos, neg, wp, wn), whole)


def test_auroc_rejects_bad_input():
    with pytest.raises(ValueError, match="NaN"):
        paired.auroc(np.array([0.1, np.nan]), np.array([0.2]))
    with pytest.raises(ValueError, match="w_pos"):
        paired.auroc(np.zeros(3), np.zeros(4), np.ones((2, 4)), np.ones((2, 4)))
    with pytest.raises(ValueError, match="same number of resamples"):
        paired.auroc(np.zeros(3), np.zeros(4), np.ones((2, 3)), np.ones((5, 4)))
    with pytest.raises(ValueError, match=">= 0"):
        paired.auroc(np.zeros(3), np.zeros(4), -np.ones((2, 3)), np.ones((2, 4)))


# ---------------------------------------------------------------- rate, group_mean


def test_rate_and_group_mean_equal_explicit_resampling():
    rng = np.random.default_rng(0)
    n = 250
    flags = rng.random(n) < 0.3
    values = rng.normal(size=n)
    mask = rng.random(n) < 0.4
    w = paired.weights(n, 5, seed=11)
    r, g = paired.rate(flags, w), paired.group_mean(values, mask, w)
    assert r.shape == g.shape == (5,)
    for b in range(5):
        k = w[b].astype(int)
        assert r[b] == pytest.approx(np.repeat(flags, k).mean(), abs=1e-12)
        assert g[b] == pytest.approx(np.repeat(values, k)[np.repeat(mask, k)].mean(), abs=1e-12)


def test_rate_rejects_non_boolean_flags_and_bad_weights():
    with pytest.raises(ValueError, match="booleans"):
        paired.rate(np.array([0.3, 1.0]), np.ones((2, 2)))
    with pytest.raises(ValueError, match=r"shape \[B, 3\]"):
        paired.rate(np.array([True, False, True]), np.ones((2, 4)))
    assert np.array_equal(paired.rate(np.array([1, 0, 1, 1]), np.array([[1, 1, 0, 2], [0, 2, 0, 0]])), [0.75, 0.0])


def test_group_mean_nan_when_resample_has_no_weight_in_mask():
    mask = np.array([True, False, False])
    w = np.array([[0.0, 2.0, 1.0], [1.0, 1.0, 1.0]])
    values = np.array([5.0, np.nan, 7.0])  # NaN outside the mask is ignored
    got = paired.group_mean(values, mask, w)
    assert np.isnan(got[0]) and got[1] == 5.0


# ---------------------------------------------------------------- ece, signed_oe


def test_ece_and_signed_oe_hand_example_with_bin_edge():
    conf = np.array([0.2, 0.5, 0.7, 0.9])  # bins=2: 0.5 falls in the first bin (0, 0.5]
    correct = np.array([0, 1, 1, 0])
    # bin 0: mean conf .35, acc .5 -> .5*.15; bin 1: mean conf .8, acc .5 -> .5*.3
    assert paired.ece_draws(conf, correct, bins=2) == pytest.approx(0.225)
    assert paired.signed_oe(conf, correct, bins=2) == pytest.approx(0.5 * -0.15 + 0.5 * 0.3)


def test_ece_matches_metrics_module_definition():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(500, 10)) * 3
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    labels = rng.integers(0, 10, 500)
    labels[:250] = probs[:250].argmax(axis=1)
    conf, correct = probs.max(axis=1), probs.argmax(axis=1) == labels
    assert paired.ece_draws(conf, correct) == pytest.approx(metrics_ece(probs, labels), abs=1e-12)


def test_ece_and_signed_oe_weighted_equal_explicit_resampling():
    rng = np.random.default_rng(2)
    conf = rng.uniform(0.1, 1.0, 300)
    correct = rng.random(300) < conf ** 2
    w = paired.weights(300, 4, seed=5)
    e, s = paired.ece_draws(conf, correct, w), paired.signed_oe(conf, correct, w, bins=10)
    for b in range(4):
        k = w[b].astype(int)
        assert e[b] == pytest.approx(paired.ece_draws(np.repeat(conf, k), np.repeat(correct, k)), abs=1e-12)
        assert s[b] == pytest.approx(paired.signed_oe(np.repeat(conf, k), np.repeat(correct, k), bins=10), abs=1e-12)


def test_signed_oe_sign():
    rng = np.random.default_rng(3)
    over = rng.uniform(0.8, 1.0, 1000)
    under = rng.uniform(0.5, 0.6, 1000)
    assert paired.signed_oe(over, rng.random(1000) < 0.5) > 0.2
    assert paired.signed_oe(under, rng.random(1000) < 0.95) < -0.2
    assert paired.ece_draws(over, rng.random(1000) < 0.5) > 0.2


def test_ece_rejects_bad_input():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        paired.ece_draws(np.array([1.2]), np.array([1]))
    with pytest.raises(ValueError, match="same shape"):
        paired.ece_draws(np.array([0.5, 0.6]), np.array([1]))


# ---------------------------------------------------------------- pairing and coverage


def test_paired_difference_excludes_zero_where_unpaired_does_not():
    rng = np.random.default_rng(0)
    n = 1000
    pos_a, neg_a = rng.normal(0.5, 1, n), rng.normal(0, 1, n)
    pos_b = pos_a + 0.05 + rng.normal(0, 0.01, n)  # variant B: members shifted a little
    neg_b = neg_a + rng.normal(0, 0.01, n)
    wp, wn = paired.weights(n, 1000, seed=1), paired.weights(n, 1000, seed=2)
    wp2, wn2 = paired.weights(n, 1000, seed=3), paired.weights(n, 1000, seed=4)
    diff_paired = paired.auroc(pos_b, neg_b, wp, wn) - paired.auroc(pos_a, neg_a, wp, wn)
    diff_indep = paired.auroc(pos_b, neg_b, wp2, wn2) - paired.auroc(pos_a, neg_a, wp, wn)
    point = paired.auroc(pos_b, neg_b) - paired.auroc(pos_a, neg_a)
    lo_p, hi_p = np.percentile(diff_paired, [2.5, 97.5])
    lo_i, hi_i = np.percentile(diff_indep, [2.5, 97.5])
    assert 0.005 < point < 0.03
    assert lo_p > 0.5 * point  # paired: excludes 0 with room to spare
    assert lo_i < -0.5 * point and hi_i > 2 * point  # unpaired: contains 0 with room to spare


def test_rate_interval_coverage_near_nominal():
    rng = np.random.default_rng(0)
    n, repeats, p = 2000, 200, 0.3
    flags = rng.random((repeats, n)) < p
    w = paired.weights(n, 500, seed=1)
    draws = np.stack([paired.rate(f, w) for f in flags])  # [repeats, B]
    lo, hi = np.percentile(draws, [2.5, 97.5], axis=1)
    coverage = np.mean((lo <= p) & (p <= hi))
    print(f"coverage of the 95% rate interval: {coverage:.3f}")
    assert 0.88 <= coverage <= 0.99


# ---------------------------------------------------------------- combine


def test_combine_one_seed_is_percentile_of_its_draws():
    draws = np.random.default_rng(0).normal(0.7, 0.02, 2000)
    iv = paired.combine([0.7], [draws])
    assert (iv.value, iv.n_seeds, iv.n_boot, iv.df) == (0.7, 1, 2000, np.inf)
    assert (iv.lo, iv.hi) == tuple(np.percentile(draws, [2.5, 97.5]))
    assert iv.se == pytest.approx(np.std(draws, ddof=1))


def test_combine_equal_variances_is_the_t_interval_over_seeds():
    rng = np.random.default_rng(0)
    points = np.array([0.1, 0.5, 0.9])
    draws = [pt + rng.standard_normal(2000) for pt in points]
    draws = [pt + 0.001 * (d - d.mean()) / d.std(ddof=1) for pt, d in zip(points, draws)]  # v_s equal exactly
    iv = paired.combine(points, draws, seed=1)
    se = points.std(ddof=1) / np.sqrt(3)
    half = t_dist.ppf(0.975, 2) * se
    assert (iv.n_seeds, iv.df) == (3, 2.0)
    assert iv.value == pytest.approx(0.5, abs=1e-12) and iv.se == pytest.approx(se, rel=1e-9)
    assert (iv.lo, iv.hi) == (pytest.approx(0.5 - half, rel=1e-9), pytest.approx(0.5 + half, rel=1e-9))
    assert paired.combine(points, draws, seed=7) == iv  # deterministic: the seed argument draws nothing


def test_combine_weights_seeds_by_their_image_variance_when_seeds_agree():
    rng = np.random.default_rng(1)
    noisy, quiet = rng.normal(0, 0.05, 2000), rng.normal(0, 0.005, 2000)
    iv = paired.combine([0.0, 0.01, 0.011], [0.0 + noisy, 0.01 + quiet, 0.011 + quiet])
    assert 0.0095 < iv.value < 0.0115  # the noisy seed barely counts (DL tau² is 0 here)
    assert iv.lo < 0.0 < iv.hi or iv.hi - iv.lo > 0.001
    spread = paired.combine([0.0, 0.01, 0.011], [0.0 + quiet, 0.01 + quiet, 0.011 + quiet])
    assert spread.value == pytest.approx(0.007, abs=1e-12)  # equal variances: the plain mean


def test_combine_seeds_that_agree_keep_their_image_width():
    d = np.random.default_rng(2).normal(0, 0.01, (3, 2000))
    iv = paired.combine([0.3, 0.3, 0.3], list(0.3 + d))
    se = np.sqrt(np.var(d, axis=1, ddof=1).mean() / 3)  # fixed-effect variance: v / k
    assert iv.value == 0.3 and iv.se == pytest.approx(se, rel=0.05)
    same = paired.combine([0.3, 0.3, 0.3], [0.3 + d[0]] * 3)  # one set of images and weights for every seed
    assert same.se == pytest.approx(np.std(d[0], ddof=1), rel=0.01)  # the shared error does not shrink by 1/k
    assert same.hi - same.lo == pytest.approx(2 * 1.96 * same.se, rel=0.01)
    flat = paired.combine([0.3, 0.3, 0.3], [np.full(2000, 0.3)] * 3)
    assert flat.lo == flat.hi == flat.value == 0.3 and flat.se == 0.0


def test_combine_without_image_variance_is_the_t_interval_over_seeds():
    points = [0.2, 0.4, 0.9]
    iv = paired.combine(points, [np.full(50, p) for p in points])
    se = np.std(points, ddof=1) / np.sqrt(3)
    assert iv.value == pytest.approx(0.5) and iv.se == pytest.approx(se)
    assert iv.lo == pytest.approx(0.5 - t_dist.ppf(0.975, 2) * se)


def test_combine_a_seed_without_resample_variance_does_not_take_all_the_weight():
    d = np.random.default_rng(3).normal(0, 0.01, 2000)
    iv = paired.combine([0.0, 0.02, 0.03], [np.zeros(2000), 0.02 + d, 0.03 + d])
    assert np.isfinite(iv.se) and iv.se > 0.004 and iv.lo < 0.0 < iv.hi
    assert iv.value == pytest.approx(np.mean([0.0, 0.02, 0.03]), abs=0.002)


def test_combine_nan_handling():
    a = np.r_[np.full(500, np.nan), np.full(1500, 0.4)]
    iv = paired.combine([0.4], [a])
    assert iv.lo == iv.hi == 0.4 and iv.se == 0.0
    b = np.full(2000, np.nan)
    iv2 = paired.combine([0.4, 0.6], [np.full(2000, 0.4), b], seed=0)
    assert (iv2.value, iv2.lo, iv2.hi, iv2.n_seeds) == (0.4, 0.4, 0.4, 1)  # the seed without resamples is left out
    iv3 = paired.combine([0.1, float("nan"), 0.3], [np.full(9, 0.1), np.full(9, 0.2), np.full(9, 0.3)])
    assert iv3.n_seeds == 2 and iv3.df == 1.0 and iv3.value == pytest.approx(0.2)
    c = np.r_[np.nan, np.random.default_rng(4).normal(0, 0.01, 1999)]  # NaN resamples ignored in v_s
    assert paired.combine([0.1, 0.2], [0.1 + c, 0.2 + c]).n_seeds == 2
    c_inf = np.r_[np.inf, c[1:]]
    assert paired.combine([0.1, 0.2], [0.1 + c_inf, 0.2 + c]) == paired.combine([0.1, 0.2], [0.1 + c, 0.2 + c])
    nan_iv = paired.combine([float("nan")], [b])
    assert np.isnan(nan_iv.value) and np.isnan(nan_iv.lo) and np.isnan(nan_iv.hi) and nan_iv.n_seeds == 0
    assert np.isnan(nan_iv.p_beyond(0.0, ">"))


def test_combine_rejects_mismatched_input():
    with pytest.raises(ValueError, match="one draws array per point"):
        paired.combine([0.1, 0.2], [np.zeros(5)])
    with pytest.raises(ValueError, match="common length"):
        paired.combine([0.1, 0.2], [np.zeros(5), np.zeros(6)])


# ---------------------------------------------------------------- p_beyond, holm


@pytest.mark.parametrize("n_seeds", [1, 2, 3, 5])
def test_p_beyond_is_0025_exactly_at_the_interval_bounds(n_seeds):
    rng = np.random.default_rng(n_seeds)
    points = rng.normal(0.1, 0.05, n_seeds)
    iv = paired.combine(points, [pt + rng.gamma(2.0, 0.01, 3000) - 0.02 for pt in points])  # skewed resamples
    assert iv.p_beyond(iv.lo, ">") == pytest.approx(0.025, abs=1e-12)
    assert iv.p_beyond(iv.hi, "<") == pytest.approx(0.025, abs=1e-12)
    assert iv.p_beyond(iv.value, ">") == pytest.approx(0.5) == iv.p_beyond(iv.value, "<")
    below, above = iv.lo - 0.01, iv.lo + 0.01
    assert iv.p_beyond(below, ">") < 0.025 < iv.p_beyond(above, ">")  # verdict "above bound" <=> p < 0.025
    assert iv.p_beyond(0.3, ">") + iv.p_beyond(0.3, "<") == pytest.approx(1.0)  # symmetric reference per side


def test_p_beyond_uses_the_t_reference_of_the_interval():
    iv = paired.Interval(value=1.0, lo=1.0 - 4.302652729749464, hi=1.0 + 4.302652729749464, n_seeds=3,
                         n_boot=100, se=1.0, df=2.0)
    assert iv.p_beyond(0.0, ">") == pytest.approx(t_dist.sf(1.0, 2))
    assert iv.p_beyond(2.0, "<") == pytest.approx(t_dist.sf(1.0, 2))
    assert iv.p_beyond(3.0, ">") == pytest.approx(t_dist.cdf(2.0, 2))  # value below the bound: p > 0.5
    normal = paired.Interval(0.0, -1.959963984540054, 1.959963984540054, 1, 100)  # se, df defaults: normal
    assert normal.p_beyond(-1.0, ">") == pytest.approx(norm.sf(1.0))


def test_p_beyond_zero_width_and_bad_side():
    iv = paired.Interval(0.3, 0.3, 0.3, 3, 100, 0.0, 2.0)
    assert (iv.p_beyond(0.2, ">"), iv.p_beyond(0.4, ">"), iv.p_beyond(0.3, ">")) == (0.0, 1.0, 0.5)
    assert (iv.p_beyond(0.4, "<"), iv.p_beyond(0.2, "<")) == (0.0, 1.0)
    assert np.isnan(iv.p_beyond(float("nan"), ">"))
    with pytest.raises(ValueError, match="side"):
        iv.p_beyond(0.0, "=")


def test_holm_hand_examples():
    # sorted 0.005 <= .05/4, 0.01 <= .05/3, 0.03 > .05/2: stop; 0.04 is not rejected although <= .05/1
    assert paired.holm([0.01, 0.04, 0.03, 0.005]).tolist() == [True, False, False, True]
    # sorted 0.01 <= .05/3, 0.02 <= .05/2, 0.04 <= .05/1: all rejected (Bonferroni would keep 0.02 and 0.04)
    assert paired.holm([0.04, 0.01, 0.02]).tolist() == [True, True, True]
    assert paired.holm([0.02, 0.01], alpha=0.01).tolist() == [False, False]  # 0.01 > 0.01/2
    assert paired.holm([0.02, 0.005], alpha=0.01).tolist() == [False, True]  # then 0.02 > 0.01/1
    assert paired.holm([0.025, 0.025]).tolist() == [True, True]  # <= (ties at the bound)
    assert paired.holm([]).tolist() == []


def test_holm_nan_is_never_rejected_and_not_counted():
    got = paired.holm([np.nan, 0.02, 0.03, np.nan])  # family of 2: 0.02 <= .025, 0.03 <= .05
    assert got.tolist() == [False, True, True, False] and got.dtype == bool


def test_holm_rejects_bad_input():
    with pytest.raises(ValueError, match="alpha"):
        paired.holm([0.1], alpha=0.0)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        paired.holm([0.1, 1.5])
    with pytest.raises(ValueError, match="1-D"):
        paired.holm([[0.1]])


# ---------------------------------------------------------------- tpr_at_fpr


def test_tpr_at_fpr_separable():
    rng = np.random.default_rng(0)
    out = thresholds.tpr_at_fpr(rng.normal(10, 1, 2500), rng.normal(0, 1, 5000), alpha=0.001, seed=0)
    assert out["tpr"] == 1.0 and out["tpr_lo"] > 0.998 and out["tpr_hi"] == 1.0
    assert (out["n_pos"], out["n_neg_fit"], out["n_neg_test"]) == (2500, 2500, 2500)
    assert set(out) == {"tpr", "tpr_lo", "tpr_hi", "fpr", "fpr_lo", "fpr_hi", "threshold",
                        "n_pos", "n_neg_fit", "n_neg_test"}


@pytest.mark.parametrize("alpha", [0.01, 0.1])
def test_tpr_at_fpr_identical_distributions(alpha):
    # The CP intervals are conditional on the fitted threshold: they cover the true rate at t, sf(t),
    # which itself sits within sampling noise of alpha (fit half of 5000), not alpha exactly.
    rng = np.random.default_rng(1)
    out = thresholds.tpr_at_fpr(rng.normal(size=5000), rng.normal(size=10000), alpha=alpha, seed=2)
    true_rate = norm.sf(out["threshold"])
    assert out["tpr_lo"] <= true_rate <= out["tpr_hi"]
    assert out["fpr_lo"] <= true_rate <= out["fpr_hi"]
    sd = np.sqrt(alpha * (1 - alpha) / 5000)
    assert abs(true_rate - alpha) < 4 * sd and abs(out["tpr"] - alpha) < 6 * sd


def test_tpr_at_fpr_intervals_cover_true_rate_over_repeats():
    hits = np.zeros((2, 100), dtype=bool)
    for s in range(100):
        rng = np.random.default_rng(100 + s)
        out = thresholds.tpr_at_fpr(rng.normal(size=1000), rng.normal(size=2000), alpha=0.1, seed=s)
        true_rate = norm.sf(out["threshold"])
        hits[:, s] = out["tpr_lo"] <= true_rate <= out["tpr_hi"], out["fpr_lo"] <= true_rate <= out["fpr_hi"]
    print(f"CP coverage over 100 repeats: tpr {hits[0].mean():.2f}, held-back fpr {hits[1].mean():.2f}")
    assert np.all(hits.mean(axis=1) >= 0.88)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("alpha", [0.0, 0.001, 0.05, 0.3])
def test_split_threshold_is_smallest_admissible_on_half_a(seed, alpha):
    neg = np.round(np.random.default_rng(seed).normal(size=1001), 1)  # heavy ties
    t, held = thresholds.split_threshold(neg, alpha, seed)
    fit = neg[~held]
    assert held.sum() == 500 and fit.size == 501
    assert np.mean(fit > t) <= alpha  # never lets more than alpha of half A through
    below = fit[fit < t]
    if below.size:  # the next lower candidate would break the budget: t is the smallest
        assert np.mean(fit > below.max()) > alpha
    t2, held2 = thresholds.split_threshold(neg, alpha, seed)
    assert t2 == t and np.array_equal(held2, held)


def test_split_threshold_rejects_bad_alpha():
    with pytest.raises(ValueError, match="alpha"):
        thresholds.split_threshold(np.zeros(10), 1.0, 0)


# ---------------------------------------------------------------- w1_quantile


def test_w1_quantile_properties():
    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 1, 300), rng.normal(0.5, 2, 200)
    d = paired.w1_quantile(a, b)
    assert 0 < d < 0.5
    assert paired.w1_quantile(np.exp(a), np.exp(b)) == pytest.approx(d, abs=1e-15)  # monotone invariant
    assert paired.w1_quantile(a, a.copy()) == 0.0
    # fully separated: ranks 1..na vs na+1..N over N, so W1 = mean(b) - mean(a) = (na + nb) / 2 / N = 1/2
    assert paired.w1_quantile(np.arange(300.0), 1000 + np.arange(200.0)) == pytest.approx(0.5, abs=1e-12)
    assert paired.w1_quantile(np.arange(100.0), 1000 + np.arange(100.0)) == pytest.approx(0.5, abs=1e-12)
    assert paired.w1_quantile(a, a + 0.5) < paired.w1_quantile(a, a + 2.0)


# ---------------------------------------------------------------- speed


def test_auroc_speed_b2000():
    rng = np.random.default_rng(0)
    pos, neg = rng.normal(0.5, 1, 2500), rng.normal(0, 1, 5000)
    wp, wn = paired.weights(2500, paired.B_DEFAULT, seed=1), paired.weights(5000, paired.B_DEFAULT, seed=2)
    t0 = time.perf_counter()
    got = paired.auroc(pos, neg, wp, wn)
    elapsed = time.perf_counter() - t0
    print(f"auroc B=2000, 2500 pos / 5000 neg: {elapsed:.3f} s")
    assert got.shape == (2000,) and abs(got.mean() - paired.auroc(pos, neg)) < 0.005
    assert elapsed < 20


def test_w1_quantile_draws_unit_weights_equal_the_point_and_resamples_are_close():
    rng = np.random.default_rng(11)
    a, b = rng.normal(1, 1, 400), rng.normal(0, 1, 700)
    one = paired.w1_quantile_draws(a, b, np.ones((1, 400)), np.ones((1, 700)))
    assert one[0] == pytest.approx(paired.w1_quantile(a, b), abs=1e-12)
    wa, wb = paired.weights(400, 5, 1), paired.weights(700, 5, 2)
    draws = paired.w1_quantile_draws(a, b, wa, wb)
    refit = [paired.w1_quantile(np.repeat(a, wa[i].astype(int)), np.repeat(b, wb[i].astype(int))) for i in range(5)]
    np.testing.assert_allclose(draws, refit, atol=0.02)  # the transform is fitted once, not per resample
    same = paired.w1_quantile_draws(a, a.copy(), wa, paired.weights(400, 5, 2))
    assert (same < draws).all()
    with pytest.raises(ValueError, match="resamples"):
        paired.w1_quantile_draws(a, b, wa, paired.weights(700, 4, 2))
