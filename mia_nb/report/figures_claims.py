"""Figure of notebook 09 (claims): every claim's interval against its no-effect band, block by block."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from mia_nb.report import figure_style  # noqa: F401  (sets the theme)

COLOURS = {"holds": "tab:green", "does not hold": "tab:red", "no effect": "tab:blue", "undetermined": "tab:orange",
           "not measured": "tab:gray"}


def claims_forest(df: pd.DataFrame) -> plt.Figure:
    """Each claim's 95% interval in units of its own band, claimed direction to the right, grouped by block.

    x = (measured − reference) / band, negated for '<' claims (reference: 0 for a difference, the level for
    a level claim): the grey zone [−1, 1] is the no-effect band, so a '>'/'<' claim holds when its interval
    lies right of +1, does not hold left of −1, shows no effect inside; an equivalence claim ('=', squares)
    holds inside the band. Filled markers: "holds" after Holm's adjustment over the paper's blocks.
    """
    n = len(df)
    fig, ax = plt.subplots(figsize=(9.5, 0.36 * n + 1.8))
    ax.axvspan(-1, 1, color="0.9", zorder=0)
    reference = df["reference"] if "reference" in df else pd.Series(0.0, index=df.index)
    for i, (r, ref) in enumerate(zip(df.itertuples(), reference)):
        y = n - 1 - i
        if np.isnan(r.measured):
            continue
        sign = -1.0 if r.side == "<" else 1.0
        x, lo, hi = (sign * (v - ref) / r.band for v in (r.measured, r.ci_lo, r.ci_hi))
        lo, hi = min(lo, hi), max(lo, hi)
        colour = COLOURS.get(r.verdict, "k")
        filled = getattr(r, "holm", "") == "holds"
        ax.errorbar(x, y, xerr=[[x - lo], [hi - x]], fmt="o" if r.side != "=" else "s", color=colour, capsize=3,
                    markerfacecolor=colour if filled else "white")
    if "block" in df:
        blocks = list(df.block)
        for i in range(1, n):
            if blocks[i] != blocks[i - 1]:
                ax.axhline(n - i - 0.5, color="0.6", lw=0.8)
        for b in dict.fromkeys(blocks):
            rows = [i for i, x in enumerate(blocks) if x == b]
            ax.text(1.01, n - 1 - (rows[0] + rows[-1]) / 2, b, transform=ax.get_yaxis_transform(), fontsize=8,
                    va="center", rotation=-90)
    labels = [f"{c} ({s})" if "n_seeds" in df else c for c, s in zip(df.claim, df.get("n_seeds", df.claim))]
    ax.set_yticks(range(n))
    ax.set_yticklabels([c if len(c) < 80 else c[:77] + "…" for c in labels[::-1]], fontsize=7)
    ax.set_ylim(-0.7, n - 0.3)
    ax.set_xscale("symlog", linthresh=2)
    ax.set_xlabel("effect in units of the claim's no-effect band (grey), claimed direction → right\n"
                  "squares: equivalence claims; filled: holds after Holm; (n): seeds")
    handles = [plt.Line2D([], [], marker="o", ls="", color=c, label=v) for v, c in COLOURS.items()]
    ax.legend(handles=handles, loc="lower right", fontsize=7)
    ax.set_title("The paper's findings (and extensions) as tests on this run")
    fig.tight_layout()
    return fig
