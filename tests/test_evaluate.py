"""Tests for mia_nb.evaluate (fit on the balanced shadow, evaluate, upsert) and "score once" in Study."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

import mia_nb.study as study_mod
from mia_nb import evaluate
from mia_nb.config import AttacksConfig, parse_profile
from mia_nb.data import DATASET_INFO, Pool
from mia_nb.metrics import ATTACK_METRIC_KEYS
from mia_nb.models import SimpleCNN
from mia_nb.scores import Outputs, softmax
from mia_nb.study import Study, TrainedModel

K = 10
FAST = AttacksConfig(salem_max_epochs=5, n_boot=20)
ATTACKS_CSV_COLUMNS = [
    "variant", "attack", "nonmember_set", "n_members", "n_nonmembers", "threshold", "precision", "recall", "fpr",
    "accuracy", "auroc", "aupr", "fpr_at_95tpr", "balanced_accuracy",
    "tpr_at_1pct_fpr", "tpr_at_1pct_fpr_lo", "tpr_at_1pct_fpr_hi",
    "tpr_at_01pct_fpr", "tpr_at_01pct_fpr_lo", "tpr_at_01pct_fpr_hi",
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
    df = evaluate.evaluate_attacks(attacks, members, pools, variant="vanilla", n_boot=20, seed=0)
    assert list(df.columns) == ATTACKS_CSV_COLUMNS == evaluate.RESULT_KEYS + list(ATTACK_METRIC_KEYS)
    assert len(df) == len(attacks) * len(pools)
    assert set(zip(df.attack, df.nonmember_set)) == {(a, p) for a in attacks for p in pools}
    assert (df.variant == "vanilla").all()
    assert (df.n_members == 150).all() and set(df.n_nonmembers) == {300, 120}
    assert (df.auroc > 0.9).all() and (df.recall > df.fpr).all()  # members (positives) score higher
    for col in ("precision", "recall", "fpr", "accuracy", "auroc", "aupr", "tpr_at_1pct_fpr"):
        assert df[col].between(0, 1).all(), col
    # swap members and non-members: the same attacks now rank positives below negatives
    swapped = evaluate.evaluate_attacks(attacks, pools["heldout"], {"m": members}, "vanilla", n_boot=20)
    assert (swapped.auroc < 0.1).all()


def test_decisions_and_readable_table():
    attacks, _ = evaluate.fit_attacks(FAST, outputs(100, 6.0, 0), outputs(100, 0.5, 1), seed=0)
    test = outputs(50, 6.0, 5)
    dec = evaluate.decisions(attacks, test)
    assert list(dec.columns) == list(attacks) and dec.shape == (50, len(attacks)) and (dec.dtypes == bool).all()
    df = evaluate.evaluate_attacks(attacks, test, {"heldout": outputs(2000, 0.5, 6)}, "vanilla", n_boot=20)
    table = evaluate.readable_table(df)
    assert len(table) == len(df)
    assert (table["false positives allowed @ 1.0%"] == "20 of 2,000").all()
    assert (table["false positives allowed @ 0.1%"] == "2 of 2,000").all()


def test_upsert_twice_does_not_duplicate(tmp_path):
    profile = parse_profile({"name": "tiny"})
    study = Study(profile, outputs_root=tmp_path)
    attacks, _ = evaluate.fit_attacks(FAST, outputs(80, 6.0, 0), outputs(80, 0.5, 1), seed=0)
    df = evaluate.evaluate_attacks(attacks, outputs(60, 6.0, 2), {"heldout": outputs(60, 0.5, 3)}, "vanilla",
                                   n_boot=20)
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


@pytest.fixture
def tiny_study(tmp_path):
    """A Study on a temp outputs root with a fake 40-image pool and made-up splits (no dataset read)."""
    study = Study(parse_profile({"name": "tiny", "device": "cpu"}), outputs_root=tmp_path)
    g = torch.Generator().manual_seed(0)
    info = DATASET_INFO["fashion_mnist"]
    study.__dict__["pool"] = Pool(torch.randint(0, 256, (40, 1, 28, 28), dtype=torch.uint8, generator=g),
                                  torch.randint(0, 10, (40,), generator=g), info)
    study.__dict__["splits"] = {"target_train": np.arange(0, 20), "target_heldout": np.arange(20, 40)}
    torch.manual_seed(0)
    tm = TrainedModel(SimpleCNN(1, 28, 10).eval(), "target", "vanilla", "model-key-1", {}, {}, {})
    return study, tm


def test_logits_are_computed_once_per_model_and_pool(tiny_study, monkeypatch):
    study, tm = tiny_study
    calls = []
    real = study_mod.forward_logits

    def counting(model, x, *args, **kw):
        calls.append(len(x))
        return real(model, x, *args, **kw)

    monkeypatch.setattr(study_mod, "forward_logits", counting)
    first = study.part_outputs(tm, "target_train")
    assert calls == [20]
    again = study.part_outputs(tm, "target_train")
    study.part_logits(tm, "target_train")
    assert calls == [20]  # served from the store: the model did not run again
    np.testing.assert_array_equal(first.probs, again.probs)
    np.testing.assert_array_equal(first.labels, study.pool.labels[:20].numpy())
    study.part_outputs(tm, "target_heldout")  # another pool: one more forward pass
    assert calls == [20, 20]
    other = TrainedModel(tm.model, "shadow", "vanilla", "model-key-2", {}, {}, {})
    study.part_outputs(other, "target_train")  # another model key: one more
    assert calls == [20, 20, 20]
    # a new Study on the same outputs root finds the cached logits on disk
    fresh = Study(study.profile, outputs_root=study.base.parent)
    fresh.__dict__.update(pool=study.pool, splits=study.splits)
    fresh.part_outputs(tm, "target_train")
    assert calls == [20, 20, 20]


def test_logits_with_explicit_pool_and_callable_input(tiny_study, monkeypatch):
    study, tm = tiny_study
    made = []

    def make_x():
        made.append(1)
        return torch.randn(7, 1, 28, 28, generator=torch.Generator().manual_seed(1))

    pool = {"pool": "noise", "n": 7, "seed": 1}
    a = study.logits(tm, pool, make_x)
    b = study.logits(tm, pool, make_x)
    assert made == [1] and a.shape == (7, 10) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
