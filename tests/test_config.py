"""Profile loading and validation: one-line errors that name the key, before any work."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from mia_nb.config import ConfigError, load_profile, parse_profile, seeds_of

REPO = Path(__file__).resolve().parents[1]
PROFILES = sorted((REPO / "params").glob("*.yaml"))


@pytest.mark.parametrize("path", PROFILES, ids=[p.stem for p in PROFILES])
def test_every_shipped_profile_loads(path):
    p = load_profile(path)
    assert p.name == path.stem
    assert p.source == str(path)


def test_paper_profiles_exist():
    names = {p.stem for p in PROFILES}
    assert {"default", "smoke", "cifar10_simplecnn", "cifar10_resnet18", "cifar10_efficientnet",
            "stanford_dogs_resnet50"} <= names


@pytest.mark.parametrize("text, key", [
    ("train:\n  lrr: 0.1\n", "train.lrr"),
    ("data:\n  dataset: mnist\n", "data.dataset"),
    ("model:\n  arch: vgg\n", "model.arch"),
    ("train:\n  optimizer: lion\n", "train.optimizer"),
    ("train:\n  epochs: ten\n", "train.epochs"),
    ("train:\n  epochs: 0\n", "train.epochs"),
    ("attacks:\n  names: [threshold, magic]\n", r"attacks.names\[1\]"),
    ("colour: red\n", "colour"),
    ("ood:\n  gan:\n    supply_sizes: [100000]\n", "ood.gan.supply_sizes"),
    ("model:\n  arch: simple_cnn\n  pretrained: true\n", "model.pretrained"),
    ("calibration:\n  llla:\n    link: laplace\n", "calibration.llla.link"),
])
def test_bad_profile_names_the_key(text, key):
    with pytest.raises(ConfigError, match=key) as info:
        parse_profile(yaml.safe_load(text))
    assert "\n" not in str(info.value)


def test_load_errors_name_the_file(write_profile):
    path = write_profile("splits:\n  target_train: -5\n")
    with pytest.raises(ConfigError, match=re.escape(str(path)) + ".*splits.target_train"):
        load_profile(path)
    with pytest.raises(ConfigError, match="not found"):
        load_profile(path.with_name("missing.yaml"))
    bad = write_profile("train: [unclosed\n", "bad.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_profile(bad)


def test_defaults_and_seeds():
    p = parse_profile({})
    assert p.data.dataset == "fashion_mnist" and p.model.arch == "simple_cnn"
    assert seeds_of(p) == (p.seed,)
    assert seeds_of(parse_profile({"seeds": [1, 2]})) == (1, 2)
    with pytest.raises(ConfigError, match="seeds"):
        parse_profile({"seeds": [1, 1]})
    assert p.to_dict()["attacks"]["names"] == ["threshold", "entropy", "salem", "loss"]


def test_environment_yml_has_the_pyproject_pins():
    import tomllib
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert set(deps) <= set(pip)
