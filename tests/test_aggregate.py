"""`tables.aggregate`: a multi-seed run's tables over seeds keep each per-seed column's meaning; the interval
over seeds has its own name and stays in the column's natural range."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import t as t_dist

from mia_nb import tables
from mia_nb.layout import seed_folder

KEYS = ["variant", "attack"]


def _seed_table(seed: int, tpr: list[float], nll: float, n_members: int = 200, key: str = "") -> pd.DataFrame:
    """One seed's rows: a rate with its own Clopper–Pearson-like bounds, a count, an identifier, a loss."""
    return pd.DataFrame({
        "variant": ["vanilla", "ls_0.1"], "attack": ["threshold", "threshold"], "seed": seed,
        "family": ["vanilla", "label_smoothing"], "strength": [np.nan, 0.1], "key": key or f"hash{seed}",
        "n_members": n_members, "tpr_at_1pct_fpr": tpr,
        "tpr_at_1pct_fpr_lo": [max(0.0, x - 0.01) for x in tpr], "tpr_at_1pct_fpr_hi": [x + 0.02 for x in tpr],
        "nll": [nll, nll + 0.5]})


def _three() -> list[pd.DataFrame]:
    return [_seed_table(0, [0.0, 0.5], 1.0), _seed_table(1, [0.0, 0.6], 2.0), _seed_table(2, [0.03, 0.7], 3.0)]


def test_interval_over_seeds_has_its_own_name_and_per_seed_bounds_keep_theirs():
    out = tables.aggregate(_three(), KEYS).set_index("variant")
    v = out.loc["vanilla"]
    assert v.tpr_at_1pct_fpr == pytest.approx(0.01)
    # the seeds' own bounds, averaged: still a bound around the value, not a t-interval over seeds
    assert v.tpr_at_1pct_fpr_lo == pytest.approx((0.0 + 0.0 + 0.02) / 3)
    assert v.tpr_at_1pct_fpr_hi == pytest.approx(0.03)
    half = t_dist.ppf(0.975, 2) * np.std([0.0, 0.0, 0.03], ddof=1) / np.sqrt(3)
    assert 0.01 - half < 0  # the plain t-interval would leave [0, 1] ...
    assert v.tpr_at_1pct_fpr_seeds_lo == 0.0  # ... so it is clipped to the rate's range
    assert v.tpr_at_1pct_fpr_seeds_hi == pytest.approx(0.01 + half)
    ls = out.loc["ls_0.1"]
    ls_half = t_dist.ppf(0.975, 2) * 0.1 / np.sqrt(3)
    assert ls.tpr_at_1pct_fpr_seeds_lo == pytest.approx(0.6 - ls_half)
    assert ls.tpr_at_1pct_fpr_seeds_hi == pytest.approx(0.6 + ls_half)
    assert v.nll == pytest.approx(2.0) and v.nll_seeds_hi == pytest.approx(2.0 + t_dist.ppf(0.975, 2) / np.sqrt(3))
    assert (out.n_seeds == 3).all()


def test_no_interval_of_an_interval_a_count_or_an_identifier():
    out = tables.aggregate(_three(), KEYS)
    for col in out.columns:
        assert not col.startswith("n_members_") and not col.startswith("strength_"), col
        assert "_lo_" not in col and "_hi_" not in col, col
    assert {c for c in out.columns if c.endswith(("_seeds_lo", "_seeds_hi"))} == {
        "tpr_at_1pct_fpr_seeds_lo", "tpr_at_1pct_fpr_seeds_hi", "nll_seeds_lo", "nll_seeds_hi"}


def test_counts_and_identifiers_carried_differing_text_dropped():
    out = tables.aggregate(_three(), KEYS).set_index("variant")
    assert out.n_members.tolist() == [200, 200] and out.n_members.dtype.kind == "i"
    assert out.family.tolist() == ["vanilla", "label_smoothing"]
    assert np.isnan(out.loc["vanilla", "strength"]) and out.loc["ls_0.1", "strength"] == 0.1
    assert "key" not in out.columns and "seed" not in out.columns  # a per-seed hash has no meaning over seeds
    same_key = tables.aggregate([_seed_table(s, [0.1, 0.2 + s / 10], 1.0 + s, key="k") for s in range(2)], KEYS)
    assert same_key.key.tolist() == ["k", "k"]
    uneven = tables.aggregate([_seed_table(0, [0.1, 0.2], 1.0, 200), _seed_table(1, [0.2, 0.3], 2.0, 210)], KEYS)
    assert uneven.n_members.tolist() == [205.0, 205.0]


def test_a_row_missing_from_a_seed_and_a_single_seed():
    three = _three()
    three[2] = three[2][three[2].variant == "vanilla"]
    out = tables.aggregate(three, KEYS).set_index("variant")
    assert out.n_seeds.to_dict() == {"vanilla": 3, "ls_0.1": 2}
    assert out.loc["ls_0.1", "nll"] == pytest.approx(2.0)
    one = tables.aggregate(_three()[:1], KEYS)
    assert (one.n_seeds == 1).all() and not any(c.endswith("_seeds_lo") for c in one.columns)
    lone = tables.aggregate([_seed_table(0, [0.1, 0.2], 1.0), _seed_table(1, [0.2, 0.3], 2.0)[:1]], KEYS)
    assert np.isnan(lone.set_index("variant").loc["ls_0.1", "nll_seeds_lo"])  # one seed: no spread to use


@pytest.mark.parametrize(("column", "span"), [
    ("tpr_at_01pct_fpr", (0.0, 1.0)), ("fpr", (0.0, 1.0)), ("fpr_check_1pct", (0.0, 1.0)), ("auroc", (0.0, 1.0)),
    ("heldout_acc", (0.0, 1.0)), ("mean_ood_fpr", (0.0, 1.0)), ("w1_member_ood", (0.0, 1.0)),
    ("mmps_fp", (0.0, 1.0)), ("agreement", (0.0, 1.0)), ("nll", (0.0, np.inf)), ("train_seconds", (0.0, np.inf)),
    ("threshold", None), ("gap", None), ("strength", None)])
def test_natural_range(column, span):
    assert tables.natural_range(column) == span


def test_aggregate_seed_tables_writes_the_mean_table(tmp_path):
    for s, t in zip((42, 43, 44), _three()):
        folder = seed_folder(tmp_path, s)
        folder.mkdir(parents=True)
        tables.write_csv(t.assign(nonmember_set="heldout"), folder / "attacks.csv")
    written = tables.aggregate_seed_tables(tmp_path, (42, 43, 44))
    assert written == [tmp_path / "attacks.csv"]
    got = pd.read_csv(written[0])
    assert len(got) == 2 and (got.n_seeds == 3).all() and (got.tpr_at_1pct_fpr_seeds_lo >= 0).all()
