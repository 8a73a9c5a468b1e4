"""Tests for mia_nb.attacks.score_based: decision rules, exact threshold fitting, Salem, registry, balancing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_curve

from mia_nb.attacks.score_based import (
    ATTACKS,
    EntropyAttack,
    LossAttack,
    SalemAttack,
    ThresholdAttack,
    balanced_shadow,
    make_attack,
)
from mia_nb.attacks.scores import Outputs, ce_loss, entropy, softmax


def outs_from_x(x: np.ndarray, k: int = 10) -> Outputs:
    """Outputs whose max score is increasing in x (x >= 0): logit x on class 0, 0 elsewhere."""
    z = np.zeros((len(x), k))
    z[:, 0] = x
    return Outputs(softmax(z), np.zeros(len(x), dtype=np.int64))


def outs_from_prototypes(rng, n: int, protos: np.ndarray, weights: np.ndarray) -> Outputs:
    """Rows drawn from a few prototype probability vectors: many exact ties in every statistic."""
    idx = rng.choice(len(protos), size=n, p=weights)
    return Outputs(protos[idx], rng.integers(0, protos.shape[1], size=n))


PROTOS = softmax(np.array([[4.0, 0, 0], [3.0, 1, 0], [2.0, 1, 0], [1.0, 0.5, 0], [0.2, 0.1, 0], [0.0, 0, 0]]))


def test_threshold_rule_matches_best_shadow_roc_point_with_ties():
    rng = np.random.default_rng(0)
    for trial in range(5):
        m = outs_from_prototypes(rng, 60, PROTOS, np.array([0.3, 0.25, 0.2, 0.1, 0.1, 0.05]))
        n = outs_from_prototypes(rng, 60, PROTOS, np.array([0.1, 0.15, 0.2, 0.2, 0.2, 0.15]))
        att = ThresholdAttack().fit(m, n)
        pm, pn = att.predict(m), att.predict(n)
        sm, sn = m.probs.max(axis=1), n.probs.max(axis=1)
        np.testing.assert_array_equal(pm, sm > att.threshold)  # documented rule
        y = np.r_[np.ones(60), np.zeros(60)]
        fpr, tpr, _ = roc_curve(y, np.r_[sm, sn], drop_intermediate=False)
        i = np.argmax(tpr - fpr)
        assert pm.mean() == pytest.approx(tpr[i]) and pn.mean() == pytest.approx(fpr[i])
        # tied scores are never split by the threshold
        assert not np.isin(att.threshold, np.r_[sm, sn])


def test_threshold_separable_and_degenerate():
    m, n = outs_from_x(np.linspace(5, 6, 50)), outs_from_x(np.linspace(1, 2, 50))
    att = ThresholdAttack().fit(m, n)
    assert att.predict(m).all() and not att.predict(n).any()
    assert n.probs.max() < att.threshold < m.probs.max(axis=1).min()
    same = outs_from_x(np.full(10, 3.0))
    att = ThresholdAttack().fit(same, same)  # no information: call nobody a member
    assert not att.predict(same).any()


def _brute_force_best_correct(em: np.ndarray, en: np.ndarray) -> int:
    cands = np.r_[np.unique(np.r_[em, en]), np.inf]  # rule: member iff entropy < t
    return max(int((em < t).sum() + (en >= t).sum()) for t in cands)


def test_entropy_threshold_maximises_shadow_accuracy_brute_force():
    rng = np.random.default_rng(1)
    for trial in range(20):
        nm, nn = rng.integers(1, 25, size=2)
        if trial % 2:
            m = outs_from_prototypes(rng, nm, PROTOS, rng.dirichlet(np.ones(6)))
            n = outs_from_prototypes(rng, nn, PROTOS, rng.dirichlet(np.ones(6)))
        else:
            m = Outputs(softmax(rng.normal(scale=2, size=(nm, 4))), np.zeros(nm, dtype=int))
            n = Outputs(softmax(rng.normal(scale=1, size=(nn, 4))), np.zeros(nn, dtype=int))
        att = EntropyAttack().fit(m, n)
        em, en = entropy(m.probs), entropy(n.probs)
        pm, pn = att.predict(m), att.predict(n)
        np.testing.assert_array_equal(pm, em < att.threshold)
        np.testing.assert_array_equal(pn, en < att.threshold)
        assert int(pm.sum() + (~pn).sum()) == _brute_force_best_correct(em, en)


def test_entropy_direction_confident_is_member():
    rng = np.random.default_rng(2)
    m = Outputs(softmax(rng.normal(size=(200, 10)) + 8 * np.eye(10)[rng.integers(0, 10, 200)]), np.zeros(200, int))
    n = Outputs(softmax(rng.normal(size=(200, 10))), np.zeros(200, int))
    att = EntropyAttack().fit(m, n)
    assert att.score(m).mean() > att.score(n).mean()
    np.testing.assert_allclose(att.score(m), -entropy(m.probs))
    assert att.predict(m).mean() > 0.95 and att.predict(n).mean() < 0.05


def test_loss_attack_uses_true_label():
    p = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.6, 0.4]])
    m = Outputs(p[:2], np.array([0, 0]))  # correct, confident -> low loss
    n = Outputs(p[2:], np.array([1, -1]))  # wrong label; -1 falls back to the predicted class
    att = LossAttack().fit(m, n)
    np.testing.assert_allclose(att.score(n), -ce_loss(n.probs, n.labels))
    np.testing.assert_allclose(att.score(n), [np.log(0.4), np.log(0.6)])
    assert att.predict(m).all() and not att.predict(n).any()
    for o in (m, n):  # threshold is in loss units: member iff loss < threshold
        np.testing.assert_array_equal(att.predict(o), ce_loss(o.probs, o.labels) < att.threshold)
    # same max scores, different labels: the loss attack sees the label, the threshold attack does not
    wrong = Outputs(p[:2], np.array([1, 1]))
    assert not att.predict(wrong).any()
    assert ThresholdAttack().fit(m, n).predict(wrong).all()


def _salem_toy(seed: int, n: int = 100) -> tuple[Outputs, Outputs]:
    rng = np.random.default_rng(seed)
    zm = rng.normal(size=(n, 5)) + 7 * np.eye(5)[rng.integers(0, 5, n)]
    zn = rng.normal(size=(n, 5)) + 1 * np.eye(5)[rng.integers(0, 5, n)]
    return Outputs(softmax(zm), np.zeros(n, int)), Outputs(softmax(zn), np.zeros(n, int))


def test_salem_learns_separable_and_is_deterministic():
    m, n = _salem_toy(3)
    state = torch.random.get_rng_state()
    a = SalemAttack(seed=7, max_epochs=15).fit(m, n)
    assert torch.equal(state, torch.random.get_rng_state())  # global RNG untouched
    tm, tn = _salem_toy(4)  # fresh samples from the same distributions
    acc = (a.predict(tm).sum() + (~a.predict(tn)).sum()) / (len(tm) + len(tn))
    assert acc > 0.95
    s = a.score(tm)
    assert np.all((s >= 0) & (s <= 1)) and np.isnan(a.threshold)
    np.testing.assert_array_equal(a.predict(tm), s >= 0.5)
    b = SalemAttack(seed=7, max_epochs=15).fit(m, n)
    np.testing.assert_array_equal(a.score(tm), b.score(tm))
    assert a.history == b.history
    c = SalemAttack(seed=8, max_epochs=15).fit(m, n)
    assert not np.array_equal(a.score(tm), c.score(tm))


def test_salem_early_stopping_and_bad_k():
    m, n = _salem_toy(5, n=40)
    n = Outputs(m.probs[::-1].copy(), m.labels)  # same distribution: the loss plateaus and wobbles
    a = SalemAttack(patience=1, max_epochs=50).fit(m, n)
    assert len(a.history) < 50 and a.history[a.best_epoch] == min(a.history)
    assert len(a.history) == a.best_epoch + 3  # scikit-learn stops after patience + 1 epochs without gain
    with pytest.raises(ValueError, match="k=6 exceeds the number of classes"):
        SalemAttack(k=6).fit(m, n)
    with pytest.raises(ValueError, match="patience"):
        SalemAttack(patience=0)


def test_registry_and_make_attack():
    for name, cls in ATTACKS.items():
        assert cls.name == name and isinstance(make_attack(name), cls)
    assert set(ATTACKS) == {"threshold", "entropy", "salem", "loss"}
    assert make_attack("salem", k=2).k == 2
    with pytest.raises(ValueError, match="unknown attack 'lira'; known: entropy, loss, salem, threshold"):
        make_attack("lira")


def test_unfitted_and_mismatched_inputs():
    m = outs_from_x(np.ones(5), k=3)
    with pytest.raises(ValueError, match="not fitted"):
        ThresholdAttack().predict(m)
    with pytest.raises(ValueError, match="not fitted"):
        SalemAttack().score(m)
    with pytest.raises(ValueError, match="3 vs 4 classes"):
        EntropyAttack().fit(m, outs_from_x(np.ones(5), k=4))
    with pytest.raises(ValueError, match="must be an Outputs"):
        ThresholdAttack().fit(m, np.ones((5, 3)) / 3)


def test_balanced_shadow():
    m = outs_from_x(np.arange(30.0))
    n = outs_from_x(np.arange(100.0))
    bm, bn = balanced_shadow(m, n, seed=0)
    assert len(bm) == len(bn) == 30 and bm is m
    xs = np.log(bn.probs[:, 0] / bn.probs[:, 1])
    assert len(np.unique(np.round(xs, 6))) == 30 and np.all(np.diff(xs) > 0)  # distinct rows, order kept
    bn2 = balanced_shadow(m, n, seed=0)[1]
    np.testing.assert_array_equal(bn.probs, bn2.probs)
    assert not np.array_equal(bn.probs, balanced_shadow(m, n, seed=1)[1].probs)
    bn3, bm3 = balanced_shadow(n, m, seed=0)
    assert len(bn3) == len(bm3) == 30


def test_saturated_softmax_leaves_no_ties_for_threshold_and_loss():
    """Logit gaps of 40–60 round the softmax to exactly 1.0; the log-softmax still ranks them."""
    from mia_nb.attacks.scores import log_softmax, softmax
    logits = np.zeros((6, 3))
    logits[:, 0] = [40, 45, 50, 55, 60, 65]
    probs = softmax(logits)
    assert (probs.max(axis=1) == 1.0).sum() >= 4  # the ties a float softmax makes
    out = Outputs(probs, np.zeros(6, int), log_softmax(logits))
    for attack in (ThresholdAttack(), LossAttack()):
        s = attack.score(out)
        assert len(np.unique(s)) == 6 and np.all(np.diff(s) > 0)
    members, nonmembers = out.subset([3, 4, 5]), out.subset([0, 1, 2])
    a = ThresholdAttack().fit(members, nonmembers)
    assert a.predict(members).all() and not a.predict(nonmembers).any()
    assert a.threshold == pytest.approx(1.0)  # in max-score units the cut rounds to 1.0
