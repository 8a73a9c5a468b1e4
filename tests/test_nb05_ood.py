"""Notebook 05 (out-of-distribution false positives): pool hygiene, read-outs, agreement, and the smoke run.

Transform, corruption, pool-registry and GAN unit tests live in test_pools.py and test_generate.py.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from mia_nb.attacks import evaluation
from mia_nb.data import gan, nonmembers, transforms
from mia_nb.attacks import ood_readouts
from mia_nb.config import parse_profile
from mia_nb.data.catalog import DATASET_INFO, DatasetInfo
from mia_nb.data.datasets import Pool
from mia_nb.attacks.scores import Outputs
from mia_nb.study import Study

REPO = Path(__file__).resolve().parents[1]
MEMBER_VALUE = 240  # every target_train image is the constant 240/255: easy to spot in any pool


SIZES = {"target_train": 20, "target_heldout": 20, "shadow_train": 12, "shadow_heldout": 12, "calibration": 10,
         "generator": 16}


def constant_study(root: Path, n_images: int = 0, max_pool_size: int = 8) -> Study:
    """A real Study over constant images that encode their split: every target_train image is 240/255,
    held-out images 30, 40, ... /255 (distinct), the rest 20/255."""
    n = sum(SIZES.values())
    profile = parse_profile({"name": "const", "device": "cpu", "seed": 0, "splits": SIZES,
                             "ood": {"corruption_severities": [1, 3], "max_pool_size": max_pool_size,
                                     "gan": {"epochs": 1, "batch_size": 4, "latent_dim": 4, "n_images": n_images,
                                             "supply_sizes": []}}})
    pool = Pool(torch.zeros(n, 1, 28, 28, dtype=torch.uint8), torch.as_tensor(np.arange(n) % 4),
                DATASET_INFO["fashion_mnist"])
    study = Study(profile, root, seed=0, pool=pool)
    splits = study.make_splits()
    values = np.full(n, 20, np.int64)
    values[splits["target_train"]] = MEMBER_VALUE
    values[splits["target_heldout"]] = 30 + 10 * np.arange(SIZES["target_heldout"])
    pool.images[:] = torch.as_tensor(values, dtype=torch.uint8).view(-1, 1, 1, 1)
    study.values = values
    return study


def _to_raw(name: str, x: torch.Tensor, info: DatasetInfo) -> torch.Tensor:
    """Invert a pool's transform back to raw [0, 1] pixels (noise pools stay noisy)."""
    if name == "scaled255":
        x = x / 255.0
    raw = x if name == "unnormalized" else transforms.unnormalize(x, info.mean, info.std)
    return 1.0 - raw if name == "inverted" else raw


def test_heldout_derived_pools_come_from_target_heldout_only(tmp_path):
    study = constant_study(tmp_path)
    specs = nonmembers.pool_specs(study)
    assert list(specs)[0] == "heldout" and "gan" not in specs
    heldout_values = study.values[study.splits["target_heldout"]]
    n_derived = study.profile.ood.max_pool_size
    member = MEMBER_VALUE / 255.0
    for name, spec in specs.items():
        x, y = spec.build()
        raw = _to_raw(name, x, study.info)
        per_image = raw.flatten(1).median(dim=1).values.numpy()
        assert not np.any(np.abs(per_image - member) < 0.05), f"{name} holds a target_train image"
        if name in ("digits", "uniform"):
            assert (y == -1).all()
            continue
        expected = heldout_values if name == "heldout" else heldout_values[:n_derived]
        assert np.array_equal(y, study.labels("target_heldout")[:len(expected)]), name
        tol = 0.1 if name.startswith("noise") else 1e-3
        assert np.allclose(per_image * 255.0, expected, atol=tol * 255), name


def test_make_fakes_trains_on_the_generator_split_only(tmp_path, monkeypatch):
    study = constant_study(tmp_path, n_images=8)
    seen = {"calls": 0}

    history = gan.GanHistory(d_loss=[0.5], g_loss=[0.25], seconds=[1.5], epochs_done=1, stopped_early=True,
                             images_per_s=2.0)

    def fake_train(raw, labels, n_classes, **kw):
        seen["raw"], seen["labels"] = raw, labels
        seen["calls"] += 1
        gen = gan.Generator(kw["latent_dim"], n_classes, raw.shape[1], raw.shape[-1])
        return gen.eval(), history

    monkeypatch.setattr(gan, "train_gan", fake_train)
    folder, got = gan.make_fakes(study)
    assert got == history  # read back from the store's plain record
    assert study.store.get("gan", gan.gan_config(study))["history"] == dataclasses.asdict(history)
    gen_x, gen_y = study.part("generator")
    assert torch.equal(seen["raw"], gen_x.float() / 255.0)
    assert np.array_equal(seen["labels"], gen_y.numpy())
    assert len(list(folder.glob("*.png"))) == 8 and folder.parent == tmp_path / "const" / "generated"
    x, y = nonmembers.pool_specs(study)["gan"].build()
    assert x.shape == (8, 1, 28, 28) and np.array_equal(y, np.arange(8) % 10)
    assert gan.make_fakes(study) == (folder, history)            # second call: from the store, no training
    assert seen["calls"] == 1


class _Rule:
    """A stub attack: member iff max score > cut."""

    def __init__(self, cut: float):
        self.cut = cut

    def predict(self, out: Outputs) -> np.ndarray:
        return out.probs.max(1) > self.cut


def _outputs(n: int, seed: int, k: int = 3) -> Outputs:
    logits = np.random.default_rng(seed).normal(size=(n, k)) * 3
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return Outputs(p, np.arange(n) % k)


def test_agreement_rows():
    members = _outputs(40, 0)
    pool = {"a": _outputs(30, 1), "b": _outputs(10, 2)}
    same = evaluation.agreement_rows({"threshold": _Rule(0.7), "entropy": _Rule(0.7), "salem": _Rule(0.1)},
                                   members, pool, "vanilla")
    assert list(same.columns) == ["variant", "nonmember_set", "n_samples", "agreement"]
    assert same.agreement.tolist() == [1.0, 1.0] and same.n_samples.tolist() == [70, 50]
    differ = evaluation.agreement_rows({"threshold": _Rule(0.7), "entropy": _Rule(-1.0)}, members, pool, "v")
    both = np.r_[members.probs.max(1), pool["a"].probs.max(1)]
    assert differ.agreement.iloc[0] == pytest.approx(np.mean(both > 0.7))
    with pytest.raises(ValueError, match="entropy"):
        evaluation.agreement_rows({"threshold": _Rule(0.5)}, members, pool, "v")


def test_supply_rows_and_top_false_positives():
    fakes = _outputs(100, 3)
    attacks = {"threshold": _Rule(0.8)}
    table = ood_readouts.supply_rows(attacks, fakes, [10, 50, 100])
    called = fakes.probs.max(1) > 0.8
    assert table.false_positives.tolist() == [int(called[:n].sum()) for n in (10, 50, 100)]
    assert ((table.fpr_lo <= table.fpr) & (table.fpr <= table.fpr_hi)).all()
    with pytest.raises(ValueError, match="sizes"):
        ood_readouts.supply_rows(attacks, fakes, [101])
    idx, conf = ood_readouts.top_false_positives(attacks["threshold"], fakes, k=5)
    assert len(idx) == min(5, called.sum()) and called[idx].all()
    assert np.all(np.diff(conf) <= 0) and conf[0] == fakes.probs.max(1)[called].max()


def test_fpr_above_reference():
    rows = pd.DataFrame({"attack": ["t", "t", "t", "e", "e", "e"], "nonmember_set": ["heldout", "x", "y"] * 2,
                         "fpr": [0.5, 0.9, 0.1, 0.4, 0.3, 0.2]})
    fpr, lines = ood_readouts.fpr_above_reference(rows)
    assert list(fpr.index) == ["heldout", "x", "y"] and list(fpr.columns) == ["t", "e"]
    assert "1 of 2 other pools above it: x (0.900)" in lines[0]
    assert "0 of 2" in lines[1]
    with pytest.raises(ValueError, match="reference"):
        ood_readouts.fpr_above_reference(rows, reference="nope")


# ------------------------------------------------------------------------------ the smoke profile

def test_05_smoke_outputs(smoke_run):
    from mia_nb.study import open_study
    study = open_study(REPO / "params" / "smoke.yaml", smoke_run.parent)
    specs = nonmembers.pool_specs(study)
    assert "gan" in specs and "heldout" in specs
    attacks = pd.read_csv(smoke_run / "results" / "attacks.csv")
    vanilla = attacks[attacks.variant == "vanilla"]
    have = set(zip(vanilla.nonmember_set, vanilla.attack))
    missing = [(p, a) for p in specs for a in study.profile.attacks.names if (p, a) not in have]
    assert not missing, missing
    assert vanilla.fpr.between(0, 1).all()

    agreement = pd.read_csv(smoke_run / "results" / "agreement.csv")
    mine = agreement[agreement.variant == "vanilla"].set_index("nonmember_set")
    assert set(specs) <= set(mine.index)
    assert mine.agreement.between(0, 1).all()
    n_members = len(study.splits["target_train"])
    sizes = vanilla.drop_duplicates("nonmember_set").set_index("nonmember_set").n_nonmembers
    assert (mine.loc[list(specs), "n_samples"] == sizes.loc[list(specs)] + n_members).all()

    pngs = list((smoke_run / "generated").rglob("*.png"))
    assert len(pngs) == study.profile.ood.gan.n_images
    for name in ("05_fpr_heatmap", "05_false_positive_gallery", "05_pool_examples", "05_gan_samples",
                 "05_roc_by_pool", "05_mmps_by_pool", "05_unbounded_supply"):
        assert (smoke_run / "figures" / f"{name}.png").is_file(), name
    supply = pd.read_csv(smoke_run / "results" / "05_unbounded_supply.csv")
    assert sorted(supply.n_generated.unique()) == sorted(study.profile.ood.gan.supply_sizes)


def test_score_label():
    assert ood_readouts.score_label(0.73456) == "0.7346"
    assert ood_readouts.score_label(1 - 3e-7) == "1 − 3e-07"
    assert ood_readouts.score_label(1.0) == "> 1 − 1e-16"
