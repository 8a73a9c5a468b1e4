"""Notebook 06 (calibration): temperature variants on synthetic logits, the trade-off tables, and what the
smoke run wrote. ECE / OE on hand-made cases live in test_metrics.py, temperature recovery and the LLLA
wrapper in test_calibration.py."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mia_nb.attacks import evaluation
from mia_nb.claims import tradeoff
from mia_nb.models import variants
from mia_nb.data.nonmembers import part_spec

REPO = Path(__file__).resolve().parents[1]
K = 4  # classes of the synthetic outputs in the figure tests
SCORE_FREE = ["variant", "attack", "nonmember_set", "n_members", "n_nonmembers"]
PARTS = ("target_train", "target_heldout", "shadow_train", "shadow_heldout", "calibration")


def _pools(study) -> dict:
    return {"heldout": part_spec(study, "target_heldout"), "calibration": part_spec(study, "calibration")}


@pytest.mark.parametrize("t", [0.5, 3.0])
def test_fixed_temperature_keeps_every_argmax_and_the_accuracy(tiny_study, t):
    study = tiny_study
    van, hot = variants.vanilla(study), variants.with_temperature(study, t)
    assert hot.name == f"temp_{t:g}" and hot.temperature == {"target": t, "shadow": t}
    for role in ("target", "shadow"):
        for name, spec in _pools(study).items():
            p0, p1 = van.probs(study, role, spec), hot.probs(study, role, spec)
            np.testing.assert_array_equal(p0.argmax(1), p1.argmax(1))
            np.testing.assert_allclose(p1.sum(1), 1.0, rtol=1e-6)
            assert not np.allclose(p0, p1)
    m0, m1 = evaluation.model_row(study, van), evaluation.model_row(study, hot)
    assert m1["heldout_acc"] == m0["heldout_acc"] and m1["train_acc"] == m0["train_acc"]
    assert m1["ece"] != m0["ece"] and m1["temperature_target"] == t


def test_temperature_acts_on_attack_rows_only_through_the_scores(tiny_study):
    """T applied to logits·T is vanilla on the logits, row for row; T on the same logits changes scores only."""
    study = tiny_study
    t = 4.0  # a power of two, so logits·T/T is exact in floating point
    base = variants.vanilla(study)
    pools = _pools(study)
    scaled = {}
    for role, tm in base.models.items():  # the same models with every cached logit multiplied by T
        scaled[role] = dataclasses.replace(tm, key=f"{tm.key}-times-{t:g}")
        for spec in [*pools.values(), *(part_spec(study, p) for p in PARTS)]:
            logits = variants.model_logits(study, tm, spec)
            study.store.put("logits", {"model": scaled[role].key, **spec.config}, (logits * t).astype(np.float32))
    rows0 = evaluation.evaluate(study, base, pools, save=False).rows
    hot_scaled = variants.Variant("vanilla", "temperature", scaled, {"target": t, "shadow": t})
    rows_scaled = evaluation.evaluate(study, hot_scaled, pools, save=False).rows
    pd.testing.assert_frame_equal(rows0.drop(columns="variant"), rows_scaled.drop(columns="variant"))

    rows_t = evaluation.evaluate(study, variants.with_temperature(study, t), pools, save=False).rows
    assert set(rows_t["variant"]) == {"temp_4"}
    pd.testing.assert_frame_equal(rows0[SCORE_FREE[1:]], rows_t[SCORE_FREE[1:]])
    thr = rows0["attack"] == "threshold"
    assert not np.allclose(rows0.loc[thr, "threshold"], rows_t.loc[thr, "threshold"])


# ------------------------------------------------------------------------------------- trade-off tables

def _tables() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Two attacks, three pools, three variants: `cal` is better calibrated, fewer FPs, stronger attack."""
    fpr = {"vanilla": (0.6, 0.8, 0.4), "cal": (0.3, 0.2, 0.1), "hot": (0.7, 0.9, 0.9)}
    auroc = {"vanilla": 0.60, "cal": 0.70, "hot": 0.55}
    rows = []
    for attack in ("threshold", "entropy"):
        for v, fs in fpr.items():
            for pool, f in zip(("heldout", "noise", "gan"), fs):
                shift = 0.0 if attack == "threshold" else 0.05
                rows.append({"variant": v, "attack": attack, "nonmember_set": pool, "fpr": f + shift,
                             "auroc": auroc[v] + shift, "tpr_at_1pct_fpr": auroc[v] / 10,
                             "tpr_at_1pct_fpr_lo": auroc[v] / 10 - 0.005, "tpr_at_1pct_fpr_hi": auroc[v] / 10 + 0.005})
    models = pd.DataFrame({"variant": ["vanilla", "cal", "hot"], "family": ["vanilla", "llla", "temperature"],
                           "ece": [0.10, 0.03, 0.40], "oe": [0.08, 0.01, 0.0], "heldout_acc": [0.8] * 3,
                           "nll": [0.7, 0.5, 1.9]})
    return pd.DataFrame(rows), models


def test_per_variant_reads_heldout_and_averages_the_other_pools():
    attacks, models = _tables()
    s = tradeoff.per_variant(attacks, models, "threshold", variants=["vanilla", "cal", "hot"])
    assert list(s.index) == ["vanilla", "cal", "hot"]
    assert s.loc["vanilla", "fpr_heldout"] == 0.6 and s.loc["vanilla", "mean_ood_fpr"] == pytest.approx(0.6)
    assert s.loc["cal", "mean_ood_fpr"] == pytest.approx(0.15) and s.loc["cal", "n_ood_pools"] == 2
    assert s.loc["hot", "auroc"] == 0.55 and s.loc["cal", "ece"] == 0.03
    e = tradeoff.per_variant(attacks, models, "entropy")
    assert e.loc["vanilla", "auroc"] == pytest.approx(0.65)
    with pytest.raises(ValueError, match="no rows for attack 'salem'"):
        tradeoff.per_variant(attacks, models, "salem")
    with pytest.raises(ValueError, match="'heldout' row"):
        tradeoff.per_variant(attacks[attacks.nonmember_set != "heldout"], models)


def test_fpr_matrix_and_attack_overview_orders():
    attacks, _ = _tables()
    m = tradeoff.fpr_matrix(attacks, "threshold", variants=["hot", "vanilla"], pools=["heldout", "gan"])
    assert m.shape == (2, 2) and m.loc["hot", "gan"] == 0.9 and list(m.columns) == ["heldout", "gan"]
    with pytest.raises(ValueError, match="digits"):
        tradeoff.fpr_matrix(attacks, "threshold", pools=["heldout", "digits"])
    o = tradeoff.attack_overview(attacks, variants=["cal", "vanilla", "hot"])
    assert list(o.index) == ["cal", "vanilla", "hot"]
    assert o.loc["cal", ("mean_ood_fpr", "entropy")] == pytest.approx(0.2)
    assert o.loc["vanilla", ("heldout_auroc", "threshold")] == pytest.approx(0.6)


def test_calibration_figures_draw():
    from mia_nb.report import figures_calibration
    from mia_nb.attacks.scores import Outputs, softmax
    attacks, models = _tables()
    s = tradeoff.per_variant(attacks, models)
    fig = figures_calibration.calibration_tradeoff(s)
    assert len(fig.axes) == 3 and len(fig.axes[0].texts) == len(s)
    fig = figures_calibration.fpr_by_pool(tradeoff.fpr_matrix(attacks))
    assert len(fig.axes) == 4  # two heatmaps and their colour bars
    rng = np.random.default_rng(0)
    outs = {f"v{i}": Outputs(softmax(rng.normal(0, 3, (50, K))), rng.integers(0, K, 50)) for i in range(5)}
    fig = figures_calibration.reliability_diagrams(outs, ncols=4)
    assert sum(ax.get_visible() and ax.axison for ax in fig.axes) == 5


# ------------------------------------------------------------------------------------ the smoke run

@pytest.mark.notebooks
def test_06_smoke_results(smoke_run):
    from mia_nb.data import nonmembers
    from mia_nb.study import open_study
    study = open_study(REPO / "params" / "smoke.yaml", smoke_run.parent)
    cal = study.profile.calibration
    pools = set(nonmembers.pool_specs(study))
    assert "gan" in pools
    expected = (["vanilla", "temp_fitted", "llla"] + [f"temp_{t:g}" for t in cal.temperatures]
                + [f"ls_{e:g}" for e in cal.label_smoothing])
    attacks = pd.read_csv(smoke_run / "results" / "attacks.csv")
    for v in expected:
        for a in study.profile.attacks.names:
            got = set(attacks.loc[(attacks.variant == v) & (attacks.attack == a), "nonmember_set"])
            assert pools <= got, f"{v} / {a}: no rows for {sorted(pools - got)}"
    assert attacks[attacks.variant.isin(expected)][["fpr", "auroc", "recall"]].apply(lambda c: c.between(0, 1)).all().all()

    table = pd.read_csv(smoke_run / "results" / "variants.csv").set_index("variant")
    assert set(expected) <= set(table.index)
    t = table.loc[expected]
    assert (t.ece.between(0, 1) & t.oe.between(0, 1) & (t.oe <= t.ece + 1e-12)).all()
    assert t.heldout_acc.between(0, 1).all() and (t.nll > 0).all()
    fixed = [f"temp_{x:g}" for x in cal.temperatures] + ["temp_fitted"]
    assert (t.loc[fixed, "heldout_acc"] == t.loc["vanilla", "heldout_acc"]).all()
    assert t.loc["temp_fitted", "temperature_target"] > 0

    models = pd.read_csv(smoke_run / "results" / "models.csv")
    ref = study.profile.reference_models  # label smoothing named there also trains its reference models (notebook 08)
    for e in cal.label_smoothing:
        refs = {f"ref_{j}" for j in range(ref.variant_k)} if f"ls_{e:g}" in ref.variants else set()
        assert set(models.loc[models.variant == f"ls_{e:g}", "role"]) == {"target", "shadow"} | refs
    for name in ("06_reliability_diagrams", "06_calibration_tradeoff", "06_fpr_by_pool"):
        path = smoke_run / "figures" / f"{name}.png"
        assert path.is_file() and path.stat().st_size > 10_000, name


def test_llla_tuning_noise_is_disjoint_from_every_pool(tiny_study):
    from mia_nb.data import nonmembers
    study = tiny_study
    pools = nonmembers.pool_specs(study)
    noise = variants.tuning_noise(study)
    variants.assert_disjoint_from_pools(noise, pools)  # the study's own pools: no overlap
    clash = {"uniform": dataclasses.replace(pools["uniform"], config={**pools["uniform"].config, "seed": noise.config["seed"]},
                                            build=noise.build)}
    with pytest.raises(ValueError, match="overlaps|repeats"):
        variants.assert_disjoint_from_pools(noise, clash)


def test_llla_log_probabilities_have_no_ties_where_float32_probabilities_do():
    """A confident model: its float32 softmax rounds many max scores to exactly 1.0; the LLLA path's float64
    log-probabilities keep them apart, so the attacks can rank them."""
    import torch
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    from mia_nb.models import calibration
    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, 8, generator=g)
    y = (x[:, 0] > 0).long()
    head = nn.Sequential(nn.Identity(), nn.Linear(8, 2))
    with torch.no_grad():
        head[1].weight.copy_(torch.tensor([[-10.0] + [0.0] * 7, [10.0] + [0.0] * 7]))  # margins 20|x|
        head[1].bias.zero_()
    res = calibration.fit_llla(head, DataLoader(TensorDataset(x, y), batch_size=100), prior="marglik", seed=0)
    p32 = torch.softmax(head(x), dim=1).max(1).values.detach().numpy()
    assert (p32 == 1.0).sum() > 50  # ties at 1.0 in float32
    from mia_nb.attacks.score_based import ThresholdAttack
    from mia_nb.attacks.scores import Outputs
    logp = calibration.llla_log_predict(res, x, link="mc", n_samples=200, seed=0)
    assert logp.dtype == np.float64 and np.isfinite(logp).all()
    score = ThresholdAttack().score(Outputs(np.exp(logp), y.numpy(), logp))  # what the attack ranks by
    tied = p32 == 1.0
    assert len(np.unique(score[tied])) == tied.sum()  # every float32 tie broken
    np.testing.assert_allclose(np.exp(logp).sum(1), 1.0, rtol=1e-9)


def test_the_leaky_llla_arm_is_excluded_from_verdicts():
    from test_claims import null_seed

    from mia_nb.claims import findings
    s = null_seed()
    llla = s.variants["llla"]
    s.variants["llla_leaky"] = dataclasses.replace(llla, variant="llla_leaky", leaky=True,
                                                   arrays={k: v.copy() for k, v in llla.arrays.items()})
    ids = [c.id for c in findings.build_claims([s])]
    assert any(i.endswith("_llla") for i in ids) and not any("leaky" in i for i in ids)


@pytest.mark.filterwarnings("ignore:LLLA prior precision")  # the tiny models' priors sit on the grid's edge
def test_llla_reports_how_each_prior_was_chosen_and_reads_it_back_from_the_store(tiny_study):
    study = tiny_study
    fresh = variants.llla(study, "leaky")  # a grid arm tuned on each model's own held-out part
    again = variants.llla(study, "leaky")  # loaded: the Laplace fits and their stored meta
    assert fresh.leaky and fresh.link == study.profile.calibration.llla.link and fresh.strength is None
    assert again.laplace_meta == fresh.laplace_meta and set(fresh.laplace_meta) == {"target", "shadow"}
    for role, meta in fresh.laplace_meta.items():
        assert (meta.arm, meta.prior_method, meta.tuned_on) == ("leaky", "grid", f"{role}_heldout")
        assert meta.prior_precision in meta.grid and len(meta.grid_nll) == len(meta.grid)
        assert meta.on_grid_edge == (meta.prior_precision in (min(meta.grid), max(meta.grid)))
    marglik = variants.llla(study, "marglik")
    assert not marglik.leaky and marglik.link == "probit"
    assert all(m.prior_method == "marglik" and m.grid is None and m.tuned_on is None
               for m in marglik.laplace_meta.values())
