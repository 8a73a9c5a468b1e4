"""Figures of notebook 07 (defenses): the separation KDEs of the paper and privacy against utility."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from mia_nb.report.figure_style import place_labels


def separation_kde(samples: dict[str, dict[str, np.ndarray]], table: pd.DataFrame | None = None,
                   ood_name: str = "OOD", ncols: int = 4) -> plt.Figure:
    """The paper's KDE figure: per variant, densities of the max score of members, held-out and one OOD pool.

    Each panel has its own x range. When the OOD curve peaks far above the member / held-out curves,
    the y axis is cut at those two curves (the OOD peak is marked as off scale).
    """
    names = list(samples)
    if not names:
        raise ValueError("separation_kde: no variants to plot")
    ncols = min(ncols, len(names))
    nrows = int(np.ceil(len(names) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.8 * ncols, 2.9 * nrows + 0.8), squeeze=False,
                             layout="constrained")
    style = {"members": ("members", "tab:blue", "-"), "heldout": ("held-out non-members", "tab:orange", "--"),
             "ood": (f"{ood_name} non-members", "tab:green", ":")}
    w1 = table.set_index("variant") if table is not None else None
    for i, (ax, name) in enumerate(zip(axes.flat, names)):
        peaks = {}
        for key, (label, color, ls) in style.items():
            x = np.asarray(samples[name][key], dtype=float)
            n_polys = len(ax.collections)
            if np.ptp(x) < 1e-9:  # a point mass has no density: draw it as a line
                ax.axvline(x[0], color=color, lw=2, ls=ls, label=label)
                peaks[key] = np.inf
            else:
                sns.kdeplot(x=x, ax=ax, fill=True, alpha=0.2, lw=1.6, ls=ls, color=color, label=label, cut=0,
                            warn_singular=False)
                peaks[key] = max((float(p.vertices[:, 1].max()) for c in ax.collections[n_polys:]
                                  for p in c.get_paths() if len(p.vertices)), default=0.0)
        inner = max(peaks["members"], peaks["heldout"])
        if np.isfinite(inner) and inner > 0 and peaks["ood"] > 3 * inner:
            ax.set_ylim(0, 1.25 * inner)
            ax.annotate(f"{ood_name} peak off scale ↑", (0.98, 0.97), xycoords="axes fraction", ha="right", va="top",
                        fontsize=7, color="tab:green")
        title = name
        if w1 is not None and name in w1.index:
            r = w1.loc[name]
            title += f"\nW₁ held-out {r['w1_member_heldout']:.3f} · {ood_name} {r['w1_member_ood']:.3f}"
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("max score", fontsize=9)
        ax.set_ylabel("density" if i % ncols == 0 else "", fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in axes.flat[len(names):]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=3, frameon=False)
    fig.suptitle("Max score of the target: members vs non-members (each panel has its own x range)")
    return fig


def privacy_utility(table: pd.DataFrame, attack: str = "threshold") -> plt.Figure:
    """Held-out accuracy (y) against attack AUROC, TPR at 1% FPR (held-out) and mean OOD FPR, one point per variant.

    `table`: index = variant, columns family, heldout_acc, auroc, tpr_at_1pct_fpr(_lo, _hi), mean_ood_fpr.
    """
    need = {"family", "heldout_acc", "auroc", "tpr_at_1pct_fpr", "mean_ood_fpr"}
    if table.empty or not need <= set(table.columns):
        raise ValueError(f"privacy_utility: need a non-empty table with columns {sorted(need)}")
    families = list(dict.fromkeys(table["family"]))
    colors = dict(zip(families, sns.color_palette("tab10", len(families))))
    panels = [("auroc", "attack AUROC (held-out non-members)", 0.5),
              ("tpr_at_1pct_fpr", "attack TPR at 1% FPR (held-out), 95% CI", 0.01),
              ("mean_ood_fpr", "attack FPR, mean over OOD pools", None)]
    fig, axes = plt.subplots(1, 3, figsize=(17, 5.8), sharey=True, layout="constrained")
    y = table["heldout_acc"].to_numpy(float)
    for ax, (col, xlabel, chance) in zip(axes, panels):
        x = table[col].to_numpy(float)
        for fam in families:
            sel = (table["family"] == fam).to_numpy()
            xerr = None
            if col == "tpr_at_1pct_fpr" and {f"{col}_lo", f"{col}_hi"} <= set(table.columns):
                lo, hi = table[f"{col}_lo"].to_numpy(float)[sel], table[f"{col}_hi"].to_numpy(float)[sel]
                xerr = np.vstack([np.clip(x[sel] - lo, 0, None), np.clip(hi - x[sel], 0, None)])
            star = fam == "vanilla"  # the reference every other variant is compared with
            ax.errorbar(x[sel], y[sel], xerr=xerr, fmt="*" if star else "o", ms=13 if star else 7, color=colors[fam],
                        mec="k", mew=0.6,
                        ecolor=colors[fam], elinewidth=0.8, alpha=0.9, capsize=2, label=fam, zorder=3)
        if chance is not None:
            ax.axvline(chance, color="gray", ls=":", lw=1)
            ax.annotate("chance", (chance, 0.02), xycoords=("data", "axes fraction"), fontsize=7, color="gray",
                        xytext=(2, 0), textcoords="offset points")
        ax.set_xlabel(xlabel)
    lo_y, hi_y = np.nanmin(y), np.nanmax(y)
    pad = max(hi_y - lo_y, 0.02)
    axes[0].set_ylim(lo_y - 0.15 * pad, hi_y + 0.45 * pad)  # room above the top points for their labels
    axes[0].set_ylabel("held-out accuracy (utility)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=len(families), frameon=False)
    fig.suptitle(f"Privacy–utility: every variant of notebooks 04–07 ({attack} attack)")
    fig.canvas.draw()  # fix the layout before placing labels in screen space
    fig.set_layout_engine("none")
    for ax, (col, _, _) in zip(axes, panels):
        place_labels(ax, table[col].to_numpy(float), y, list(table.index),
                      [sns.set_hls_values(colors[f], l=0.35) for f in table["family"]])
    return fig
