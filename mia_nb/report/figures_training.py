"""Figures of notebooks 02 and 03 (training): learning curves of the target and the shadow."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from mia_nb.report import figure_style  # noqa: F401  (sets the theme)


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
