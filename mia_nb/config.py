"""Profiles: the schema of params/<profile>.yaml, loading, and validation with one-line errors."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Optional, Union, get_args, get_origin, get_type_hints

import yaml

DATASETS = ("fashion_mnist", "cifar10", "stanford_dogs")
ARCHS = ("simple_cnn", "resnet18", "efficientnet_b0", "resnet50")
OPTIMIZERS = ("adam", "adamw", "sgd")
ATTACK_NAMES = ("threshold", "entropy", "salem", "loss")
EXTRA_DATASETS = ("cifar100", "svhn", "stl10", "stanford_dogs", "afhq_cat", "afhq_dog", "afhq_wild")
SPLIT_PARTS = ("target_train", "target_heldout", "shadow_train", "shadow_heldout", "calibration", "generator")


class ConfigError(ValueError):
    """A profile is wrong; the message names the key to fix."""


@dataclass(frozen=True)
class DataConfig:
    dataset: str = "fashion_mnist"  # fashion_mnist | cifar10 | stanford_dogs
    root: str = "data"  # data folder, relative to the repository root unless absolute
    download: bool = False  # let torchvision download missing data (needs internet)
    image_size: int = 0  # 0 = the dataset's native size (28, 32, 224)
    augment: bool = False  # random rotation/crop/flip when training (the paper's Dogs recipe)


@dataclass(frozen=True)
class SplitsConfig:
    target_train: int = 2500
    target_heldout: int = 5000
    shadow_train: int = 2500
    shadow_heldout: int = 5000
    calibration: int = 2000
    generator: int = 20000


@dataclass(frozen=True)
class ModelConfig:
    arch: str = "simple_cnn"  # simple_cnn | resnet18 | efficientnet_b0 | resnet50
    pretrained: bool = False  # ImageNet weights (resnet50 only)


@dataclass(frozen=True)
class TrainConfig:
    optimizer: str = "adam"  # adam | adamw | sgd
    lr: float = 0.001
    momentum: float = 0.9  # sgd only
    epochs: int = 40
    batch_size: int = 64
    weight_decay: float = 0.0
    label_smoothing: float = 0.0
    eval_every: int = 1  # held-out accuracy every N epochs (0 = only at the end)


@dataclass(frozen=True)
class AttacksConfig:
    names: tuple[str, ...] = ATTACK_NAMES
    salem_k: int = 3
    salem_patience: int = 5
    salem_max_epochs: int = 100
    n_boot: int = 200  # bootstrap resamples for TPR@low-FPR confidence intervals


@dataclass(frozen=True)
class GanConfig:
    epochs: int = 10
    batch_size: int = 64
    latent_dim: int = 64
    time_budget_s: float = 300.0  # safety net: no new epoch starts once this would be exceeded
    n_images: int = 5000  # generated non-members scored by the attacks
    supply_sizes: tuple[int, ...] = (1000, 2000, 5000)  # "unbounded supply" demonstration


@dataclass(frozen=True)
class OodConfig:
    corruption_severities: tuple[int, ...] = (1, 3)
    extra_datasets: tuple[str, ...] = ()  # other-content datasets (CIFAR profiles)
    fake_folder: Optional[str] = None  # folder of fake images made elsewhere (e.g. StyleGAN2)
    afhq_root: Optional[str] = None  # AFHQ folder with cat/ dog/ wild/ subfolders
    max_pool_size: int = 5000
    gan: GanConfig = field(default_factory=GanConfig)


@dataclass(frozen=True)
class LlaConfig:
    hessian_structure: str = "kron"
    prior: str = "marglik"  # marglik | grid (grid search on the calibration split)
    grid: tuple[float, ...] = (-4.0, 4.0, 33.0)  # prior precisions: log10 min, log10 max, number of points
    link: str = "probit"  # probit | mc
    n_samples: int = 100


@dataclass(frozen=True)
class CalibrationConfig:
    temperatures: tuple[float, ...] = (0.25, 0.5, 2.0, 5.0, 10.0)
    label_smoothing: tuple[float, ...] = (0.0083, 0.1)
    llla: LlaConfig = field(default_factory=LlaConfig)


@dataclass(frozen=True)
class DefensesConfig:
    weight_decay: tuple[float, ...] = (3e-4, 1e-3)
    temperature: float = 10.0
    dp_epsilons: tuple[float, ...] = (1.0, 8.0)
    dp_max_grad_norm: float = 1.0
    dp_epochs: int = 0  # 0 = the profile's train.epochs


@dataclass(frozen=True)
class Profile:
    name: str = "default"
    seed: int = 42
    seeds: tuple[int, ...] = ()  # repeats; empty = (seed,)
    device: str = "auto"  # auto | cpu | cuda
    data: DataConfig = field(default_factory=DataConfig)
    splits: SplitsConfig = field(default_factory=SplitsConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    attacks: AttacksConfig = field(default_factory=AttacksConfig)
    ood: OodConfig = field(default_factory=OodConfig)
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)
    defenses: DefensesConfig = field(default_factory=DefensesConfig)
    source: str = ""  # the YAML file this came from (set by load_profile)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (lists for tuples), e.g. for JSON."""
        return _plain(dataclasses.asdict(self))


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def _convert(value: Any, tp: Any, key: str) -> Any:
    """Convert a YAML value to the annotated type, or raise ConfigError naming `key`."""
    origin = get_origin(tp)
    if origin is Union:  # Optional[X]
        args = [a for a in get_args(tp) if a is not type(None)]
        return None if value is None else _convert(value, args[0], key)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping of settings, got {value!r}")
        return _build(tp, value, key + ".")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        inner = get_args(tp)[0]
        return tuple(_convert(v, inner, f"{key}[{i}]") for i, v in enumerate(value))
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported type {tp}")  # pragma: no cover - schema bug


def _build(cls: type, values: dict[str, Any], prefix: str = "") -> Any:
    """Build dataclass `cls` from a mapping, refusing unknown keys."""
    hints = get_type_hints(cls)
    names = [f.name for f in fields(cls) if f.name != "source"]
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise ConfigError(f"{prefix}{unknown[0]}: unknown key (known keys here: {', '.join(names)})")
    kwargs = {k: _convert(v, hints[k], prefix + k) for k, v in values.items()}
    return cls(**kwargs)


def _one_of(key: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{key}: unknown value {value!r} (choose one of: {', '.join(allowed)})")


def validate(p: Profile) -> Profile:
    """Check names, ranges and sizes that need no data; raise ConfigError naming the key."""
    _one_of("data.dataset", p.data.dataset, DATASETS)
    _one_of("model.arch", p.model.arch, ARCHS)
    _one_of("train.optimizer", p.train.optimizer, OPTIMIZERS)
    _one_of("device", p.device, ("auto", "cpu", "cuda"))
    for i, name in enumerate(p.attacks.names):
        _one_of(f"attacks.names[{i}]", name, ATTACK_NAMES)
    for i, name in enumerate(p.ood.extra_datasets):
        _one_of(f"ood.extra_datasets[{i}]", name, EXTRA_DATASETS)
    _one_of("calibration.llla.prior", p.calibration.llla.prior, ("marglik", "grid"))
    _one_of("calibration.llla.link", p.calibration.llla.link, ("probit", "mc"))
    g = p.calibration.llla.grid
    if len(g) != 3 or not g[0] < g[1] or g[2] < 3 or g[2] != int(g[2]):
        raise ConfigError(f"calibration.llla.grid: expected [log10 min, log10 max, points >= 3], got {list(g)}")
    _one_of("calibration.llla.hessian_structure", p.calibration.llla.hessian_structure, ("kron", "diag", "full"))
    if p.model.pretrained and p.model.arch != "resnet50":
        raise ConfigError("model.pretrained: ImageNet weights are offered for resnet50 only")
    positive = {
        "train.lr": p.train.lr, "train.epochs": p.train.epochs, "train.batch_size": p.train.batch_size,
        "attacks.salem_k": p.attacks.salem_k, "ood.gan.batch_size": p.ood.gan.batch_size,
        "defenses.temperature": p.defenses.temperature,
        "defenses.dp_max_grad_norm": p.defenses.dp_max_grad_norm, "ood.max_pool_size": p.ood.max_pool_size,
    }
    for key, value in positive.items():
        if value <= 0:
            raise ConfigError(f"{key}: must be positive, got {value}")
    for key, value in dataclasses.asdict(p.splits).items():
        if value < 0:
            raise ConfigError(f"splits.{key}: must be zero or positive, got {value}")
    for key in ("target_train", "target_heldout", "shadow_train", "shadow_heldout"):
        if getattr(p.splits, key) == 0:
            raise ConfigError(f"splits.{key}: must be positive")
    if not 0.0 <= p.train.label_smoothing < 1.0:
        raise ConfigError(f"train.label_smoothing: must be in [0, 1), got {p.train.label_smoothing}")
    for i, eps in enumerate(p.calibration.label_smoothing):
        if not 0.0 < eps < 1.0:
            raise ConfigError(f"calibration.label_smoothing[{i}]: must be in (0, 1), got {eps}")
    for i, t in enumerate(p.calibration.temperatures):
        if t <= 0:
            raise ConfigError(f"calibration.temperatures[{i}]: must be positive, got {t}")
    for i, e in enumerate(p.defenses.dp_epsilons):
        if e <= 0:
            raise ConfigError(f"defenses.dp_epsilons[{i}]: must be positive, got {e}")
    for i, s in enumerate(p.ood.corruption_severities):
        if s not in (1, 2, 3):
            raise ConfigError(f"ood.corruption_severities[{i}]: must be 1, 2 or 3, got {s}")
    if p.ood.gan.n_images < 0:
        raise ConfigError(f"ood.gan.n_images: must be zero (no GAN) or positive, got {p.ood.gan.n_images}")
    if any(n > p.ood.gan.n_images for n in p.ood.gan.supply_sizes):
        raise ConfigError("ood.gan.supply_sizes: every size must be at most ood.gan.n_images")
    if p.ood.gan.n_images > 0 and p.splits.generator == 0:
        raise ConfigError("splits.generator: the GAN needs a positive generator split (or set ood.gan.n_images: 0)")
    if len(set(p.seeds)) != len(p.seeds):
        raise ConfigError("seeds: repeated seed")
    return p


def parse_profile(values: dict[str, Any], source: str = "<dict>") -> Profile:
    """Build and validate a Profile from a mapping (as read from YAML)."""
    if not isinstance(values, dict):
        raise ConfigError(f"{source}: a profile must be a YAML mapping")
    p = _build(Profile, values)
    return validate(dataclasses.replace(p, source=source))


def load_profile(path: str | Path) -> Profile:
    """Read, parse and validate params/<profile>.yaml."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: profile file not found (profiles live in params/)")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    try:
        return parse_profile(values, source=str(path))
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None


def seeds_of(p: Profile) -> tuple[int, ...]:
    """The seeds a run covers: `seeds` when given, else `(seed,)`."""
    return p.seeds or (p.seed,)
