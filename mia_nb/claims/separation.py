"""Separate vs align (notebook 07): do calibration and defenses move members' and non-members' max scores apart?

Per variant, the mean max score of the target's members, held-out non-members and one OOD pool, and the
Wasserstein-1 distance member↔held-out and member↔OOD with bootstrap intervals (results/separation.csv).
The paired, scale-free version of the same question is the claim statistic `findings.separation`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from mia_nb.attacks.metrics import wasserstein, wasserstein_interval
from mia_nb.data.nonmembers import PoolSpec, part_spec

if TYPE_CHECKING:
    from mia_nb.models.variants import Variant
    from mia_nb.study import Study

KIND = {"vanilla": "baseline", "label_smoothing": "calibration", "llla": "calibration",
        "weight_decay": "defense", "temperature": "defense", "dp": "defense"}  # variant family -> its role here
SAMPLES = ("members", "heldout", "ood")


def max_score_samples(study: Study, variant: Variant, pools: dict[str, PoolSpec], ood: str) -> dict[str, np.ndarray]:
    """Max score of the variant's target on its members, held-out non-members and the pool `ood` (cached)."""
    for name in ("heldout", ood):
        if name not in pools:
            raise ValueError(f"max_score_samples: no pool {name!r}; have {sorted(pools)}")
    specs = {"members": part_spec(study, "target_train"), "heldout": pools["heldout"], "ood": pools[ood]}
    return {k: variant.probs(study, "target", spec).max(axis=1) for k, spec in specs.items()}


def separation_table(samples: dict[str, dict[str, np.ndarray]], families: dict[str, str] | None = None,
                     ood: str = "ood", n_boot: int = 200, seed: int = 0) -> pd.DataFrame:
    """Per variant: mean max score of members / held-out / OOD and Wasserstein-1 member↔held-out, member↔OOD,
    each distance with a 95% bootstrap interval (`<column>_lo`, `<column>_hi`)."""
    families = families or {}
    rows = []
    for name, s in samples.items():
        missing = [k for k in SAMPLES if k not in s]
        if missing:
            raise ValueError(f"separation_table: variant {name!r} lacks samples {missing}")
        fam = families.get(name, "")
        m, h, o = (np.asarray(s[k], dtype=np.float64) for k in SAMPLES)
        rows.append({"variant": name, "family": fam, "kind": KIND.get(fam, ""), "ood_pool": ood,
                     "n_members": len(m), "n_heldout": len(h), "n_ood": len(o),
                     "mmps_members": float(m.mean()), "mmps_heldout": float(h.mean()), "mmps_ood": float(o.mean()),
                     "w1_member_heldout": wasserstein(m, h), "w1_member_ood": wasserstein(m, o)})
        for col, other in (("w1_member_heldout", h), ("w1_member_ood", o)):
            rows[-1][f"{col}_lo"], rows[-1][f"{col}_hi"] = wasserstein_interval(m, other, n_boot, seed)
    return pd.DataFrame(rows)
