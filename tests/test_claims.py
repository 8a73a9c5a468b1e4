"""Claims logic on hand-made result tables: a claim that holds, one that fails, one inconclusive."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mia_nb import claims
from mia_nb.claims import FAILS, HOLDS, INCONCLUSIVE, Estimate, Results
from mia_nb.results import aggregate


def attacks_table(rows: list[tuple[str, str, float, float]], n: int = 5000) -> pd.DataFrame:
    """(variant, pool, fpr, auroc) rows for the threshold attack."""
    return pd.DataFrame([{"variant": v, "attack": "threshold", "nonmember_set": p, "fpr": f, "auroc": a,
                          "n_members": n, "n_nonmembers": n} for v, p, f, a in rows])


def by_claim(df: pd.DataFrame, start: str) -> pd.Series:
    hit = df[df.claim.str.startswith(start)]
    assert len(hit) == 1, start
    return hit.iloc[0]


def test_verdict_rules():
    assert claims.verdict(Estimate(0.5, 0.45, 0.55), 0.2) == HOLDS
    assert claims.verdict(Estimate(0.1, 0.05, 0.15), 0.2) == FAILS
    assert claims.verdict(Estimate(0.2, 0.15, 0.25), 0.2) == INCONCLUSIVE
    assert claims.verdict(Estimate(-0.1, -0.15, -0.05), 0.0, greater=False) == HOLDS
    assert claims.verdict(Estimate(np.nan, np.nan, np.nan), 0) == "not measured"


def test_wilson_and_auroc_intervals():
    w = claims.wilson(0.5, 100)
    assert w.lo < 0.5 < w.hi and w.hi - w.lo == pytest.approx(0.19, abs=0.01)
    narrow, wide = claims.auroc_estimate(0.8, 5000, 5000), claims.auroc_estimate(0.8, 50, 50)
    assert narrow.lo < 0.8 < narrow.hi and (wide.hi - wide.lo) > 5 * (narrow.hi - narrow.lo)


def test_claims_hold_fail_and_inconclusive():
    table = attacks_table([
        ("vanilla", "heldout", 0.45, 0.77), ("vanilla", "gan", 0.52, 0.70), ("vanilla", "scaled255", 0.999, 0.1),
        ("vanilla", "permuted", 0.60, 0.5),
        ("ls_0.1", "heldout", 0.30, 0.87), ("ls_0.1", "gan", 0.35, 0.8), ("ls_0.1", "permuted", 0.30, 0.6),
        ("llla", "heldout", 0.30, 0.60), ("llla", "gan", 0.70, 0.5), ("llla", "permuted", 0.70, 0.5),
        ("l2_0.001", "heldout", 0.27, 0.771),
    ])
    sep = pd.DataFrame({"variant": ["vanilla", "ls_0.1", "llla", "l2_0.001"],
                        "w1_member_heldout": [0.10, 0.25, 0.05, 0.04]})
    agree = pd.DataFrame({"variant": ["vanilla"], "nonmember_set": ["heldout"], "agreement": [0.98],
                          "n_samples": [10000]})
    df = claims.check_claims(Results(table, sep, agree))
    assert len(df) >= 8
    assert set(df.columns) >= {"claim", "measured", "reference", "verdict", "paper"}
    assert by_claim(df, "Held-out non-members get a high FPR").verdict == HOLDS
    assert by_claim(df, "× 255").verdict == HOLDS
    assert by_claim(df, "Score attacks rely").verdict == HOLDS
    assert by_claim(df, "Label smoothing (ls_0.1) lowers").verdict == HOLDS
    assert by_claim(df, "LLLA (llla) lowers").verdict == FAILS  # OOD FPR went up in this table
    assert by_claim(df, "LLLA (llla) keeps").verdict == FAILS  # AUROC 0.60 vs 0.77
    assert by_claim(df, "L2 (l2_0.001)").verdict == INCONCLUSIVE  # 0.771 vs 0.77: within the interval
    assert by_claim(df, "Calibration widens the member↔held-out score gap (ls_0.1)").verdict == HOLDS
    assert by_claim(df, "Calibration widens the member↔held-out score gap (llla)").verdict == FAILS
    assert by_claim(df, "Defenses narrow the member↔held-out score gap (l2_0.001)").verdict == HOLDS


def test_missing_variants_are_not_measured():
    df = claims.check_claims(Results(attacks_table([("vanilla", "heldout", 0.45, 0.77)])))
    assert by_claim(df, "Held-out").verdict == HOLDS
    assert (df[df.claim.str.contains("LLLA")].verdict == "not measured").all()


def test_aggregate_over_seeds():
    a = attacks_table([("vanilla", "heldout", 0.40, 0.7)])
    b = attacks_table([("vanilla", "heldout", 0.50, 0.8)])
    agg = aggregate([a, b], ["variant", "attack", "nonmember_set"])
    r = agg.iloc[0]
    assert r.fpr == pytest.approx(0.45) and r.n_seeds == 2
    assert r.fpr_lo < 0.40 and r.fpr_hi > 0.50  # t interval with 1 d.o.f. is wide
    est = Results(agg).fpr("vanilla", "heldout")
    assert (est.lo, est.hi) == (r.fpr_lo, r.fpr_hi)
