"""The figure modules (mia_nb/report/figure*.py) draw only: what they show is computed by the attacks package."""

from __future__ import annotations

import ast
from pathlib import Path

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import pytest

from mia_nb.attacks.metrics import ece, overconfidence_error, reliability_bins
from mia_nb.attacks.thresholds import rates_at_thresholds
from mia_nb.report import figures_attacks

FIGURE_MODULES = sorted(Path(figures_attacks.__file__).parent.glob("figure*.py"))


def _brute_rates(sm: np.ndarray, sn: np.ndarray, t: float) -> tuple[float, float, float]:
    """TPR, FPR and precision of "member iff score > t", counted one image at a time."""
    tp = sum(1 for s in sm if s > t)
    fp = sum(1 for s in sn if s > t)
    return tp / len(sm), fp / len(sn), (tp / (tp + fp) if tp + fp else np.nan)


def test_rates_at_thresholds_match_counting_with_ties():
    rng = np.random.default_rng(3)
    sm = rng.integers(0, 10, 57) / 10.0  # many ties, and thresholds equal to scores
    sn = rng.integers(0, 8, 91) / 10.0
    grid = np.r_[-1.0, np.unique(np.r_[sm, sn]), 0.05, 2.0]
    tpr, fpr, prec = rates_at_thresholds(sm, sn, grid)
    for i, t in enumerate(grid):
        bt, bf, bp = _brute_rates(sm, sn, t)
        assert tpr[i] == pytest.approx(bt) and fpr[i] == pytest.approx(bf)
        assert (np.isnan(prec[i]) and np.isnan(bp)) or prec[i] == pytest.approx(bp)
    assert np.isnan(prec[-1]) and tpr[0] == fpr[0] == 1.0  # above every score nobody is called member


def test_rates_at_thresholds_bad_input():
    with pytest.raises(ValueError, match="member_scores"):
        rates_at_thresholds(np.array([]), np.array([0.5]), np.array([0.1]))
    with pytest.raises(ValueError, match="nonmember_scores"):
        rates_at_thresholds(np.array([0.5]), np.array([0.2, np.nan]), np.array([0.1]))


def test_reliability_bins_by_hand_and_ece_from_them():
    p = np.array([[0.95, 0.05], [0.95, 0.05], [0.6, 0.4], [0.45, 0.55]])
    y = np.array([0, 1, 0, 1])
    w, conf, acc = reliability_bins(p, y, n_bins=4)  # confidences 0.95, 0.95, 0.6, 0.55
    assert w == pytest.approx([0, 0.0, 0.5, 0.5])
    assert conf[2:] == pytest.approx([0.575, 0.95]) and acc[2:] == pytest.approx([1.0, 0.5])
    assert ece(p, y, 4) == pytest.approx(np.sum(w * np.abs(conf - acc)))
    assert overconfidence_error(p, y, 4) == pytest.approx(0.5 * 0.95 * 0.45)
    with pytest.raises(ValueError, match="reliability_bins: n_bins"):
        reliability_bins(p, y, 0)


def test_explorer_and_histograms_show_the_computed_rates():
    rng = np.random.default_rng(0)
    sm, sn = rng.beta(8, 1, 300), rng.beta(5, 1, 400)
    tpr, fpr, prec = (float(v[0]) for v in rates_at_thresholds(sm, sn, np.array([0.9])))
    fig = figures_attacks.threshold_explorer(sm, sn, learned=0.95, current=0.9)
    assert fig.axes[0].get_title() == f"t = 0.9: TPR {tpr:.3f} · FPR {fpr:.3f} · precision {prec:.3f}"
    plt.close(fig)
    fig = figures_attacks.score_distributions(sm, sn, 0.9)
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert any(f"{tpr:.1%} above t = TPR" in t for t in legend) and any(f"{fpr:.1%} above t = FPR" in t for t in legend)
    plt.close(fig)


def test_threshold_slider_only_when_live():
    sm, sn = np.linspace(0.5, 1.0, 50), np.linspace(0.3, 0.9, 60)
    assert figures_attacks.threshold_slider(sm, sn, 0.8) is None  # the headless default
    w = figures_attacks.threshold_slider(sm, sn, 0.8, live=True, n_steps=11)
    assert isinstance(w, widgets.interactive)
    stops = [v for _, v in w.children[0].options]
    assert 0.8 in stops and w.children[0].value == 0.8
    plt.close("all")


@pytest.mark.parametrize("path", FIGURE_MODULES, ids=lambda p: p.stem)
def test_figure_modules_use_no_private_helpers_and_no_environment(path: Path):
    tree = ast.parse(path.read_text())
    imported = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("mia_nb"):
            for a in node.names:
                assert not a.name.startswith("_"), f"{path.name} imports private {node.module}.{a.name}"
                imported[a.asname or a.name] = node.module
        if isinstance(node, ast.Import):
            assert all(a.name != "os" for a in node.names), f"{path.name} imports os (a branch on the environment?)"
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in imported:
            assert not node.attr.startswith("_"), f"{path.name} uses private {node.value.id}.{node.attr}"
        assert not (isinstance(node, ast.Name) and node.id == "environ"), f"{path.name} reads the environment"
