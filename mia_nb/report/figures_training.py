"""Figures of notebooks 02 and 03 (training): learning curves, and the max scores of members vs held-out images."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from scipy.special import expit, logit

from mia_nb.report.figure_style import SCORE_EPS, logit_limits, score_axis


def learning_curves(histories: dict[str, dict[str, list[float]]]) -> plt.Figure:
    """Training loss and train / held-out accuracy per epoch for one or more models."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4))
    for i, (name, h) in enumerate(histories.items()):
        color = f"C{i}"
        a.plot(h["epoch"], h["train_loss"], color=color, label=name)
        b.plot(h["epoch"], h["train_acc"], color=color, label=f"{name}: train")
        ep, acc = np.array(h["epoch"]), np.array(h["heldout_acc"])
        ok = ~np.isnan(acc)
        b.plot(ep[ok], acc[ok], color=color, ls="--", marker="o", ms=3, label=f"{name}: held-out")
    a.set(xlabel="epoch", ylabel="training loss", title="Training loss")
    b.set(xlabel="epoch", ylabel="accuracy", title="Accuracy: the gap is what MIAs feed on")
    a.legend()
    b.legend(fontsize=8)
    fig.tight_layout()
    return fig


def member_heldout_scores(scores: dict[str, tuple[np.ndarray, np.ndarray]], bins: int = 40) -> plt.Figure:
    """Per model (one panel each): histograms of the max softmax score on its members and on held-out images.

    `scores`: model name -> (member max scores, held-out max scores), each in [0, 1]. A logit axis spreads out
    the pile near 1 (0.9, 0.99, 0.999, ...); values within 1e-15 of 1 are drawn at the right edge. The legend
    gives each set's median and its share at or above 0.99: what a threshold attack on the score can use.
    """
    if not scores or any(len(np.asarray(m)) == 0 or len(np.asarray(h)) == 0 for m, h in scores.values()):
        raise ValueError("member_heldout_scores: give each model a non-empty (members, held-out) pair of scores")
    arrays = [np.asarray(a, float) for pair in scores.values() for a in pair]
    lo, hi = logit_limits(*arrays)
    edges = expit(np.linspace(logit(lo), logit(hi), bins + 1))
    fig, axes = plt.subplots(1, len(scores), figsize=(6.5 * len(scores), 4.2), squeeze=False, sharey=True)
    for ax, (name, (members, heldout)) in zip(axes[0], scores.items()):
        for s, what, color in ((members, "members", "C0"), (heldout, "held-out", "C3")):
            s = np.asarray(s, float)
            label = f"{what} (n={len(s):,}): median {np.median(s):.4f}, {np.mean(s >= 0.99):.0%} ≥ 0.99"
            ax.hist(np.clip(s, lo, hi), bins=edges, weights=np.full(len(s), 1.0 / len(s)), histtype="stepfilled",
                    alpha=0.35, color=color, edgecolor=color, lw=1.4, label=label)
        logit_axis = score_axis(ax, lo, hi)
        ax.set(xlabel="max softmax score" + (" (logit axis)" if logit_axis else ""), title=name)
        if logit_axis:
            for tick in ax.get_xticklabels():
                tick.set_rotation(30)
        at_edge = float(np.mean(np.r_[members, heldout] >= 1 - SCORE_EPS))
        if at_edge > 0:
            ax.text(0.99, 0.75, f"right edge: {at_edge:.1%}\nare ≥ 1−10⁻¹⁵", transform=ax.transAxes, ha="right",
                    fontsize=8, color="dimgrey")
        ax.legend(loc="upper left", fontsize=8)
    axes[0][0].set_ylabel("fraction of the set")
    fig.suptitle("How sure the model is on its members and on images it never saw")
    fig.tight_layout()
    return fig
