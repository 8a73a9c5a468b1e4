"""Figures of notebook 05 (non-member pools): FPR heatmap, ROC metrics and MMPS per pool, the unbounded
supply of generated images, GAN quality. (The pools' image grids are in `figures_data`.)"""

from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from mia_nb.report import figure_style  # noqa: F401  (sets the theme)


def fpr_heatmap(fpr: pd.DataFrame, title: str = "") -> plt.Figure:
    """FPR of every attack (columns) on every non-member pool (rows), annotated, 0 to 1."""
    fig, ax = plt.subplots(figsize=(1.5 * fpr.shape[1] + 3.0, 0.42 * fpr.shape[0] + 1.6))
    sns.heatmap(fpr.astype(float), annot=True, fmt=".3f", cmap="Reds", vmin=0, vmax=1, linewidths=0.5,
                cbar_kws={"label": "false-positive rate"}, ax=ax, annot_kws={"fontsize": 8})
    ax.set_xlabel("attack (decision fitted on the shadow)")
    ax.set_ylabel("non-member pool")
    ax.set_title(title or "Share of each pool the attacks call 'member'")
    fig.tight_layout()
    return fig


def pool_roc_metrics(rows: pd.DataFrame, pools: Sequence[str] | None = None) -> plt.Figure:
    """AUROC and TPR at 1% / 0.1% FPR (95% bootstrap CI) of every attack with each pool as the negatives."""
    pools = list(pools) if pools is not None else list(dict.fromkeys(rows["nonmember_set"]))
    attacks = list(dict.fromkeys(rows["attack"]))
    panels = [("auroc", None, "AUROC (0.5 = chance)"), ("tpr_at_1pct_fpr", "tpr_at_1pct_fpr", "TPR at 1% FPR"),
              ("tpr_at_01pct_fpr", "tpr_at_01pct_fpr", "TPR at 0.1% FPR")]
    fig, axes = plt.subplots(1, 3, figsize=(14, 0.38 * len(pools) + 1.8), sharey=True)
    y0 = np.arange(len(pools))[::-1]
    step = 0.7 / max(len(attacks), 1)
    for i, a in enumerate(attacks):
        sub = rows[rows.attack == a].set_index("nonmember_set").reindex(pools)
        y = y0 + 0.35 - step / 2 - i * step
        for ax, (col, ci, _) in zip(axes, panels):
            x = sub[col].to_numpy(float)
            err = None
            if ci:
                err = np.vstack([x - sub[f"{ci}_lo"].to_numpy(float), sub[f"{ci}_hi"].to_numpy(float) - x]).clip(0)
            ax.errorbar(x, y, xerr=err, fmt="o", ms=4, capsize=2, color=f"C{i}", label=a)
    for ax, (_, _, label) in zip(axes, panels):
        ax.set_xlim(-0.02, 1.02)
        ax.set_xlabel(label)
    axes[0].axvline(0.5, color="0.3", ls="--", lw=1)
    axes[0].set_yticks(y0)
    axes[0].set_yticklabels(pools)
    axes[0].set_ylabel("non-member pool (the negatives)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.0, 0.9), fontsize=8, title="attack",
               title_fontsize=8)
    fig.suptitle("Members against each pool: ranking quality (AUROC) and true positives at a low false-positive rate")
    fig.tight_layout()
    return fig


def mmps_by_pool(table: pd.DataFrame) -> plt.Figure:
    """Mean max prediction score per pool (bars coloured by kind), the members' MMPS as a reference line."""
    members = table[table.set == "members"]
    pools = table[table.set != "members"]
    fig, ax = plt.subplots(figsize=(8, 0.38 * len(pools) + 1.6))
    sns.barplot(data=pools, y="set", x="mmps", hue="group", dodge=False, ax=ax)
    for i, v in enumerate(pools["mmps"]):
        ax.text(v - 0.01 if v > 0.9 else v + 0.01, i, f"{v:.3f}", va="center", ha="right" if v > 0.9 else "left",
                fontsize=8, bbox={"facecolor": "white", "alpha": 0.7, "lw": 0, "pad": 1})
    if len(members):
        m = float(members["mmps"].iloc[0])
        ax.axvline(m, color="k", ls="--", lw=1.2, label=f"members: {m:.3f}")
    ax.set_xlim(0, 1)
    ax.set_xlabel("mean max prediction score (MMPS) of the target")
    ax.set_ylabel("non-member pool")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), title="kind", title_fontsize=8)
    ax.set_title("How confident the target is on each pool")
    fig.tight_layout()
    return fig


def unbounded_supply(table: pd.DataFrame) -> plt.Figure:
    """False positives (left) and FPR with its 95% CI (right) against the number of generated images scored."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4))
    for i, (name, g) in enumerate(table.groupby("attack", sort=False)):
        g = g.sort_values("n_generated")
        a.plot(g.n_generated, g.false_positives, marker="o", color=f"C{i}", label=name)
        b.plot(g.n_generated, g.fpr, marker="o", color=f"C{i}", label=name)
        b.fill_between(g.n_generated, g.fpr_lo, g.fpr_hi, color=f"C{i}", alpha=0.15)
    a.set(xlabel="generated images scored (first n)", ylabel="false positives (fakes called 'member')",
          title="False positives against the number of fakes")
    b.set(xlabel="generated images scored (first n)", ylabel="false-positive rate (95% Wilson CI)", ylim=(0, 1),
          title="False-positive rate against the number of fakes")
    for ax in (a, b):
        ax.set_xlim(0, float(table.n_generated.max()) * 1.05)
    a.set_ylim(0, max(1.0, float(table.false_positives.max())) * 1.1)
    a.legend(fontsize=8, title="attack", title_fontsize=8)
    fig.tight_layout()
    return fig


def gan_quality_bars(table: pd.DataFrame) -> plt.Figure:
    """Per class: target accuracy on images generated for the class vs on real held-out images of it."""
    t = table[table["class"] != "all"]
    x = np.arange(len(t))
    fig, ax = plt.subplots(figsize=(max(6, 0.8 * len(t) + 2), 3.8))
    ax.bar(x - 0.2, t.accuracy_generated, 0.4, label="generated for the class")
    ax.bar(x + 0.2, t.accuracy_heldout, 0.4, label="real held-out images")
    ax.set_xticks(x)
    ax.set_xticklabels(t["class"], rotation=30, ha="right", fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("target accuracy")
    ax.set_title("GAN quality: does the target see the class the image was generated for?")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
