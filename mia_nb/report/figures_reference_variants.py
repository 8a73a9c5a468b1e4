"""Notebook 08's variant figure: TPR at low FPR per variant, the paper's threshold attack beside LiRA, each variant
attacked by reference models of its own kind (the table of `mia_nb.attacks.reference_variants.run`)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from mia_nb.report import figure_style  # noqa: F401  (sets the theme)

POINTS = {"01pct": 0.001, "1pct": 0.01}  # column suffix -> FPR, one panel each
SHOWN = {"01pct": "0.1%", "1pct": "1%"}
LABELS = {"threshold": "threshold attack (max score)", "lira_online": "LiRA online", "lira_offline": "LiRA offline"}


def tpr_by_variant(table: pd.DataFrame, attacks: tuple[str, ...] = ("threshold", "lira_online")) -> plt.Figure:
    """One panel per FPR (0.1%, 1%): TPR per variant (table order), the attacks side by side, Clopper–Pearson
    intervals as error bars; a dashed line at TPR = FPR (chance)."""
    need = {"variant", "attack", *(f"tpr_at_{s}_fpr{e}" for s in POINTS for e in ("", "_lo", "_hi"))}
    missing = sorted(need - set(table.columns))
    if missing:
        raise ValueError(f"tpr_by_variant: the table lacks the columns {missing} (pass reference_variants.run's table)")
    shown = [a for a in attacks if a in set(table.attack)]
    if not shown:
        raise ValueError(f"tpr_by_variant: none of the attacks {list(attacks)} is in the table ({sorted(set(table.attack))})")
    names = list(dict.fromkeys(table.variant))
    x = np.arange(len(names))
    colors = dict(zip(shown, sns.color_palette("tab10", len(shown))))
    width = 0.7 / len(shown)
    fig, axes = plt.subplots(1, len(POINTS), figsize=(1.2 * len(names) * len(POINTS) + 3, 3.8), squeeze=False)
    for ax, (suffix, fpr) in zip(axes[0], POINTS.items()):
        col = f"tpr_at_{suffix}_fpr"
        for i, attack in enumerate(shown):
            rows = table[table.attack == attack].set_index("variant").reindex(names)
            y = rows[col].to_numpy(dtype=float)
            err = np.vstack([y - rows[f"{col}_lo"].to_numpy(dtype=float), rows[f"{col}_hi"].to_numpy(dtype=float) - y])
            ax.errorbar(x + (i - (len(shown) - 1) / 2) * width, y, yerr=err, fmt="o", capsize=3, color=colors[attack],
                        label=LABELS.get(attack, attack))
        ax.axhline(fpr, color="grey", ls="--", lw=1, label="chance (TPR = FPR)")
        ax.set_xticks(x, names, rotation=30, ha="right")
        ax.set_ylim(bottom=0)
        ax.set_title(f"TPR at {SHOWN[suffix]} FPR")
        ax.set_xlabel("variant (attacked by reference models of its own kind)")
    axes[0][0].set_ylabel("TPR (members found)")
    axes[0][-1].legend(fontsize=8)
    fig.tight_layout()
    return fig
