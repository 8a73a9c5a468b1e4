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
                     n_boot: int = 200, seed: int = 0) -> pd.DataFrame:
    """One row per (attack, non-member set): the columns of results/attacks.csv."""
    rows = []
    for pool_name, nonmembers in tqdm(pools.items(), desc=f"evaluating {variant}", unit="pool", leave=False):
        for name, attack in attacks.items():
            m = attack_metrics(attack, members, nonmembers, n_boot=n_boot, seed=seed)
            rows.append({"variant": variant, "attack": name, "nonmember_set": pool_name, **m})
    return pd.DataFrame(rows, columns=RESULT_KEYS + list(ATTACK_METRIC_KEYS))


def decisions(attacks: dict[str, Attack], outputs: Outputs) -> pd.DataFrame:
    """Boolean member decision of every attack on the same samples (columns: attack names)."""
    return pd.DataFrame({name: np.asarray(a.predict(outputs), bool) for name, a in attacks.items()})
