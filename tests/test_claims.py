"""Claims as tests: for every claim, hand-made per-image arrays on which it holds, fails and is inconclusive.

A synthetic seed starts from a null world (every variant identical to vanilla, every pool like held-out)
and `apply` injects one effect into the arrays a claim reads: +E in the claimed direction must give
`holds`, −E `does not hold`, 0 (or the band edge, for an equivalence claim) `inconclusive`.
"""

from __future__ import annotations

import json
import zlib

import numpy as np
import pandas as pd
import pytest

from mia_nb import claims, paired
from mia_nb.claims import FAILS, HOLDS, INCONCLUSIVE, NOT_CALIBRATED, NOT_RUN, Seed

ATTACKS = ("threshold", "entropy", "salem", "loss")
POOLS = {"heldout": "in distribution", "permuted": "transform", "inverted": "corruption",
         "uniform": "other content", "gan": "generated"}
BASE = {"heldout": "heldout", "permuted": "heldout", "inverted": "heldout", "uniform": "uniform", "gan": "gan"}
VARIANTS = {"vanilla": ("vanilla", None), "ls_0.05": ("label_smoothing", 0.05), "ls_0.1": ("label_smoothing", 0.1),
            "llla": ("llla", None), "l2_0.001": ("weight_decay", 0.001), "temp_10": ("temperature", 10.0),
            "dp_8": ("dp", 8.0)}
N_M, N_N = 1000, 2000
N_BOOT = 200


def null_seed(seed: int = 0) -> Seed:
    """Every variant the same draw: members score 1 higher than non-members, FPR 0.4 everywhere."""
    rng = np.random.default_rng(seed)
    sets = {"members": N_M, **{p: N_N for p in POOLS}}
    base: dict[str, np.ndarray] = {}
    for name, n in sets.items():
        conf = 0.55 + 0.4 / (1 + np.exp(-rng.normal(1.0 if name == "members" else 0.0, 1.0, n)))
        base[f"conf/{name}"] = conf
        if POOLS.get(name) != "other content":
            base[f"correct/{name}"] = rng.random(n) < conf - 0.1  # overconfident by 0.1
        for a in ATTACKS:
            base[f"{a}/score/{name}"] = rng.normal(1.0 if name == "members" else 0.0, 1.0, n)
            base[f"{a}/member/{name}"] = rng.random(n) < (0.6 if name == "members" else 0.4)
    arrays = {v: {k: x.copy() for k, x in base.items()} for v in VARIANTS}
    meta = {v: {"variant": v, "family": f, "strength": s, "seed": seed, "pools": list(POOLS), "base": BASE,
                "groups": POOLS} for v, (f, s) in VARIANTS.items()}
    ref: dict[str, np.ndarray] = {}  # notebook 09's arrays: scores and decisions at the 1% held-out operating point
    for name, n in {**sets, "heldout_pop": N_M}.items():
        ref[f"conf/{name}"] = rng.random(n)
        for a in (*claims.REF_ATTACKS, "threshold"):
            ref[f"{a}/score/{name}"] = rng.normal(1.0 if name == "members" else 0.0, 1.0, n)
            ref[f"{a}@1pct/member/{name}"] = rng.random(n) < 0.1
    arrays[claims.REF] = ref
    meta[claims.REF] = {**meta["vanilla"], "variant": claims.REF, "family": "reference"}
    return Seed(seed, arrays, meta)


def _redraw(rng, n: int, p: float) -> np.ndarray:
    return rng.random(n) < float(np.clip(p, 0, 1))


def apply(s: Seed, claim_id: str, e: float) -> None:
    """Inject effect `e` (in the claim's statistic units, sign = claimed direction for '>') into the arrays."""
    rng = np.random.default_rng(zlib.crc32(claim_id.encode()))
    a = s.arrays
    if claim_id.startswith("ref_"):  # the null world: the reference attack decides like the threshold attack
        r = a[claims.REF]
        attack = next(x for x in claims.REF_ATTACKS if claim_id.startswith((f"ref_tpr_{x}", f"ref_ood_{x}")))
        for key in [k for k in r if k.startswith("threshold")]:
            r[attack + key[len("threshold"):]] = r[key].copy()
        if claim_id.startswith("ref_tpr_"):
            r[f"{attack}/score/members"] = r[f"{attack}/score/members"] + 4 * e
        else:
            group = claim_id[len(f"ref_ood_{attack}_"):].replace("_", " ")
            for p, g in POOLS.items():
                if g == group:
                    r[f"{attack}@1pct/member/{p}"] = _redraw(rng, N_N, 0.1 - e)
        return
    if e == 0 and not claim_id.startswith(("leak_", "separates_", "fp_confidence")):
        return  # the null world: the variant's arrays are vanilla's
    if claim_id == "fp_confidence":
        fp, tp = a["vanilla"]["threshold/member/heldout"], a["vanilla"]["threshold/member/members"]
        m = a["vanilla"]["conf/members"].mean()
        a["vanilla"]["conf/heldout"] = np.where(fp, m + e + rng.normal(0, 0.05, N_N), a["vanilla"]["conf/heldout"])
        a["vanilla"]["conf/members"] = np.where(tp, m + rng.normal(0, 0.05, N_M), a["vanilla"]["conf/members"])
    elif claim_id.startswith("ood_"):
        group = claim_id[4:].replace("_", " ")
        for p, g in POOLS.items():
            if g == group:
                a["vanilla"][f"threshold/member/{p}"] = _redraw(rng, N_N, 0.4 + e)
    elif claim_id.startswith("label_free_"):
        attack, group = claim_id.split("_")[2], claim_id.split("_", 3)[3]
        for p, g in POOLS.items():
            if g == group:
                a["vanilla"][f"{attack}/member/{p}"] = _redraw(rng, N_N, 0.4 + e)
    elif claim_id.startswith("calibrates_"):  # '<' claim: e > 0 means ECE lower by e
        v = claim_id[len("calibrates_"):]
        conf = a[v]["conf/heldout"]
        a[v]["correct/heldout"] = rng.random(N_N) < conf - 0.1 + e
    elif claim_id.startswith("ls_ood_more_"):
        v = claim_id[len("ls_ood_more_"):]
        for p, g in POOLS.items():
            if g != "in distribution":
                a[v][f"threshold/member/{p}"] = _redraw(rng, N_N, 0.4 - e)
    elif claim_id.startswith("ls_ood_"):
        v = claim_id[len("ls_ood_"):]
        for p, g in POOLS.items():
            if g != "in distribution":
                a[v][f"threshold/member/{p}"] = _redraw(rng, N_N, 0.4 - e)
    elif claim_id.startswith(("leak_auroc_", "leak_tpr_")):
        v = claim_id.split("_", 2)[2]
        apply(s, f"calibrates_{v}", 0.08)  # the gate holds
        a[v]["threshold/score/members"] = a[v]["threshold/score/members"] + 4 * e
    elif claim_id.startswith(("l2_auroc_", "l2_tpr_")):  # '<' claim: e > 0 moves toward chance
        v = claim_id.split("_", 2)[2]
        a[v]["threshold/score/members"] = a[v]["threshold/score/members"] - 4 * e
    elif claim_id.startswith("separates_"):
        v = claim_id[len("separates_"):]
        apply(s, f"calibrates_{v}", 0.08)
        gap = a[v]["conf/members"].mean() - a[v]["conf/heldout"].mean()
        a[v]["conf/members"] = a[v]["conf/members"] + 5 * e * gap  # e > 0 widens the gap, e < 0 narrows it
    elif claim_id.startswith("aligns_"):
        v = claim_id[len("aligns_"):]
        gap = a[v]["conf/members"].mean() - a[v]["conf/heldout"].mean()
        a[v]["conf/members"] = a[v]["conf/members"] - 5 * e * gap
    else:
        raise KeyError(claim_id)


def verdict_of(claim_id: str, e: float) -> str:
    s = null_seed()
    apply(s, claim_id, e)
    table = claims.check_only([s], (claim_id,), n_boot=N_BOOT)
    table = table[table.id == claim_id]
    assert len(table) == 1, claim_id
    return table.verdict.iloc[0]


ALL_IDS = [c.id for c in claims.build_claims([null_seed()])]


def test_the_claim_set_covers_the_papers_findings():
    ids = set(ALL_IDS)
    assert "fp_confidence" in ids
    assert {"ood_transform", "ood_corruption", "ood_other_content", "ood_generated"} <= ids
    assert {f"label_free_{a}_{g}" for a in ("threshold", "entropy", "salem") for g in ("transform", "corruption")} <= ids
    assert {"ls_ood_ls_0.05", "ls_ood_ls_0.1", "ls_ood_more_ls_0.1"} <= ids
    assert {f"{k}_{v}" for k in ("calibrates", "leak_auroc", "leak_tpr", "separates") for v in ("ls_0.05", "ls_0.1", "llla")} <= ids
    assert {"l2_auroc_l2_0.001", "l2_tpr_l2_0.001", "aligns_l2_0.001", "aligns_temp_10", "aligns_dp_8"} <= ids
    assert {"ref_tpr_lira_online", "ref_tpr_rmia", "ref_ood_lira_online_transform", "ref_ood_rmia_generated"} <= ids


STRONG = {"ref_tpr": 0.25, "ref_ood": 0.05, "fp_confidence": 0.15, "ood": 0.2, "label_free": 0.2, "calibrates": 0.08, "ls_ood": 0.2, "leak": 0.25,
          "l2": 0.25, "separates": 0.1, "aligns": 0.1}


def _strength(claim_id: str) -> float:
    return next(v for k, v in STRONG.items() if claim_id.startswith(k))


@pytest.mark.parametrize("claim_id", [i for i in ALL_IDS if i != "fp_confidence"])
def test_each_directional_claim_holds_fails_and_is_inconclusive(claim_id):
    e = _strength(claim_id)
    assert verdict_of(claim_id, +e) == HOLDS
    assert verdict_of(claim_id, -e) == FAILS
    assert verdict_of(claim_id, 0.0) == INCONCLUSIVE  # no effect: the interval sits inside the band


def test_equivalence_claim_fp_confidence():
    assert verdict_of("fp_confidence", 0.0) == HOLDS  # FP as confident as TP
    assert verdict_of("fp_confidence", -0.15) == FAILS
    assert verdict_of("fp_confidence", claims.BANDS["confidence"]) == INCONCLUSIVE  # on the band's edge


def test_leakage_of_a_variant_that_does_not_calibrate_is_not_judged():
    s = null_seed()
    s.arrays["ls_0.1"]["threshold/score/members"] = s.arrays["ls_0.1"]["threshold/score/members"] + 1.0  # big leak
    table = claims.check_only([s], ("leak_auroc_ls_0.1", "separates_ls_0.1"), n_boot=N_BOOT)
    assert list(table.verdict) == [NOT_CALIBRATED, NOT_CALIBRATED]
    apply(s, "calibrates_ls_0.1", 0.08)
    table = claims.check_only([s], ("leak_auroc_ls_0.1",), n_boot=N_BOOT)
    assert table.verdict.iloc[0] == HOLDS


def test_verdict_rules_and_bands():
    iv = lambda lo, hi: paired.Interval((lo + hi) / 2, lo, hi, 1, 10)  # noqa: E731
    assert claims.verdict(iv(0.03, 0.05), ">", 0.02) == HOLDS
    assert claims.verdict(iv(0.01, 0.05), ">", 0.02) == INCONCLUSIVE
    assert claims.verdict(iv(-0.01, 0.01), ">", 0.02) == INCONCLUSIVE  # inside the band: no effect that counts
    assert claims.verdict(iv(-0.05, -0.03), ">", 0.02) == FAILS
    assert claims.verdict(iv(-0.05, -0.03), "<", 0.02) == HOLDS
    assert claims.verdict(iv(-0.01, 0.01), "=", 0.02) == HOLDS
    assert claims.verdict(iv(0.03, 0.04), "=", 0.02) == FAILS
    assert claims.verdict(iv(0.01, 0.03), "=", 0.02) == INCONCLUSIVE
    assert claims.verdict(iv(np.nan, np.nan), ">", 0.02) == NOT_RUN
    with pytest.raises(ValueError, match="side"):
        claims.verdict(iv(0, 1), "?", 0.1)


def test_paired_interval_is_narrower_than_the_sum_of_two_intervals():
    """The variant − vanilla AUROC difference of two nearly identical variants has a tight paired interval."""
    s = null_seed()
    s.arrays["l2_0.001"]["threshold/score/members"] = s.arrays["vanilla"]["threshold/score/members"] - 0.05
    diff = claims.measure([s], claims.minus(claims.auroc("l2_0.001"), claims.auroc("vanilla")), n_boot=N_BOOT)
    one = claims.measure([s], claims.auroc("vanilla"), n_boot=N_BOOT)
    assert diff.hi - diff.lo < 0.25 * (one.hi - one.lo)
    assert diff.hi < 0  # a small but consistent shift is resolved


def test_seed_spread_widens_the_interval():
    seeds = [null_seed(i) for i in range(3)]
    for i, s in enumerate(seeds):  # the effect differs a lot between seeds
        s.arrays["l2_0.001"]["threshold/score/members"] = s.arrays["l2_0.001"]["threshold/score/members"] - [0.0, 0.6, 1.2][i]
    stat = claims.minus(claims.auroc("l2_0.001"), claims.auroc("vanilla"))
    three = claims.measure(seeds, stat, n_boot=N_BOOT)
    one = claims.measure(seeds[1:2], stat, n_boot=N_BOOT)
    assert (three.hi - three.lo) > 3 * (one.hi - one.lo)
    assert three.n_seeds == 3


def test_missing_variant_gives_not_measured_and_summary_counts():
    s = null_seed()
    del s.arrays["llla"]
    table = claims.check([s], [c for c in claims.build_claims([null_seed()]) if c.id.endswith("llla")], n_boot=50)
    assert set(table.verdict) == {NOT_RUN}
    counts = claims.summary(table)
    assert counts[NOT_RUN] == len(table) and sum(counts.values()) == len(table)


def test_load_seed_reads_what_save_samples_writes(tmp_path):
    s = null_seed(7)
    for v, arrays in s.arrays.items():
        np.savez_compressed(tmp_path / f"{v}.npz", meta=np.array(json.dumps(s.meta[v])), **arrays)
    back = claims.load_seed(tmp_path)
    assert back.seed == 7 and set(back.arrays) == set(VARIANTS) | {claims.REF}
    np.testing.assert_array_equal(back.arrays["dp_8"]["loss/score/gan"], s.arrays["dp_8"]["loss/score/gan"])
    with pytest.raises(FileNotFoundError, match="run notebooks 04-07"):
        claims.load_seed(tmp_path / "nothing")


def test_claims_phase_is_fast():
    import time
    seeds = [null_seed(i) for i in range(3)]
    t0 = time.perf_counter()
    table = claims.check(seeds, n_boot=paired.B_DEFAULT)
    seconds = time.perf_counter() - t0
    assert isinstance(table, pd.DataFrame) and len(table) == len(ALL_IDS)
    print(f"{len(table)} claims x 3 seeds x {paired.B_DEFAULT} resamples: {seconds:.1f} s")
