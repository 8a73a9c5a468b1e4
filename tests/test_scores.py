"""Tests for mia_nb.attacks.scores: softmax, entropy, top-k, CE loss, input checks, Outputs."""

from __future__ import annotations

import numpy as np
import pytest

from mia_nb.attacks.scores import Outputs, ce_loss, check_outputs, entropy, softmax, topk


def test_softmax_stable_and_matches_naive():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(20, 7))
    naive = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    np.testing.assert_allclose(softmax(z), naive, rtol=1e-12)
    big = np.array([[1000.0, 999.0, -1000.0]])
    p = softmax(big)
    assert np.all(np.isfinite(p))
    np.testing.assert_allclose(p[0, :2], [1 / (1 + np.e**-1), np.e**-1 / (1 + np.e**-1)])
    np.testing.assert_allclose(p.sum(1), 1.0)


def test_softmax_temperature():
    z = np.array([[2.0, 0.0]])
    np.testing.assert_allclose(softmax(z, temperature=2.0), softmax(z / 2.0))
    hot = softmax(np.array([[5.0, 0.0, -3.0]]), temperature=1e6)
    np.testing.assert_allclose(hot, 1 / 3, atol=1e-5)
    with pytest.raises(ValueError, match="temperature"):
        softmax(z, temperature=0.0)
    with pytest.raises(ValueError, match="NaN or inf"):
        softmax(np.array([[np.nan, 0.0]]))


def test_entropy_topk():
    p = np.array([[0.7, 0.2, 0.1], [1.0, 0.0, 0.0], [1 / 3, 1 / 3, 1 / 3]])
    h = entropy(p)
    np.testing.assert_allclose(h[0], -(0.7 * np.log(0.7) + 0.2 * np.log(0.2) + 0.1 * np.log(0.1)))
    assert h[1] == 0.0  # 0 log 0 = 0, no NaN
    np.testing.assert_allclose(h[2], np.log(3))
    t = topk(np.array([[0.1, 0.5, 0.15, 0.25]]), 3)
    np.testing.assert_allclose(t, [[0.5, 0.25, 0.15]])
    with pytest.raises(ValueError, match="k must be"):
        topk(p, 4)
    with pytest.raises(ValueError, match="k must be"):
        topk(p, 0)


def test_ce_loss_true_label_and_unlabelled():
    p = np.array([[0.7, 0.2, 0.1], [0.2, 0.5, 0.3], [0.0, 1.0, 0.0]])
    loss = ce_loss(p, np.array([1, -1, 0]))
    np.testing.assert_allclose(loss[:2], [-np.log(0.2), -np.log(0.5)])  # -1 -> predicted class
    assert np.isfinite(loss[2]) and loss[2] > 700  # p = 0 -> floored, finite


@pytest.mark.parametrize(
    "probs, labels, match",
    [
        (np.zeros((0, 3)), None, "empty"),
        (np.array([0.5, 0.5]), None, "2-D"),
        (np.array([[0.5, np.nan]]), None, "NaN or inf"),
        (np.array([[0.5, np.inf]]), None, "NaN or inf"),
        (np.array([[0.5, 0.4]]), None, "do not sum to 1"),
        (np.array([[2.0, -1.0]]), None, r"outside \[0, 1\]"),
        (np.array([[0.5, 0.5]] * 3), np.array([0, 1]), "mismatched lengths"),
        (np.array([[0.5, 0.5]]), np.array([2]), "labels must lie"),
        (np.array([[0.5, 0.5]]), np.array([0.5]), "labels must be integers"),
        (np.array([[0.5, 0.5]]), np.array([[0]]), "labels must be 1-D"),
    ],
)
def test_check_outputs_rejects(probs, labels, match):
    with pytest.raises(ValueError, match=match):
        check_outputs(probs, labels)


def test_check_outputs_accepts_float32_softmax():
    z = np.random.default_rng(1).normal(scale=10, size=(100, 120)).astype(np.float32)
    e = np.exp(z - z.max(1, keepdims=True))
    check_outputs((e / e.sum(1, keepdims=True)).astype(np.float32), np.full(100, -1))


def test_outputs_dataclass():
    p = np.array([[0.9, 0.1], [0.3, 0.7], [0.5, 0.5]], dtype=np.float32)
    o = Outputs(p, np.array([0, 1, -1], dtype=np.int32))
    assert len(o) == 3 and o.labels.dtype == np.int64 and o.n_classes == 2
    s = o.subset([2, 0])
    np.testing.assert_array_equal(s.labels, [-1, 0])
    np.testing.assert_array_equal(o.subset(np.array([True, False, True])).labels, [0, -1])
    with pytest.raises(AttributeError):
        o.probs = p  # frozen
    with pytest.raises(ValueError, match="mismatched lengths"):
        Outputs(p, np.array([0, 1]))
    with pytest.raises(ValueError, match="empty"):
        o.subset(np.array([], dtype=int))


def test_log_softmax_matches_and_keeps_tiny_gaps():
    from mia_nb.attacks.scores import log_softmax, softmax
    rng = np.random.default_rng(0)
    z = rng.normal(size=(50, 7)) * 3
    assert np.allclose(np.exp(log_softmax(z, 2.0)), softmax(z, 2.0))
    big = np.array([[50.0, 0.0, 0.0], [60.0, 0.0, 0.0]])
    lp = log_softmax(big)
    assert lp[0, 0] < lp[1, 0] < 0  # softmax gives 1.0 for both


def test_log_rest_is_log_one_minus_max_and_orders_saturated_rows():
    from mia_nb.attacks.scores import log_rest, log_softmax
    rng = np.random.default_rng(0)
    z = rng.normal(size=(50, 5))
    lp = log_softmax(z)
    np.testing.assert_allclose(log_rest(lp), np.log1p(-np.exp(lp).max(1)), rtol=1e-9)
    big = np.array([[0.0, -60.0, -60.0], [0.0, -50.0, -50.0], [0.0, -40.0, -40.0]])  # a top log-prob rounded to 0
    assert (big.max(1) == 0).all()  # (as an MC average in log space gives it): log of the max score ties
    r = log_rest(big)
    assert np.all(np.diff(r) > 5)  # log(1 - p) still can: about -60, -50, -40 (+ log 2)
