"""Notebook 05's read-outs: GAN quality, top false positives, MMPS per pool, the "unbounded supply" table.

Cheap functions of cached outputs (`Outputs`) and of the pools of `mia_nb.data.nonmembers`; the only images they
build are the few shown.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch
from scipy.stats import binomtest

from mia_nb.data import transforms
from mia_nb.data.nonmembers import PoolSpec, group_of
from mia_nb.attacks.scores import Outputs

if TYPE_CHECKING:
    from mia_nb.attacks.score_based import Attack
    from mia_nb.study import Study


def display_images(study: Study, x: torch.Tensor) -> torch.Tensor:
    """Model input -> the image it amounts to: normalisation undone, clipped to [0, 1] (x 255 saturates)."""
    return transforms.unnormalize(x.float(), study.info.mean, study.info.std).clamp(0.0, 1.0)


def pool_examples(study: Study, specs: dict[str, PoolSpec], n: int = 8) -> dict[str, torch.Tensor]:
    """The first `n` images of every pool for display; held-out-derived pools show the same images."""
    if n < 1:
        raise ValueError(f"pool_examples: n must be at least 1, got {n}")
    return {name: display_images(study, spec.build()[0][:n]) for name, spec in specs.items()}


def _mean(a: np.ndarray) -> float:
    """Mean of an array, NaN when it is empty."""
    return float(np.mean(a)) if len(a) else float("nan")


def gan_quality(generated: Outputs, heldout: Outputs, classes: tuple[str, ...] | list[str] = ()) -> pd.DataFrame:
    """Per class: the target's accuracy on images generated for it (vs real held-out images of it), and MMPS.

    `generated.labels` are the classes the images were generated for; the last row ("all") pools every class.
    """
    k = generated.n_classes
    if (generated.labels < 0).any() or (heldout.labels < 0).any():
        raise ValueError("gan_quality: both output sets need class labels (no -1)")
    rows = []
    for c in [*range(k), None]:
        g = np.ones(len(generated), bool) if c is None else generated.labels == c
        h = np.ones(len(heldout), bool) if c is None else heldout.labels == c
        rows.append({
            "class": "all" if c is None else (classes[c] if c < len(classes) else str(c)),
            "n_generated": int(g.sum()),
            "accuracy_generated": _mean(generated.probs[g].argmax(1) == generated.labels[g]),
            "accuracy_heldout": _mean(heldout.probs[h].argmax(1) == heldout.labels[h]),
            "mmps_generated": _mean(generated.probs[g].max(1)),
        })
    return pd.DataFrame(rows)


def top_false_positives(attack: Attack, nonmembers: Outputs, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and max scores of the (at most) k non-members `attack` calls member with the highest max score."""
    if k < 1:
        raise ValueError(f"top_false_positives: k must be at least 1, got {k}")
    called = np.flatnonzero(np.asarray(attack.predict(nonmembers), bool))
    conf = nonmembers.probs[called].max(1)
    order = np.argsort(-conf, kind="stable")[:k]
    return called[order], conf[order]


def score_label(score: float) -> str:
    """A max score for a title: 4 decimals, '1 − 3e-07' when that rounds to 1, '> 1 − 1e-16' when it is 1.0."""
    gap = 1.0 - float(score)
    if gap >= 5e-5:
        return f"{score:.4f}"
    return f"1 − {gap:.0e}" if gap > 0 else "> 1 − 1e-16"


@dataclass(frozen=True)
class FalsePositives:
    """One pool's top false positives for display, and how many of the pool the attack calls member."""

    images: torch.Tensor  # [k, C, H, W] in [0, 1], highest max score first
    titles: list[str]  # per image: the class the target predicted and its max score
    n_fp: int  # false positives in the whole pool
    n: int  # images in the pool
    fpr: float  # n_fp / n


def false_positive_gallery(study: Study, attack: Attack, nonmembers: dict[str, Outputs],
                           specs: dict[str, PoolSpec], k: int = 6) -> dict[str, FalsePositives]:
    """Per pool: the top-k false positives of `attack` (images for display, titles, count, FPR).

    Titles give the class the target predicted and its max score, the paper's Figure 1.
    """
    classes = study.info.classes
    out: dict[str, FalsePositives] = {}
    for name, o in nonmembers.items():
        idx, conf = top_false_positives(attack, o, k)
        n_fp = int(np.asarray(attack.predict(o), bool).sum())
        images = display_images(study, specs[name].build()[0][torch.as_tensor(idx, dtype=torch.long)]) \
            if len(idx) else torch.empty(0)
        pred = o.probs[idx].argmax(1) if len(idx) else np.empty(0, int)
        titles = [f"{classes[p] if p < len(classes) else p}\n{score_label(s)}" for p, s in zip(pred, conf)]
        out[name] = FalsePositives(images, titles, n_fp, len(o), n_fp / len(o))
    return out


def mmps_table(members: Outputs, nonmembers: dict[str, Outputs]) -> pd.DataFrame:
    """Mean max prediction score (and its spread) of the target's members and of every pool."""
    rows = []
    for name, o in {"members": members, **nonmembers}.items():
        conf = o.probs.max(1)
        rows.append({"set": name, "group": "members" if name == "members" else group_of(name),
                     "n": len(o), "mmps": float(conf.mean()), "median_max_score": float(np.median(conf)),
                     "share_above_0.99": float((conf > 0.99).mean())})
    return pd.DataFrame(rows)


def supply_rows(attacks: dict[str, Attack], generated: Outputs, sizes: tuple[int, ...] | list[int]) -> pd.DataFrame:
    """False positives and FPR (Wilson 95% CI) of every attack on the first n generated images, per n.

    Reads cached outputs only (`Outputs.subset`): no forward pass.
    """
    bad = [n for n in sizes if not 1 <= n <= len(generated)]
    if bad:
        raise ValueError(f"supply_rows: sizes {bad} outside 1..{len(generated)} (the generated images scored)")
    rows = []
    for n in sizes:
        sub = generated.subset(np.arange(n))
        for name, a in attacks.items():
            fp = int(np.asarray(a.predict(sub), bool).sum())
            ci = binomtest(fp, n).proportion_ci(method="wilson")
            rows.append({"n_generated": int(n), "attack": name, "false_positives": fp, "fpr": fp / n,
                         "fpr_lo": float(ci.low), "fpr_hi": float(ci.high)})
    return pd.DataFrame(rows)


def fpr_above_reference(rows: pd.DataFrame, reference: str = "heldout") -> tuple[pd.DataFrame, list[str]]:
    """Pools x attacks FPR with the reference pool's FPR; one sentence per attack naming the pools above it."""
    fpr = rows.pivot(index="nonmember_set", columns="attack", values="fpr")
    if reference not in fpr.index:
        raise ValueError(f"fpr_above_reference: no rows for the reference pool {reference!r}")
    order = list(dict.fromkeys(rows["nonmember_set"]))
    attack_order = list(dict.fromkeys(rows["attack"]))
    fpr = fpr.loc[order, attack_order]
    above = fpr.gt(fpr.loc[reference], axis=1)
    lines = []
    for a in attack_order:
        ref = fpr.loc[reference, a]
        names = [f"{p} ({fpr.loc[p, a]:.3f})" for p in order if p != reference and above.loc[p, a]]
        lines.append(f"{a}: held-out FPR {ref:.3f}; {len(names)} of {len(order) - 1} other pools above it"
                     + (": " + ", ".join(names) if names else ""))
    return fpr, lines
