"""The smoke profile end to end through `python -m mia_nb run` (fixture `smoke_run` in conftest.py),
then checks of what each notebook wrote. Notebook-specific checks may also live in other test files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from mia_nb.runner.plan import LESSON, list_notebooks, role

REPO = Path(__file__).resolve().parents[1]


def test_every_notebook_executed(smoke_run):
    executed = sorted(p.name for p in (smoke_run / "notebooks").glob("*.ipynb"))
    committed = sorted(p.name for p in list_notebooks() if role(p).stage != LESSON)  # no run executes a lesson
    assert executed == committed


def test_01_splits(smoke_run):
    z = np.load(smoke_run / "data" / "splits.npz")
    assert {"target_train", "target_heldout", "shadow_train", "shadow_heldout", "calibration", "generator"} <= set(z.files)
    assert len(z["target_train"]) == 200
    all_idx = np.concatenate([z[k] for k in z.files])
    assert len(all_idx) == len(np.unique(all_idx))
    assert (smoke_run / "figures" / "01_samples_per_class.png").is_file()


def test_02_03_models(smoke_run):
    models = pd.read_csv(smoke_run / "results" / "models.csv")
    vanilla = models[(models.variant == "vanilla") & models.role.isin(["target", "shadow"])].set_index("role")
    assert {"target", "shadow"} <= set(vanilla.index)
    assert {"ref_0", "ref_1"} <= set(models.role)  # the reference models of notebook 08 are listed too
    assert vanilla.loc["target", "key"] != vanilla.loc["shadow", "key"]
    assert ((vanilla.train_acc >= 0) & (vanilla.train_acc <= 1)).all()
    assert len(list((smoke_run / "store" / "model").glob("*.pt"))) >= 2


def test_09_claims_and_report(smoke_run):
    claims = pd.read_csv(smoke_run / "results" / "claims.csv")
    assert len(claims) >= 8
    assert {"id", "claim", "measured", "ci_lo", "ci_hi", "side", "band", "verdict", "paper"} <= set(claims.columns)
    from mia_nb.claims.findings import VERDICTS
    assert set(claims.verdict) <= set(VERDICTS)
    assert (claims.verdict != "not measured").sum() >= 8, claims[["claim", "verdict"]]
    assert claims.id.str.startswith("ref_").any()  # notebook 08's claims, from the 2-model reference run
    summary = (smoke_run / "report" / "summary.md").read_text()
    assert "## What the study shows" in summary and f"{len(claims)} tested" in summary
    index = (smoke_run / "report" / "index.html").read_text()
    from mia_nb.layout import KEY_FIGURES
    for name in KEY_FIGURES:  # every key figure the notebooks make is shown on the index page
        assert f"figures/{name}.png" in index, name
    for nb in (smoke_run / "notebooks").glob("*.ipynb"):
        assert f'href="{nb.stem}.html"' in index
        assert (smoke_run / "report" / f"{nb.stem}.html").is_file()


def test_04_attacks(smoke_run):
    table = pd.read_csv(smoke_run / "results" / "attacks.csv")
    rows = table[(table.variant == "vanilla") & (table.nonmember_set == "heldout")]
    assert sorted(rows.attack) == sorted(["threshold", "entropy", "salem", "loss"])
    assert not rows.duplicated(["variant", "attack", "nonmember_set"]).any()
    assert (rows.n_members == 200).all() and (rows.n_nonmembers == 400).all()  # smoke: 200 members, 400 held-out
    for col in ("recall", "fpr", "accuracy", "auroc", "aupr", "fpr_at_95tpr", "balanced_accuracy",
                "tpr_at_1pct_fpr", "tpr_at_01pct_fpr"):
        assert rows[col].between(0, 1).all(), col
    assert (rows.balanced_accuracy >= 0.5).all()
    for s in ("1pct", "01pct"):
        c = f"tpr_at_{s}_fpr"
        assert (rows[f"{c}_lo"] >= 0).all() and (rows[f"{c}_lo"] <= rows[f"{c}_hi"]).all()
        assert (rows[f"{c}_hi"] <= 1).all()
    assert rows.set_index("attack").threshold.drop("salem").notna().all()
    for name in ("04_roc_curves", "04_max_score_distributions", "04_threshold_explorer"):
        assert (smoke_run / "figures" / f"{name}.png").stat().st_size > 10_000, name


def test_08_reference_attacks_two_models(smoke_run):
    table = pd.read_csv(smoke_run / "results" / "08_reference_attacks.csv")
    assert set(table.attack) == {"lira_online", "lira_offline", "rmia", "threshold", "loss"}
    assert (table.k == 2).all() and table.fpr.between(0, 1).all()
    assert {"heldout", "permuted", "uniform"} <= set(table.set)
    z = np.load(smoke_run / "samples" / "vanilla_ref.npz")
    assert "lira_online@1pct/member/uniform" in z.files and "rmia/score/members" in z.files
    models = list((smoke_run / "store" / "model").glob("*.pt"))
    assert len(models) >= 2 + 2  # target, shadow, and the two reference models at least
    for name in ("08_reference_example", "08_roc", "08_fpr_heatmap_1pct", "08_tpr_vs_k"):
        assert (smoke_run / "figures" / f"{name}.png").is_file(), name
