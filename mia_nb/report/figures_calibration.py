"""Figures of notebook 06 (calibration): reliability diagrams, the calibration trade-off, FPR per pool and variant."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.patches import Patch

from mia_nb.attacks.metrics import ece, reliability_bins
from mia_nb.report.figure_style import place_labels


def reliability_diagrams(outputs: dict, n_bins: int = 15, ncols: int = 4) -> plt.Figure:
    """Reliability diagram per variant (small multiples): accuracy vs confidence in `n_bins` bins, ECE in the title.

    `outputs` maps a variant name to its held-out Outputs (anything with .probs [N, K] and .labels [N]).
    """
    if not outputs:
        raise ValueError("reliability_diagrams: no variants given")
    n = len(outputs)
    ncols = min(ncols, n)
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 3.3 * nrows + 0.5), squeeze=False,
                             sharex=True, sharey=True)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    width = edges[1] - edges[0]
    for ax, (name, out) in zip(axes.flat, outputs.items()):
        probs, labels = np.asarray(out.probs), np.asarray(out.labels)
        w, conf, acc = reliability_bins(probs, labels, n_bins)
        used = w > 0
        left = edges[:-1][used]
        ax.bar(left, acc[used], width=width, align="edge", color="C0", alpha=0.6, edgecolor="white", lw=0.5)
        over = conf[used] > acc[used]
        lo, hi = np.minimum(acc, conf)[used], np.maximum(acc, conf)[used]
        ax.bar(left, hi - lo, bottom=lo, width=width, align="edge", fill=False, lw=0,
               hatch="////", edgecolor=np.where(over, "C3", "darkgreen"))
        ax.hlines(conf[used], left, left + width, color="k", lw=1.2)
        ax.plot([0, 1], [0, 1], color="0.3", ls="--", lw=1)
        ax.stairs(w, edges, color="0.45", lw=1, baseline=None)
        ax.set_title(f"{name}\nECE {ece(probs, labels, n_bins):.3f}", fontsize=9)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
    for ax in axes.flat[n:]:
        ax.axis("off")
    for ax in axes[-1]:
        ax.set_xlabel("confidence (max score)")
    for ax in axes[:, 0]:
        ax.set_ylabel("accuracy")
    handles = [Patch(color="C0", label="accuracy per bin"),
               plt.Line2D([], [], color="k", lw=1.2, label="mean confidence per bin"),
               Patch(fill=False, hatch="////", edgecolor="C3", lw=0, label="overconfident gap"),
               Patch(fill=False, hatch="////", edgecolor="darkgreen", lw=0, label="underconfident gap"),
               plt.Line2D([], [], color="0.45", lw=1, label="fraction of samples in the bin")]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8, frameon=False)
    fig.suptitle(f"Reliability of the target on held-out data ({n_bins} equal-width bins)", fontsize=11)
    fig.tight_layout(rect=(0, 0.06 / nrows, 1, 1))
    return fig


def calibration_tradeoff(table: pd.DataFrame, attack: str = "threshold") -> plt.Figure:
    """ECE (x) vs held-out AUROC, TPR at 1% FPR (with CI) and FPR (held-out, mean OOD); one point per variant.

    `table`: mia_nb.claims.tradeoff.per_variant (index = variant; columns ece, family, auroc, tpr_at_1pct_fpr[_lo|_hi],
    fpr_heldout, mean_ood_fpr).
    """
    families = list(dict.fromkeys(table["family"]))
    colors = {f: f"C{i}" for i, f in enumerate(families)}
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8))
    x = table["ece"].to_numpy(dtype=float)
    names = list(table.index)
    panels = [("auroc", "held-out AUROC", "Leakage: AUROC on held-out data"),
              ("tpr_at_1pct_fpr", "held-out TPR at 1% FPR", "Leakage: TPR at 1% FPR (95% CI)"),
              ("mean_ood_fpr", "FPR", "False positives: mean over OOD pools (●), held-out (○)")]
    for ax, (col, ylabel, title) in zip(axes, panels):
        y = table[col].to_numpy(dtype=float)
        if col == "tpr_at_1pct_fpr":
            err = np.vstack([y - table["tpr_at_1pct_fpr_lo"], table["tpr_at_1pct_fpr_hi"] - y])
            ax.errorbar(x, y, yerr=np.clip(err, 0, None), fmt="none", ecolor="0.65", lw=1, capsize=2, zorder=1)
        if col == "mean_ood_fpr":
            for xi, yo, yh, fam in zip(x, y, table["fpr_heldout"], table["family"]):
                ax.plot([xi, xi], [yh, yo], color=colors[fam], lw=0.8, alpha=0.5, zorder=1)
                ax.scatter(xi, yh, facecolors="white", edgecolors=colors[fam], s=40, zorder=2)
        ax.scatter(x, y, c=[colors[f] for f in table["family"]], s=45, zorder=3, edgecolors="white", lw=0.5)
        ax.set(xlabel="ECE of the target (held-out, 15 bins)", ylabel=ylabel)
        ax.set_title(title, fontsize=10)
        ax.margins(x=0.12, y=0.1)
    fig.tight_layout(rect=(0, 0.05, 1, 0.95))
    label_colors = [colors[f] for f in table["family"]]
    for ax, (col, _, _) in zip(axes, panels):
        place_labels(ax, x, table[col].to_numpy(dtype=float), names, colors=label_colors)  # appended by nb 07
    handles = [plt.Line2D([], [], marker="o", ls="", color=colors[f], label=f.replace("_", " ")) for f in families]
    fig.legend(handles=handles, loc="lower center", ncol=len(families), fontsize=8, frameon=False)
    fig.suptitle(f"The calibration trade-off ({attack} attack): one point per variant", fontsize=11)
    return fig


def fpr_by_pool(fpr: pd.DataFrame, baseline: str = "vanilla", attack: str = "threshold") -> plt.Figure:
    """FPR per (variant, non-member set) as a heatmap, and its change against `baseline` (diverging colours).

    `fpr`: rows = variants, columns = non-member sets (mia_nb.claims.tradeoff.fpr_matrix).
    """
    if baseline not in fpr.index:
        raise ValueError(f"fpr_by_pool: no row for baseline {baseline!r}")
    delta = fpr - fpr.loc[baseline]
    h = 0.42 * len(fpr) + 1.8
    w = 0.62 * fpr.shape[1] + 2.5
    fig, (a, b) = plt.subplots(1, 2, figsize=(2 * w, h))
    kw = {"annot": True, "fmt": ".2f", "annot_kws": {"fontsize": 7}, "linewidths": 0.5, "linecolor": "white"}
    sns.heatmap(fpr, vmin=0, vmax=1, cmap="Reds", ax=a, cbar_kws={"label": "FPR"}, **kw)
    a.set_title(f"FPR of the {attack} attack per non-member set", fontsize=10)
    lim = max(0.05, float(np.nanmax(np.abs(delta.to_numpy()))))
    sns.heatmap(delta, vmin=-lim, vmax=lim, cmap="RdBu_r", center=0, ax=b,
                cbar_kws={"label": f"FPR − FPR of {baseline}"}, **kw)
    b.set_title(f"Change against {baseline} (blue: fewer false positives)", fontsize=10)
    for ax in (a, b):
        ax.set_xlabel("non-member set")
        ax.set_ylabel("")
        ax.tick_params(axis="x", labelrotation=45, labelsize=8)
        ax.tick_params(axis="y", labelrotation=0, labelsize=8)
        for t in ax.get_xticklabels():
            t.set_ha("right")
    fig.tight_layout()
    return fig
