"""Reference-model attacks (LiRA, RMIA) on synthetic worlds the tests build: exact formulas, power, null, speed."""

from __future__ import annotations

import inspect
import time

import numpy as np
import pytest
from scipy.special import expit, softmax
from scipy.stats import norm
from sklearn.metrics import roc_auc_score

from mia_nb.attacks import lira_rmia as R
from mia_nb.attacks import thresholds


def _world(shift: float, sd_d: float, seed: int, n: int = 4000, m: int = 16, z: int = 2000) -> dict:
    """Candidates with difficulty d_n; reference / target statistic = d_n + shift·IN + N(0, 1); z = OUT population."""
    rng = np.random.default_rng(seed)
    mask = R.complementary_splits(np.arange(n), m, seed)
    d, dz = rng.normal(0, sd_d, n), rng.normal(0, sd_d, z)
    member = rng.permutation(n) < n // 2
    return dict(
        target=d + shift * member + rng.normal(0, 1, n), ref=d + shift * mask + rng.normal(0, 1, (m, n)),
        mask=mask, member=member, pop_target=dz + rng.normal(0, 1, z), pop_ref=dz + rng.normal(0, 1, (m, z)),
    )


def _all_scores(w: dict) -> dict[str, np.ndarray]:
    """Every attack's scores on a world, fitted once on its reference models (statistic = logit of p_y, so
    p_y = expit(statistic) for RMIA)."""
    p, pr, pz, prz = expit(w["target"]), expit(w["ref"]), expit(w["pop_target"]), expit(w["pop_ref"])
    a = R.choose_rmia_a(pr, w["mask"], prz)
    out = {"rmia_offline": R.rmia_scores(p, pr, w["mask"], pz, prz, a=a, offline=True),
           "rmia_online": R.rmia_scores(p, pr, w["mask"], pz, prz, offline=False)}
    for center in ("median", "mean"):
        for spread in ("global", "per_side"):
            f = R.fit_lira(w["ref"], w["mask"], center, spread)
            for per_example in (False, True):
                tag = f"{center}_{spread}_{'per_example' if per_example else 'fixed'}"
                out[f"lira_online_{tag}"] = R.lira_online(f, w["target"], w["ref"], w["mask"], per_example)
                for sides in ("two_sided", "one_sided"):
                    out[f"lira_offline_{sides}_{tag}"] = R.lira_offline(f, w["target"], w["ref"], w["mask"],
                                                                        per_example, sides)
    return out


# ---------------------------------------------------------------- statistic


def test_logit_scaled_confidence_matches_naive_where_finite():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, (4, 50, 10)).astype(np.float32)
    labels = rng.integers(0, 10, 50)
    p = np.take_along_axis(softmax(logits.astype(np.float64), axis=-1), np.broadcast_to(labels[:, None], (4, 50, 1)),
                           axis=-1)[..., 0]
    got = R.logit_scaled_confidence(logits, labels)
    assert got.shape == (4, 50)
    np.testing.assert_allclose(got, np.log(p / (1 - p)), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(R.true_class_prob(logits, labels), p, rtol=1e-12)
    np.testing.assert_allclose(R.logit_scaled_confidence(logits[0], labels), got[0])  # [N, K] works too


def test_logit_scaled_confidence_stays_finite_and_ordered_when_saturated():
    logits = np.array([[1000.0, 0, 0], [900.0, 0, 0], [0, 1000.0, 0], [0, 0, 0]])
    s = R.logit_scaled_confidence(logits, np.array([0, 0, 0, 0]))
    assert np.all(np.isfinite(s))
    assert s[0] > s[1] > s[3] > s[2]
    np.testing.assert_allclose(s, [1000 - np.log(2), 900 - np.log(2), -1000, -np.log(2)], rtol=1e-12)
    with np.errstate(all="ignore"):  # the naive route breaks here: p_y rounds to 1
        p = softmax(logits, axis=1)[:, 0]
        assert not np.all(np.isfinite(np.log(p / (1 - p))))


def test_an_unlabelled_image_is_read_at_each_models_own_predicted_class():
    target = np.array([[0.0, 5.0, 1.0], [3.0, 0.0, 0.0]])
    refs = np.array([[[4.0, 0.0, 1.0], [3.0, 0.0, 0.0]], [[0.0, 1.0, 6.0], [0.0, 0.0, 3.0]]])  # [M=2, N=2, K=3]
    assert R.own_labels(target, np.array([-1, 2])).tolist() == [1, 2]
    assert R.own_labels(refs, np.array([-1, 2])).tolist() == [[0, 2], [2, 2]]
    # every model at its own best class: a reference model as confident as the target gets the same statistic
    same = R.logit_scaled_confidence(refs, R.own_labels(refs, np.array([-1, 2])))
    np.testing.assert_allclose(same[0, 0], R.logit_scaled_confidence(np.array([[4.0, 0.0, 1.0]]), np.array([0]))[0])
    with pytest.raises(ValueError, match="own_labels"):
        R.logit_scaled_confidence(target, np.array([-1, 2]))
    with pytest.raises(ValueError, match="labels"):
        R.logit_scaled_confidence(target, np.array([0, 3]))


# ---------------------------------------------------------------- LiRA formulas


def _code_online_offline(ref: np.ndarray, mask: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The reference code's fixed-variance scores, written out from plot.py (`generate_ours`,
    `generate_ours_offline`) for equal IN / OUT counts: ref [M, N, V], x [N, V] -> member scores [N]."""
    dat_in = np.array([ref[mask[:, j], j, :] for j in range(ref.shape[1])])  # [N, n_in, V]
    dat_out = np.array([ref[~mask[:, j], j, :] for j in range(ref.shape[1])])
    mean_in, mean_out = np.median(dat_in, 1), np.median(dat_out, 1)
    std = np.std(dat_in)  # std_in = std_out = np.std(dat_in)
    pred_online = (-norm.logpdf(x, mean_in, std + 1e-30) + norm.logpdf(x, mean_out, std + 1e-30)).mean(1)
    pred_offline = norm.logpdf(x, mean_out, np.std(dat_out) + 1e-30).mean(1)
    return -pred_online, -pred_offline  # plot.py `sweep`: roc_curve(answers, -score)


def test_lira_defaults_follow_the_reference_code_with_views():
    rng = np.random.default_rng(1)
    m, n, v = 8, 40, 2
    mask = R.complementary_splits(np.arange(n), m, 1)
    ref = rng.normal(0, 1, (m, v, n)) + rng.normal(0, 2, n) + 1.5 * mask[:, None, :]
    x = rng.normal(0, 2, (v, n))
    fit = R.fit_lira(ref, mask)  # median, global
    want_on, want_off = _code_online_offline(np.moveaxis(ref, 1, 2), mask, x.T)
    np.testing.assert_allclose(R.lira_online(fit, x, ref, mask), want_on, rtol=1e-9)
    np.testing.assert_allclose(R.lira_offline(fit, x, ref, mask), want_off, rtol=1e-9)
    assert fit.s_in == fit.s_out == pytest.approx(np.std(np.moveaxis(ref, 1, 0)[:, mask]))


def test_lira_mean_per_side_and_per_example_formulas():
    rng = np.random.default_rng(2)
    m, n = 8, 30
    mask = R.complementary_splits(np.arange(n), m, 2)
    ref = rng.normal(0, 1, (m, n)) + rng.normal(0, 2, n) + 1.5 * mask
    x = rng.normal(0, 2, n)
    mu_in = np.array([ref[mask[:, i], i].mean() for i in range(n)])
    mu_out = np.array([ref[~mask[:, i], i].mean() for i in range(n)])
    sd_in = np.array([ref[mask[:, i], i].std() for i in range(n)])  # ddof 0, as np.std(dat_in, 1)
    sd_out = np.array([ref[~mask[:, i], i].std() for i in range(n)])
    fit = R.fit_lira(ref, mask, "mean", "per_side")
    # pooled within-candidate std per side (equal counts: root mean of the ddof-1 per-candidate variances)
    g_in, g_out = np.sqrt(np.mean(sd_in**2 * 4 / 3)), np.sqrt(np.mean(sd_out**2 * 4 / 3))
    assert (fit.s_in, fit.s_out, fit.s_offline) == pytest.approx((g_in, g_out, g_out))
    assert fit.shift == pytest.approx(np.mean(mu_in - mu_out))
    np.testing.assert_allclose(R.lira_online(fit, x, ref, mask),
                               norm.logpdf(x, mu_in, g_in) - norm.logpdf(x, mu_out, g_out), rtol=1e-9)
    np.testing.assert_allclose(R.lira_online(fit, x, ref, mask, per_example=True),
                               norm.logpdf(x, mu_in, sd_in) - norm.logpdf(x, mu_out, sd_out), rtol=1e-9)
    np.testing.assert_allclose(R.lira_offline(fit, x, ref, mask, sides="one_sided"), norm.logcdf(x, mu_out, g_out),
                               rtol=1e-9)
    np.testing.assert_allclose(R.lira_offline(fit, x, ref, mask, True, "two_sided"), -norm.logpdf(x, mu_out, sd_out),
                               rtol=1e-9)
    med = R.fit_lira(ref, mask, "median", "per_side")  # the median of 4 values: the mean of the middle two
    mid = np.array([np.median(ref[~mask[:, i], i]) for i in range(n)])
    np.testing.assert_allclose(R.lira_offline(med, x, ref, mask, sides="one_sided"),
                               norm.logcdf(x, mid, med.s_offline), rtol=1e-9)


def test_lira_image_without_in_models_uses_the_fitted_shift_and_fit_needs_both_sides():
    w = _world(2.0, 1.0, seed=2, n=200, m=8)
    fit = R.fit_lira(w["ref"], w["mask"])
    assert 1.6 < fit.shift < 2.4
    ood = np.zeros_like(w["mask"])  # images no reference model trained on
    c_out = np.median(w["ref"], axis=0)
    np.testing.assert_allclose(R.lira_online(fit, w["target"], w["ref"], ood),
                               norm.logpdf(w["target"], c_out + fit.shift, fit.s_in)
                               - norm.logpdf(w["target"], c_out, fit.s_out), rtol=1e-9)
    with pytest.raises(ValueError, match="fit_lira needs"):
        R.fit_lira(w["ref"], ood)
    for bad, match in ((dict(center="mode"), "center"), (dict(spread="wide"), "spread")):
        with pytest.raises(ValueError, match=match):
            R.fit_lira(w["ref"], w["mask"], **bad)
    with pytest.raises(ValueError, match="sides"):
        R.lira_offline(fit, w["target"], w["ref"], w["mask"], sides="left")
    with pytest.raises(ValueError, match="target_stat"):
        R.lira_online(fit, w["target"][:5], w["ref"], w["mask"])


def test_lira_offline_one_sided_below_and_two_sided_on_both_sides():
    rng = np.random.default_rng(3)
    m, n = 6, 5000
    ref = rng.normal(0, 1, (m, n)) * rng.uniform(0.1, 3, n) + rng.normal(0, 5, n)
    mask = R.complementary_splits(np.arange(n), m, 3)
    x = rng.normal(0, 6, n)
    for per_example in (False, True):
        fit = R.fit_lira(ref, mask, "mean")
        mu_out = np.where(~mask, ref, 0).sum(0) / (~mask).sum(0)
        s = R.lira_offline(fit, x, ref, mask, per_example, "one_sided")
        below = x < mu_out
        assert below.sum() > 1000 and (~below).sum() > 1000
        assert np.all(s[below] < np.log(0.5)) and np.all(s[~below] >= np.log(0.5))
        two = R.lira_offline(fit, x, ref, mask, per_example, "two_sided")
        mirror = R.lira_offline(fit, 2 * mu_out - x, ref, mask, per_example, "two_sided")
        np.testing.assert_allclose(two, mirror, rtol=1e-9)  # as far below the OUT centre counts as far above


# ---------------------------------------------------------------- synthetic worlds


def test_attacks_find_members_when_in_shifts_the_statistic():
    w = _world(2.0, 1.5, seed=4)
    for name, s in _all_scores(w).items():
        auc = roc_auc_score(w["member"], s)
        floor = 0.79 if "two_sided" in name else 0.87 if name.startswith("lira") else 0.84  # two-sided: both tails
        assert auc > floor, (name, auc)
        assert np.median(s[w["member"]]) > np.median(s[~w["member"]]), name


def test_attacks_are_chance_without_a_shift():
    w = _world(0.0, 1.5, seed=5)
    for name, s in _all_scores(w).items():
        assert abs(roc_auc_score(w["member"], s) - 0.5) < 0.06, name


def test_lira_beats_global_threshold_because_of_per_candidate_difficulty():
    wide = _world(2.0, 3.0, seed=6)
    lira, glob = (roc_auc_score(wide["member"], s) for s in
                  (R.lira_online(R.fit_lira(wide["ref"], wide["mask"], spread="per_side"), wide["target"],
                                 wide["ref"], wide["mask"]), wide["target"]))
    assert lira > glob + 0.1, (lira, glob)
    flat = _world(2.0, 0.0, seed=6)  # control: no difficulty spread, nothing for the references to calibrate
    lira0, glob0 = (roc_auc_score(flat["member"], s) for s in
                    (R.lira_online(R.fit_lira(flat["ref"], flat["mask"], spread="per_side"), flat["target"],
                                   flat["ref"], flat["mask"]), flat["target"]))
    assert abs(lira0 - glob0) < 0.03, (lira0, glob0)


def _tpr_at_1pct(shift: float, seed: int = 13) -> dict[str, float]:
    """TPR at 1% FPR of each LiRA form (default options) in a world whose IN shift is `shift`, fitted once."""
    w = _world(shift, 1.5, seed=seed)
    fit = R.fit_lira(w["ref"], w["mask"])
    out = {"online": R.lira_online(fit, w["target"], w["ref"], w["mask"])}
    for sides in ("two_sided", "one_sided"):
        out[sides] = R.lira_offline(fit, w["target"], w["ref"], w["mask"], sides=sides)
    m = w["member"]
    return {k: thresholds.tpr_at_fpr(s[m], s[~m], 0.01, seed)["tpr"] for k, s in out.items()}


def test_a_sharper_member_gap_raises_lira_tpr_and_a_defense_lowers_it():
    """Calibration that sharpens the member / non-member gap (IN shift 2 -> 3) must raise LiRA's TPR at 1% FPR; a
    defense that narrows it (2 -> 0.5) must lower it, in every form of the attack."""
    base, sharper, defended = _tpr_at_1pct(2.0), _tpr_at_1pct(3.0), _tpr_at_1pct(0.5)
    for form in base:
        assert sharper[form] > base[form] + 0.1, (form, base[form], sharper[form])
        assert defended[form] < base[form] - 0.1, (form, base[form], defended[form])


# ---------------------------------------------------------------- splits


def test_complementary_splits():
    mask = R.complementary_splits(np.arange(101), 16, seed=7)
    assert mask.shape == (16, 101) and mask.dtype == bool
    assert np.all(mask.sum(axis=0) == 8)
    for j in range(0, 16, 2):
        assert np.all(mask[j] ^ mask[j + 1])
        assert mask[j].sum() == 50
    assert np.array_equal(mask, R.complementary_splits(np.arange(101), 16, seed=7))
    assert not np.array_equal(mask, R.complementary_splits(np.arange(101), 16, seed=8))
    assert len({mask[j].tobytes() for j in range(0, 16, 2)}) == 8  # each pair draws its own half
    for bad in (3, 0, 1, -2):
        with pytest.raises(ValueError, match="n_models"):
            R.complementary_splits(np.arange(10), bad, seed=0)


# ---------------------------------------------------------------- RMIA


def test_rmia_matches_hand_computation_with_offline_a():
    ref = np.array([[0.2, 0.9], [0.4, 0.5]])  # [M=2, N=2]
    mask = np.array([[False, True], [False, False]])
    target = np.array([0.5, 0.8])
    pop_ref = np.array([[0.3, 0.6, 0.1], [0.5, 0.6, 0.3]])
    pop_t = np.array([0.4, 0.9, 0.25])
    a = 0.4
    pr_x = 0.5 * ((1 + a) * np.array([0.3, 0.5]) + (1 - a))  # OUT means 0.3, 0.5 (x2 is IN for model 0)
    pr_z = 0.5 * ((1 + a) * pop_ref.mean(0) + (1 - a))
    ratio_x, ratio_z = target / pr_x, pop_t / pr_z
    for gamma in (0.5, 1.0, 1.3):
        expected = (ratio_x[:, None] / ratio_z[None, :] > gamma).mean(axis=1)
        np.testing.assert_allclose(R.rmia_scores(target, ref, mask, pop_t, pop_ref, gamma=gamma, a=a), expected)
        online = (target[:, None] / ref.mean(0)[:, None] / (pop_t / pop_ref.mean(0))[None, :] > gamma).mean(1)
        np.testing.assert_allclose(R.rmia_scores(target, ref, mask, pop_t, pop_ref, gamma=gamma, offline=False),
                                   online)
    with pytest.raises(ValueError, match="choose_rmia_a"):
        R.rmia_scores(target, ref, mask, pop_t, pop_ref)  # offline needs a


def test_rmia_scores_in_unit_interval_and_non_increasing_in_gamma():
    w = _world(1.0, 1.5, seed=9, n=2000, m=8)
    args = (expit(w["target"]), expit(w["ref"]), w["mask"], expit(w["pop_target"]), expit(w["pop_ref"]))
    for offline in (True, False):
        prev = None
        for gamma in (0.25, 0.5, 1.0, 2.0, 4.0):
            s = R.rmia_scores(*args, gamma=gamma, a=0.5, offline=offline)
            assert s.shape == (2000,) and s.min() >= 0 and s.max() <= 1
            if prev is not None:
                assert np.all(s <= prev) and np.any(s < prev)
            prev = s


def test_choose_rmia_a_uses_references_only_and_returns_a_grid_value():
    params = list(inspect.signature(R.choose_rmia_a).parameters)
    assert not any("target" in p for p in params), params
    w = _world(2.0, 1.5, seed=10, n=2000, m=8)
    grid = np.array([0.0, 0.25, 0.5, 0.75, 1.0])
    a = R.choose_rmia_a(expit(w["ref"]), w["mask"], expit(w["pop_ref"]), grid=grid)
    assert a in grid
    # explicit route: models 0, 2, 5, 7 in turn as pseudo-target, the other 7 as references, mean AUROC per a
    ref, pop = expit(w["ref"]), expit(w["pop_ref"])
    mean_auc = np.zeros(grid.size)
    for j in (0, 2, 5, 7):
        keep = np.arange(8) != j
        for i, g in enumerate(grid):
            s = R.rmia_scores(ref[j], ref[keep], w["mask"][keep], pop[j], pop[keep], a=g, offline=True)
            mean_auc[i] += roc_auc_score(w["mask"][j], s) / 4
    assert np.ptp(mean_auc) > 0.005  # the choice matters in this world
    assert a == grid[np.argmax(mean_auc)]
    with pytest.raises(ValueError, match="grid"):
        R.choose_rmia_a(expit(w["ref"]), w["mask"], expit(w["pop_ref"]), grid=np.array([1.5]))


# ---------------------------------------------------------------- thresholds


def test_threshold_at_fpr_is_smallest_threshold_meeting_alpha():
    rng = np.random.default_rng(11)
    assert thresholds.threshold_at_fpr(np.arange(100.0), 0.05) == 94.0
    assert thresholds.threshold_at_fpr(np.arange(100.0), 0.0) == 99.0
    assert thresholds.threshold_at_fpr(np.arange(100.0), 1.0) == -np.inf
    for _ in range(200):
        neg = np.round(rng.normal(0, 1, rng.integers(1, 60)), 1)  # many ties
        alpha = rng.uniform(0, 1)
        t = thresholds.threshold_at_fpr(neg, alpha)
        assert np.mean(neg > t) <= alpha
        below = neg[neg < t]
        if below.size:  # any smaller candidate threshold (next distinct value down) breaks the bound
            assert np.mean(neg > below.max()) > alpha


# ---------------------------------------------------------------- speed


@pytest.mark.slow  # a timing at CIFAR scale
def test_all_attacks_fast_at_cifar_scale():
    rng = np.random.default_rng(12)
    m, n, z, k = 16, 70_000, 10_000, 10
    labels = rng.integers(0, k, n)
    pop_labels = rng.integers(0, k, z)
    mask = R.complementary_splits(np.arange(n), m, 12)
    ref_logits = rng.normal(0, 2, (m, n, k)).astype(np.float32)
    tgt_logits = rng.normal(0, 2, (n, k)).astype(np.float32)
    pop_ref_logits = rng.normal(0, 2, (m, z, k)).astype(np.float32)
    pop_tgt_logits = rng.normal(0, 2, (z, k)).astype(np.float32)
    t0 = time.perf_counter()
    ref_stat, tgt_stat = R.logit_scaled_confidence(ref_logits, labels), R.logit_scaled_confidence(tgt_logits, labels)
    fit = R.fit_lira(ref_stat, mask)
    out = [R.lira_online(fit, tgt_stat, ref_stat, mask, pe) for pe in (False, True)]
    out += [R.lira_offline(fit, tgt_stat, ref_stat, mask, pe, sides) for pe in (False, True)
            for sides in ("two_sided", "one_sided")]
    p_ref, p_tgt = R.true_class_prob(ref_logits, labels), R.true_class_prob(tgt_logits, labels)
    pop_ref, pop_tgt = R.true_class_prob(pop_ref_logits, pop_labels), R.true_class_prob(pop_tgt_logits, pop_labels)
    a = R.choose_rmia_a(p_ref, mask, pop_ref)
    out += [R.rmia_scores(p_tgt, p_ref, mask, pop_tgt, pop_ref, a=a), R.rmia_scores(p_tgt, p_ref, mask, pop_tgt,
                                                                                     pop_ref, offline=False)]
    elapsed = time.perf_counter() - t0
    print(f"\nall reference attacks, M={m} N={n} Z={z} K={k}: {elapsed:.2f} s")
    assert all(s.shape == (n,) and np.all(np.isfinite(s)) for s in out)
    assert elapsed < 30
