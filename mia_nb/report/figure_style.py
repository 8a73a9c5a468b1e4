"""What every figure shares: the seaborn theme, image display, a logit axis for scores, label placement.

Importing any `figures_*` module imports this one and so sets the theme. Nothing here computes a
result of the study; these helpers only lay out axes.
"""

from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
import torch
from matplotlib.text import Text
from matplotlib.ticker import NullFormatter, NullLocator
from matplotlib.transforms import Bbox
from scipy.special import expit, logit

sns.set_theme(style="whitegrid", context="notebook")

SCORE_EPS = 1e-15  # scores within this of 0 or 1 are drawn at the edge of a logit axis


def show_image(ax: plt.Axes, img: torch.Tensor) -> None:
    """Draw one uint8 or [0,1] CHW image on `ax`, without ticks."""
    arr = img.detach().cpu().float()
    if arr.max() > 1.0:
        arr = arr / 255.0
    arr = arr.clamp(0, 1).permute(1, 2, 0).numpy()
    ax.imshow(arr[..., 0] if arr.shape[-1] == 1 else arr, cmap="gray" if arr.shape[-1] == 1 else None,
              vmin=0, vmax=1)
    ax.set_xticks([])
    ax.set_yticks([])


def logit_limits(*arrays: np.ndarray) -> tuple[float, float]:
    """x-limits for a logit axis that hold every value (clipped to [eps, 1 - eps]) with a margin."""
    v = np.clip(np.concatenate([np.atleast_1d(np.asarray(a, float)) for a in arrays]), SCORE_EPS, 1 - SCORE_EPS)
    lo, hi = logit(v.min()), logit(v.max())
    pad = max(0.05 * (hi - lo), 0.5)
    return float(expit(lo - pad)), float(min(expit(hi + pad), 1 - SCORE_EPS / 10))


def score_axis(ax: plt.Axes, lo: float, hi: float) -> bool:
    """x-axis over scores in [lo, hi]: a logit scale with 0.9, 0.99, … ticks when they span the tails.

    Returns True when the logit scale was used (a span under 4 logit units stays linear).
    """
    ax.set_xlim(lo, hi)
    if logit(hi) - logit(lo) < 4:
        return False
    ax.set_xscale("logit")
    ax.set_xlim(lo, hi)
    ks = range(1, 16)
    ticks = [(10.0 ** -k, f"{10.0 ** -k:g}" if k <= 3 else f"$10^{{-{k}}}$") for k in ks]
    ticks += [(0.5, "0.5")] + [(1 - 10.0 ** -k, f"{1 - 10.0 ** -k:.{k}f}" if k <= 3 else f"$1-10^{{-{k}}}$")
                               for k in ks]
    inside = [t for t in sorted(ticks) if lo <= t[0] <= hi]
    inside = inside[::-1][::max(1, int(np.ceil(len(inside) / 8)))][::-1]
    ax.set_xticks([v for v, _ in inside], [lab for _, lab in inside])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_minor_formatter(NullFormatter())
    return True


def place_labels(ax: plt.Axes, xs: np.ndarray, ys: np.ndarray, names: Sequence[str],
                 colors: Sequence | None = None, fontsize: int = 7) -> None:
    """Label points (in their colours) so that labels overlap neither each other, the points nor the axes' edges."""
    renderer = ax.figure.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    pts = ax.transData.transform(np.column_stack([xs, ys]))
    placed = [Bbox.from_extents(px - 5, py - 5, px + 5, py + 5) for px, py in pts]  # the markers
    order = np.argsort(-np.asarray(ys, dtype=float), kind="stable")
    candidates = [(side, 4 + 10 * s * k) for k in range(0, 10) for s in ((1,) if k == 0 else (1, -1))
                  for side in (1, -1)]
    for i in order:
        for side, dy in candidates:
            text = ax.annotate(str(names[i]), (xs[i], ys[i]), textcoords="offset points", xytext=(6 * side, dy),
                               fontsize=fontsize, ha="left" if side > 0 else "right",
                               color=colors[i] if colors is not None else "k",
                               va="bottom" if dy >= 0 else "top",
                               arrowprops={"arrowstyle": "-", "color": "0.6", "lw": 0.5} if abs(dy) > 4 else None)
            text.update_positions(renderer)
            box = Text.get_window_extent(text, renderer).expanded(1.02, 1.1)  # the text only, not its leader line
            inside = frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
            if inside and not any(box.overlaps(b) for b in placed):
                placed.append(box)
                break
            text.remove()
        else:  # no free spot: label it anyway
            ax.annotate(str(names[i]), (xs[i], ys[i]), textcoords="offset points", xytext=(6, 4), fontsize=fontsize,
                        color=colors[i] if colors is not None else "k")
