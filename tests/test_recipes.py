"""The extension recipes of docs/CONVENTIONS.md, followed literally: a toy non-member pool, a toy attack and a toy
defense each added through the documented steps (the registries patched for the test only) and run through the one
evaluation route on a tiny study; a toy dataset and a toy architecture through theirs; and the real registries
checked against each other, as their import-time guards do.

A step of a recipe that is left out makes its test fail with a message naming the step; the `_refused` tests show
the guard that catches a name given in one registry and not the other. The module map in the same document
names every module of the package, in its room.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from mia_nb import config, versions
from mia_nb.attacks import evaluation, score_based
from mia_nb.attacks.samples import member_key, read_samples, sample_path, score_key
from mia_nb.attacks.score_based import ATTACKS, Attack, youden_cut
from mia_nb.attacks.scores import Outputs
from mia_nb.claims import findings
from mia_nb.config import ConfigError, parse_profile, validate
from mia_nb.data import catalog, datasets, nonmembers
from mia_nb.data.catalog import DatasetInfo
from mia_nb.data.nonmembers import GROUPS, POOLS, PoolKind
from mia_nb.layout import ATTACKS_TABLE, VARIANTS_TABLE
from mia_nb.models import jobs, networks, variants
from mia_nb.models.networks import ARCHITECTURES, build_model, forward_features, last_linear
from mia_nb.study import Study

CONVENTIONS = Path(__file__).resolve().parents[1] / "docs" / "CONVENTIONS.md"


def table(study: Study, name: str) -> pd.DataFrame:
    """results/<name>.csv of the study's seed."""
    return pd.read_csv(study.results_dir / f"{name}.csv")


def with_attacks(study: Study, names: tuple[str, ...]) -> Study:
    """The same study (folders, splits, store, images) with a profile that names other attacks, validated."""
    p = study.profile
    profile = validate(dataclasses.replace(p, attacks=dataclasses.replace(p.attacks, names=names)))
    return Study(profile, study.base.parent, seed=study.seed, pool=study.pool)


# ------------------------------------------------------------------------------- a non-member pool

TOY_POOL = "toy_mirrored"


def mirrored(h: nonmembers.HeldOut) -> nonmembers.Inputs:
    """The held-out images mirrored left to right, as model input, keeping their true labels."""
    return h.input(h.raw.flip(-1)), h.labels


def test_a_new_pool_is_one_POOLS_entry_and_reaches_results_samples_and_claims(tiny_study, monkeypatch):
    study = tiny_study
    # the recipe: one entry in nonmembers.POOLS (a group of GROUPS; made from held-out images, so labelled)
    monkeypatch.setitem(POOLS, TOY_POOL, PoolKind("transform", True, mirrored))

    specs = nonmembers.pool_specs(study)
    assert TOY_POOL in specs, f"{TOY_POOL!r} is not among the profile's pools: add its PoolKind to POOLS"
    assert TOY_POOL in nonmembers.pool_names([1]) and nonmembers.group_of(TOY_POOL) == "transform"
    pools = {name: specs[name] for name in ("heldout", TOY_POOL)}
    x, y = pools[TOY_POOL].build()
    hx, hy = pools["heldout"].build()
    np.testing.assert_array_equal(y, hy[:len(y)])  # true labels kept, so the loss attack can read it too
    assert torch.equal(x.flip(-1), hx[:len(y)])

    ev = evaluation.evaluate(study, variants.vanilla(study), pools)

    names = set(study.profile.attacks.names)
    rows = table(study, ATTACKS_TABLE)
    assert set(rows[rows.nonmember_set == TOY_POOL].attack) == names, "no attacks.csv rows for the new pool"
    assert set(ev.rows.nonmember_set) == {"heldout", TOY_POOL}
    f = read_samples(sample_path(study.samples_dir, "vanilla"))
    assert TOY_POOL in f.pools and f.groups[TOY_POOL] == "transform" and f.base_of(TOY_POOL) == "heldout"
    for attack in names:
        assert f.has(member_key(attack, TOY_POOL)) and f.has(score_key(attack, TOY_POOL)), attack
        assert len(f.member(attack, TOY_POOL)) == len(y)
    # the claims find it by its group: the transform claim now averages over it
    seed = findings.load_seed(study.samples_dir)
    claim = next(c for c in findings.build_claims([seed]) if c.id == "ood_transform")
    assert TOY_POOL in claim.text
    row = findings.check([seed], [claim], n_boot=200).iloc[0]
    assert row.verdict in findings.VERDICTS and row.verdict != findings.NOT_RUN and np.isfinite(row.measured)


def test_pool_registry_is_consistent():
    assert {k.group for k in POOLS.values()} <= set(GROUPS), "a POOLS entry names a group outside GROUPS"
    assert set(nonmembers.OOD_GROUPS) <= set(GROUPS)
    for key, kind in POOLS.items():
        assert kind.derive is not None or kind.source is not nonmembers._derived_source, \
            f"POOLS[{key!r}] has neither `derive` (made from held-out images) nor its own `source`"
        assert not kind.choices or kind.listed is not None, f"POOLS[{key!r}]: `choices` without `listed`"
    extra = next(k for k in POOLS.values() if k.choices)
    assert extra.choices == config.EXTRA_DATASETS  # the other datasets a profile may list


# ------------------------------------------------------------------------------------ an attack

class MarginAttack(Attack):
    """Top-1 minus top-2 probability (label-free); threshold at the shadow's best TPR − FPR; member iff margin > t."""

    name = "toy_margin"  # = its key in ATTACKS: a stored evaluation restores the attack by this name

    def fit(self, member: Outputs, nonmember: Outputs) -> MarginAttack:
        """Fit the cut on shadow member / non-member outputs."""
        self._cut = youden_cut(self.score(member), self.score(nonmember))
        self._fitted = True
        return self

    def score(self, out: Outputs) -> np.ndarray:
        """Top-1 minus top-2 probability, float64 [N]."""
        top = np.sort(out.probs, axis=1)
        return (top[:, -1] - top[:, -2]).astype(np.float64)


def test_a_new_attack_is_an_Attack_in_ATTACKS_named_in_the_schema(tiny_study, monkeypatch):
    # the recipe: (1) the Attack subclass above, (2) its entry in ATTACKS, (3) its name among config.ATTACK_NAMES
    monkeypatch.setitem(ATTACKS, MarginAttack.name, MarginAttack)
    monkeypatch.setattr(config, "ATTACK_NAMES", (*config.ATTACK_NAMES, MarginAttack.name))
    # a profile naming it passes validation, and the route evaluates it with the others
    study = with_attacks(tiny_study, ("threshold", "loss", MarginAttack.name))
    pools = {name: spec for name, spec in nonmembers.pool_specs(study).items() if name in ("heldout", "permuted")}
    vanilla = variants.vanilla(study)

    ev = evaluation.evaluate(study, vanilla, pools)

    rows = table(study, ATTACKS_TABLE)
    mine = rows[rows.attack == MarginAttack.name]
    assert set(mine.nonmember_set) == set(pools), "no attacks.csv rows for the new attack on every pool"
    assert mine.auroc.between(0, 1).all() and mine.fpr.between(0, 1).all()
    f = read_samples(sample_path(study.samples_dir, "vanilla"))
    for s in ("members", *pools):
        np.testing.assert_allclose(f.score(MarginAttack.name, s), ev.attacks[MarginAttack.name].score(
            ev.members if s == "members" else ev.nonmembers[s]))
        assert f.member(MarginAttack.name, s).dtype == bool
    # a rerun restores the fitted attack from the store (plain data), by its name
    again = evaluation.evaluate(study, vanilla, pools, save=False)
    restored = again.attacks[MarginAttack.name]
    assert isinstance(restored, MarginAttack) and restored.threshold == ev.attacks[MarginAttack.name].threshold
    # and a claim can compare it with the threshold attack (the claim recipe: a Claim on a statistic and a band)
    claim = findings.Claim("toy_margin_fpr", "The margin attack accepts as many held-out images as the threshold "
                           "attack", "FPR(margin) − FPR(threshold), held-out", "=", "fpr", "not in the paper",
                           findings.minus(findings.fpr("vanilla", ("heldout",), MarginAttack.name),
                                          findings.fpr("vanilla", ("heldout",))))
    row = findings.check([findings.load_seed(study.samples_dir)], [claim], n_boot=200).iloc[0]
    assert row.verdict != findings.NOT_RUN and row.band == findings.band_file().bands["fpr"]


def test_an_attack_named_in_one_registry_only_is_refused(tiny_study, monkeypatch):
    names = ("threshold", MarginAttack.name)
    # step 3 left out: the profile schema refuses the name, naming the key
    monkeypatch.setitem(ATTACKS, MarginAttack.name, MarginAttack)
    with pytest.raises(ConfigError, match=r"attacks\.names\[1\]: unknown value 'toy_margin'"):
        with_attacks(tiny_study, names)
    # step 2 left out: the schema takes the name, but there is no class to make
    monkeypatch.delitem(ATTACKS, MarginAttack.name)
    monkeypatch.setattr(config, "ATTACK_NAMES", (*config.ATTACK_NAMES, MarginAttack.name))
    study = with_attacks(tiny_study, names)
    with pytest.raises(ValueError, match="unknown attack 'toy_margin'"):
        evaluation.make_attacks(study.profile.attacks, seed=0)


def test_attack_registry_is_consistent():
    assert set(ATTACKS) == set(config.ATTACK_NAMES) == set(config.AttacksConfig().names)
    for key, cls in ATTACKS.items():
        assert issubclass(cls, Attack) and cls.name == key, f"ATTACKS[{key!r}].name is {cls.name!r}"
    assert score_based.make_attack("threshold").name == "threshold"


# ------------------------------------------------------------------------------------- a defense

def toy_sgd_recipe(lr: float) -> variants.Retrained:
    """Retrained with plain SGD at learning rate `lr` (a toy defense: its family and strength are data)."""
    return variants.Retrained(f"toy_sgd_{lr:g}", "toy_sgd", float(lr), {"optimizer": "sgd", "lr": float(lr)})


def test_a_new_defense_is_a_recipe_trained_with_the_rest_and_evaluated_by_the_route(tiny_study, monkeypatch):
    study = tiny_study
    recipe = toy_sgd_recipe(0.01)
    # the recipe, retrained: (1) a Retrained recipe, (2) listed by profile_recipes, so the runner's training phase
    # trains it with every other model of the seed
    listed = variants.profile_recipes
    monkeypatch.setattr(variants, "profile_recipes", lambda st: [*listed(st), toy_sgd_recipe(0.01)])
    requests = variants.all_model_requests(study)
    assert {(r.role, r.variant) for r in requests} >= {("target", recipe.name), ("shadow", recipe.name)}, \
        "the training phase would not train the defense: list its recipe in variants.profile_recipes"
    mine = [r for r in requests if r.variant == recipe.name]
    assert all(r.train.optimizer == "sgd" and r.train.lr == 0.01 for r in mine)
    # (3) the notebook's cell: variants.retrained, then the one route
    defense = variants.retrained(study, [recipe])[recipe.name]
    assert defense.family == "toy_sgd" and defense.strength == 0.01
    assert all(tm.config["train"]["optimizer"] == "sgd" for tm in defense.models.values())
    # post-hoc: a Variant over the vanilla pair with its own read-out (here a temperature), no training
    vanilla = variants.vanilla(study)
    posthoc = variants.Variant("toy_cool_0.5", "toy_cool", vanilla.models, {r: 0.5 for r in variants.ROLES},
                               strength=0.5)
    pools = {"heldout": nonmembers.pool_specs(study)["heldout"]}

    for v in (vanilla, defense, posthoc):
        evaluation.evaluate(study, v, pools)

    rows, models = table(study, ATTACKS_TABLE), table(study, VARIANTS_TABLE)
    for v in (defense, posthoc):
        assert set(rows[rows.variant == v.name].attack) == set(study.profile.attacks.names), v.name
        row = models[models.variant == v.name]
        assert len(row) == 1 and row.family.iloc[0] == v.family and row.strength.iloc[0] == v.strength
        f = read_samples(sample_path(study.samples_dir, v.name))
        assert (f.variant, f.family, f.strength, f.leaky) == (v.name, v.family, v.strength, False)
    # the claims read every variant's file by family (verdicts by family are the claim recipe's business)
    seed = findings.load_seed(study.samples_dir)
    assert {"vanilla", defense.name, posthoc.name} <= set(seed.variants)
    assert findings._variants([seed], "toy_sgd") == [(defense.name, 0.01)]


# ------------------------------------------------------------------------------------- a dataset

TOY_DATASET = DatasetInfo("toy_stripes", 1, 16, 4, (0.5,), (0.25,), ("a", "b", "c", "d"), 400)


def read_stripes(p: config.Profile, root, info: DatasetInfo) -> datasets.Loaded:
    """400 seeded 16 px images of 4 classes: class c has a bright row band at rows 4c..4c+3."""
    g = torch.Generator().manual_seed(0)
    y = torch.arange(400) % 4
    x = torch.randint(0, 100, (400, 1, 16, 16), generator=g, dtype=torch.uint8)
    for c in range(4):
        x[y == c, :, 4 * c:4 * c + 4] = 230
    return x, y.to(torch.int64), info, {"files": [], "order": "generated"}


def test_a_new_dataset_is_a_catalog_entry_and_a_loader(tmp_path, monkeypatch):
    # the recipe: (1) its facts in catalog.DATASET_INFO, (2) its loader in datasets.LOADERS
    monkeypatch.setitem(catalog.DATASET_INFO, TOY_DATASET.name, TOY_DATASET)
    monkeypatch.setitem(datasets.LOADERS, TOY_DATASET.name, datasets.Loader(lambda p, root: None, read_stripes))
    monkeypatch.setattr(config, "DATASETS", tuple(catalog.DATASET_INFO))  # what importing config derives
    assert set(datasets.LOADERS) == set(catalog.DATASET_INFO), "a dataset of the catalog has no loader"
    # (3) a profile naming it
    profile = parse_profile({
        "name": "toy", "seed": 1, "device": "cpu", "data": {"dataset": TOY_DATASET.name, "root": str(tmp_path)},
        "splits": {"target_train": 40, "target_heldout": 40, "shadow_train": 40, "shadow_heldout": 40,
                   "calibration": 20, "generator": 0},
        "train": {"epochs": 1, "batch_size": 20}, "attacks": {"names": ["threshold", "loss"]},
        "ood": {"max_pool_size": 20, "gan": {"n_images": 0, "supply_sizes": []}}, "engine": {"workers": 1}})
    study = Study(profile, tmp_path / "outputs")
    assert study.info.size == 16 and study.info.n_classes == 4 and study.pool.images.shape == (400, 1, 16, 16)
    study.make_splits()
    ev = evaluation.evaluate(study, variants.vanilla(study), {"heldout": nonmembers.pool_specs(study)["heldout"]})
    assert set(ev.rows.attack) == {"threshold", "loss"} and (ev.rows.n_members == 40).all()


def test_every_dataset_of_the_catalog_has_a_loader():
    assert set(datasets.LOADERS) == set(catalog.DATASET_INFO) == set(config.DATASETS)
    for name, info in catalog.DATASET_INFO.items():
        assert info.name == name and info.channels in (1, 3) and info.n_classes >= 2, name
        assert len(info.mean) == len(info.std) == info.channels, name
        assert not info.classes or len(info.classes) == info.n_classes, name


# ------------------------------------------------------------------------------ a model architecture

class TinyMLP(nn.Module):
    """Flatten, one hidden layer, then the nn.Linear that returns logits (what last-layer Laplace reads)."""

    def __init__(self, n_classes: int, channels: int, size: int):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(channels * size * size, 32), nn.ReLU())
        self.fc = nn.Linear(32, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.body(x))


def test_a_new_architecture_is_a_builder_in_ARCHITECTURES_named_in_the_schema(tiny_study, monkeypatch):
    # the recipe: (1) the builder in networks.ARCHITECTURES, (2) its name among config.ARCHS
    monkeypatch.setitem(ARCHITECTURES, "toy_mlp", lambda n_classes, channels, size, pretrained:
                        TinyMLP(n_classes, channels, size))
    monkeypatch.setattr(config, "ARCHS", (*config.ARCHS, "toy_mlp"))
    p = tiny_study.profile
    profile = validate(dataclasses.replace(p, model=dataclasses.replace(p.model, arch="toy_mlp")))
    study = Study(profile, tiny_study.base.parent, seed=tiny_study.seed, pool=tiny_study.pool)
    tm = jobs.ensure(study, [jobs.ModelRequest("target")], progress=False)[0]  # trained through the engine
    assert isinstance(tm.model, TinyMLP) and tm.config["arch"] == "toy_mlp"
    assert table(study, "models").query("variant == 'vanilla' and role == 'target'").arch.tolist()[-1] == "toy_mlp"


def test_an_architecture_named_in_one_registry_only_is_refused(tiny_study, monkeypatch):
    p = tiny_study.profile
    with_arch = dataclasses.replace(p, model=dataclasses.replace(p.model, arch="toy_mlp"))
    with pytest.raises(ConfigError, match=r"model\.arch: unknown value 'toy_mlp'"):
        validate(with_arch)  # step 2 left out
    monkeypatch.setattr(config, "ARCHS", (*config.ARCHS, "toy_mlp"))
    validate(with_arch)
    with pytest.raises(ConfigError, match=r"model\.arch: unknown value 'toy_mlp'"):
        build_model("toy_mlp", 10, 1, 28)  # step 1 left out


SHAPES = {"simple_cnn": (1, 28), "resnet18": (3, 32), "efficientnet_b0": (3, 32), "resnet50": (3, 64)}


@pytest.mark.parametrize("arch", config.ARCHS)
def test_every_architecture_of_the_schema_builds_and_ends_in_its_logits_layer(arch):
    assert set(ARCHITECTURES) == set(config.ARCHS)
    channels, size = SHAPES.get(arch, (3, 32))
    torch.manual_seed(0)
    model = build_model(arch, 5, channels, size).eval()
    x = torch.randn(2, channels, size, size)
    with torch.no_grad():
        logits = model(x)
    assert logits.shape == (2, 5) and last_linear(model).out_features == 5
    assert forward_features(model, x).shape == (2, last_linear(model).in_features)  # last-layer Laplace's input
    assert networks.last_layer_head(model)(forward_features(model, x)).shape == (2, 5)


# ------------------------------------------------------------------------------------ the module map

def test_the_module_map_names_every_module_in_its_room():
    """docs/CONVENTIONS.md's module map: every module of the package, under the heading of its subpackage."""
    text = CONVENTIONS.read_text(encoding="utf-8")
    assert "## Module map" in text and "### Layering" in text, "docs/CONVENTIONS.md lost its module map"
    body = text.split("## Module map", 1)[1].split("### Layering", 1)[0]
    sections = re.split(r"^\*\*(?:(\w+)/|Shared context)\*\*", body, flags=re.M)
    rooms = {(sections[i] or ""): sections[i + 1] for i in range(1, len(sections), 2)}
    missing = []
    for module in versions.modules():
        room, _, name = module.rpartition(".")
        if name == "__init__":
            continue
        if f"`{name}`" not in rooms.get(room, ""):
            missing.append(f"mia_nb/{module.replace('.', '/')}.py")
    assert not missing, f"modules without a line in docs/CONVENTIONS.md's module map (under their room): {missing}"
