"""Figures of notebook 01 (data) and every image grid: images per class, per split, per pool; split sizes."""

from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch

from mia_nb.report.figure_style import show_image


def image_grid(images: torch.Tensor, titles: Sequence[str] | None = None, ncols: int = 10,
               title: str = "", size: float = 1.2) -> plt.Figure:
    """A grid of images (uint8 or [0,1], CHW) with optional per-image titles."""
    n = len(images)
    nrows = max(1, int(np.ceil(n / ncols)))
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * size, nrows * size * 1.15), squeeze=False)
    for i, ax in enumerate(axes.flat):
        if i < n:
            show_image(ax, images[i])
            if titles is not None:
                ax.set_title(titles[i], fontsize=7)
        else:
            ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def class_grid(images: torch.Tensor, labels: torch.Tensor, classes: Sequence[str], per_class: int = 8,
               seed: int = 0, title: str = "") -> plt.Figure:
    """`per_class` random images of each class, one row per class, class names on the left."""
    rng = np.random.default_rng(seed)
    labels_np = labels.numpy()
    n_classes = len(classes) if classes else int(labels_np.max()) + 1
    fig, axes = plt.subplots(n_classes, per_class, figsize=(per_class * 1.0, n_classes * 1.0), squeeze=False)
    for c in range(n_classes):
        idx = np.flatnonzero(labels_np == c)
        pick = rng.choice(idx, size=min(per_class, len(idx)), replace=False) if len(idx) else []
        for j, ax in enumerate(axes[c]):
            if j < len(pick):
                show_image(ax, images[pick[j]])
            else:
                ax.axis("off")
        axes[c, 0].set_ylabel(classes[c] if classes else str(c), rotation=0, ha="right", va="center", fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def pool_rows_grid(images: dict[str, torch.Tensor], titles: dict[str, Sequence[str]] | None = None,
                   row_labels: dict[str, str] | None = None, ncols: int = 8, title: str = "",
                   size: float = 1.1) -> plt.Figure:
    """One row of images per pool ([0,1] CHW), the pool's name (or row label) on the left; empty cells blank."""
    names = list(images)
    fig, axes = plt.subplots(len(names), ncols, figsize=(ncols * size + 1.6, len(names) * size * (1.35 if titles else 1.05)),
                             squeeze=False)
    for r, name in enumerate(names):
        imgs = images[name]
        for j, ax in enumerate(axes[r]):
            if j < len(imgs):
                show_image(ax, imgs[j])
                if titles is not None and j < len(titles.get(name, [])):
                    ax.set_title(titles[name][j], fontsize=7)
            else:
                ax.set_xticks([])
                ax.set_yticks([])
                for s in ax.spines.values():
                    s.set_visible(False)
                ax.set_facecolor("none")
        label = (row_labels or {}).get(name, name)
        axes[r, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)
        if not len(imgs):
            axes[r, 0].text(0.0, 0.5, "none", transform=axes[r, 0].transAxes, va="center", fontsize=8, color="0.4")
    fig.tight_layout()
    if title:  # above the first row's image titles (the saved figure's bounding box is tight)
        fig.suptitle(title, y=1.0 + (0.3 if titles else 0.05) / fig.get_figheight(), va="bottom")
    return fig


def split_overview(table: pd.DataFrame, balance: pd.DataFrame) -> plt.Figure:
    """Split sizes (bars) and class balance per split (heatmap of class fractions)."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(13, 4), gridspec_kw={"width_ratios": [1, 1.6]})
    sns.barplot(data=table, y="part", x="n_images", hue="role", dodge=False, legend=False, ax=a)
    a.set_xlabel("images")
    a.set_ylabel("")
    a.set_title("Split sizes")
    sns.heatmap(balance, annot=True, fmt=".2f", cmap="Blues", cbar=False, ax=b, annot_kws={"fontsize": 7})
    b.set_title("Class fraction per split (stratified: rows match)")
    b.set_ylabel("")
    fig.tight_layout()
    return fig
