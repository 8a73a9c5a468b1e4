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


# Every entry: a profile a new user might write, and the key its one-line error must name.
BAD_PROFILES = [
    ("", "empty"),
    ("# nothing but a comment\n", "empty"),
    ("- a list\n- not a mapping\n", "top level"),
    ("train: 3\n", "train"),
    ("train:\n  lr: 0.1\n  lr: 0.2\n", "train.lr"),
    ("seed: 1\nseed: 2\n", "seed"),
    ("name: ../../x\n", "name"),
    ("name: /tmp/elsewhere\n", "name"),
    ("name: a/b\n", "name"),
    ("name: ''\n", "name"),
    ("name: ..\n", "name"),
    ("name: my run\n", "name"),
    ("seed: -1\n", "seed"),
    ("seed: 4294967296\n", "seed"),
    ("seeds: [1, -2]\n", "seeds[1]"),
    ("seeds: [3, 3]\n", "seeds"),
    ("data:\n  root: pyproject.toml\n", "data.root"),
    ("data:\n  root: ''\n", "data.root"),
    ("data:\n  image_size: -28\n", "data.image_size"),
    ("data:\n  image_size: 30\n", "data.image_size"),
    ("data:\n  image_size: 64\n", "ood.gan.n_images"),
    ("splits:\n  calibration: 0\n", "splits.calibration"),
    ("splits:\n  generator: 1\n", "splits.generator"),
    ("train:\n  lr: .nan\n", "train.lr"),
    ("train:\n  batch_size: 0\n", "train.batch_size"),
    ("train:\n  weight_decay: -0.1\n", "train.weight_decay"),
    ("train:\n  momentum: 1.0\n", "train.momentum"),
    ("train:\n  label_smoothing: 1.0\n", "train.label_smoothing"),
    ("train:\n  eval_every: -1\n", "train.eval_every"),
    ("attacks:\n  names: []\n", "attacks.names"),
    ("attacks:\n  names: [loss, loss]\n", "attacks.names"),
    ("attacks:\n  n_boot: 0\n", "attacks.n_boot"),
    ("attacks:\n  salem_k: 0\n", "attacks.salem_k"),
    ("attacks:\n  salem_patience: 0\n", "attacks.salem_patience"),
    ("attacks:\n  salem_max_epochs: 0\n", "attacks.salem_max_epochs"),
    ("ood:\n  corruption_severities: [4]\n", "ood.corruption_severities[0]"),
    ("ood:\n  extra_datasets: [svhn, svhn]\n", "ood.extra_datasets"),
    ("ood:\n  extra_datasets: [afhq_cat]\n", "ood.afhq_root"),
    ("ood:\n  max_pool_size: 0\n", "ood.max_pool_size"),
    ("ood:\n  gan:\n    epochs: 0\n", "ood.gan.epochs"),
    ("ood:\n  gan:\n    batch_size: 1\n", "ood.gan.batch_size"),
    ("ood:\n  gan:\n    latent_dim: 0\n", "ood.gan.latent_dim"),
    ("ood:\n  gan:\n    time_budget_s: 0\n", "ood.gan.time_budget_s"),
    ("calibration:\n  temperatures: [0]\n", "calibration.temperatures[0]"),
    ("calibration:\n  llla:\n    n_samples: 0\n", "calibration.llla.n_samples"),
    ("defenses:\n  weight_decay: [0.001, 0]\n", "defenses.weight_decay[1]"),
    ("defenses:\n  temperature: -1\n", "defenses.temperature"),
    ("defenses:\n  dp_epsilons: [-1]\n", "defenses.dp_epsilons[0]"),
    ("defenses:\n  dp_epochs: -3\n", "defenses.dp_epochs"),
    ("engine:\n  workers: 0\n", "engine.workers"),
]


@pytest.mark.parametrize("text, key", BAD_PROFILES, ids=[f"{i:02d}-{k}" for i, (_, k) in enumerate(BAD_PROFILES)])
def test_every_bad_profile_fails_at_load_in_one_line(text, key, write_profile):
    import time

    path = write_profile(text)
    t0 = time.perf_counter()
    with pytest.raises(ConfigError) as info:
        load_profile(path)
    seconds = time.perf_counter() - t0
    message = str(info.value)
    assert seconds < 1.0, f"took {seconds:.2f} s"
    assert "\n" not in message
    assert message.startswith(f"{path}: ") and key in message, message


def test_the_bad_profile_table_is_big_enough():
    assert len(BAD_PROFILES) >= 30 and len({t for t, _ in BAD_PROFILES}) == len(BAD_PROFILES)


def test_duplicate_key_names_the_full_key_and_line(write_profile):
    path = write_profile("name: x\nood:\n  gan:\n    epochs: 2\n    epochs: 3\n")
    with pytest.raises(ConfigError, match=r"ood\.gan\.epochs: given twice \(second time on line 5\)"):
        load_profile(path)


def test_plain_names_are_accepted():
    for name in ("smoke", "cifar10_resnet18", "run-2.b", "A1"):
        assert parse_profile({"name": name}).name == name


# ------------------------------------------------------------------ the schema alone: no registries, no probes

LIGHT_AND_CHECKED = """
import sys
from mia_nb.config import load_profile
load_profile("params/default.yaml")
print("heavy:", sorted({"torch", "sklearn"} & set(sys.modules)))
import mia_nb.config as config
config.ATTACK_NAMES += ("magic",)
try:
    import mia_nb.attacks.score_based
except RuntimeError as err:
    print("drift:", err)
"""


def test_the_profile_loader_imports_no_registry_and_attack_names_cannot_drift():
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-c", LIGHT_AND_CHECKED], cwd=REPO, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.splitlines()
    assert lines[0] == "heavy: []", lines                  # no torch, no scikit-learn behind the schema
    assert lines[1].startswith("drift: ATTACKS has") and "magic" in lines[1], lines


def test_machine_probes_live_where_the_machine_is_used(write_profile, monkeypatch):
    import importlib.util

    import torch

    from mia_nb.models import privacy
    from mia_nb.models.device import resolve_device
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # a machine without a GPU
    p = load_profile(write_profile("device: cuda\ndefenses:\n  dp_secure_mode: true\nengine:\n  backend: ray\n"))
    assert p.device == "cuda"                                        # the schema asks nothing of the machine
    with pytest.raises(ConfigError, match=r"^device: no CUDA GPU is available here, got 'cuda'") as info:
        resolve_device(p.device)
    assert "\n" not in str(info.value)
    assert resolve_device("auto") == torch.device("cpu") == resolve_device("cpu")
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "torchcsprng" else find_spec(name, *a))
    with pytest.raises(ConfigError, match=r"^defenses.dp_secure_mode: needs torchcsprng"):
        privacy.check_secure_mode(p.defenses.dp_secure_mode)
    privacy.check_secure_mode(False)
