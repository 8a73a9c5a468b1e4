"""Tests for mia_nb.evaluate (fit on the balanced shadow, evaluate, upsert) and "score once" in Study."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mia_nb import evaluate
from mia_nb.config import AttacksConfig, parse_profile
from mia_nb.metrics import ATTACK_METRIC_KEYS
from mia_nb.scores import Outputs, softmax
from mia_nb.study import Study

K = 10
FAST = AttacksConfig(salem_max_epochs=5)
ATTACKS_CSV_COLUMNS = [
    "variant", "attack", "nonmember_set", "n_members", "n_nonmembers", "threshold", "precision", "recall", "fpr",
    "accuracy", "auroc", "aupr", "fpr_at_95tpr", "balanced_accuracy",
    "tpr_at_1pct_fpr", "tpr_at_1pct_fpr_lo", "tpr_at_1pct_fpr_hi", "fpr_check_1pct",
    "tpr_at_01pct_fpr", "tpr_at_01pct_fpr_lo", "tpr_at_01pct_fpr_hi", "fpr_check_01pct",
    "mmps_tp", "mmps_fp", "mmps_fn", "mmps_tn",
]


def outputs(n: int, confidence: float, seed: int) -> Outputs:
    """Softmax outputs whose true-class logit is about `confidence` above the rest (higher = more member-like)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, K, n)
    z = rng.normal(size=(n, K))
    z[np.arange(n), y] += confidence + rng.normal(scale=0.5, size=n)
    return Outputs(softmax(z), y)


def test_fit_attacks_balances_the_shadow_and_reports_sizes():
    members, nonmembers = outputs(60, 6.0, 0), outputs(150, 1.0, 1)
    attacks, sizes = evaluate.fit_attacks(FAST, members, nonmembers, seed=3)
    assert sizes == {"shadow_members": 60, "shadow_nonmembers": 60}
    assert list(attacks) == list(FAST.names)
    _, sizes = evaluate.fit_attacks(FAST, outputs(90, 6.0, 2), outputs(40, 1.0, 3), seed=3)
    assert sizes == {"shadow_members": 40, "shadow_nonmembers": 40}


def test_evaluate_attacks_columns_and_members_positive_end_to_end():
    attacks, _ = evaluate.fit_attacks(FAST, outputs(200, 6.0, 0), outputs(200, 0.5, 1), seed=0)
    members = outputs(150, 6.0, 2)  # confident, like members of an overfitted model
    pools = {"heldout": outputs(300, 0.5, 3), "also_heldout": outputs(120, 0.5, 4)}
    df = evaluate.evaluate_attacks(attacks, members, pools, variant="vanilla", seed=0)
    assert list(df.columns) == ATTACKS_CSV_COLUMNS == evaluate.RESULT_KEYS + list(ATTACK_METRIC_KEYS)
    assert len(df) == len(attacks) * len(pools)
    assert set(zip(df.attack, df.nonmember_set)) == {(a, p) for a in attacks for p in pools}
    assert (df.variant == "vanilla").all()
    assert (df.n_members == 150).all() and set(df.n_nonmembers) == {300, 120}
    assert (df.auroc > 0.9).all() and (df.recall > df.fpr).all()  # members (positives) score higher
    for col in ("precision", "recall", "fpr", "accuracy", "auroc", "aupr", "tpr_at_1pct_fpr"):
        assert df[col].between(0, 1).all(), col
    # swap members and non-members: the same attacks now rank positives below negatives
    swapped = evaluate.evaluate_attacks(attacks, pools["heldout"], {"m": members}, "vanilla")
    assert (swapped.auroc < 0.1).all()


def test_decisions_and_readable_table():
    attacks, _ = evaluate.fit_attacks(FAST, outputs(100, 6.0, 0), outputs(100, 0.5, 1), seed=0)
    test = outputs(50, 6.0, 5)
    dec = evaluate.decisions(attacks, test)
    assert list(dec.columns) == list(attacks) and dec.shape == (50, len(attacks)) and (dec.dtypes == bool).all()
    df = evaluate.evaluate_attacks(attacks, test, {"heldout": outputs(2000, 0.5, 6)}, "vanilla")
    table = evaluate.readable_table(df)
    assert len(table) == len(df)
    assert (table["false positives allowed @ 1.0%"] == "10 of 1,000").all()  # the half fixing the threshold
    assert (table["false positives allowed @ 0.1%"] == "1 of 1,000").all()


def test_upsert_twice_does_not_duplicate(tmp_path):
    profile = parse_profile({"name": "tiny"})
    study = Study(profile, outputs_root=tmp_path)
    attacks, _ = evaluate.fit_attacks(FAST, outputs(80, 6.0, 0), outputs(80, 0.5, 1), seed=0)
    df = evaluate.evaluate_attacks(attacks, outputs(60, 6.0, 2), {"heldout": outputs(60, 0.5, 3)}, "vanilla")
    other = df.assign(variant="label_smoothing")
    keys = ["variant", "attack", "nonmember_set"]
    study.save_table(df, "attacks", keys=keys)
    study.save_table(other, "attacks", keys=keys)
    path = study.save_table(df.assign(fpr=0.123), "attacks", keys=keys)  # the same rows again, new values
    table = pd.read_csv(path)
    assert len(table) == 2 * len(df)
    assert not table.duplicated(keys).any()
    assert (table[table.variant == "vanilla"].fpr == 0.123).all()
    assert list(table.columns) == ATTACKS_CSV_COLUMNS


def test_logits_are_computed_once_per_model_and_pool(tiny_study, monkeypatch):
    from mia_nb import models as models_mod
    from mia_nb import trained, variants
    from mia_nb.ood import part_spec
    study = tiny_study
    target, shadow = trained.ensure(study, variants.pair_requests(study, "vanilla"), progress=False)
    calls = []
    real = models_mod.forward_logits

    def counting(model, x, *args, **kw):
        calls.append(len(x))
        return real(model, x, *args, **kw)

    monkeypatch.setattr(models_mod, "forward_logits", counting)
    spec = part_spec(study, "target_train")
    first = variants.model_logits(study, target, spec)
    assert calls == []  # the training job already scored the model's own train and held-out parts
    cal = part_spec(study, "calibration")
    variants.model_logits(study, target, cal)
    assert calls == [40]
    again = variants.model_logits(study, target, cal)
    assert calls == [40]  # served from the store: the model did not run again
    variants.model_logits(study, shadow, cal)  # another model: one more forward pass
    assert calls == [40, 40]
    # a new Study on the same outputs root finds the cached logits on disk
    fresh = Study(study.profile, outputs_root=study.base.parent, seed=study.seed)
    np.testing.assert_array_equal(variants.model_logits(fresh, target, cal), again)
    assert calls == [40, 40]
    # the worker's logits are the loaded model's logits
    np.testing.assert_allclose(first, real(target.model, study.inputs("target_train")[0]).numpy(), atol=1e-4)
