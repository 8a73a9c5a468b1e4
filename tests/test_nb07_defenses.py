"""Notebook 07 (defenses): the temperature defense keeps every prediction, the separation table's
Wasserstein distances and verdict on hand-made samples, and what the smoke run of notebook 07 wrote.
(The Opacus step that reports a finite epsilon is tested in test_privacy.py.)"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mia_nb.claims.separation import separation_table
from mia_nb.models import jobs, variants
from mia_nb.config import load_profile
from mia_nb.data.nonmembers import part_spec
from mia_nb.attacks.scores import softmax

REPO = Path(__file__).resolve().parents[1]


def test_temperature_defense_keeps_every_argmax_and_flattens_scores(tiny_study):
    study = tiny_study
    pool = part_spec(study, "target_heldout")
    vanilla = variants.vanilla(study)
    hot = variants.with_temperature(study, 10.0)
    assert hot.name == "temp_10" and hot.temperature == {"target": 10.0, "shadow": 10.0}  # the attacker mirrors it
    assert {r: m.key for r, m in hot.models.items()} == {r: m.key for r, m in vanilla.models.items()}
    for role in ("target", "shadow"):
        logits = variants.model_logits(study, vanilla.models[role], pool)
        p1, p10 = vanilla.probs(study, role, pool), hot.probs(study, role, pool)
        np.testing.assert_allclose(p10.sum(1), 1.0, rtol=1e-6)
        np.testing.assert_array_equal(p10.argmax(1), p1.argmax(1))
        np.testing.assert_array_equal(p10.argmax(1), logits.argmax(1))
        assert np.all(p10.max(1) <= p1.max(1) + 1e-7)  # flatter: never more confident
        assert p10.max(1).mean() < p1.max(1).mean()
    np.testing.assert_allclose(softmax(logits, 1e6).max(1), 0.1, atol=1e-4)  # T → ∞: uniform over 10 classes


def _samples(members: float, heldout: float, ood: float, n: int = 40) -> dict[str, np.ndarray]:
    return {"members": np.full(n, members), "heldout": np.full(n + 7, heldout), "ood": np.full(n - 9, ood)}


def test_separation_table_wasserstein_of_shifted_point_masses_is_the_shift():
    table = separation_table({"vanilla": _samples(0.9, 0.6, 0.2), "temp_10": _samples(0.15, 0.14, 0.12)},
                             {"vanilla": "vanilla", "temp_10": "temperature"}, ood="gan").set_index("variant")
    assert table.loc["vanilla", "w1_member_heldout"] == pytest.approx(0.3)
    assert table.loc["vanilla", "w1_member_ood"] == pytest.approx(0.7)
    assert table.loc["temp_10", "w1_member_heldout"] == pytest.approx(0.01)
    assert table.loc["vanilla", "mmps_heldout"] == pytest.approx(0.6)
    assert list(table[["n_members", "n_heldout", "n_ood"]].loc["vanilla"]) == [40, 47, 31]
    assert table.loc["temp_10", "kind"] == "defense" and table.loc["vanilla", "ood_pool"] == "gan"


def test_separation_table_uniform_samples_and_bad_input():
    # U[0, 1] against U[0.25, 1.25] (quantiles): W1 = 0.25
    u = (np.arange(1000) + 0.5) / 1000
    t = separation_table({"v": {"members": u, "heldout": u + 0.25, "ood": u}})
    assert t.loc[0, "w1_member_heldout"] == pytest.approx(0.25)
    assert t.loc[0, "w1_member_ood"] == pytest.approx(0.0)
    with pytest.raises(ValueError, match="lacks samples"):
        separation_table({"v": {"members": u, "heldout": u}})


# ----------------------------------------------------------------------------- the smoke run

def _defense_names() -> list[str]:
    d = load_profile(REPO / "params" / "smoke.yaml").defenses
    return [f"l2_{wd:g}" for wd in d.weight_decay] + [f"temp_{d.temperature:g}"] + [f"dp_{e:g}" for e in d.dp_epsilons]


def test_07_defenses_smoke(smoke_run):
    names = _defense_names()
    assert "temp_10" in names and any(n.startswith("dp_") for n in names)
    attacks = pd.read_csv(smoke_run / "results" / "attacks.csv")
    profile = load_profile(REPO / "params" / "smoke.yaml")
    for name in names:
        rows = attacks[attacks.variant == name]
        assert set(rows.attack) == set(profile.attacks.names), name
        assert {"heldout", "gan", "scaled255"} <= set(rows.nonmember_set), name
        assert rows[["auroc", "fpr"]].notna().all().all(), name
    assert set(names) <= set(pd.read_csv(smoke_run / "results" / "variants.csv").variant)

    sep = pd.read_csv(smoke_run / "results" / "separation.csv")
    eps = max(profile.calibration.label_smoothing)
    assert {"vanilla", f"ls_{eps:g}", "llla", *names} <= set(sep.variant)
    dist = sep[["w1_member_heldout", "w1_member_ood"]].to_numpy()
    assert np.isfinite(dist).all() and (dist >= 0).all()

    models = pd.read_csv(smoke_run / "results" / "models.csv")
    clip = models[models.variant == "dp_clip"]
    assert set(clip.role) == {"target", "shadow"} and (clip.dp_noise_multiplier == 0).all()  # the clip-only control
    dp = models[models.variant.str.startswith("dp_") & (models.variant != "dp_clip")]
    assert set(dp.role) == {"target", "shadow"} and len(dp) == 2 * len(profile.defenses.dp_epsilons)
    assert (dp.dp_noise_multiplier > 0).all()
    assert all(math.isfinite(e) and e > 0 for e in dp.dp_epsilon)
    for r in dp.itertuples():  # Opacus spends (about) the budget it was asked for, never more than a little over
        assert r.dp_epsilon <= 1.05 * float(r.variant[3:])

    for fig in ("07_kde_separation", "07_privacy_utility"):
        assert (smoke_run / "figures" / f"{fig}.png").stat().st_size > 10_000, fig


def test_clip_only_control_differs_from_dp_only_in_noise_and_from_vanilla_only_in_schedule(tiny_study):
    study = tiny_study
    clip, dp8 = variants.dp_recipe(study, None), variants.dp_recipe(study, 8.0)
    assert clip.name == "dp_clip" and clip.dp["epsilon"] is None and dp8.dp["epsilon"] == 8.0
    assert clip.train_changes == dp8.train_changes
    assert {k: v for k, v in clip.dp.items() if k != "epsilon"} == {k: v for k, v in dp8.dp.items() if k != "epsilon"}
    req_clip = variants.pair_requests(study, "dp_clip", clip)[0]
    cfg_clip = jobs.model_config(study, "target", "x", req_clip.train, study.splits["target_train"], req_clip.dp)
    cfg_van = jobs.model_config(study, "target", "x", study.profile.train, study.splits["target_train"])
    diff = {k for k in cfg_clip["train"] if cfg_clip["train"][k] != cfg_van["train"][k]}
    assert diff <= {"epochs"} and set(cfg_clip) - set(cfg_van) == {"dp"}
    names = [rc.name for rc in variants.profile_recipes(study)]
    assert names.count("dp_clip") == 1 and names.index("dp_clip") > max(i for i, n in enumerate(names) if n.startswith("dp_") and n != "dp_clip")


def test_clip_only_training_adds_no_noise(tiny_study):
    study = tiny_study
    v = variants.retrained(study, [variants.dp_recipe(study, None)])["dp_clip"]
    assert v.target.metrics.dp_noise_multiplier == v.shadow.metrics.dp_noise_multiplier == 0.0
    assert v.target.metrics.dp_epsilon == float("inf")
    d = study.profile.defenses
    assert v.target.dp == jobs.DPSettings(epsilon=None, delta=d.dp_delta, max_grad_norm=d.dp_max_grad_norm)
    assert v.target.train.epochs == (d.dp_epochs or study.profile.train.epochs)
    record = study.store.get("model", v.target.config)  # the typed figures are the stored record's, in its order
    assert list(v.target.metrics.as_dict().items()) == list(record["metrics"].items())
    assert v.target.summary()["dp_epsilon"] == float("inf")
