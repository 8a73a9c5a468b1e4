"""The calibration / privacy trade-off: one summary row per variant and a verdict from this run's numbers.

Inputs are the study's own tables: rows of results/attacks.csv (one per variant, attack, non-member
set) and of results/variants.csv (one per variant: ECE, OE, accuracy, ...). "Attack strength" is read
on held-out non-members (AUROC, TPR at 1% FPR with its bootstrap CI); "false positives" are the FPR of
the attack's decision rule on held-out data and its mean over every other pool (out of distribution).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

HELDOUT = "heldout"
SUMMARY_COLUMNS = ["family", "ece", "oe", "heldout_acc", "nll", "auroc", "tpr_at_1pct_fpr", "tpr_at_1pct_fpr_lo",
                   "tpr_at_1pct_fpr_hi", "fpr_heldout", "mean_ood_fpr", "n_ood_pools"]


def summary(attacks: pd.DataFrame, models: pd.DataFrame, attack: str = "threshold",
            variants: list[str] | None = None) -> pd.DataFrame:
    """Per variant (index, in `variants` order): calibration of the target and one attack's strength / FPR."""
    need_a = {"variant", "attack", "nonmember_set", "fpr", "auroc", "tpr_at_1pct_fpr", "tpr_at_1pct_fpr_lo",
              "tpr_at_1pct_fpr_hi"}
    need_m = {"variant", "family", "ece", "oe", "heldout_acc", "nll"}
    for name, df, need in (("attacks", attacks, need_a), ("models", models, need_m)):
        missing = need - set(df.columns)
        if missing:
            raise ValueError(f"summary: {name} table lacks columns {sorted(missing)}")
    a = attacks[attacks["attack"] == attack]
    if a.empty:
        raise ValueError(f"summary: no rows for attack {attack!r}; have {sorted(set(attacks['attack']))}")
    variants = list(variants) if variants is not None else list(dict.fromkeys(models["variant"]))
    rows = []
    for v in variants:
        av, mv = a[a["variant"] == v], models[models["variant"] == v]
        held = av[av["nonmember_set"] == HELDOUT]
        if held.empty or mv.empty:
            raise ValueError(f"summary: variant {v!r} needs a model row and a {HELDOUT!r} row for {attack!r}")
        h, m, ood = held.iloc[0], mv.iloc[-1], av[av["nonmember_set"] != HELDOUT]
        rows.append({"variant": v, "family": m["family"], "ece": m["ece"], "oe": m["oe"],
                     "heldout_acc": m["heldout_acc"], "nll": m["nll"], "auroc": h["auroc"],
                     "tpr_at_1pct_fpr": h["tpr_at_1pct_fpr"], "tpr_at_1pct_fpr_lo": h["tpr_at_1pct_fpr_lo"],
                     "tpr_at_1pct_fpr_hi": h["tpr_at_1pct_fpr_hi"], "fpr_heldout": h["fpr"],
                     "mean_ood_fpr": float(ood["fpr"].mean()) if len(ood) else np.nan, "n_ood_pools": len(ood)})
    return pd.DataFrame(rows).set_index("variant")[SUMMARY_COLUMNS]


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


def _share(k_a: int, k_b: int, n: int) -> str:
    """'yes' when most of n variants pass both checks, 'partly' when most pass one, else 'no'."""
    most = [k > n / 2 for k in (k_a, k_b)]
    return "yes" if all(most) else "partly" if any(most) else "no"


def verdict(table: pd.DataFrame, baseline: str = "vanilla") -> tuple[pd.DataFrame, list[str]]:
    """Compare every variant with `baseline`; judge the paper's finding 3 on those better calibrated (lower ECE).

    Changes (one row per other variant): Δ ECE, Δ held-out FPR, Δ mean OOD FPR, Δ AUROC, Δ TPR@1% FPR,
    whether the TPR@1% FPR lies above the baseline's bootstrap CI, and whether the variant is better
    calibrated. The sentences count, among the better-calibrated variants, how many cut false positives
    (held-out; mean OOD) and how many made the attack stronger (AUROC; TPR@1% FPR): 'yes' when most did
    on both measures, 'partly' when most did on one, 'no' otherwise.
    """
    if baseline not in table.index:
        raise ValueError(f"verdict: no row for baseline {baseline!r}")
    b = table.loc[baseline]
    other = table[table.index != baseline]
    d = pd.DataFrame({
        "ece": other["ece"], "d_ece": other["ece"] - b["ece"],
        "d_fpr_heldout": other["fpr_heldout"] - b["fpr_heldout"],
        "d_mean_ood_fpr": other["mean_ood_fpr"] - b["mean_ood_fpr"],
        "d_auroc": other["auroc"] - b["auroc"],
        "d_tpr_at_1pct_fpr": other["tpr_at_1pct_fpr"] - b["tpr_at_1pct_fpr"],
        "tpr_above_baseline_ci": other["tpr_at_1pct_fpr"] > b["tpr_at_1pct_fpr_hi"],
        "better_calibrated": other["ece"] < b["ece"],
    })
    better = d[d["better_calibrated"]]
    n = len(better)
    if n == 0:
        return d, [f"No variant has a lower ECE than {baseline} ({b['ece']:.3f}) in this run, "
                   "so the calibration trade-off cannot be read off it."]
    fewer_id = int((better["d_fpr_heldout"] < 0).sum())
    fewer_ood = int((better["d_mean_ood_fpr"] < 0).sum())
    more_auc = int((better["d_auroc"] > 0).sum())
    more_tpr = int((better["d_tpr_at_1pct_fpr"] > 0).sum())
    sig_tpr = int(better["tpr_above_baseline_ci"].sum())
    cut, raised = _share(fewer_id, fewer_ood, n), _share(more_auc, more_tpr, n)
    lines = [
        f"{n} variant(s) are better calibrated than {baseline} (ECE {b['ece']:.3f}): {', '.join(better.index)}.",
        f"False positives: {fewer_id} of {n} have a lower held-out FPR than {baseline} ({b['fpr_heldout']:.3f}), "
        f"{fewer_ood} of {n} a lower mean out-of-distribution FPR ({b['mean_ood_fpr']:.3f}).",
        f"Leakage: {more_auc} of {n} have a higher held-out AUROC than {baseline} ({b['auroc']:.3f}), "
        f"{more_tpr} of {n} a higher TPR at 1% FPR ({b['tpr_at_1pct_fpr']:.3f}); "
        f"{sig_tpr} of {n} lie above its 95% bootstrap CI.",
        f"Did calibration cut false positives here? {cut}. Did it make the attack stronger? {raised}.",
    ]
    if cut == "yes" and raised == "yes":
        lines.append("So here, as in the paper, calibration cut false positives and made the attack stronger.")
    elif cut == "no" and raised == "no":
        lines.append("So the paper's trade-off did not reproduce in this run.")
    else:
        lines.append("So the paper's trade-off reproduced only in part in this run "
                     "('partly': most variants moved the expected way on one of the two measures).")
    return d, lines


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
