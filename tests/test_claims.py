"""Claims as tests: for every claim, hand-made per-image arrays on which it holds, does not hold, shows no effect
and is undetermined; the bands file, the pool registry's resampling, the Holm column and the table's order.

A synthetic seed starts from a null world (every variant identical to vanilla, every pool like held-out)
and `apply` injects one effect into the arrays a claim reads. For a directional or level claim, +E in the
claimed direction must give `holds`, −E `does not hold`, no effect (0) `no effect`; three seeds that disagree
(+E, −E, +E) give `undetermined`. The one equivalence claim (false positives as confident as true positives)
holds when there is no effect: for it, "no effect" is what "holds" means.
"""

from __future__ import annotations

import dataclasses
import json
import zlib

import numpy as np
import pandas as pd
import pytest

from mia_nb.attacks import samples
from mia_nb.attacks.samples import SampleFile, read_samples, write_samples
from mia_nb.attacks.thresholds import split_threshold, threshold_at_fpr
from mia_nb.claims import findings, paired
from mia_nb.claims.findings import FAILS, HOLDS, NO_EFFECT, NOT_RUN, UNDETERMINED, Seed
from mia_nb.config import ConfigError
from mia_nb.layout import REFERENCE_VARIANT as REF
from mia_nb.report import figures_claims

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
    files = {v: SampleFile(v, f, s, False, seed, tuple(POOLS), BASE, POOLS, {k: x.copy() for k, x in base.items()})
             for v, (f, s) in VARIANTS.items()}
    ref: dict[str, np.ndarray] = {}  # notebook 08's arrays: scores and decisions at the 1% held-out operating point
    for name, n in {**sets, "heldout_pop": N_M}.items():
        ref[f"conf/{name}"] = rng.random(n)
        for a in (*findings.REF_ATTACKS, "threshold"):
            ref[f"{a}/score/{name}"] = rng.normal(1.0 if name == "members" else 0.0, 1.0, n)
            ref[f"{a}@1pct/member/{name}"] = rng.random(n) < 0.1
    files[REF] = SampleFile(REF, "reference", None, False, seed, tuple(POOLS), BASE, POOLS, ref)
    return Seed(seed, files)


def arrays_of(s: Seed) -> dict[str, dict[str, np.ndarray]]:
    """Every variant's arrays (the very dicts the seed holds, so writing to them changes the seed)."""
    return {v: f.arrays for v, f in s.variants.items()}


def _redraw(rng, n: int, p: float) -> np.ndarray:
    return rng.random(n) < float(np.clip(p, 0, 1))


def _ranks(e: float, k: int = 5) -> list[int]:
    """Ranks 0..k-1 of a second quantity against a first: the same order (e > 0), reversed (e < 0), or an order
    with Spearman correlation exactly 0 (e == 0)."""
    return list(range(k)) if e > 0 else list(range(k))[::-1] if e < 0 else [1, 4, 2, 0, 3]


def apply(s: Seed, claim_id: str, e: float) -> None:
    """Inject effect `e` (sign = claimed direction; 0 = no effect) into the arrays the claim reads."""
    rng = np.random.default_rng(zlib.crc32(claim_id.encode()) + s.seed)
    a = arrays_of(s)
    if claim_id.startswith("ref_"):  # the null world: the reference attack decides like the threshold attack
        r = a[REF]
        attack = next(x for x in findings.REF_ATTACKS if claim_id.startswith((f"ref_tpr_{x}", f"ref_ood_{x}")))
        for key in [k for k in r if k.startswith("threshold")]:
            r[attack + key[len("threshold"):]] = r[key].copy()
        if claim_id.startswith("ref_tpr_"):
            r[f"{attack}/score/members"] = r[f"{attack}/score/members"] + 4 * e
        else:
            group = claim_id[len(f"ref_ood_{attack}_"):].replace("_", " ")
            for p, g in POOLS.items():
                if g == group and e != 0:
                    r[f"{attack}@1pct/member/{p}"] = _redraw(rng, N_N, 0.1 - e)
        return
    if claim_id == "fpr_heldout":  # level claims: FPR = level + e
        a["vanilla"]["threshold/member/heldout"] = _redraw(rng, N_N, findings.band_file().levels["fpr_high"] + e)
    elif claim_id.startswith("ood_"):
        group = claim_id[4:].replace("_", " ")
        for p, g in POOLS.items():
            if g == group:
                a["vanilla"][f"threshold/member/{p}"] = _redraw(rng, N_N, findings.band_file().levels["fpr_high"] + e)
    elif claim_id == "fp_confidence":  # '=': e = 0 FPs as confident as TPs; e != 0 FPs less (or more) confident
        fp, tp = a["vanilla"]["threshold/member/heldout"], a["vanilla"]["threshold/member/members"]
        a["vanilla"]["conf/members"] = np.where(tp, 0.9 + rng.normal(0, 0.02, N_M), a["vanilla"]["conf/members"])
        fp_conf = 0.9 - 0.1 * e + rng.normal(0, 0.02, N_N)
        a["vanilla"]["conf/heldout"] = np.where(fp, fp_conf, a["vanilla"]["conf/heldout"])
    elif claim_id == "mmps_fpr_rank":  # pool k: mean max score rises with k, FPR ranked by _ranks(e)
        for k, (p, rank) in enumerate(zip(POOLS, _ranks(e))):
            a["vanilla"][f"conf/{p}"] = np.clip(0.5 + 0.1 * k + rng.normal(0, 0.02, N_N), 0, 1)
            for attack in findings.PAPER_ATTACKS:
                a["vanilla"][f"{attack}/member/{p}"] = _redraw(rng, N_N, 0.2 + 0.1 * rank)
    elif claim_id == "fpr_leak_rank":  # variant k: OOD FPR rises with k; AUROC falls with k (e > 0) or rises
        related, members = ("vanilla", "temp_10", "ls_0.05", "ls_0.1", "llla"), a["vanilla"]["threshold/score/members"]
        for k, (v, rank) in enumerate(zip(related, _ranks(e))):
            for p, g in POOLS.items():
                if g != "in distribution":
                    a[v][f"threshold/member/{p}"] = _redraw(rng, N_N, 0.2 + 0.1 * k)
            a[v]["threshold/score/members"] = members + 0.5 * (4 - rank)
    elif claim_id.startswith("label_free_"):  # e = 0: both attacks see the group's images as the held-out ones
        attack, group = claim_id.split("_")[2], claim_id.split("_", 3)[3]
        for p, g in POOLS.items():
            if g == group:
                a["vanilla"][f"loss/score/{p}"] = a["vanilla"]["loss/score/heldout"].copy()
                a["vanilla"][f"{attack}/member/{p}"] = (a["vanilla"][f"{attack}/member/heldout"].copy() if e == 0 else
                                                        _redraw(rng, N_N, 0.4 + e))
    elif e == 0:
        return  # the null world: the variant's arrays are vanilla's
    elif claim_id.startswith("calibrates_"):  # '<' claim: e > 0 means ECE lower by e
        v = claim_id[len("calibrates_"):]
        conf = a[v]["conf/heldout"]
        a[v]["correct/heldout"] = rng.random(N_N) < conf - 0.1 + e
    elif claim_id.startswith(("lowers_fpr_more_", "lowers_fpr_")):
        v = claim_id.removeprefix("lowers_fpr_more_") if "more" in claim_id else claim_id[len("lowers_fpr_"):]
        for p, g in POOLS.items():
            if g != "in distribution":
                a[v][f"threshold/member/{p}"] = _redraw(rng, N_N, 0.4 - e)
    elif claim_id.startswith("lowers_heldout_fpr_"):  # '<' claim: e > 0 lowers the held-out FPR by e
        v = claim_id[len("lowers_heldout_fpr_"):]
        a[v]["threshold/member/heldout"] = _redraw(rng, N_N, 0.4 - e)
    elif claim_id.startswith(("leak_auroc_", "leak_tpr_")):
        v = claim_id.split("_", 2)[2]
        a[v]["threshold/score/members"] = a[v]["threshold/score/members"] + 4 * e
    elif claim_id.startswith(("l2_auroc_", "l2_tpr_")):  # '<' claim: e > 0 moves toward chance
        v = claim_id.split("_", 2)[2]
        a[v]["threshold/score/members"] = a[v]["threshold/score/members"] - 4 * e
    elif claim_id.startswith(("separates_", "aligns_")):  # e > 0 widens (separates) or narrows (aligns) the gap
        v = claim_id.split("_", 1)[1]
        gap = a[v]["conf/members"].mean() - a[v]["conf/heldout"].mean()
        sign = 1.0 if claim_id.startswith("separates_") else -1.0
        a[v]["conf/members"] = a[v]["conf/members"] + sign * 5 * e * gap
    else:
        raise KeyError(claim_id)


def verdict_of(claim_id: str, effects: tuple[float, ...]) -> str:
    """The claim's verdict on one null seed per effect, each with that effect injected."""
    seeds = [null_seed(i) for i in range(len(effects))]
    for s, e in zip(seeds, effects):
        apply(s, claim_id, e)
    table = findings.check_only(seeds, (claim_id,), n_boot=N_BOOT)
    table = table[table.id == claim_id]
    assert len(table) == 1, claim_id
    return table.verdict.iloc[0]


ALL_IDS = [c.id for c in findings.build_claims([null_seed()])]
STRONG = {"ref_tpr": 0.25, "ref_ood": 0.05, "fpr_heldout": 0.2, "ood_": 0.2, "fp_confidence": 3.0, "mmps": 1,
          "fpr_leak": 1, "label_free": 0.2, "calibrates": 0.08, "lowers_fpr": 0.2,
          "lowers_heldout_fpr": 0.2, "leak": 0.25, "l2": 0.25,
          "separates": 0.1, "aligns": 0.1}


def _strength(claim_id: str) -> float:
    return next(v for k, v in STRONG.items() if claim_id.startswith(k))


def test_the_claim_set_covers_the_papers_findings_in_blocks():
    blocks = {c.id: c.block for c in findings.build_claims([null_seed()])}
    f1, f2, f3, f4 = findings.PAPER_BLOCKS
    assert {i for i, b in blocks.items() if b == f1} == {"fpr_heldout", "ood_transform", "ood_corruption",
                                                          "ood_other_content", "ood_generated"}
    assert {i for i, b in blocks.items() if b == f2} == {"fp_confidence", "mmps_fpr_rank"}
    assert {i for i, b in blocks.items() if b == f3} == {"fpr_leak_rank", *(f"{k}_{v}" for k in (
        "calibrates", "lowers_heldout_fpr", "lowers_fpr", "leak_auroc") for v in ("ls_0.05", "ls_0.1", "llla"))}
    assert {i for i, b in blocks.items() if b == f4} == {"separates_ls_0.05", "separates_ls_0.1", "separates_llla",
                                                          "aligns_l2_0.001", "aligns_temp_10", "l2_auroc_l2_0.001"}
    extensions = {i for i, b in blocks.items() if b == findings.EXTENSIONS}
    assert {"leak_tpr_ls_0.1", "l2_tpr_l2_0.001", "aligns_dp_8", "lowers_fpr_more_ls_0.1", "ref_tpr_rmia",
            "ref_ood_lira_online_transform", "label_free_salem_corruption"} <= extensions
    assert set(blocks.values()) == {*findings.PAPER_BLOCKS, findings.EXTENSIONS}


@pytest.mark.parametrize("claim_id", [i for i in ALL_IDS if i != "fp_confidence"])
def test_each_claim_holds_fails_shows_no_effect_and_is_undetermined(claim_id):
    e = _strength(claim_id)
    assert verdict_of(claim_id, (+e,)) == HOLDS
    assert verdict_of(claim_id, (-e,)) == FAILS
    assert verdict_of(claim_id, (0.0,)) == NO_EFFECT  # the interval lies inside the band
    assert verdict_of(claim_id, (+e, -e, +e)) == UNDETERMINED  # three seeds that disagree


def test_the_equivalence_claim_fp_confidence_can_fail():
    """FPs and TPs both clear the threshold, so a difference of mean max scores is squeezed into 1 − t; the rank
    statistic is not: FPs clearly less confident than TPs make the claim fail."""
    assert verdict_of("fp_confidence", (0.0,)) == HOLDS  # as confident: for an equivalence claim, "no effect"
    assert verdict_of("fp_confidence", (3.0,)) == FAILS
    assert verdict_of("fp_confidence", (-3.0,)) == FAILS
    assert verdict_of("fp_confidence", (3.0, 0.0, -3.0)) == UNDETERMINED


def test_a_gate_is_shown_beside_the_verdict_never_instead_of_it():
    s = null_seed()
    a = arrays_of(s)
    a["ls_0.1"]["threshold/score/members"] = a["ls_0.1"]["threshold/score/members"] + 1.0  # big leak, ECE as vanilla
    table = findings.check_only([s], ("leak_auroc_ls_0.1", "separates_ls_0.1"), n_boot=N_BOOT).set_index("id")
    assert table.loc["leak_auroc_ls_0.1", "verdict"] == HOLDS
    assert table.loc["leak_auroc_ls_0.1", "gate"] == "calibrates_ls_0.1"
    assert table.loc["leak_auroc_ls_0.1", "gate_status"] == NO_EFFECT  # its ECE did not move
    assert table.loc["leak_auroc_ls_0.1", "in_words"] == ("ls_0.1 raises leakage: attack AUROC: holds — "
                                                          "gate (ls_0.1 lowers ECE): no effect")
    apply(s, "calibrates_ls_0.1", 0.08)
    table = findings.check_only([s], ("leak_auroc_ls_0.1",), n_boot=N_BOOT)
    assert list(table[["verdict", "gate_status"]].iloc[0]) == [HOLDS, HOLDS]


def test_verdict_rules_and_bands():
    iv = lambda lo, hi: paired.Interval((lo + hi) / 2, lo, hi, 1, 10)  # noqa: E731
    assert findings.verdict(iv(0.03, 0.05), ">", 0.02) == HOLDS
    assert findings.verdict(iv(0.01, 0.05), ">", 0.02) == UNDETERMINED
    assert findings.verdict(iv(-0.01, 0.01), ">", 0.02) == NO_EFFECT  # inside the band: smaller than what counts
    assert findings.verdict(iv(-0.03, 0.01), ">", 0.02) == UNDETERMINED
    assert findings.verdict(iv(-0.05, -0.03), ">", 0.02) == FAILS
    assert findings.verdict(iv(-0.05, -0.03), "<", 0.02) == HOLDS
    assert findings.verdict(iv(-0.01, 0.01), "<", 0.02) == NO_EFFECT
    assert findings.verdict(iv(0.03, 0.04), "<", 0.02) == FAILS
    assert findings.verdict(iv(-0.01, 0.01), "=", 0.02) == HOLDS
    assert findings.verdict(iv(0.03, 0.04), "=", 0.02) == FAILS
    assert findings.verdict(iv(0.01, 0.03), "=", 0.02) == UNDETERMINED
    assert findings.verdict(iv(0.26, 0.4), ">", 0.05, reference=0.2) == HOLDS  # a level claim: above 0.25
    assert findings.verdict(iv(0.16, 0.24), ">", 0.05, reference=0.2) == NO_EFFECT
    assert findings.verdict(iv(0.0, 0.14), ">", 0.05, reference=0.2) == FAILS
    assert findings.verdict(iv(np.nan, np.nan), ">", 0.02) == NOT_RUN
    with pytest.raises(ValueError, match="side"):
        findings.verdict(iv(0, 1), "?", 0.1)
    assert findings.counts_when(">", 0.05, 0.2, level=True) == "> 0.25 (level 0.2 + band 0.05)"
    assert findings.counts_when("<", 0.01) == "< −0.01" and findings.counts_when("=", 0.05) == "within ±0.05"


def test_p_values_agree_with_the_verdicts():
    iv = paired.Interval(0.10, 0.05, 0.15, 3, 100, se=0.05 / 4.303, df=2.0)
    assert findings.p_value(iv, ">", 0.05) == pytest.approx(0.025, abs=1e-9)  # the lower edge sits on the band
    assert findings.p_value(iv, ">", 0.02) < 0.025 and findings.verdict(iv, ">", 0.02) == HOLDS
    assert findings.p_value(iv, "<", 0.02) > 0.5
    eq = paired.Interval(0.0, -0.01, 0.01, 3, 100, se=0.01 / 4.303, df=2.0)
    assert findings.p_value(eq, "=", 0.02) < 0.025 and findings.verdict(eq, "=", 0.02) == HOLDS


# ----------------------------------------------------------------------------- table, Holm, order

def _table(seeds: list[Seed] | None = None) -> pd.DataFrame:
    seeds = seeds or [null_seed()]
    return findings.check(seeds, n_boot=N_BOOT)


def test_the_table_carries_block_seeds_verdict_holm_gate_and_words_in_one_order():
    s = null_seed()
    apply(s, "leak_auroc_ls_0.1", 0.25)
    table = _table([s])
    assert list(table.columns) == findings.COLUMNS
    assert set(findings.COLUMNS) >= {"block", "n_seeds", "verdict", "holm", "gate", "gate_status", "in_words"}
    rank = [findings.BLOCK_ORDER.index(b) for b in table.block]
    assert rank == sorted(rank)
    for block in findings.BLOCK_ORDER:
        ids = list(table[table.block == block].id)
        assert ids == sorted(ids), block
    measured = table.verdict != NOT_RUN  # the null world's relation across identical variants has no ranks: NaN
    assert (table[measured].n_seeds == 1).all() and (table[~measured].n_seeds == 0).all()
    paper = table.block.isin(findings.PAPER_BLOCKS)
    assert set(table[~paper].holm) == {findings.OUTSIDE_FAMILY}
    assert set(table[paper].holm) <= {HOLDS, findings.HOLM_NOT_SHOWN, NOT_RUN}
    assert not ((table.holm == HOLDS) & (table.verdict != HOLDS)).any()  # Holm only removes "holds"
    assert table.set_index("id").loc["leak_auroc_ls_0.1", "holm"] == HOLDS
    assert table.set_index("id").loc["leak_auroc_ls_0.1", "verdict"] == HOLDS
    shuffled = findings.check([s], list(reversed(findings.build_claims([s]))), n_boot=N_BOOT)
    pd.testing.assert_frame_equal(shuffled, table)
    sentence = findings.family_sentence(table)
    n_paper = int((paper & (table.verdict != NOT_RUN)).sum())
    assert f"the {n_paper} measured claims of Findings 1–4" in sentence and "Holm" in sentence
    assert "Holm: " in findings.sentence(table.iloc[0])


def test_holm_adjusts_over_the_paper_block_only():
    p = np.array([0.001, 0.02, 0.02, 0.5])
    assert list(paired.holm(p, alpha=findings.HOLM_ALPHA)) == [True, False, False, False]  # 0.02 > 0.025 / 3
    s = null_seed()
    for claim_id in ("leak_auroc_ls_0.1", "leak_tpr_ls_0.1"):
        apply(s, claim_id, 0.25)
    table = _table([s]).set_index("id")
    assert table.loc["leak_tpr_ls_0.1", "verdict"] == HOLDS and table.loc["leak_tpr_ls_0.1", "holm"] == \
        findings.OUTSIDE_FAMILY  # an extension is never in the family


def test_tally_per_block_and_missing_variant_gives_not_measured():
    s = null_seed()
    del s.variants["llla"]
    table = findings.check([s], [c for c in findings.build_claims([null_seed()]) if c.id.endswith("llla")], n_boot=50)
    assert set(table.verdict) == {NOT_RUN} and set(table.holm) <= {NOT_RUN, findings.OUTSIDE_FAMILY}
    counts = findings.tally(table)
    assert counts[NOT_RUN] == len(table) and sum(counts.values()) == len(table)
    full = _table()
    assert sum(sum(findings.tally(full, b).values()) for b in findings.BLOCK_ORDER) == len(full)


def test_headlines_describe_each_group_against_held_out_without_a_verdict():
    heads = findings.headlines([null_seed()], n_boot=N_BOOT).set_index("id")
    assert {"fpr_heldout", "auroc", "tpr_1pct", "ece", "fpr_generated", "fpr_generated_minus_heldout"} <= \
        set(heads.index)
    assert "verdict" not in heads.columns
    assert heads.loc["fpr_generated_minus_heldout", "value"] == pytest.approx(
        heads.loc["fpr_generated", "value"] - heads.loc["fpr_heldout", "value"])


def test_forest_figure_draws_every_outcome():
    s = null_seed()
    apply(s, "leak_auroc_ls_0.1", 0.25)
    fig = figures_claims.claims_forest(_table([s]))
    assert len(fig.axes[0].get_yticklabels()) == len(_table([s]))


# ------------------------------------------------------------------------- resampling and statistics

def test_the_pool_registry_decides_which_pools_share_weights():
    """digits and uniform are not made from held-out images whatever the sample file's meta says (runs before issue
    19 wrote base 'heldout' for them); digits and the GAN fakes are the same images in every seed: one matrix."""
    seeds = [null_seed(i) for i in range(2)]
    for s in seeds:
        for f in list(s.variants.values()):
            f.base.update({"uniform": "heldout", "gan": "heldout"})  # an old file's meta
    r = findings.Resampling(N_BOOT)
    d0, d1 = r.of(seeds[0]), r.of(seeds[1])
    assert np.shares_memory(d0.pool("permuted"), d0.pool("heldout"))  # made from held-out: its weights
    assert not np.array_equal(d0.pool("uniform"), d0.pool("heldout"))
    assert not np.array_equal(d0.pool("uniform"), d1.pool("uniform"))  # a seeded pool: one matrix per seed
    assert d0.pool("gan") is d1.pool("gan")  # shared by every seed: one matrix
    assert not np.array_equal(d0.pool("heldout"), d1.pool("heldout"))
    assert findings.same_every_seed("digits") and not findings.made_from_heldout("digits")
    assert findings.made_from_heldout("noise_3") and not findings.same_every_seed("heldout_pop")


def test_weighted_thresholds_are_threshold_at_fpr_on_the_resampled_images():
    rng = np.random.default_rng(0)
    for n, alpha in ((10, 0.0), (101, 0.01), (500, 0.5), (5000, 0.001)):
        s = np.round(rng.normal(size=n), 2)  # ties
        assert findings.threshold_draws(s, alpha, np.ones((1, n)))[0] == threshold_at_fpr(s, alpha)
    s, w = rng.normal(size=300), paired.weights(300, 20, seed=1)
    t = findings.threshold_draws(s, 0.1, w)
    above = findings.rate_above_draws(s, t, w)
    for b in range(5):
        resampled = np.repeat(s, w[b].astype(int))
        assert t[b] == threshold_at_fpr(resampled, 0.1)
        assert above[b] == pytest.approx((resampled > t[b]).mean())
    assert findings.spearman_rows(np.array([[1, 2, 3]]), np.array([[3, 2, 1]]))[0] == pytest.approx(-1)
    assert np.isnan(findings.spearman_rows(np.array([[1, 1, 1]]), np.array([[3, 2, 1]]))[0])


def test_tpr_low_lets_the_threshold_noise_into_the_interval():
    s = null_seed()
    r = findings.Resampling(400)
    point, draws = findings.tpr_low("vanilla")(s, r.of(s))
    t, held = split_threshold(s.get("vanilla").score("threshold", "heldout"), 0.01, seed=s.seed)
    fixed = paired.rate(s.get("vanilla").score("threshold", "members") > t, r.of(s).members())
    assert point == pytest.approx((s.get("vanilla").score("threshold", "members") > t).mean())
    assert draws.std() > 1.3 * fixed.std()  # the fitting half is resampled too


def test_matched_fpr_sets_the_loss_threshold_to_the_attacks_held_out_rate():
    s = null_seed()
    a = arrays_of(s)["vanilla"]
    a["loss/score/permuted"] = a["loss/score/heldout"].copy()  # the loss attack sees permuted images as held-out
    a["threshold/member/permuted"] = a["threshold/member/heldout"].copy()
    point, draws = findings.matched_fpr_gap("threshold", ("permuted",))(s, findings.Resampling(N_BOOT).of(s))
    assert abs(point) < 2 / N_N and np.abs(draws).max() < 5 / N_N  # both at the same rate on the same images


def test_paired_interval_is_narrower_than_the_sum_of_two_intervals():
    """The variant − vanilla AUROC difference of two nearly identical variants has a tight paired interval."""
    s = null_seed()
    a = arrays_of(s)
    a["l2_0.001"]["threshold/score/members"] = a["vanilla"]["threshold/score/members"] - 0.05
    diff = findings.measure([s], findings.minus(findings.auroc("l2_0.001"), findings.auroc("vanilla")), n_boot=N_BOOT)
    one = findings.measure([s], findings.auroc("vanilla"), n_boot=N_BOOT)
    assert diff.hi - diff.lo < 0.25 * (one.hi - one.lo)
    assert diff.hi < 0  # a small but consistent shift is resolved


def test_seed_spread_widens_the_interval():
    seeds = [null_seed(i) for i in range(3)]
    for i, s in enumerate(seeds):  # the effect differs a lot between seeds
        a = arrays_of(s)
        a["l2_0.001"]["threshold/score/members"] = a["l2_0.001"]["threshold/score/members"] - [0.0, 0.6, 1.2][i]
    stat = findings.minus(findings.auroc("l2_0.001"), findings.auroc("vanilla"))
    three = findings.measure(seeds, stat, n_boot=N_BOOT)
    one = findings.measure(seeds[1:2], stat, n_boot=N_BOOT)
    assert (three.hi - three.lo) > 3 * (one.hi - one.lo)
    assert three.n_seeds == 3


# ----------------------------------------------------------------------------------------- bands file

BANDS_TEXT = findings.BANDS_FILE.read_text()


def test_the_shipped_bands_file_loads_and_records_when_it_was_set():
    b = findings.load_bands()
    assert set(b.bands) == set(findings.BAND_KEYS) and set(b.levels) == set(findings.LEVEL_KEYS)
    assert all(v >= 0 for v in (*b.bands.values(), *b.levels.values()))
    assert "after a README with results" in b.recorded and findings.band_file().bands == b.bands


@pytest.mark.parametrize("edit, key", [
    (lambda t: t.replace("  auroc: 0.01 ", "  auroc: -0.01 "), "bands.auroc"),
    (lambda t: t.replace("  tpr: 0.005 ", "  tpr_typo: 0.005 "), "bands.tpr_typo"),
    (lambda t: t.replace("  ece: 0.005 ", "  # ece removed "), "bands.ece"),
    (lambda t: t.replace("  fpr_high: 0.2 ", "  fpr_high: high "), "levels.fpr_high"),
    (lambda t: t.replace("  separation: 0.01 ", "  separation: true "), "bands.separation"),
    (lambda t: t + "extra: 1\n", "extra"),
    (lambda t: t.replace("recorded:", "when:"), "when"),
    (lambda t: "", "empty"),
])
def test_a_bad_bands_file_is_refused_with_one_line_naming_the_key(tmp_path, edit, key):
    path = tmp_path / "bands.yaml"
    text = edit(BANDS_TEXT)
    assert text != BANDS_TEXT
    path.write_text(text)
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")) as info:
        findings.load_bands(path)
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="not found"):
        findings.load_bands(tmp_path / "none.yaml")


def test_a_claim_whose_band_the_file_lacks_is_refused():
    b = dataclasses.replace(findings.band_file(), bands={k: v for k, v in findings.band_file().bands.items() if k != "auroc"})
    claim = next(c for c in findings.build_claims([null_seed()]) if c.band == "auroc")
    with pytest.raises(ConfigError, match="'auroc'"):
        findings.check([null_seed()], [claim], n_boot=50, bands=b)


# ----------------------------------------------------------------------------------------- sample files

def test_load_seed_reads_what_write_samples_writes(tmp_path):
    s = null_seed(7)
    for f in s.variants.values():
        write_samples(tmp_path, f)
    back = findings.load_seed(tmp_path)
    assert back.seed == 7 and set(back.variants) == set(VARIANTS) | {REF}
    for v, f in s.variants.items():
        assert back.variants[v].meta() == f.meta() and list(back.variants[v].arrays) == list(f.arrays)
    np.testing.assert_array_equal(back.variants["dp_8"].score("loss", "gan"),
                                  s.variants["dp_8"].arrays["loss/score/gan"])
    with pytest.raises(FileNotFoundError, match="run notebooks 04-07"):
        findings.load_seed(tmp_path / "nothing")
    write_samples(tmp_path, SampleFile("other", "vanilla", None, False, 8, (), {}, {}, {}))
    with pytest.raises(ValueError, match="several seeds"):
        findings.load_seed(tmp_path)


def test_sample_file_on_disk_is_the_documented_npz(tmp_path):
    """`meta` (JSON: variant, family, strength, leaky, extras, seed, pools, base, groups) and then the arrays under
    their `<what>/<set>` keys, in order: the files notebooks 04-08 write and notebook 09 reads."""
    arrays = {"conf/members": np.array([0.9, 0.8]), "threshold/member/heldout": np.array([True, False]),
              "lira_online@1pct/member/heldout_pop": np.array([False])}
    f = SampleFile("vanilla_ref", "reference", 4, False, 3, ("heldout",), {"heldout": "heldout"},
                   {"heldout": "in distribution"}, arrays, {"rmia_a": 0.3})
    path = write_samples(tmp_path, f)
    assert path == tmp_path / "vanilla_ref.npz"
    with np.load(path) as z:
        assert z.files == ["meta", *arrays]
        assert list(json.loads(str(z["meta"])).items()) == [
            ("variant", "vanilla_ref"), ("family", "reference"), ("strength", 4), ("leaky", False), ("rmia_a", 0.3),
            ("seed", 3), ("pools", ["heldout"]), ("base", {"heldout": "heldout"}),
            ("groups", {"heldout": "in distribution"})]
    back = read_samples(path)
    assert back.extra == {"rmia_a": 0.3} and back.member("lira_online@1pct", "heldout_pop").tolist() == [False]
    assert back.conf("members").dtype == np.float64 and back.size("members") == 2
    with pytest.raises(KeyError, match="vanilla_ref: correct/members"):
        back.correct("members")
    assert samples.split_key("threshold@1pct/member/heldout") == ("threshold@1pct/member", "heldout")
    assert samples.member_key(samples.at_point("rmia", "01pct"), "gan") == "rmia@01pct/member/gan"
    with pytest.raises(ValueError, match="cannot contain"):
        samples.score_key("loss", "a/b")
