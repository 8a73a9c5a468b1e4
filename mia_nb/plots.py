"""Figures. Each function returns a matplotlib Figure; the notebook saves and shows it."""

from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch

sns.set_theme(style="whitegrid", context="notebook")


def _show_image(ax: plt.Axes, img: torch.Tensor) -> None:
    """Draw one uint8 or [0,1] CHW image on `ax`, without ticks."""
    arr = img.detach().cpu().float()
    if arr.max() > 1.0:
        arr = arr / 255.0
    arr = arr.clamp(0, 1).permute(1, 2, 0).numpy()
    ax.imshow(arr[..., 0] if arr.shape[-1] == 1 else arr, cmap="gray" if arr.shape[-1] == 1 else None,
              vmin=0, vmax=1)
    ax.set_xticks([])
    ax.set_yticks([])


def image_grid(images: torch.Tensor, titles: Sequence[str] | None = None, ncols: int = 10,
               title: str = "", size: float = 1.2) -> plt.Figure:
    """A grid of images (uint8 or [0,1], CHW) with optional per-image titles."""
    n = len(images)
    nrows = max(1, int(np.ceil(n / ncols)))
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * size, nrows * size * 1.15), squeeze=False)
    for i, ax in enumerate(axes.flat):
        if i < n:
            _show_image(ax, images[i])
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
                _show_image(ax, images[pick[j]])
            else:
                ax.axis("off")
        axes[c, 0].set_ylabel(classes[c] if classes else str(c), rotation=0, ha="right", va="center", fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
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


def claims_forest(df: "pd.DataFrame") -> plt.Figure:
    """Each claim's measured value with its 95% interval against its reference, coloured by verdict."""
    colours = {"holds": "tab:green", "does not hold": "tab:red", "inconclusive": "tab:orange",
               "not measured": "tab:gray"}
    n = len(df)
    fig, ax = plt.subplots(figsize=(9, 0.45 * n + 1.2))
    for i, r in enumerate(df.itertuples()):
        y = n - 1 - i
        ref = float(str(r.reference).split()[-1])
        ax.plot([ref, ref], [y - 0.35, y + 0.35], color="k", lw=1)
        if not np.isnan(r.measured):
            ax.errorbar(r.measured, y, xerr=[[r.measured - r.ci_lo], [r.ci_hi - r.measured]], fmt="o",
                        color=colours.get(r.verdict, "k"), capsize=3)
    ax.set_yticks(range(n))
    ax.set_yticklabels([c if len(c) < 70 else c[:67] + "…" for c in df.claim[::-1]], fontsize=8)
    ax.set_xlabel("measured value (95% interval); black tick = the claim's reference")
    handles = [plt.Line2D([], [], marker="o", ls="", color=c, label=v) for v, c in colours.items()]
    ax.legend(handles=handles, loc="lower right", fontsize=8)
    ax.set_title("The paper's findings, checked on this run")
    fig.tight_layout()
    return fig
