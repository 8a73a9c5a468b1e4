"""Tests for mia_nb.attacks.metrics: attack metrics (ROC, low-FPR with CI, MMPS), calibration, distances."""

from __future__ import annotations

import time

import numpy as np
import pytest
from scipy.stats import norm
from sklearn.metrics import average_precision_score, roc_auc_score

from mia_nb.attacks.score_based import ThresholdAttack
from mia_nb.attacks.metrics import (
    ATTACK_METRIC_KEYS,
    accuracy,
    attack_metrics,
    ece,
    mmps,
    nll,
    overconfidence_error,
    roc_points,
    wasserstein,
)
from mia_nb.attacks.scores import Outputs, softmax
from mia_nb.attacks.thresholds import allowed_false_positives


class XAttack:
    """Stub attack whose score is the logit x that made 2-class outputs [sigmoid(x), 1 - sigmoid(x)]."""

    name = "stub"

    def __init__(self, threshold: float = 0.0):
        self.threshold = threshold

    def score(self, out: Outputs) -> np.ndarray:
        return np.log(out.probs[:, 0]) - np.log(out.probs[:, 1])

    def predict(self, out: Outputs) -> np.ndarray:
        return self.score(out) > self.threshold


def outs(x: np.ndarray) -> Outputs:
    x = np.asarray(x, dtype=float)
    return Outputs(softmax(np.c_[x, np.zeros_like(x)]), np.zeros(len(x), dtype=np.int64))


def gaussians(d: float, n: int, seed: int) -> tuple[Outputs, Outputs]:
    rng = np.random.default_rng(seed)
    return outs(rng.normal(d, 1, n)), outs(rng.normal(0, 1, n))


def test_keys_are_the_csv_columns():
    m, n = gaussians(1.0, 200, 0)
    res = attack_metrics(XAttack(), m, n)
    assert tuple(res) == ATTACK_METRIC_KEYS and len(ATTACK_METRIC_KEYS) == 23
    assert res["n_members"] == 200 and res["n_nonmembers"] == 200 and res["threshold"] == 0.0


def test_two_gaussians_match_theory():
    d = 1.0
    m, n = gaussians(d, 4000, 1)
    res = attack_metrics(XAttack(), m, n, seed=0)
    assert res["auroc"] == pytest.approx(norm.cdf(d / np.sqrt(2)), abs=0.015)
    assert res["balanced_accuracy"] == pytest.approx(norm.cdf(d / 2), abs=0.02)
    assert res["fpr_at_95tpr"] == pytest.approx(norm.sf(d - norm.ppf(0.95)), abs=0.03)
    assert res["tpr_at_1pct_fpr"] == pytest.approx(norm.sf(norm.ppf(0.99) - d), abs=0.04)  # half the non-members
    assert res["fpr_check_1pct"] == pytest.approx(0.01, abs=0.006)  # the operating point transfers
    # decision at x > 0: recall = Phi(d), fpr = 1/2
    assert res["recall"] == pytest.approx(norm.cdf(d), abs=0.02)
    assert res["fpr"] == pytest.approx(0.5, abs=0.025)
    for a in ("1pct", "01pct"):
        lo, pt, hi = (res[f"tpr_at_{a}_fpr{s}"] for s in ("_lo", "", "_hi"))
        assert lo <= pt <= hi and hi - lo < 0.1 and hi > lo  # Clopper–Pearson over 4,000 members


def test_auroc_aupr_agree_with_sklearn_and_mann_whitney_with_ties():
    rng = np.random.default_rng(2)
    xm, xn = np.round(rng.normal(0.7, 1, 300), 1), np.round(rng.normal(0, 1, 250), 1)  # many ties
    res = attack_metrics(XAttack(), outs(xm), outs(xn))
    sm, sn = XAttack().score(outs(xm)), XAttack().score(outs(xn))
    y, s = np.r_[np.ones(300), np.zeros(250)], np.r_[sm, sn]
    assert res["auroc"] == pytest.approx(roc_auc_score(y, s))
    assert res["aupr"] == pytest.approx(average_precision_score(y, s))
    gt, eq = (sm[:, None] > sn[None]).mean(), (sm[:, None] == sn[None]).mean()
    assert res["auroc"] == pytest.approx(gt + eq / 2)


def test_perfectly_separable():
    m, n = outs(np.linspace(3, 5, 100)), outs(np.linspace(-5, -3, 2000))
    res = attack_metrics(XAttack(), m, n)
    assert res["auroc"] == 1.0 and res["aupr"] == 1.0 and res["balanced_accuracy"] == 1.0
    assert res["fpr"] == 0.0 and res["recall"] == 1.0 and res["precision"] == 1.0 and res["accuracy"] == 1.0
    assert res["fpr_at_95tpr"] == 0.0
    assert res["tpr_at_01pct_fpr"] == 1.0 and res["tpr_at_01pct_fpr_lo"] > 0.96  # CP lower bound, 100 members
    assert res["tpr_at_1pct_fpr"] == 1.0 and res["tpr_at_1pct_fpr_hi"] == 1.0
    assert np.isnan(res["mmps_fp"]) and np.isnan(res["mmps_fn"])  # empty groups: NaN, not 0
    assert res["mmps_tp"] == pytest.approx(m.probs.max(1).mean())
    assert res["mmps_tn"] == pytest.approx(n.probs.max(1).mean())


def test_decision_metrics_by_hand_and_nan_precision():
    m, n = outs([2.0, 1.0, -1.0, -3.0]), outs([1.5, -0.5, -2.0])
    res = attack_metrics(XAttack(threshold=0.0), m, n)
    # TP = 2, FN = 2, FP = 1, TN = 2
    assert res["precision"] == pytest.approx(2 / 3) and res["recall"] == 0.5
    assert res["fpr"] == pytest.approx(1 / 3) and res["accuracy"] == pytest.approx(4 / 7)
    mx = lambda x: softmax(np.c_[x, np.zeros(len(x))]).max(1).mean()  # noqa: E731
    assert res["mmps_tp"] == pytest.approx(mx(np.array([2.0, 1.0])))
    assert res["mmps_fn"] == pytest.approx(mx(np.array([-1.0, -3.0])))
    assert res["mmps_fp"] == pytest.approx(mx(np.array([1.5])))
    none = attack_metrics(XAttack(threshold=np.inf), m, n)
    assert np.isnan(none["precision"]) and none["recall"] == 0.0 and np.isnan(none["mmps_tp"])


def test_members_are_positive_swap_flips_auroc():
    m, n = gaussians(0.8, 500, 3)
    a = attack_metrics(XAttack(), m, n)["auroc"]
    b = attack_metrics(XAttack(), n, m)["auroc"]
    assert a > 0.6 and b == pytest.approx(1 - a)


def test_allowed_false_positives_and_fpr0_case():
    assert allowed_false_positives(5000, 0.01) == 50
    assert allowed_false_positives(5000, 0.001) == 5
    assert allowed_false_positives(100, 0.29) == 29  # 0.29 * 100 = 28.999... in floats
    assert allowed_false_positives(500, 0.001) == 0
    with pytest.raises(ValueError, match="n_nonmembers >= 1"):
        allowed_false_positives(0, 0.01)
    m, n = gaussians(2.0, 500, 5)  # 250 fitting non-members * 0.1% < 1: the 0.1% figure is TPR at FPR 0 there
    res = attack_metrics(XAttack(), m, n)
    assert 0 < res["tpr_at_01pct_fpr"] < res["tpr_at_1pct_fpr"]


def test_low_fpr_split_is_seeded():
    m, n = gaussians(1.0, 3000, 6)
    a, b = attack_metrics(XAttack(), m, n, seed=1), attack_metrics(XAttack(), m, n, seed=1)
    c = attack_metrics(XAttack(), m, n, seed=3)
    assert a["tpr_at_1pct_fpr"] == b["tpr_at_1pct_fpr"] and a["fpr_check_1pct"] == b["fpr_check_1pct"]
    assert (a["tpr_at_1pct_fpr"], a["fpr_check_1pct"]) != (c["tpr_at_1pct_fpr"], c["fpr_check_1pct"])


def test_attack_metrics_fast_on_5000_each():
    rng = np.random.default_rng(7)
    m = Outputs(softmax(rng.normal(scale=3, size=(5000, 10))), rng.integers(0, 10, 5000))
    n = Outputs(softmax(rng.normal(scale=2, size=(5000, 10))), rng.integers(0, 10, 5000))
    att = ThresholdAttack().fit(m, n)
    t = time.perf_counter()
    res = attack_metrics(att, m, n)
    assert time.perf_counter() - t < 1.0
    assert res["threshold"] == att.threshold and 0.5 < res["auroc"] < 1


def test_attack_metrics_bad_input():
    m = outs([1.0, 2.0])

    class NanAttack(XAttack):
        def score(self, out):
            return np.full(len(out), np.nan)

    with pytest.raises(ValueError, match="contains NaN or inf"):
        attack_metrics(NanAttack(), m, m)
    with pytest.raises(ValueError, match="must be Outputs"):
        attack_metrics(XAttack(), m, m.probs)
    with pytest.raises(ValueError, match="empty"):
        outs([])
    with pytest.raises(ValueError, match="non-empty 1-D"):
        roc_points(np.array([]), np.array([1.0]))


def _conf_acc_case(conf: float, acc: float, n: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """n predictions of class 0 with confidence `conf` (2 classes); a fraction `acc` is correct."""
    p = np.tile([conf, 1 - conf], (n, 1))
    y = np.r_[np.zeros(round(acc * n), int), np.ones(n - round(acc * n), int)]
    return p, y


def test_ece_and_oe_hand_made():
    p, y = _conf_acc_case(0.9, 0.6)  # overconfident
    assert ece(p, y) == pytest.approx(0.3) and overconfidence_error(p, y) == pytest.approx(0.9 * 0.3)
    p, y = _conf_acc_case(0.6, 0.9)  # underconfident: ECE counts it, OE does not
    assert ece(p, y) == pytest.approx(0.3) and overconfidence_error(p, y) == 0.0
    p1, y1 = _conf_acc_case(0.9, 0.6)  # two bins, half the weight each
    p2, y2 = _conf_acc_case(0.7, 0.7)
    assert ece(np.r_[p1, p2], np.r_[y1, y2]) == pytest.approx(0.15)
    with pytest.raises(ValueError, match="labels contain -1"):
        ece(p, np.full(len(p), -1))
    with pytest.raises(ValueError, match="n_bins"):
        overconfidence_error(p, y, n_bins=0)


def test_mmps_nll_accuracy_wasserstein():
    p = np.array([[0.9, 0.1], [0.3, 0.7], [0.5, 0.5]])
    assert mmps(p) == pytest.approx((0.9 + 0.7 + 0.5) / 3)
    y = np.array([0, 0, 1])
    assert accuracy(p, y) == pytest.approx(1 / 3)
    assert nll(p, y) == pytest.approx(-(np.log(0.9) + np.log(0.3) + np.log(0.5)) / 3)
    with pytest.raises(ValueError, match="labels contain -1"):
        nll(p, np.array([0, -1, 1]))
    with pytest.raises(ValueError, match="mismatched lengths"):
        accuracy(p, np.array([0, 1]))
    a = np.random.default_rng(8).uniform(size=500)
    assert wasserstein(a, a + 0.25) == pytest.approx(0.25)
    assert wasserstein(a, a) == 0.0
    with pytest.raises(ValueError, match="NaN or inf"):
        wasserstein(a, np.r_[a, np.nan])


def test_wasserstein_interval():
    from mia_nb.attacks.metrics import wasserstein, wasserstein_interval
    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 1, 2000), rng.normal(0.5, 1, 2000)
    lo, hi = wasserstein_interval(a, b, seed=1)
    assert lo < wasserstein(a, b) < hi and hi - lo < 0.2
    assert wasserstein_interval(a, b, seed=1) == (lo, hi)
    shift = np.full(50, 0.3)
    assert wasserstein_interval(shift, shift + 0.25) == pytest.approx((0.25, 0.25))
