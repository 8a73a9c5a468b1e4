"""The attack phase: fit every attack on a (balanced) shadow, evaluate it on target members vs pools."""

from __future__ import annotations

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from .attacks import Attack, balanced_shadow, make_attack
from .config import AttacksConfig
from .metrics import ATTACK_METRIC_KEYS, attack_metrics
from .scores import Outputs

RESULT_KEYS = ["variant", "attack", "nonmember_set"]


def make_attacks(cfg: AttacksConfig, seed: int) -> dict[str, Attack]:
    """Fresh, unfitted attacks named in the profile."""
    kw = {"salem": {"k": cfg.salem_k, "patience": cfg.salem_patience, "max_epochs": cfg.salem_max_epochs,
                    "seed": seed}}
    return {name: make_attack(name, **kw.get(name, {})) for name in cfg.names}


def fit_attacks(cfg: AttacksConfig, shadow_members: Outputs, shadow_nonmembers: Outputs,
                seed: int) -> tuple[dict[str, Attack], dict[str, int]]:
    """Fit every attack on balanced shadow sets; return the attacks and the sizes used."""
    members, nonmembers = balanced_shadow(shadow_members, shadow_nonmembers, seed)
    attacks = make_attacks(cfg, seed)
    for attack in tqdm(attacks.values(), desc="fitting attacks on the shadow", unit="attack", leave=False):
        attack.fit(members, nonmembers)
    return attacks, {"shadow_members": len(members), "shadow_nonmembers": len(nonmembers)}


def evaluate_attacks(attacks: dict[str, Attack], members: Outputs, pools: dict[str, Outputs], variant: str,
                     seed: int = 0) -> pd.DataFrame:
    """One row per (attack, non-member set): the columns of results/attacks.csv."""
    rows = []
    for pool_name, nonmembers in tqdm(pools.items(), desc=f"evaluating {variant}", unit="pool", leave=False):
        for name, attack in attacks.items():
            m = attack_metrics(attack, members, nonmembers, seed=seed)
            rows.append({"variant": variant, "attack": name, "nonmember_set": pool_name, **m})
    return pd.DataFrame(rows, columns=RESULT_KEYS + list(ATTACK_METRIC_KEYS))


def decisions(attacks: dict[str, Attack], outputs: Outputs) -> pd.DataFrame:
    """Boolean member decision of every attack on the same samples (columns: attack names)."""
    return pd.DataFrame({name: np.asarray(a.predict(outputs), bool) for name, a in attacks.items()})


def readable_table(df: pd.DataFrame) -> pd.DataFrame:
    """attacks.csv rows for reading: rounded rates, TPR at 1% / 0.1% FPR with its 95% CI and FP budget."""
    from .metrics import LOW_FPRS, allowed_false_positives
    from .paired import fit_size
    out = pd.DataFrame({
        "attack": df["attack"], "non-members": df["nonmember_set"], "threshold": df["threshold"].round(6),
        "TPR (recall)": df["recall"].round(3), "FPR": df["fpr"].round(3), "precision": df["precision"].round(3),
        "accuracy": df["accuracy"].round(3), "AUROC": df["auroc"].round(3), "AUPR": df["aupr"].round(3),
        "FPR @ 95% TPR": df["fpr_at_95tpr"].round(3), "best balanced acc.": df["balanced_accuracy"].round(3),
    })
    for suffix, alpha in LOW_FPRS.items():
        col = f"tpr_at_{suffix}_fpr"
        out[f"TPR @ {alpha:.1%} FPR [95% CI]"] = [
            f"{v:.3f} [{lo:.3f}, {hi:.3f}]" for v, lo, hi in zip(df[col], df[f"{col}_lo"], df[f"{col}_hi"])]
        out[f"false positives allowed @ {alpha:.1%}"] = [
            f"{allowed_false_positives(fit_size(int(n)), alpha):,} of {fit_size(int(n)):,}"
            for n in df["n_nonmembers"]]  # the half of the non-members that fixes the threshold
    return out.reset_index(drop=True)


def agreement_rows(attacks: dict[str, Attack], members: Outputs, nonmembers: dict[str, Outputs],
                   variant: str) -> pd.DataFrame:
    """Per non-member set: the fraction of (members + that set) on which 'threshold' and 'entropy' decide alike."""
    missing = [a for a in ("threshold", "entropy") if a not in attacks]
    if missing:
        raise ValueError(f"agreement_rows: attacks lack {missing}; add them to the profile's attacks.names")
    pair = {name: attacks[name] for name in ("threshold", "entropy")}
    on_members = decisions(pair, members)
    rows = []
    for name, out in nonmembers.items():
        d = pd.concat([on_members, decisions(pair, out)], ignore_index=True)
        rows.append({"variant": variant, "nonmember_set": name, "n_samples": len(d),
                     "agreement": float((d["threshold"] == d["entropy"]).mean())})
    return pd.DataFrame(rows, columns=["variant", "nonmember_set", "n_samples", "agreement"])
