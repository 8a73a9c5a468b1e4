"""Reference models on a real tiny study (the population, complementary and honest IN masks, the jobs) and the
reference attacks' one fit on synthetic logits: set invariance, the K curve, operating points, options."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from mia_nb.attacks import lira_rmia, reference_models, thresholds
from mia_nb.attacks.reference_models import HELDOUT, MEMBERS, POPULATION_Z, Candidates, join, score_set, scores
from mia_nb.claims import paired
from mia_nb.config import ConfigError, ReferenceConfig, parse_profile
from mia_nb.data.nonmembers import POOLS, kind_of, pool_specs
from mia_nb.study import Study


def test_population_masks_and_requests(tiny_study):
    study = tiny_study
    assert not reference_models.enabled(study) and reference_models.requests(study) == []
    profile = dataclasses.replace(study.profile, reference_models=dataclasses.replace(study.profile.reference_models, k=4))
    s = Study(profile, study.base.parent, seed=study.seed)
    assert reference_models.enabled(s)
    pop = reference_models.population(s)
    n = len(s.splits["target_train"])
    assert len(pop) == 2 * n and set(pop[:n]) == set(s.splits["target_train"])
    assert set(pop[n:]) <= set(s.splits["target_heldout"])
    mask = reference_models.in_mask(s)
    assert mask.shape == (4, 2 * n) and (mask.sum(0) == 2).all()  # every candidate IN for exactly K/2
    assert (mask[0] ^ mask[1]).all() and (mask[2] ^ mask[3]).all()  # complementary pairs
    reqs = reference_models.requests(s)
    assert [r.role for r in reqs] == ["ref_0", "ref_1", "ref_2", "ref_3"]
    assert all(len(r.indices) == n for r in reqs)
    assert np.array_equal(np.sort(np.concatenate([reqs[0].indices, reqs[1].indices])), np.sort(pop))


def test_no_reference_model_that_trained_on_an_images_source_counts_as_OUT(tiny_study):
    """Every set's honest mask against the reference models' real training indices: an image made from a held-out
    candidate (a near-copy in a transform or corruption pool) is IN exactly for the models that trained on it."""
    p = tiny_study.profile
    profile = dataclasses.replace(p, splits=dataclasses.replace(p.splits, target_heldout=100),
                                  ood=dataclasses.replace(p.ood, max_pool_size=100),
                                  reference_models=dataclasses.replace(p.reference_models, k=4))
    s = Study(profile, tiny_study.base.parent / "masks", seed=tiny_study.seed)
    s.make_splits()
    train, held = s.splits["target_train"], s.splits["target_heldout"]
    trained = [set(r.indices.tolist()) for r in reference_models.requests(s)]
    pop_mask = reference_models.in_mask(s)
    specs = pool_specs(s)
    x_held = s.inputs("target_heldout")[0]
    # the pools keep the held-out order: pool image j is made from held-out image j
    assert torch.equal(specs["heldout"].build()[0], x_held)
    assert torch.allclose(specs["scaled255"].build()[0] / 255.0, x_held[:100])
    sets = {MEMBERS: len(train), **{name: len(spec.labels()) for name, spec in specs.items()}}
    assert sets["permuted"] == 100 > len(train)  # the pool reaches past the population: some images all-OUT
    n_in = 0
    for name, n in sets.items():
        mask = reference_models.set_mask(name, n, pop_mask)
        derived = name == MEMBERS or POOLS[kind_of(name)[0]].from_heldout
        source = (train if name == MEMBERS else held)[:n] if derived else np.full(n, -1)
        want = np.array([[int(src) in t for src in source] for t in trained])
        np.testing.assert_array_equal(mask, want, err_msg=name)
        n_in += int(mask.sum())
    assert n_in > 0
    with pytest.raises(ValueError, match="members"):
        reference_models.source_index(MEMBERS, 3, len(train))
    with pytest.raises(ValueError, match="unknown pool"):
        reference_models.source_index("no_such_pool", 3, len(train))


def test_reference_model_settings_fail_at_load():
    for values, key in (({"k": 3}, "reference_models.k"), ({"k": 1}, "reference_models.k"),
                        ({"k": -2}, "reference_models.k"), ({"k": 4, "seeds": [7]}, r"reference_models.seeds\[0\]"),
                        ({"rmia_a": 1.5}, "reference_models.rmia_a"),
                        ({"k_curve": [3]}, r"reference_models.k_curve\[0\]"),
                        ({"rmia_gamma": 0}, "reference_models.rmia_gamma"),
                        ({"rmia_gamma": -1.0}, "reference_models.rmia_gamma"),
                        ({"rmia_gamma": float("inf")}, "reference_models.rmia_gamma"),
                        ({"lira_center": "mode"}, "reference_models.lira_center"),
                        ({"lira_spread": "wide"}, "reference_models.lira_spread"),
                        ({"lira_offline": "left"}, "reference_models.lira_offline"),
                        ({"tta_aggregate": "max"}, "reference_models.tta_aggregate")):
        with pytest.raises(ConfigError, match=key):
            parse_profile({"reference_models": values})
    r = parse_profile({}).reference_models  # the defaults follow the authors' code
    assert (r.lira_center, r.lira_spread, r.lira_offline, r.tta_aggregate, r.rmia_gamma) == (
        "median", "global", "two_sided", "scores", 1.0)


# ---------------------------------------------------------------- one fit on synthetic logits


def _data(k: int = 8, n: int = 300, n_pool: int = 400, views: int = 1, seed: int = 0) -> dict[str, Candidates]:
    """Members, held-out (its first n in the population), a pool made from held-out images (their masks), a pool
    OUT for every model and the population z; the IN references and the members get a higher true-class logit."""
    rng = np.random.default_rng(seed)
    pop = lira_rmia.complementary_splits(np.arange(2 * n), k, seed)
    held = np.zeros((k, 2 * n), bool)
    held[:, :n] = pop[:, n:]

    def world(m: int, mask: np.ndarray, member: bool) -> Candidates:
        y = rng.integers(0, 10, m)
        base = rng.normal(0, 1, (m, 10))
        base[np.arange(m), y] += rng.normal(3, 2, m)
        refs = base[None, None] + rng.normal(0, 0.7, (k, views, m, 10))
        refs[:, :, np.arange(m), y] += 1.5 * mask[:, None]
        target = base[None] + rng.normal(0, 0.7, (views, m, 10))
        target[:, np.arange(m), y] += 1.5 * member
        return Candidates(target, refs, y, mask)
    return {MEMBERS: world(n, pop[:, :n], True), HELDOUT: world(2 * n, held, False),
            "near_copies": world(n_pool, held[:, :n_pool], False),
            "ood": world(n_pool, np.zeros((k, n_pool), bool), False),
            POPULATION_Z: world(200, np.zeros((k, 200), bool), False)}


@pytest.mark.parametrize("views", [1, 2])
def test_an_images_score_does_not_depend_on_the_set_it_is_in(views):
    data = _data(views=views)
    cfg = ReferenceConfig(k=8, tta_flip=views > 1)
    before, fitted = scores(data, cfg)
    n = data[MEMBERS].n
    # move held-out image n + 5 (OUT for every model) and near-copy 7 into a set of their own, drop the OOD pool
    keep_h, keep_p = np.arange(2 * n) != n + 5, np.arange(400) != 7
    moved = {MEMBERS: data[MEMBERS], HELDOUT: data[HELDOUT].take(keep_h),
             "near_copies": data["near_copies"].take(keep_p), POPULATION_Z: data[POPULATION_Z],
             "moved": join([data[HELDOUT].take([n + 5]), data["near_copies"].take([7])])}
    after, refit = scores(moved, cfg)
    assert refit.lira == fitted.lira and refit.rmia.a == fitted.rmia.a  # the fit sees the population only
    for attack in reference_models.REF_ATTACKS:
        np.testing.assert_allclose(after["moved"][attack], [before[HELDOUT][attack][n + 5],
                                                            before["near_copies"][attack][7]], rtol=1e-12)
        np.testing.assert_allclose(after[MEMBERS][attack], before[MEMBERS][attack], rtol=1e-12)
        np.testing.assert_allclose(after[HELDOUT][attack], before[HELDOUT][attack][keep_h], rtol=1e-12)
        np.testing.assert_allclose(after["near_copies"][attack], before["near_copies"][attack][keep_p], rtol=1e-12)
    # a member scored among non-members, with the same fit, keeps its score (and its own IN / OUT models)
    mixed = score_set(join([data["ood"].take([0, 1]), data[MEMBERS].take([3])]), fitted, cfg)
    for attack in reference_models.REF_ATTACKS:
        assert mixed[attack][2] == pytest.approx(before[MEMBERS][attack][3], rel=1e-12)


def test_the_k_curve_does_not_fall_as_k_grows():
    """One fit per k on the population: with more reference models no attack gets worse beyond noise (the old
    per-set fit put LiRA online far above its K = 16 value at K = 2)."""
    data = _data(k=16, n=1500, n_pool=10, seed=4)
    cfg = ReferenceConfig(k=16)
    n = data[MEMBERS].n
    auc = {a: [] for a in reference_models.REF_ATTACKS}
    for k in (2, 4, 8, 16):
        s, fitted = scores(data, cfg, k=k, sets=(MEMBERS, HELDOUT))
        assert fitted.k == k
        for a in auc:
            auc[a].append(float(paired.auroc(s[MEMBERS][a], s[HELDOUT][a][:n])))
    for a, values in auc.items():
        assert all(later >= earlier - 0.01 for earlier, later in zip(values, values[1:])), (a, values)
        assert values[-1] > values[0], (a, values)


def test_operating_points_are_the_tpr_thresholds_of_the_same_half():
    rng = np.random.default_rng(5)
    pos, neg = rng.normal(1, 1, 500), rng.normal(0, 1, 2000)
    points, check = reference_models.operating_points(neg, seed=9)
    for suffix, alpha in (("1pct", 0.01), ("01pct", 0.001)):
        assert points[suffix] == thresholds.tpr_at_fpr(pos, neg, alpha, seed=9)["threshold"]
        t, held = thresholds.split_threshold(neg, alpha, seed=9)
        assert points[suffix] == t and np.array_equal(check, held)
    assert check.sum() == 1000


def test_option_table_compares_each_setting_with_the_profiles():
    data = _data(views=2, seed=6)
    cfg = ReferenceConfig(k=8, tta_flip=True)
    table = reference_models.option_table(data, cfg, seed=0)
    assert set(table.option) == set(reference_models.OPTIONS)
    for option, g in table.groupby("option"):
        assert set(g.setting) == {str(v) for v in reference_models.OPTIONS[option]}
        assert g[g.profile].setting.nunique() == 1 and g[g.profile].setting.iloc[0] == str(getattr(cfg, option))
        assert set(g.attack) == set(reference_models.OPTION_ATTACKS[option])
        assert g.auroc.between(0, 1).all() and g.tpr_at_01pct_fpr.between(0, 1).all()
    for option in ("lira_center", "lira_offline", "rmia_gamma", "tta_aggregate"):  # each setting is wired through
        g = table[table.option == option]
        assert g.groupby("attack").auroc.nunique().min() == 2, option
    one_view = reference_models.option_table(_data(views=1, seed=6), ReferenceConfig(k=8), seed=0)
    assert "tta_aggregate" not in set(one_view.option)


def test_option_table_keeps_a_profile_setting_outside_the_usual_ones():
    """A profile's rmia_gamma other than 1 or 2 is measured too, so notebook 08 finds the profile's row."""
    table = reference_models.option_table(_data(views=1, seed=6), ReferenceConfig(k=8, rmia_gamma=1.5), seed=0)
    g = table[table.option == "rmia_gamma"]
    assert set(g.setting) == {"1.0", "2.0", "1.5"} and g[g.profile].setting.unique().tolist() == ["1.5"]
