"""Profiles: the schema of params/<profile>.yaml, loading, and validation with one-line errors."""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Optional, Union, get_args, get_origin, get_type_hints

import yaml

from . import REPO_ROOT
from .attacks import ATTACKS

DATASETS = ("fashion_mnist", "cifar10", "stanford_dogs")
ARCHS = ("simple_cnn", "resnet18", "efficientnet_b0", "resnet50")
OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "onecycle")
ATTACK_NAMES = tuple(ATTACKS)  # the registry is mia_nb.attacks.ATTACKS
HESSIAN_STRUCTURES = ("kron", "diag", "full")  # last-layer Laplace choices (laplace-torch)
LLLA_PRIORS = ("marglik", "grid")
LLLA_ARMS = ("paper", "marglik", "leaky")
LLLA_LINKS = ("probit", "mc")
EXTRA_DATASETS = ("cifar100", "svhn", "stl10", "stanford_dogs", "afhq_cat", "afhq_dog", "afhq_wild")
ENGINE_BACKENDS = ("joblib", "ray")
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
    schedule: str = "constant"  # constant | onecycle (lr rises to `lr`, then anneals to ~0: fewer epochs)


@dataclass(frozen=True)
class AttacksConfig:
    names: tuple[str, ...] = ATTACK_NAMES
    salem_k: int = 3
    salem_patience: int = 5
    salem_max_epochs: int = 100
    n_boot: int = 2000  # paired bootstrap resamples behind every claim interval (mia_nb.claims)


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
    arms: tuple[str, ...] = LLLA_ARMS  # paper (default: grid on calibration + noise) | marglik | leaky (the paper's leak)
    grid: tuple[float, ...] = (-4.0, 4.0, 33.0)  # prior precisions: log10 min, log10 max, number of points
    link: str = "mc"  # probit | mc: the predictive of the grid arms (marglik keeps probit)
    n_samples: int = 100  # MC samples of the predictive (seeded)
    ood_weight: float = 0.25  # weight of the uniform-noise NLL in the grid objective (the paper's 0.25)
    n_noise: int = 2000  # uniform-noise images drawn for tuning only (a seed no pool uses)


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
    dp_delta: float = 1e-5  # the δ of (ε, δ)-DP; well below 1/n_train
    dp_secure_mode: bool = False  # Opacus secure RNG (torchcsprng): unseedable noise, so off for reproducible runs


@dataclass(frozen=True)
class ReferenceConfig:
    k: int = 0  # reference models per target (even, complementary pairs); 0 = no LiRA / RMIA (notebook 09)
    seeds: tuple[int, ...] = ()  # which seeds get reference models; empty = the first seed only
    tta_flip: bool = False  # LiRA test-time augmentation by horizontal flip (off for Fashion-MNIST)
    rmia_gamma: float = 2.0  # RMIA's likelihood-ratio threshold against population samples
    rmia_a: Optional[float] = None  # RMIA's offline constant; None = chosen on the reference models only
    k_curve: tuple[int, ...] = (2, 4, 8, 16)  # TPR as K grows (values above k are skipped)


@dataclass(frozen=True)
class EngineConfig:
    backend: str = "joblib"  # joblib (local processes) | ray (a Ray cluster, `pip install -e .[ray]`)
    address: Optional[str] = None  # ray only: "auto", "host:port" or "ray://host:port"; None = a local Ray
    workers: Optional[int] = None  # parallel training jobs; None = as many as CPU cores (joblib)


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
    engine: EngineConfig = field(default_factory=EngineConfig)
    reference_models: ReferenceConfig = field(default_factory=ReferenceConfig)
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
        if not math.isfinite(value):
            raise ConfigError(f"{key}: not a finite number, got {value!r} (use an ordinary number)")
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
    unknown = sorted(str(k) for k in values if k not in names)
    if unknown:
        raise ConfigError(f"{prefix}{unknown[0]}: unknown key (known keys here: {', '.join(names)})")
    kwargs = {k: _convert(v, hints[k], prefix + k) for k, v in values.items()}
    return cls(**kwargs)


def _one_of(key: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{key}: unknown value {value!r} (choose one of: {', '.join(allowed)})")


def _need(ok: bool, key: str, value: Any, wrong: str, allowed: str) -> None:
    """Raise `<key>: <wrong>, got <value> (<allowed>)` unless `ok`."""
    if not ok:
        shown = list(value) if isinstance(value, tuple) else value
        raise ConfigError(f"{key}: {wrong}, got {shown!r} ({allowed})")


def _at_least(key: str, value: float, low: float, what: str = "") -> None:
    _need(value >= low, key, value, "too small", f"must be at least {low:g}{what}")


def _positive(key: str, value: float) -> None:
    _need(value > 0, key, value, "not positive", "must be greater than 0")


def _each(key: str, values: tuple[Any, ...], check: Callable[[str, Any], None]) -> None:
    for i, v in enumerate(values):
        check(f"{key}[{i}]", v)


def _no_repeats(key: str, values: tuple[Any, ...]) -> None:
    seen = [v for i, v in enumerate(values) if v in values[:i]]
    _need(not seen, key, values, f"{seen[0]!r} is repeated" if seen else "", "list each value once")


NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
NATIVE_SIZE = {"fashion_mnist": 28, "cifar10": 32, "stanford_dogs": 224}
GAN_SIZES = (28, 32)
SEED_LIMIT = 2 ** 32


def validate(p: Profile) -> Profile:
    """Check names, ranges and sizes that need no data; raise ConfigError naming the key."""
    # -- where things go
    _need(bool(NAME_PATTERN.match(p.name)), "name", p.name, "not a plain folder name",
          "letters, digits, '_', '.', '-', starting with a letter or digit, at most 100 characters; "
          "it names the folder under the outputs root")
    _need(bool(p.data.root.strip()), "data.root", p.data.root, "empty", "a folder, relative to the repository or absolute")
    for key, folder in (("data.root", p.data.root), ("ood.afhq_root", p.ood.afhq_root),
                        ("ood.fake_folder", p.ood.fake_folder)):
        if folder is not None:
            path = Path(folder) if Path(folder).is_absolute() else REPO_ROOT / folder
            _need(not path.exists() or path.is_dir(), key, folder, f"{path} is a file, not a folder",
                  "name a folder")
    # -- seeds and device
    _need(0 <= p.seed < SEED_LIMIT, "seed", p.seed, "out of range", "0 <= seed < 2**32")
    _each("seeds", p.seeds, lambda k, v: _need(0 <= v < SEED_LIMIT, k, v, "out of range", "0 <= seed < 2**32"))
    _no_repeats("seeds", p.seeds)
    _one_of("device", p.device, ("auto", "cpu", "cuda"))
    if p.device == "cuda":
        import torch
        _need(torch.cuda.is_available(), "device", p.device, "no CUDA GPU is available here",
              "use auto or cpu on this machine")
    # -- data and splits
    _one_of("data.dataset", p.data.dataset, DATASETS)
    size = p.data.image_size or NATIVE_SIZE[p.data.dataset]
    _need(p.data.image_size == 0 or 8 <= p.data.image_size <= 1024, "data.image_size", p.data.image_size,
          "out of range", "0 for the dataset's native size, or 8 to 1024 pixels")
    for key, value in dataclasses.asdict(p.splits).items():
        _at_least(f"splits.{key}", value, 0)
    for key in ("target_train", "target_heldout", "shadow_train", "shadow_heldout"):
        _positive(f"splits.{key}", getattr(p.splits, key))
    _need(p.splits.calibration > 0, "splits.calibration", p.splits.calibration, "not positive",
          "notebook 06 fits temperatures and the Laplace prior on it; give it at least 1 image, e.g. 2000")
    # -- model and training
    _one_of("model.arch", p.model.arch, ARCHS)
    if p.model.pretrained and p.model.arch != "resnet50":
        raise ConfigError(f"model.pretrained: ImageNet weights are offered for resnet50 only, got true with "
                          f"model.arch {p.model.arch!r} (set pretrained: false or arch: resnet50)")
    _need(p.model.arch != "simple_cnn" or size % 4 == 0, "data.image_size", p.data.image_size,
          "not divisible by 4", "simple_cnn needs a size divisible by 4")
    t = p.train
    _one_of("train.optimizer", t.optimizer, OPTIMIZERS)
    _one_of("train.schedule", t.schedule, SCHEDULES)
    _positive("train.lr", t.lr)
    _need(0.0 <= t.momentum < 1.0, "train.momentum", t.momentum, "out of range", "0 <= momentum < 1")
    _at_least("train.epochs", t.epochs, 1)
    _at_least("train.batch_size", t.batch_size, 1)
    _at_least("train.weight_decay", t.weight_decay, 0)
    _need(0.0 <= t.label_smoothing < 1.0, "train.label_smoothing", t.label_smoothing, "out of range",
          "0 <= label_smoothing < 1")
    _at_least("train.eval_every", t.eval_every, 0, "; 0 = only at the end")
    # -- attacks
    a = p.attacks
    _need(len(a.names) > 0, "attacks.names", a.names, "empty", f"name at least one of: {', '.join(ATTACK_NAMES)}")
    for i, name in enumerate(a.names):
        _one_of(f"attacks.names[{i}]", name, ATTACK_NAMES)
    _no_repeats("attacks.names", a.names)
    _at_least("attacks.salem_k", a.salem_k, 1)
    _at_least("attacks.salem_patience", a.salem_patience, 1)
    _at_least("attacks.salem_max_epochs", a.salem_max_epochs, 1)
    _at_least("attacks.n_boot", a.n_boot, 1000, " bootstrap resample")
    # -- other-content pools and the GAN
    o, g = p.ood, p.ood.gan
    _each("ood.corruption_severities", o.corruption_severities,
          lambda k, v: _need(v in (1, 2, 3), k, v, "unknown severity", "1, 2 or 3"))
    _no_repeats("ood.corruption_severities", o.corruption_severities)
    for i, name in enumerate(o.extra_datasets):
        _one_of(f"ood.extra_datasets[{i}]", name, EXTRA_DATASETS)
    _no_repeats("ood.extra_datasets", o.extra_datasets)
    if any(name.startswith("afhq_") for name in o.extra_datasets):
        _need(bool(o.afhq_root), "ood.afhq_root", o.afhq_root, "missing",
              "the afhq_* extra datasets need the AFHQ folder with cat/ dog/ wild/")
    for key in ("afhq_root", "fake_folder"):
        value = getattr(o, key)
        _need(value is None or bool(value.strip()), f"ood.{key}", value, "empty", "a folder, or leave it out")
    _at_least("ood.max_pool_size", o.max_pool_size, 1)
    _at_least("ood.gan.n_images", g.n_images, 0, "; 0 = no GAN")
    _at_least("ood.gan.batch_size", g.batch_size, 2)
    _at_least("ood.gan.latent_dim", g.latent_dim, 1)
    _positive("ood.gan.time_budget_s", g.time_budget_s)
    _each("ood.gan.supply_sizes", g.supply_sizes, lambda k, v: _at_least(k, v, 1))
    if g.n_images > 0:
        _at_least("ood.gan.epochs", g.epochs, 1, " when ood.gan.n_images > 0")
        _each("ood.gan.supply_sizes", g.supply_sizes, lambda k, v: _need(
            v <= g.n_images, k, v, "larger than ood.gan.n_images", f"at most {g.n_images}"))
        _need(p.splits.generator >= 2, "splits.generator", p.splits.generator, "too small for the GAN",
              "at least 2 images, or set ood.gan.n_images: 0")
        _need(size in GAN_SIZES, "ood.gan.n_images", g.n_images, f"the GAN makes 28 or 32 px images, not {size} px",
              "set ood.gan.n_images: 0, or data.image_size: 28 or 32")
    # -- calibration
    c = p.calibration
    _each("calibration.temperatures", c.temperatures, _positive)
    _each("calibration.label_smoothing", c.label_smoothing,
          lambda k, v: _need(0.0 < v < 1.0, k, v, "out of range", "0 < label smoothing < 1"))
    _one_of("calibration.llla.hessian_structure", c.llla.hessian_structure, HESSIAN_STRUCTURES)
    for i, arm in enumerate(c.llla.arms):
        _one_of(f"calibration.llla.arms[{i}]", arm, LLLA_ARMS)
    _need(c.llla.ood_weight >= 0, "calibration.llla.ood_weight", c.llla.ood_weight, "negative", "0 or more (0 = no noise term)")
    _at_least("calibration.llla.n_noise", c.llla.n_noise, 1)
    _one_of("calibration.llla.link", c.llla.link, LLLA_LINKS)
    gr = c.llla.grid
    _need(len(gr) == 3 and gr[0] < gr[1] and gr[2] >= 3 and gr[2] == int(gr[2]), "calibration.llla.grid", gr,
          "not a grid", "[log10 min, log10 max, points >= 3] with min < max")
    _at_least("calibration.llla.n_samples", c.llla.n_samples, 1)
    # -- defenses
    d = p.defenses
    _each("defenses.weight_decay", d.weight_decay, _positive)
    _positive("defenses.temperature", d.temperature)
    _each("defenses.dp_epsilons", d.dp_epsilons, _positive)
    _positive("defenses.dp_max_grad_norm", d.dp_max_grad_norm)
    _at_least("defenses.dp_epochs", d.dp_epochs, 0, "; 0 = train.epochs")
    r = p.reference_models
    _need(r.k >= 0 and r.k % 2 == 0, "reference_models.k", r.k, "not an even number >= 0",
          "0 (none) or an even count: models come in complementary pairs")
    for i, s_ in enumerate(r.seeds):
        _need(s_ in (p.seeds or (p.seed,)), f"reference_models.seeds[{i}]", s_, "not a seed of this profile",
              f"one of {list(p.seeds or (p.seed,))}")
    _need(r.k == 0 or p.splits.target_heldout >= p.splits.target_train + 20, "reference_models.k", r.k,
          f"needs held-out images beyond the {p.splits.target_train} in the population",
          "splits.target_heldout at least splits.target_train + 20 (the rest fix the operating points), or k: 0")
    _need(r.rmia_gamma > 0, "reference_models.rmia_gamma", r.rmia_gamma, "not positive", "greater than 0")
    _need(r.rmia_a is None or 0 <= r.rmia_a <= 1, "reference_models.rmia_a", r.rmia_a, "outside [0, 1]",
          "a number in [0, 1], or leave it out to choose it on the reference models")
    for i, k_ in enumerate(r.k_curve):
        _need(k_ >= 2 and k_ % 2 == 0, f"reference_models.k_curve[{i}]", k_, "not an even number >= 2", "2, 4, 8, ...")
    _need(0 < d.dp_delta < 1, "defenses.dp_delta", d.dp_delta, "outside (0, 1)", "a probability, e.g. 1e-5")
    _need(not d.dp_secure_mode or importlib.util.find_spec("torchcsprng") is not None, "defenses.dp_secure_mode",
          d.dp_secure_mode, "needs torchcsprng, which is not installed", "false, or pip install torchcsprng")
    # -- engine
    e = p.engine
    _one_of("engine.backend", e.backend, ENGINE_BACKENDS)
    if e.workers is not None:
        _at_least("engine.workers", e.workers, 1, ", or leave it out for one per CPU core")
    if e.address is not None and e.backend != "ray":
        raise ConfigError(f"engine.address: only the ray backend takes an address, got {e.address!r} "
                          f"(set engine.backend: ray or remove engine.address)")
    if e.backend == "ray":
        _need(importlib.util.find_spec("ray") is not None, "engine.backend", e.backend,
              "ray needs the Ray extra, which is not installed",
              "pip install -e .[ray], or use backend joblib")
    return p


def parse_profile(values: dict[str, Any], source: str = "<dict>") -> Profile:
    """Build and validate a Profile from a mapping (as read from YAML)."""
    if not isinstance(values, dict):
        raise ConfigError(f"(top level): expected a mapping of settings (key: value lines), got {values!r:.80}")
    p = _build(Profile, values)
    return validate(dataclasses.replace(p, source=source))


def _duplicate_key(node: yaml.Node, prefix: str = "") -> str | None:
    """The dotted key of the first key given twice in one mapping of a composed YAML tree, or None."""
    if isinstance(node, yaml.MappingNode):
        seen: set[Any] = set()
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node)
            if key in seen:
                return f"{prefix}{key}: given twice (second time on line {key_node.start_mark.line + 1})"
            seen.add(key)
            found = _duplicate_key(value_node, f"{prefix}{key}.")
            if found:
                return found
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            found = _duplicate_key(item, f"{prefix[:-1]}[{i}]." if prefix else f"[{i}].")
            if found:
                return found
    return None


def read_yaml(text: str, source: str) -> Any:
    """Parse one YAML document with the safe loader; empty documents and repeated keys are errors."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise ConfigError(f"{source}: the profile is empty, got no settings (write at least `name: <run name>`; "
                              f"params/default.yaml lists every key)")
        dup = _duplicate_key(node)
        if dup:
            raise ConfigError(f"{source}: {dup} (a repeated key would silently keep the last value; keep one)")
        return loader.construct_document(node)
    except yaml.YAMLError as err:
        raise ConfigError(f"{source}: not valid YAML ({str(err).splitlines()[0]})") from None
    finally:
        loader.dispose()


def load_profile(path: str | Path) -> Profile:
    """Read, parse and validate params/<profile>.yaml."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: profile file not found (profiles live in params/)")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read the profile ({type(err).__name__})") from None
    values = read_yaml(text, str(path))
    try:
        return parse_profile(values, source=str(path))
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None


def seeds_of(p: Profile) -> tuple[int, ...]:
    """The seeds a run covers: `seeds` when given, else `(seed,)`."""
    return p.seeds or (p.seed,)
