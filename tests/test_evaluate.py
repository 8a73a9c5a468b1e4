"""Tests for mia_nb.attacks.evaluation (fit on the balanced shadow, attack rows, upsert, the route to results)
and "score once" in Study."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mia_nb.attacks import evaluation, thresholds
from mia_nb.attacks.samples import read_samples, sample_path
from mia_nb.config import AttacksConfig, parse_profile
from mia_nb.layout import ATTACKS_TABLE, TABLE_KEYS
from mia_nb.attacks.metrics import ATTACK_METRIC_KEYS
from mia_nb.attacks.scores import Outputs, softmax
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
    attacks, sizes = evaluation.fit_attacks(FAST, members, nonmembers, seed=3)
    assert sizes == evaluation.ShadowSizes(shadow_members=60, shadow_nonmembers=60)
    assert list(attacks) == list(FAST.names)
    _, sizes = evaluation.fit_attacks(FAST, outputs(90, 6.0, 2), outputs(40, 1.0, 3), seed=3)
    assert (sizes.shadow_members, sizes.shadow_nonmembers) == (40, 40)


def test_attack_table_columns_and_members_positive_end_to_end():
    attacks, _ = evaluation.fit_attacks(FAST, outputs(200, 6.0, 0), outputs(200, 0.5, 1), seed=0)
    members = outputs(150, 6.0, 2)  # confident, like members of an overfitted model
    pools = {"heldout": outputs(300, 0.5, 3), "also_heldout": outputs(120, 0.5, 4)}
    df = evaluation.attack_table(attacks, members, pools, variant="vanilla", seed=0)
    assert list(df.columns) == ATTACKS_CSV_COLUMNS == ["variant", "attack", "nonmember_set", *ATTACK_METRIC_KEYS]
    assert set(TABLE_KEYS[ATTACKS_TABLE]) <= set(df.columns)  # the row keys the upsert uses
    assert len(df) == len(attacks) * len(pools)
    assert set(zip(df.attack, df.nonmember_set)) == {(a, p) for a in attacks for p in pools}
    assert (df.variant == "vanilla").all()
    assert (df.n_members == 150).all() and set(df.n_nonmembers) == {300, 120}
    assert (df.auroc > 0.9).all() and (df.recall > df.fpr).all()  # members (positives) score higher
    for col in ("precision", "recall", "fpr", "accuracy", "auroc", "aupr", "tpr_at_1pct_fpr"):
        assert df[col].between(0, 1).all(), col
    # swap members and non-members: the same attacks now rank positives below negatives
    swapped = evaluation.attack_table(attacks, pools["heldout"], {"m": members}, "vanilla")
    assert (swapped.auroc < 0.1).all()


def test_decisions_and_readable_table():
    attacks, _ = evaluation.fit_attacks(FAST, outputs(100, 6.0, 0), outputs(100, 0.5, 1), seed=0)
    test = outputs(50, 6.0, 5)
    dec = evaluation.decisions(attacks, test)
    assert list(dec.columns) == list(attacks) and dec.shape == (50, len(attacks)) and (dec.dtypes == bool).all()
    df = evaluation.attack_table(attacks, test, {"heldout": outputs(2000, 0.5, 6)}, "vanilla")
    table = evaluation.readable_table(df)
    assert len(table) == len(df)
    assert (table["false positives allowed @ 1.0%"] == "10 of 1,000").all()  # the half fixing the threshold
    assert (table["false positives allowed @ 0.1%"] == "1 of 1,000").all()


def test_upsert_twice_does_not_duplicate(tmp_path):
    profile = parse_profile({"name": "tiny"})
    study = Study(profile, outputs_root=tmp_path)
    attacks, _ = evaluation.fit_attacks(FAST, outputs(80, 6.0, 0), outputs(80, 0.5, 1), seed=0)
    df = evaluation.attack_table(attacks, outputs(60, 6.0, 2), {"heldout": outputs(60, 0.5, 3)}, "vanilla")
    other = df.assign(variant="label_smoothing")
    study.save_table(df, ATTACKS_TABLE)  # a keyed table: its rows are upserted by layout.TABLE_KEYS
    study.save_table(other, ATTACKS_TABLE)
    path = study.save_table(df.assign(fpr=0.123), ATTACKS_TABLE)  # the same rows again, new values
    table = pd.read_csv(path)
    assert len(table) == 2 * len(df)
    assert not table.duplicated(list(TABLE_KEYS[ATTACKS_TABLE])).any()
    assert (table[table.variant == "vanilla"].fpr == 0.123).all()
    assert list(table.columns) == ATTACKS_CSV_COLUMNS
    study.save_table(df, "readable")  # not a keyed table: written whole
    assert len(study.save_table(df.iloc[:1], "readable").read_text().splitlines()) == 2


def test_logits_are_computed_once_per_model_and_pool(tiny_study, monkeypatch):
    from mia_nb.models import networks as models_mod
    from mia_nb.models import jobs
    from mia_nb.models import variants
    from mia_nb.data.nonmembers import part_spec
    study = tiny_study
    target, shadow = jobs.ensure(study, variants.pair_requests(study, "vanilla"), progress=False)
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


def test_trained_models_read_their_stored_record_as_typed_fields(tiny_study):
    from mia_nb.models import jobs
    from mia_nb.models import variants
    study = tiny_study
    vanilla = variants.vanilla(study)
    assert (vanilla.target.role, vanilla.shadow.role) == ("target", "shadow")
    tm = vanilla.target
    record = study.store.get("model", tm.config)
    assert list(tm.metrics.as_dict().items()) == list(record["metrics"].items())  # same figures, same order
    m = tm.metrics
    assert m.gap == pytest.approx(m.train_acc - m.heldout_acc) and 0 <= m.ece <= 1 and m.dp_epsilon is None
    assert tm.train == study.profile.train and tm.dp is None
    assert list(tm.summary()) == ["role", "variant", "key", "loaded", *record["metrics"]]
    models_csv = pd.read_csv(study.results_dir / "models.csv")
    assert list(models_csv.columns[-len(record["metrics"]):]) == list(record["metrics"])
    ref = jobs.ensure(study, [jobs.ModelRequest("ref_0", indices=study.splits["target_train"][:20])], progress=False)[0]
    assert list(ref.metrics.as_dict()) == ["train_seconds"] and ref.metrics.heldout_acc is None  # no held-out part


def test_evaluate_writes_rows_model_row_and_samples_once(tiny_study):
    """The one route: attacks.csv rows, the variants.csv row and samples/<variant>.npz, whose arrays are the
    per-image scores and decisions behind the rows."""
    from mia_nb.data.nonmembers import pool_specs
    from mia_nb.models import variants
    study = tiny_study
    pools = {"heldout": pool_specs(study)["heldout"]}
    vanilla = variants.vanilla(study)
    ev = evaluation.evaluate(study, vanilla, pools)
    again = evaluation.evaluate(study, vanilla, pools)  # from the store: the sizes read back typed
    pd.testing.assert_frame_equal(ev.rows, again.rows)
    n_shadow = min(len(study.splits["shadow_train"]), len(study.splits["shadow_heldout"]))
    assert ev.sizes == again.sizes == evaluation.ShadowSizes(n_shadow, n_shadow)
    attacks = pd.read_csv(study.results_dir / "attacks.csv")
    assert len(attacks) == len(ev.rows) and set(attacks.attack) == set(study.profile.attacks.names)
    assert list(pd.read_csv(study.results_dir / "variants.csv").variant) == ["vanilla"]
    f = read_samples(sample_path(study.samples_dir, "vanilla"))
    assert (f.variant, f.family, f.seed, f.pools, f.base) == ("vanilla", "vanilla", study.seed, ("heldout",),
                                                               {"heldout": "heldout"})
    for row in ev.rows.itertuples():
        flags = f.member(row.attack, row.nonmember_set)
        assert flags.mean() == pytest.approx(row.fpr) and len(flags) == row.n_nonmembers
        assert f.member(row.attack, "members").mean() == pytest.approx(row.recall)
    assert f.size("members") == len(ev.members.labels) and f.conf("heldout").max() <= 1.0


def test_reference_attacks_write_their_samples_through_the_same_route(tiny_study):
    """Notebook 08's arrays: every reference attack's score and operating-point decisions per set, the population's
    held-out images as `heldout_pop`, read back by the claims like any variant's file."""
    import dataclasses

    from mia_nb.attacks import reference_models
    from mia_nb.claims import findings
    from mia_nb.data.nonmembers import pool_specs
    from mia_nb.layout import REFERENCE_VARIANT
    from mia_nb.models import jobs, variants
    p = tiny_study.profile  # held-out images beyond the population fix the operating points
    profile = dataclasses.replace(p, splits=dataclasses.replace(p.splits, target_heldout=128),
                                  ood=dataclasses.replace(p.ood, max_pool_size=128),
                                  reference_models=dataclasses.replace(p.reference_models, k=2, k_curve=(2,)))
    study = Study(profile, tiny_study.base.parent / "ref", seed=tiny_study.seed)
    study.make_splits()
    specs = pool_specs(study)
    pools = {name: specs[name] for name in ("heldout", "permuted")}
    refs = jobs.ensure(study, reference_models.requests(study), progress=False)
    ref = reference_models.run_attacks(study, variants.vanilla(study), refs, pools)
    table = ref.table
    assert set(table.attack) == set(reference_models.ATTACKS) and set(table.set) == set(pools)
    f = findings.load_seed(study.samples_dir).get(REFERENCE_VARIANT)
    assert f.family == "reference" and f.strength == 2 and f.extra == {"rmia_a": ref.rmia_a}
    n_train = len(study.splits["target_train"])
    for attack in reference_models.ATTACKS:
        np.testing.assert_array_equal(f.score(attack, "heldout_pop"), f.score(attack, "heldout")[:n_train])
        for name in ("members", *pools):  # the typed result holds the very scores the file keeps
            np.testing.assert_array_equal(ref.score(attack, name), f.score(attack, name))
        for op in ("1pct", "01pct"):
            rows = table[(table.attack == attack) & (table.operating_point == op) & (table.set == "permuted")]
            assert f.member(f"{attack}@{op}", "permuted").mean() == pytest.approx(rows.fpr.iloc[0])
            held = table[(table.attack == attack) & (table.operating_point == op) & (table.set == "heldout")]
            assert held.n_images.iloc[0] == n_train - thresholds.fit_size(n_train)  # half B of the population's held-out
    with pytest.raises(ValueError, match="no 'lira' scores on 'heldout'"):
        ref.score("lira", "heldout")
    assert f.size("members") == n_train and f.conf("heldout_pop").shape == (n_train,)
