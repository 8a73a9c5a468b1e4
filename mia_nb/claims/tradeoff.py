"""The calibration / privacy trade-off: one row per variant and a verdict from this run's numbers.

Inputs are the study's own tables: rows of results/attacks.csv (one per variant, attack, non-member
set) and of results/variants.csv (one per variant: ECE, OE, accuracy, ...). "Attack strength" is read
on held-out non-members (AUROC, TPR at 1% FPR with its bootstrap CI); "false positives" are the FPR of
the attack's decision rule on held-out data and its mean over every other pool (out of distribution).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

HELDOUT = "heldout"
COLUMNS = ["family", "ece", "oe", "heldout_acc", "nll", "auroc", "tpr_at_1pct_fpr", "tpr_at_1pct_fpr_lo",
                   "tpr_at_1pct_fpr_hi", "fpr_heldout", "mean_ood_fpr", "n_ood_pools"]


def per_variant(attacks: pd.DataFrame, models: pd.DataFrame, attack: str = "threshold",
            variants: list[str] | None = None) -> pd.DataFrame:
    """Per variant (index, in `variants` order): calibration of the target and one attack's strength / FPR."""
    need_a = {"variant", "attack", "nonmember_set", "fpr", "auroc", "tpr_at_1pct_fpr", "tpr_at_1pct_fpr_lo",
              "tpr_at_1pct_fpr_hi"}
    need_m = {"variant", "family", "ece", "oe", "heldout_acc", "nll"}
    for name, df, need in (("attacks", attacks, need_a), ("models", models, need_m)):
        missing = need - set(df.columns)
        if missing:
            raise ValueError(f"per_variant: {name} table lacks columns {sorted(missing)}")
    a = attacks[attacks["attack"] == attack]
    if a.empty:
        raise ValueError(f"per_variant: no rows for attack {attack!r}; have {sorted(set(attacks['attack']))}")
    variants = list(variants) if variants is not None else list(dict.fromkeys(models["variant"]))
    rows = []
    for v in variants:
        av, mv = a[a["variant"] == v], models[models["variant"] == v]
        held = av[av["nonmember_set"] == HELDOUT]
        if held.empty or mv.empty:
            raise ValueError(f"per_variant: variant {v!r} needs a model row and a {HELDOUT!r} row for {attack!r}")
        h, m, ood = held.iloc[0], mv.iloc[-1], av[av["nonmember_set"] != HELDOUT]
        rows.append({"variant": v, "family": m["family"], "ece": m["ece"], "oe": m["oe"],
                     "heldout_acc": m["heldout_acc"], "nll": m["nll"], "auroc": h["auroc"],
                     "tpr_at_1pct_fpr": h["tpr_at_1pct_fpr"], "tpr_at_1pct_fpr_lo": h["tpr_at_1pct_fpr_lo"],
                     "tpr_at_1pct_fpr_hi": h["tpr_at_1pct_fpr_hi"], "fpr_heldout": h["fpr"],
                     "mean_ood_fpr": float(ood["fpr"].mean()) if len(ood) else np.nan, "n_ood_pools": len(ood)})
    return pd.DataFrame(rows).set_index("variant")[COLUMNS]


def fpr_matrix(attacks: pd.DataFrame, attack: str = "threshold", variants: list[str] | None = None,
               pools: list[str] | None = None) -> pd.DataFrame:
    """FPR of one attack: rows = variants, columns = non-member sets (held-out first), in the given orders."""
    a = attacks[attacks["attack"] == attack]
    if a.empty:
        raise ValueError(f"fpr_matrix: no rows for attack {attack!r}")
    m = a.pivot_table(index="variant", columns="nonmember_set", values="fpr", aggfunc="last")
    variants = list(variants) if variants is not None else list(m.index)
    pools = list(pools) if pools is not None else [HELDOUT] + sorted(c for c in m.columns if c != HELDOUT)
    missing = [v for v in variants if v not in m.index] + [p for p in pools if p not in m.columns]
    if missing:
        raise ValueError(f"fpr_matrix: no {attack!r} rows for {missing}")
    return m.loc[variants, pools]


def attack_overview(attacks: pd.DataFrame, variants: list[str] | None = None) -> pd.DataFrame:
    """Per variant (rows) and attack (column groups): held-out FPR, mean FPR over the other pools, held-out AUROC."""
    if attacks.empty:
        raise ValueError("attack_overview: no attack rows")
    held = attacks["nonmember_set"] == HELDOUT
    h = attacks[held].groupby(["variant", "attack"])[["fpr", "auroc"]].mean()
    o = attacks[~held].groupby(["variant", "attack"])["fpr"].mean()
    out = pd.DataFrame({"heldout_fpr": h["fpr"], "mean_ood_fpr": o, "heldout_auroc": h["auroc"]}).unstack("attack")
    variants = list(variants) if variants is not None else list(dict.fromkeys(attacks["variant"]))
    attack_order = list(dict.fromkeys(attacks["attack"]))
    return out.reindex(index=variants).reindex(columns=attack_order, level="attack")
