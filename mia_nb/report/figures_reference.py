"""Figures of notebook 08 (reference-model attacks): one image's reference distribution, TPR against K.

Notebook 08's ROC curves and FPR heatmaps reuse `figures_attacks.roc_curves` and `figures_ood.fpr_heatmap`.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from mia_nb.report import figure_style  # noqa: F401  (sets the theme)


def reference_example(cases: dict[str, tuple[float, np.ndarray, np.ndarray]], title: str = "") -> plt.Figure:
    """Per case (title → target statistic, OUT and IN reference statistics): where the target's value falls
    in that image's own reference distribution — LiRA's per-example calibration in one picture."""
    fig, axes = plt.subplots(1, len(cases), figsize=(5.2 * len(cases), 3.4), squeeze=False)
    for ax, (name, (x, out, inn)) in zip(axes[0], cases.items()):
        both = np.concatenate([out, inn, [x]])
        bins = np.linspace(both.min() - 1, both.max() + 1, 30)
        ax.hist(out, bins=bins, alpha=0.6, color="tab:blue", label=f"OUT models ({len(out)})")
        if len(inn):
            ax.hist(inn, bins=bins, alpha=0.6, color="tab:orange", label=f"IN models ({len(inn)})")
        ax.axvline(x, color="k", lw=2, label="the target")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("log(p_y / (1 − p_y)) of this image")
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("reference models")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def tpr_vs_k(df: pd.DataFrame, alpha_suffix: str = "01pct") -> plt.Figure:
    """TPR at a low FPR (with its Clopper–Pearson interval) as the number of reference models grows."""
    col = f"tpr_at_{alpha_suffix}_fpr"
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for attack, g in df.groupby("attack", sort=False):
        ax.errorbar(g["k"], g[col], yerr=[g[col] - g[f"{col}_lo"], g[f"{col}_hi"] - g[col]], marker="o", capsize=3,
                    label=attack)
    ax.set_xscale("log", base=2)
    ax.set_xticks(sorted(df["k"].unique()), [str(k) for k in sorted(df["k"].unique())])
    ax.set_xlabel("reference models K")
    ax.set_ylabel(f"TPR at {'0.1' if alpha_suffix == '01pct' else '1'}% FPR")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
