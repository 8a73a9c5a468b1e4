"""Variants under LiRA (notebook 08): a synthetic world where a sharper member gap must raise LiRA's TPR and a smaller
one lower it; the claims on hand-made arrays (holds, does not hold, no effect, undetermined); the profile keys; the
retrained arms' reference models on vanilla's training halves; and the whole route on a tiny study."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.special import log_expit

from mia_nb.attacks import lira_rmia, reference_models, reference_variants, thresholds
from mia_nb.attacks.reference_variants import ARM_FAMILY, Population, arm_scores, sample_variant
from mia_nb.attacks.samples import SampleFile
from mia_nb.claims import findings
from mia_nb.models import jobs, variants
from mia_nb.claims.findings import FAILS, HOLDS, NO_EFFECT, UNDETERMINED, Seed
from mia_nb.config import ConfigError, ReferenceConfig, load_profile, parse_profile
from mia_nb.report import figures_reference_variants
from mia_nb.study import Study

REPO = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------------------- a synthetic world

def _world(gap: float, seed: int, n: int = 3000, k: int = 8, spread: float = 3.0) -> tuple[Population, np.ndarray]:
    """Two-class outputs whose LiRA statistic is d_i + gap·IN + N(0, 1): image difficulty d_i (the same images in
    every world), a member gap `gap` for the target and every reference model; members first, then non-members."""
    d = np.random.default_rng(0).normal(0, spread, 2 * n)  # the population's difficulties: shared by the worlds
    rng = np.random.default_rng(seed)
    mask = lira_rmia.complementary_splits(np.arange(2 * n), k, seed=1)
    member = np.r_[np.ones(n, bool), np.zeros(n, bool)]
    t = d + gap * member + rng.normal(0, 1, 2 * n)
    r = d + gap * mask + rng.normal(0, 1, (k, 2 * n))

    def logp(stat: np.ndarray) -> np.ndarray:  # label 0: log p_0 − log p_1 = stat
        return np.stack([log_expit(stat), log_expit(-stat)], axis=-1)
    return Population(logp(t), logp(r), np.zeros(2 * n, np.int64), mask), member


CFG = ReferenceConfig()  # the LiRA options of the reference code (median centres, one global spread, two-sided)


def _tpr(pop: Population, attack: str, alpha: float) -> float:
    s = arm_scores(pop, CFG)[attack]
    n = pop.n_members
    return thresholds.tpr_at_fpr(s[:n], s[n:], alpha, seed=0)["tpr"]


def test_a_sharper_member_gap_raises_liras_tpr_and_a_defense_lowers_it():
    worlds = {name: _world(gap, seed=0) for name, gap in (("defended", 1.0), ("vanilla", 2.0), ("calibrated", 3.0))}
    for alpha in (0.001, 0.01):
        tpr = {name: _tpr(pop, "lira_online", alpha) for name, (pop, _) in worlds.items()}
        assert tpr["defended"] + 0.01 < tpr["vanilla"] < tpr["calibrated"] - 0.05, (alpha, tpr)
    # per-image difficulty hides the gap from one global threshold: LiRA finds far more members at 1% FPR
    pop, _ = worlds["vanilla"]
    assert _tpr(pop, "lira_online", 0.01) > 3 * _tpr(pop, "threshold", 0.01)


def test_a_temperature_on_two_class_outputs_leaves_lira_unchanged():
    """LiRA's statistic of logits / T is the statistic / T on two classes, and its Gaussian likelihood ratio does not
    see a common scale (offline: a constant shift, the same ranks): the paper's T = 10 defense can only move LiRA
    through the other classes."""
    pop, _ = _world(2.0, seed=5, n=500)
    hot = Population(pop.target / 10 - np.logaddexp(*(pop.target / 10).T)[:, None],
                     pop.refs / 10 - np.logaddexp(pop.refs[..., 0] / 10, pop.refs[..., 1] / 10)[..., None],
                     pop.labels, pop.mask)
    for cfg in (CFG, ReferenceConfig(lira_center="mean", lira_spread="per_side", lira_offline="one_sided")):
        cold_s, hot_s = arm_scores(pop, cfg), arm_scores(hot, cfg)
        np.testing.assert_allclose(hot_s["lira_online"], cold_s["lira_online"], rtol=1e-6, atol=1e-6)
        shift = hot_s["lira_offline"] - cold_s["lira_offline"]
        np.testing.assert_allclose(shift, shift[0], atol=1e-6)


def test_liras_statistic_from_log_probabilities_is_exact_and_finite_when_saturated():
    logp = np.log(np.array([[0.7, 0.2, 0.1], [0.05, 0.9, 0.05]]))
    labels = np.array([0, 1])
    np.testing.assert_allclose(reference_variants.lira_stat(logp, labels), np.log([0.7 / 0.3, 0.9 / 0.1]))
    saturated = np.array([[-1e-30, -70.0, -80.0], [-np.inf, 0.0, -np.inf]])  # an LLLA predictive that rounds to 1
    s = reference_variants.lira_stat(saturated, np.array([0, 0]))
    assert np.isfinite(s).all() and s[0] == pytest.approx(70.0, abs=1e-3) and s[1] < -600


# ----------------------------------------------------------------------------------------- claims

N = 2000
ARMS = {"vanilla": ("vanilla", None), "ls_0.1": ("label_smoothing", 0.1), "llla_marglik": ("llla", None),
        "temp_10": ("temperature", 10.0), "temp_0.5": ("temperature", 0.5)}
CLAIMS = {"lira_tpr_ls_0.1": "ls_0.1", "lira_tpr_llla_marglik": "llla_marglik", "lira_tpr_temp_10": "temp_10"}


def _seed(seed: int, effect: float = 0.0, arm: str | None = None, k: int = 8) -> Seed:
    """Every arm identical to vanilla (members' LiRA scores N(1, 1), held-out N(0, 1)), except `arm`, whose members
    score `4·effect` higher (lower for a claim that a defense lowers the TPR)."""
    rng = np.random.default_rng(seed)
    base = {f"conf/{s}": rng.random(N) for s in ("members", "heldout_pop")}
    for a in reference_variants.ATTACKS:
        base[f"{a}/score/members"] = rng.normal(1.0, 1.0, N)
        base[f"{a}/score/heldout_pop"] = rng.normal(0.0, 1.0, N)
    files = {"vanilla": SampleFile("vanilla", "vanilla", None, False, seed, (), {}, {}, {"conf/members": rng.random(N)})}
    for name, (family, strength) in ARMS.items():
        arrays = {key: x.copy() for key, x in base.items()}
        if name == arm:
            sign = 1.0 if findings.LIRA_ARMS[family][0] == ">" else -1.0
            arrays["lira_online/score/members"] = arrays["lira_online/score/members"] + sign * 4 * effect
        files[sample_variant(name, k)] = SampleFile(sample_variant(name, k), ARM_FAMILY, strength, False, seed, (),
                                                    {}, {}, arrays, {"arm": name, "arm_family": family, "k": k})
    return Seed(seed, files)


def _verdict(claim_id: str, effects: tuple[float, ...]) -> str:
    seeds = [_seed(i, e, CLAIMS[claim_id]) for i, e in enumerate(effects)]
    table = findings.check_only(seeds, (claim_id,), n_boot=300)
    assert list(table.id) == [claim_id]
    return table.verdict.iloc[0]


def test_the_claims_are_built_from_the_arms_files_with_their_wording():
    claims = {c.id: c for c in findings.build_claims([_seed(0)])}
    ours = {i: c for i, c in claims.items() if i.startswith("lira_tpr_")}
    assert set(ours) == set(CLAIMS)  # temp_0.5 is not the defense temperature: no claim
    assert ours["lira_tpr_ls_0.1"].text == "label smoothing (ε = 0.1) raises LiRA's TPR at 0.1% FPR"
    assert ours["lira_tpr_llla_marglik"].text == "LLLA (marglik) raises LiRA's TPR at 0.1% FPR"
    assert ours["lira_tpr_temp_10"].text == "temperature T = 10 lowers LiRA's TPR at 0.1% FPR"
    assert {c.side for c in ours.values()} == {">", "<"} and ours["lira_tpr_temp_10"].side == "<"
    assert all(c.block == findings.EXTENSIONS and c.band == "lira_tpr" and c.partial for c in ours.values())
    assert ours["lira_tpr_ls_0.1"].gate == "calibrates_ls_0.1" and ours["lira_tpr_temp_10"].gate is None
    assert ours["lira_tpr_ls_0.1"].needs == ("ls_0.1_ref8", "vanilla_ref8")
    assert findings.band_file().bands["lira_tpr"] == 0.005
    no_arms = Seed(0, {v: f for v, f in _seed(0).variants.items() if f.family != ARM_FAMILY})
    assert not [c for c in findings.build_claims([no_arms]) if c.id.startswith("lira_tpr_")]


@pytest.mark.parametrize("claim_id", list(CLAIMS))
def test_each_variant_claim_holds_fails_shows_no_effect_and_is_undetermined(claim_id):
    e = 0.25
    assert _verdict(claim_id, (+e,)) == HOLDS
    assert _verdict(claim_id, (-e,)) == FAILS
    assert _verdict(claim_id, (0.0,)) == NO_EFFECT  # the same scores: the paired difference is 0 in every resample
    assert _verdict(claim_id, (+e, -e, +e)) == UNDETERMINED  # three seeds that disagree


def test_a_seed_without_arms_is_left_out_and_a_missing_vanilla_arm_gives_no_claim():
    with_arms = _seed(0, 0.25, "ls_0.1")
    without = Seed(1, {v: f for v, f in _seed(1).variants.items() if f.family != ARM_FAMILY})
    table = findings.check_only([with_arms, without], ("lira_tpr_ls_0.1",), n_boot=300)
    assert table.n_seeds.iloc[0] == 1 and table.verdict.iloc[0] == HOLDS
    lone = Seed(0, {v: f for v, f in _seed(0).variants.items() if v != "vanilla_ref8"})
    assert not [c for c in findings.build_claims([lone]) if c.id.startswith("lira_tpr_")]


# ----------------------------------------------------------------------------------------- profile keys

@pytest.mark.parametrize("values, key", [
    ({"k": 8, "variants": ["ls_0.2"]}, r"reference_models\.variants\[0\]"),
    ({"k": 8, "variants": ["ls_0.1", "temp_3"]}, r"reference_models\.variants\[1\]"),
    ({"k": 8, "variants": ["vanilla"]}, r"reference_models\.variants\[0\]"),
    ({"k": 8, "variants": ["llla"]}, r"reference_models\.variants\[0\]"),  # only the marglik arm has reference fits
    ({"k": 8, "variants": ["ls_0.1", "ls_0.1"]}, r"reference_models\.variants"),
    ({"k": 8, "variant_k": 3, "variants": ["ls_0.1"]}, r"reference_models\.variant_k"),
    ({"k": 4, "variant_k": 8, "variants": ["ls_0.1"]}, r"reference_models\.variant_k"),
    ({"variants": ["ls_0.1"]}, r"reference_models\.variants"),  # k = 0: no reference models
])
def test_a_variant_the_profile_lacks_fails_at_load_naming_the_key(values, key):
    with pytest.raises(ConfigError, match=key) as info:
        parse_profile({"reference_models": values})
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match=r"reference_models\.variants\[0\]"):  # no marglik arm configured
        parse_profile({"calibration": {"llla": {"arms": ["paper"]}},
                       "reference_models": {"k": 8, "variants": ["llla_marglik"]}})


def test_every_arm_the_module_offers_is_a_name_the_profile_accepts(tiny_study):
    offered = reference_variants.offered(tiny_study)
    assert {"ls_0.1", "llla_marglik", "temp_10", "l2_0.001", "dp_8"} <= set(offered)
    for name in offered:
        parse_profile({"reference_models": {"k": 8, "variants": [name]}})
    assert offered["ls_0.1"].recipe.train_changes == {"label_smoothing": 0.1}
    assert offered["temp_10"].temperature == 10.0 and offered["llla_marglik"].llla_arm == "marglik"


def test_the_shipped_profiles_name_their_arms():
    default = load_profile(REPO / "params" / "default.yaml").reference_models
    assert default.variants == ("ls_0.1", "llla_marglik", "temp_10") and default.variant_k == 8
    extra = load_profile(REPO / "params" / "reference_defenses.yaml")
    assert {"l2_0.0003", "l2_0.001", "dp_1", "dp_8"} <= set(extra.reference_models.variants)
    assert extra.engine.backend == "ray" and not {"l2_0.001", "dp_8"} & set(default.variants)


# ----------------------------------------------------------------------------------------- requests

def _ref_study(tiny_study, variants: tuple[str, ...] = ("ls_0.1", "llla_marglik", "temp_10"), k: int = 4,
               variant_k: int = 2) -> Study:
    p = tiny_study.profile  # held-out images beyond the population, as notebook 08 needs
    profile = dataclasses.replace(p, splits=dataclasses.replace(p.splits, target_heldout=128),
                                  reference_models=dataclasses.replace(p.reference_models, k=k, k_curve=(2,),
                                                                       variants=variants, variant_k=variant_k))
    study = Study(profile, tiny_study.base.parent / "refvar", seed=tiny_study.seed)
    study.make_splits()
    return study


def test_label_smoothing_reference_models_train_on_the_first_vanilla_halves(tiny_study):
    assert reference_variants.requests(tiny_study) == []  # no reference models in the tiny profile
    study = _ref_study(tiny_study)
    vanilla = reference_models.requests(study)[:2]
    ours = reference_variants.requests(study)
    assert [(r.role, r.variant) for r in ours] == [("ref_0", "ls_0.1"), ("ref_1", "ls_0.1"),  # retrained arms ...
                                                   ("ref_0", "vanilla"), ("ref_1", "vanilla")]  # ... LLLA's reads
    sets = {s.config["pool"] for s in reference_variants.population_specs(study)}
    assert sets == {"target_train", "target_heldout"}
    for v, r, again in zip(vanilla, ours[:2], ours[2:]):
        np.testing.assert_array_equal(r.indices, v.indices)
        assert r.train.label_smoothing == 0.1 and r.train.epochs == study.profile.train.epochs
        assert {s.config["pool"] for s in r.logits_on} == sets
        assert jobs.request_config(study, again) == jobs.request_config(study, v)  # the vanilla model itself
        assert {s.config["pool"] for s in again.features_on} == sets
    pop, mask = reference_models.population(study), reference_models.in_mask(study)
    for j, r in enumerate(ours[:2]):  # the IN mask LiRA reads is the half each model trained on
        np.testing.assert_array_equal(np.sort(pop[mask[j]]), r.indices)
    post_hoc = _ref_study(tiny_study, variants=("temp_10",))
    assert reference_variants.requests(post_hoc) == []  # temperature reads the vanilla logits notebook 08 reads


def test_the_whole_route_on_a_tiny_study(tiny_study):
    """Models trained through the engine, each arm gathered, scored and written; the claims read the files back."""
    study = _ref_study(tiny_study, k=2)
    table = reference_variants.run(study)
    arms = ["vanilla", "ls_0.1", "llla_marglik", "temp_10"]
    assert list(dict.fromkeys(table.variant)) == arms and set(table.attack) == set(reference_variants.ATTACKS)
    assert table.k.eq(2).all() and table[["auroc", "tpr_at_01pct_fpr"]].notna().all().all()
    seed = findings.load_seed(study.samples_dir)
    n = len(study.splits["target_train"])
    for arm in arms:
        f = seed.get(sample_variant(arm, 2))
        assert f.family == ARM_FAMILY and f.extra["arm"] == arm and f.score("lira_online", "heldout_pop").shape == (n,)
    temp = seed.get(sample_variant("temp_10", 2))  # temperature divides the max score's logits: lower max scores
    assert temp.conf("members").mean() < seed.get(sample_variant("vanilla", 2)).conf("members").mean()
    ids = {c.id for c in findings.reference_variant_claims([seed])}
    assert ids == {"lira_tpr_ls_0.1", "lira_tpr_llla_marglik", "lira_tpr_temp_10"}
    again = reference_variants.run(study)  # everything from the store the second time
    pd.testing.assert_frame_equal(again, table)
    _llla_fits_on_each_reference_models_own_training_images(study)
    fig = figures_reference_variants.tpr_by_variant(table)
    assert len(fig.axes) == 2


def test_the_figure_refuses_a_table_without_its_columns():
    with pytest.raises(ValueError, match="lacks the columns"):
        figures_reference_variants.tpr_by_variant(pd.DataFrame({"variant": ["vanilla"], "attack": ["lira_online"]}))


class _Fitted(Exception):
    """Raised by the stand-in for calibration.fit_llla once it has seen what it was given."""


def _llla_fits_on_each_reference_models_own_training_images(study: Study) -> None:
    """The Laplace fit of reference model j sees the features of exactly the images that model trained on."""
    refs = jobs.ensure(study, reference_models.requests(study)[:study.profile.reference_models.variant_k],
                       progress=False)
    pop, mask = reference_models.population(study), reference_models.in_mask(study)
    seen = {}

    def fake_fit(head, loader, **kwargs):
        seen["x"] = loader.dataset.tensors[0].numpy()
        raise _Fitted
    for j, tm in enumerate(refs):
        feats = np.concatenate([variants.model_features(study, tm, spec)
                                for spec in reference_variants.population_specs(study)])
        feats = np.concatenate([feats[:len(pop) // 2], feats[len(pop) // 2:][:len(pop) // 2]])
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(reference_variants.calibration, "fit_llla", fake_fit)
            mp.setattr(study.store, "get_or_make", lambda kind, config, make: make())
            with pytest.raises(_Fitted):
                reference_variants.reference_llla(study, tm, mask[j])
        own = np.isin(pop, reference_models.requests(study)[j].indices)  # the images model j trained on
        np.testing.assert_array_equal(seen["x"], feats[own])
