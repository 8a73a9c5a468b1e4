"""Figures of notebook 04 (attacks): ROC curves, score distributions, the threshold explorer and its slider.

The rates drawn come from `mia_nb.attacks.thresholds.rates_at_thresholds`; these functions only draw.
"""

from __future__ import annotations

from typing import Sequence

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
from IPython.display import display
from scipy.special import expit, logit

from mia_nb.attacks.thresholds import rates_at_thresholds
from mia_nb.report.figure_style import SCORE_EPS, logit_limits, score_axis


def roc_curves(curves: dict[str, tuple[np.ndarray, np.ndarray]], n_nonmembers: int,
               points: dict[str, tuple[float, float]] | None = None, low_fprs: Sequence[float] = (0.01, 0.001),
               title: str = "") -> plt.Figure:
    """ROC curves (name → (fpr, tpr)) on a linear and a log-log panel, with the chance line.

    `points` marks each attack's own decision (fpr, tpr) on the linear panel; the log-log panel runs
    down to 1/n_nonmembers (the smallest non-zero FPR that many non-members can show) and marks
    `low_fprs` with dotted lines.
    """
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 5.2))
    floor = 1.0 / max(int(n_nonmembers), 1)
    styles = ["-", "--", "-.", ":"]
    for i, (name, (fpr, tpr)) in enumerate(curves.items()):
        color, style = f"C{i}", {"ls": styles[i % 4], "lw": 2.4 - 0.3 * (i % 4)}
        a.plot(fpr, tpr, color=color, label=name, **style)
        b.plot(fpr, tpr, color=color, label=name, **style)
        if points and name in points:
            pf, pt = points[name]
            a.plot([pf], [pt], "o", color=color, ms=8, mec="black", mew=0.8)
    a.plot([0, 1], [0, 1], color="grey", ls="--", lw=1, label="chance (guessing)")
    b.plot([floor, 1], [floor, 1], color="grey", ls="--", lw=1, label="chance (guessing)")
    if points:
        a.plot([], [], "o", color="white", mec="black", label="each attack's own decision")
    a.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="false-positive rate (non-members called members)",
          ylabel="true-positive rate (members found)", title="ROC, linear axes")
    a.set_aspect("equal")
    a.legend(loc="lower right", fontsize=8)
    b.set(xscale="log", yscale="log", xlim=(floor, 1), ylim=(floor, 1.05), xlabel="false-positive rate (log)",
          ylabel="true-positive rate (log)", title="ROC, log-log: the low-FPR region")
    b.set_aspect("equal")
    for alpha in low_fprs:
        if alpha >= floor:
            b.axvline(alpha, color="black", ls=":", lw=1)
            b.text(alpha, 0.97, f"{alpha:.1%} FPR ", fontsize=8, rotation=90, va="top", ha="right",
                   transform=b.get_xaxis_transform())
    b.text(0.98, 0.02, f"axes end at 1/{n_nonmembers:,} non-members\n(a straight segment = tied scores)",
           transform=b.transAxes, ha="right", va="bottom", fontsize=8, color="dimgrey")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def score_distributions(member_scores: np.ndarray, nonmember_scores: np.ndarray, threshold: float,
                        labels: tuple[str, str] = ("members", "non-members"), what: str = "max softmax score",
                        bins: int = 40, title: str = "") -> plt.Figure:
    """Histograms (fraction of each set) of a score in [0, 1] for members vs non-members, threshold marked.

    Left: linear axis. Right: the same on a logit axis, which spreads out the values piled up near
    1 (and 0); values within 1e-15 of 0 or 1 are drawn at the edge. The legend gives the fraction of
    each set above the threshold: TPR for members, FPR for non-members.
    """
    sm, sn = np.asarray(member_scores, float), np.asarray(nonmember_scores, float)
    tpr, fpr, _ = rates_at_thresholds(sm, sn, np.array([threshold]))
    fig, (a, b) = plt.subplots(1, 2, figsize=(13, 4.4))
    lo, hi = logit_limits(sm, sn, [threshold])
    edges_lin = np.linspace(0, 1, bins + 1)
    edges_logit = expit(np.linspace(logit(lo), logit(hi), bins + 1))
    sets = [(sm, f"{labels[0]} (n={len(sm):,}): {tpr[0]:.1%} above t = TPR", "C0"),
            (sn, f"{labels[1]} (n={len(sn):,}): {fpr[0]:.1%} above t = FPR", "C3")]
    for ax, edges, clip in ((a, edges_lin, (0.0, 1.0)), (b, edges_logit, (lo, hi))):
        for s, lab, color in sets:
            ax.hist(np.clip(s, *clip), bins=edges, weights=np.full(len(s), 1.0 / len(s)), histtype="stepfilled",
                    alpha=0.35, color=color, edgecolor=color, lw=1.4, label=lab)
        ax.axvline(threshold, color="black", lw=1.6, ls="--", label=f"learned threshold t = {threshold:.6g}")
        ax.set_ylabel("fraction of the set")
    a.set(xlim=(0, 1), xlabel=what, title=f"{what}: linear axis")
    if score_axis(b, lo, hi):
        b.set(xlabel=f"{what} (logit axis)", title="the same on a logit axis: spreads out 0.9, 0.99, 0.999 …")
        at_edge = float(np.mean(np.r_[sm, sn] >= 1 - SCORE_EPS))
        if at_edge > 0:
            b.text(0.99, 0.97, f"right edge: {at_edge:.1%} of all scores\nare ≥ 1−10⁻¹⁵ (incl. exactly 1.0)",
                   transform=b.transAxes, ha="right", va="top", fontsize=8, color="dimgrey")
        for lab in b.get_xticklabels():
            lab.set_rotation(30)
    else:
        b.set(xlabel=what, title="the same, zoomed to the range of the scores")
    a.legend(loc="upper left", fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def threshold_explorer(member_scores: np.ndarray, nonmember_scores: np.ndarray, learned: float,
                       current: float | None = None, what: str = "max softmax score") -> plt.Figure:
    """TPR, FPR and precision of "member iff score > t" against the threshold t (logit axis).

    The learned threshold is a dashed line; `current` (e.g. a slider's value) gets markers and a
    read-out. Precision depends on the ratio of members to non-members tested (in the title).
    """
    sm, sn = np.asarray(member_scores, float), np.asarray(nonmember_scores, float)
    lo, hi = logit_limits(sm, sn, [learned])
    grid = np.unique(np.clip(np.r_[sm, sn, lo, hi], lo, hi))
    tpr, fpr, prec = rates_at_thresholds(sm, sn, grid)
    fig, ax = plt.subplots(figsize=(9, 4.6))
    ax.step(grid, tpr, where="post", color="C0", lw=1.8, label="TPR: members called members")
    ax.step(grid, fpr, where="post", color="C3", lw=1.8, label="FPR: non-members called members")
    ax.step(grid, prec, where="post", color="C2", lw=1.8, label="precision: members among those called")
    ax.axhline(len(sm) / (len(sm) + len(sn)), color="C2", ls=":", lw=1, label="precision of guessing")
    ax.axvline(learned, color="black", ls="--", lw=1.4, label=f"learned threshold {learned:.6g}")
    if current is not None:
        ct, cf, cp = (float(v[0]) for v in rates_at_thresholds(sm, sn, np.array([current])))
        ax.axvline(current, color="dimgrey", lw=1)
        for val, color in ((ct, "C0"), (cf, "C3"), (cp, "C2")):
            if np.isfinite(val):
                ax.plot([np.clip(current, lo, hi)], [val], "o", color=color, ms=8, mec="black")
        ax.set_title(f"t = {current:.6g}: TPR {ct:.3f} · FPR {cf:.3f} · precision {cp:.3f}", fontsize=10)
    logit_axis = score_axis(ax, lo, hi)
    ax.set(ylim=(-0.02, 1.02), ylabel="rate",
           xlabel=f"threshold t on the {what} (member iff score > t{'; logit axis' if logit_axis else ''})")
    for lab in ax.get_xticklabels():
        lab.set_rotation(30 if logit_axis else 0)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8,
              title=f"{len(sm):,} members vs {len(sn):,} non-members", title_fontsize=8)
    fig.tight_layout()
    return fig


def threshold_slider(member_scores: np.ndarray, nonmember_scores: np.ndarray, learned: float, *,
                     live: bool = False, n_steps: int = 201,
                     what: str = "max softmax score") -> widgets.interactive | None:
    """An ipywidgets slider over the threshold that redraws `threshold_explorer`, or None unless `live`.

    Pass `live=True` only with a kernel a person can move the slider in (Jupyter); headless runs
    (papermill) keep the default and get None, and the static `threshold_explorer` figure stands in.
    The slider's stops are quantiles of all scores, so it moves evenly through the data however much
    of it is piled up near 1; it starts at the stop nearest the learned threshold. Display the
    returned `ipywidgets.interactive` as a cell's last expression.
    """
    if not live:
        return None
    pooled = np.r_[np.asarray(member_scores, float), np.asarray(nonmember_scores, float)]
    stops = np.unique(np.r_[np.quantile(pooled, np.linspace(0, 1, n_steps)), learned])
    start = float(stops[np.argmin(np.abs(stops - learned))])
    slider = widgets.SelectionSlider(options=[(f"{t:.6g}", float(t)) for t in stops], value=start,
                                     description="threshold", continuous_update=False,
                                     layout=widgets.Layout(width="90%"))

    def draw(threshold: float) -> None:
        fig = threshold_explorer(member_scores, nonmember_scores, learned, current=threshold, what=what)
        display(fig)
        plt.close(fig)

    return widgets.interactive(draw, threshold=slider)
