"""Profiles: the schema of params/<profile>.yaml, loading, and validation with one-line errors."""

from __future__ import annotations

import dataclasses
import functools
import math
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Optional, Union, get_args, get_origin, get_type_hints

import yaml

from mia_nb import REPO_ROOT
from mia_nb.data.catalog import DATASET_INFO

DATASETS = tuple(DATASET_INFO)  # the dataset registry (facts, native sizes) is mia_nb.data.catalog
ARCHS = ("simple_cnn", "resnet18", "efficientnet_b0", "resnet50")
OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "onecycle")
ATTACK_NAMES = ("threshold", "entropy", "salem", "loss")  # keys of mia_nb.attacks.score_based.ATTACKS
HESSIAN_STRUCTURES = ("kron", "diag", "full")  # last-layer Laplace choices (laplace-torch)
LLLA_PRIORS = ("marglik", "grid")
LLLA_ARMS = ("paper", "marglik", "leaky")
LLLA_LINKS = ("probit", "mc")
EXTRA_DATASETS = ("cifar100", "svhn", "stl10", "stanford_dogs", "afhq_cat", "afhq_dog", "afhq_wild")
ENGINE_BACKENDS = ("joblib", "ray")
CORRUPTION_SEVERITIES = (1, 2, 3)  # the corruption strengths mia_nb.data.transforms defines (one value each)
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
    n_boot: int = 2000  # paired bootstrap resamples behind every claim interval (mia_nb.claims.findings)


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


# The reference code's choices a profile may switch (notebook 08 documents each with the line it follows;
# mia_nb.attacks.lira_rmia reads these tuples).
LIRA_CENTERS = ("median", "mean")  # centre of an image's IN / OUT reference values (code: np.median)
LIRA_SPREADS = ("global", "per_side")  # one std of all raw values (code: np.std(dat_in)) | pooled per side
LIRA_OFFLINE_SIDES = ("two_sided", "one_sided")  # offline test: code −logpdf under OUT | paper log Phi
TTA_AGGREGATES = ("scores", "logits")  # code: mean of per-view likelihood ratios | one statistic of mean logits


@dataclass(frozen=True)
class ReferenceConfig:
    k: int = 0  # reference models per target (even, complementary pairs); 0 = no LiRA / RMIA (notebook 08)
    seeds: tuple[int, ...] = ()  # which seeds get reference models; empty = the first seed only
    tta_flip: bool = False  # LiRA test-time augmentation by horizontal flip (off for Fashion-MNIST)
    tta_aggregate: str = "scores"  # with tta_flip: scores (mean of per-view LiRA scores, the code) | logits
    lira_center: str = "median"  # median (the code) | mean of an image's IN / OUT reference statistics
    lira_spread: str = "global"  # global (one std of all raw values, the code) | per_side (pooled IN, OUT)
    lira_offline: str = "two_sided"  # two_sided (the code: far from OUT either way) | one_sided (the paper)
    rmia_gamma: float = 1.0  # RMIA's likelihood-ratio threshold against population samples (the code: 1)
    rmia_a: Optional[float] = None  # RMIA's offline constant; None = chosen on the reference models only
    k_curve: tuple[int, ...] = (2, 4, 8, 16)  # TPR as K grows (values above k are skipped)
    variants: tuple[str, ...] = ()  # study variants attacked by reference models of their own kind (ls_0.1, ...)
    variant_k: int = 8  # reference models per such variant: the first variant_k halves (even, <= k)


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
            raise ConfigError(f"{key}: expected a mapping of settings, got {_shown(value)}")
        return _build(tp, value, key + ".")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {_shown(value)}")
        inner = get_args(tp)[0]
        return tuple(_convert(v, inner, f"{key}[{i}]") for i, v in enumerate(value))
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {_shown(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {_shown(value)}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {_shown(value)}")
        if not math.isfinite(value):
            raise ConfigError(f"{key}: not a finite number, got {_shown(value)} (use an ordinary number)")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {_shown(value)}")
        return value
    raise ConfigError(f"{key}: unsupported type {tp}")  # pragma: no cover - schema bug


def _build(cls: type, values: dict[str, Any], prefix: str = "") -> Any:
    """Build dataclass `cls` from a mapping, refusing unknown keys."""
    hints = get_type_hints(cls)
    names = [f.name for f in fields(cls) if f.name != "source"]
    unknown = sorted(str(k) for k in values if k not in names)
    if unknown:
        raise ConfigError(f"{prefix}{_key_text(unknown[0])}: unknown key (known keys here: {', '.join(names)})")
    kwargs = {k: _convert(v, hints[k], prefix + k) for k, v in values.items()}
    return cls(**kwargs)


def _shown(value: Any, width: int = 100) -> str:
    """`value` for a one-line message: its repr (lists for tuples), cut to about `width` characters."""
    text = repr(list(value) if isinstance(value, tuple) else value)
    if len(text) <= width:
        return text
    more = f" ... ({len(value):,} entries)" if isinstance(value, (tuple, list, dict)) else " ..."
    return text[:width] + more


def _key_text(key: Any) -> str:
    """A mapping key for a message: as written when it is a plain word, else its (shortened) repr."""
    text = str(key)
    return text if re.fullmatch(r"[\w.-]{1,60}", text) else _shown(text, 60)


def _one_of(key: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{key}: unknown value {_shown(value)} (choose one of: {', '.join(allowed)})")


def _need(ok: bool, key: str, value: Any, wrong: str, allowed: str) -> None:
    """Raise `<key>: <wrong>, got <value> (<allowed>)` unless `ok`."""
    if not ok:
        raise ConfigError(f"{key}: {wrong}, got {_shown(value)} ({allowed})")


def _at_least(key: str, value: float, low: float, what: str = "") -> None:
    _need(value >= low, key, value, "too small", f"must be at least {low:g}{what}")


def _positive(key: str, value: float) -> None:
    _need(value > 0, key, value, "not positive", "must be greater than 0")


def _each(key: str, values: tuple[Any, ...], check: Callable[[str, Any], None]) -> None:
    for i, v in enumerate(values):
        check(f"{key}[{i}]", v)


def _no_repeats(key: str, values: tuple[Any, ...]) -> None:
    """Refuse a list that names a value twice (the first repeat is named); one pass over the list."""
    seen: set[Any] = set()
    for v in values:
        _need(v not in seen, key, values, f"{v!r} is repeated", "list each value once")
        seen.add(v)


# The largest value of every count a profile sets (for a list: the most entries; for the LLLA grid: the most
# points). Generous for any study this code is meant for (ten times or more the params/ profiles), small
# enough that a slip such as 1e12 epochs is refused at load instead of running for ever or failing minutes
# later out of memory. `validate` checks every entry and names the key and its maximum.
LIMITS: dict[str, int] = {
    "seeds": 100,                             # repeats: each trains every model again
    **{f"splits.{part}": 1_000_000 for part in SPLIT_PARTS},  # images per part (and at most the dataset's)
    "train.epochs": 1_000,
    "train.batch_size": 8_192,
    "train.eval_every": 1_000,
    "attacks.salem_k": 1_000,                 # and at most the dataset's number of classes
    "attacks.salem_patience": 1_000,
    "attacks.salem_max_epochs": 10_000,
    "attacks.n_boot": 20_000,                 # [n_boot x images] float32 weights per claim
    "ood.max_pool_size": 1_000_000,
    "ood.gan.epochs": 1_000,
    "ood.gan.batch_size": 8_192,
    "ood.gan.latent_dim": 4_096,
    "ood.gan.time_budget_s": 7 * 24 * 3600,   # a week
    "ood.gan.n_images": 200_000,              # PNG files written under generated/
    "ood.gan.supply_sizes": 20,
    "calibration.temperatures": 50,
    "calibration.label_smoothing": 20,        # one model pair each
    "calibration.llla.grid": 1_000,           # prior precisions tried
    "calibration.llla.n_samples": 10_000,
    "calibration.llla.n_noise": 50_000,
    "defenses.weight_decay": 20,              # one model pair each
    "defenses.dp_epsilons": 20,               # one model pair each
    "defenses.dp_epochs": 1_000,
    "reference_models.k": 256,                # reference models per seed
    "reference_models.seeds": 100,
    "reference_models.k_curve": 20,
    "engine.workers": 1_024,
}


def _amount(key: str, value: Any) -> Any:
    """What LIMITS bounds for `key`: a list's length, the LLLA grid's number of points, else the value itself."""
    if key == "calibration.llla.grid":
        return value[2] if len(value) == 3 else len(value)
    return len(value) if isinstance(value, tuple) else value


def _check_limits(p: Profile) -> None:
    """Refuse any count above its LIMITS entry, naming the key and the maximum."""
    for key, most in LIMITS.items():
        value = functools.reduce(getattr, key.split("."), p)
        if value is None:
            continue
        amount = _amount(key, value)
        if amount > most:
            what = "points" if key == "calibration.llla.grid" else "entries" if isinstance(value, tuple) else ""
            got = f"{amount:,} {what}".strip() if isinstance(amount, int) else _shown(amount)
            raise ConfigError(f"{key}: too large, got {got} (at most {most:,}{' ' + what if what else ''}; "
                              f"the limits are mia_nb.config.LIMITS)")


def _check_splits(p: Profile) -> None:
    """Split sizes against the dataset: each non-empty part holds every class, and (where the dataset's size
    is known) the parts fit, leaving none or at least one image per class over for the stratified draw."""
    info = DATASET_INFO[p.data.dataset]
    sizes = {part: getattr(p.splits, part) for part in SPLIT_PARTS}
    for part, n in sizes.items():
        _need(n == 0 or n >= info.n_classes, f"splits.{part}", n, "too small",
              f"at least {info.n_classes} images, one per class of {p.data.dataset}")
    total, biggest = sum(sizes.values()), max(sizes, key=sizes.get)
    if info.n_images:
        _need(total <= info.n_images, f"splits.{biggest}", sizes[biggest],
              f"the parts add up to {total:,} images but {p.data.dataset} has {info.n_images:,}",
              "lower this or another part")
        left = info.n_images - total
        _need(left == 0 or left >= info.n_classes, f"splits.{biggest}", sizes[biggest],
              f"the parts leave {left} of the {info.n_images:,} images over",
              f"a class-stratified draw needs none or at least {info.n_classes} over")


NAME_PATTERN = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9_.-]{0,99}\Z")  # \Z: "name\n" does not pass ($ would)
GAN_SIZES = (28, 32)
SEED_LIMIT = 2 ** 32


def validate(p: Profile) -> Profile:
    """Check names, ranges and sizes that need no data; raise ConfigError naming the key."""
    # -- where things go
    _need(bool(NAME_PATTERN.match(p.name)), "name", p.name, "not a plain folder name",
          "letters, digits, '_', '.', '-', starting with a letter or digit, at most 100 characters; "
          "it names the folder under the outputs root")
    _check_limits(p)
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
    # -- data and splits
    _one_of("data.dataset", p.data.dataset, DATASETS)
    size = p.data.image_size or DATASET_INFO[p.data.dataset].size
    _need(p.data.image_size == 0 or 8 <= p.data.image_size <= 1024, "data.image_size", p.data.image_size,
          "out of range", "0 for the dataset's native size, or 8 to 1024 pixels")
    for key, value in dataclasses.asdict(p.splits).items():
        _at_least(f"splits.{key}", value, 0)
    for key in ("target_train", "target_heldout", "shadow_train", "shadow_heldout"):
        _positive(f"splits.{key}", getattr(p.splits, key))
    _need(p.splits.calibration > 0, "splits.calibration", p.splits.calibration, "not positive",
          "notebook 06 fits temperatures and the Laplace prior on it; give it at least 1 image, e.g. 2000")
    _check_splits(p)
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
    n_classes = DATASET_INFO[p.data.dataset].n_classes
    _need("salem" not in a.names or a.salem_k <= n_classes, "attacks.salem_k", a.salem_k, "too large",
          f"Salem's attack reads the top-k probabilities; {p.data.dataset} has {n_classes} classes")
    _at_least("attacks.salem_patience", a.salem_patience, 1)
    _at_least("attacks.salem_max_epochs", a.salem_max_epochs, 1)
    _at_least("attacks.n_boot", a.n_boot, 1000, " bootstrap resample")
    # -- other-content pools and the GAN
    o, g = p.ood, p.ood.gan
    _each("ood.corruption_severities", o.corruption_severities,
          lambda k, v: _need(v in CORRUPTION_SEVERITIES, k, v, "unknown severity",
                                ", ".join(map(str, CORRUPTION_SEVERITIES))))
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
    _need(len(gr) == 3 and -30 <= gr[0] < gr[1] <= 30 and gr[2] >= 3 and gr[2] == int(gr[2]),
          "calibration.llla.grid", gr, "not a grid", "[log10 min, log10 max, points >= 3] with -30 <= min < max <= 30")
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
          "0 (none) or an even count >= 2: online LiRA needs IN and OUT models, in complementary pairs")
    for i, s_ in enumerate(r.seeds):
        _need(s_ in (p.seeds or (p.seed,)), f"reference_models.seeds[{i}]", s_, "not a seed of this profile",
              f"one of {list(p.seeds or (p.seed,))}")
    _no_repeats("reference_models.seeds", r.seeds)
    _need(r.k == 0 or p.splits.target_heldout >= p.splits.target_train + 20, "reference_models.k", r.k,
          f"needs held-out images beyond the {p.splits.target_train} in the population",
          "splits.target_heldout at least splits.target_train + 20 (held-out images OUT for every reference model), "
          "or k: 0")
    _need(math.isfinite(r.rmia_gamma) and r.rmia_gamma > 0, "reference_models.rmia_gamma", r.rmia_gamma,
          "not a positive number", "a finite number greater than 0; the reference code uses 1")
    _one_of("reference_models.tta_aggregate", r.tta_aggregate, TTA_AGGREGATES)
    _one_of("reference_models.lira_center", r.lira_center, LIRA_CENTERS)
    _one_of("reference_models.lira_spread", r.lira_spread, LIRA_SPREADS)
    _one_of("reference_models.lira_offline", r.lira_offline, LIRA_OFFLINE_SIDES)
    _need(r.rmia_a is None or 0 <= r.rmia_a <= 1, "reference_models.rmia_a", r.rmia_a, "outside [0, 1]",
          "a number in [0, 1], or leave it out to choose it on the reference models")
    for i, k_ in enumerate(r.k_curve):
        _need(k_ >= 2 and k_ % 2 == 0, f"reference_models.k_curve[{i}]", k_, "not an even number >= 2", "2, 4, 8, ...")
    # reference models of each named variant's own kind (mia_nb.attacks.reference_variants names them the same way)
    cal = p.calibration
    offered = ([f"ls_{e:g}" for e in cal.label_smoothing] + ["llla_marglik"] * ("marglik" in cal.llla.arms)
               + [f"temp_{t:g}" for t in (*cal.temperatures, d.temperature)] + [f"l2_{w:g}" for w in d.weight_decay]
               + [f"dp_{e:g}" for e in d.dp_epsilons])
    for i, name in enumerate(r.variants):
        _need(name in offered, f"reference_models.variants[{i}]", name, "not a variant of this profile",
              f"one of {', '.join(dict.fromkeys(offered))}; vanilla is always attacked")
    _no_repeats("reference_models.variants", r.variants)
    _need(r.variant_k >= 2 and r.variant_k % 2 == 0, "reference_models.variant_k", r.variant_k,
          "not an even number >= 2", "complementary pairs: 2, 4, 8, ...")
    _need(not r.variants or r.k > 0, "reference_models.variants", r.variants, "needs reference models",
          "set reference_models.k > 0, or leave variants empty")
    _need(not r.variants or r.variant_k <= r.k, "reference_models.variant_k", r.variant_k,
          f"more than reference_models.k = {r.k}", "the variants reuse the first variant_k training halves")
    _need(0 < d.dp_delta < 1, "defenses.dp_delta", d.dp_delta, "outside (0, 1)", "a probability, e.g. 1e-5")
    # -- engine
    e = p.engine
    _one_of("engine.backend", e.backend, ENGINE_BACKENDS)
    if e.workers is not None:
        _at_least("engine.workers", e.workers, 1, ", or leave it out for one per CPU core")
    if e.address is not None and e.backend != "ray":
        raise ConfigError(f"engine.address: only the ray backend takes an address, got {e.address!r} "
                          f"(set engine.backend: ray or remove engine.address)")
    return p


def parse_profile(values: dict[str, Any], source: str = "<dict>") -> Profile:
    """Build and validate a Profile from a mapping (as read from YAML)."""
    if not isinstance(values, dict):
        raise ConfigError(f"(top level): expected a mapping of settings (key: value lines), got {values!r:.80}")
    p = _build(Profile, values)
    return validate(dataclasses.replace(p, source=source))


# ------------------------------------------------------------------------------ reading the YAML file
#
# A profile may come from anyone (a shared folder, a download), so reading it is bounded: the file size
# (MAX_PROFILE_BYTES), the nesting depth (MAX_DEPTH), no control characters, no anchors, aliases or tags
# (so no "billion laughs" and no self-reference: the composed tree is a tree, and every walk over it is
# linear), and YAML 1.2 core-schema scalars (`1:00` is the text "1:00", not 60; `010` is ten, not eight;
# `yes` is text, not true). Every failure is one ConfigError line naming the file and, where there is
# one, the line and column.

MAX_PROFILE_BYTES = 64 * 1024  # the largest profile file read (the biggest in params/ is under 4 KiB)
MAX_DEPTH = 16  # mappings and lists inside each other (profiles use 4)
MAX_INT_DIGITS = 30  # an integer literal longer than this is refused while reading (every count has a LIMIT)
# Characters a profile may hold: tab, line feed, carriage return, printable ASCII and printable Unicode
# (what PyYAML accepts, less NEL and the Unicode line / paragraph separators, which would shift line numbers).
_FORBIDDEN = re.compile("[^\t\n\r\x20-\x7e\xa0-\u2027\u202a-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_INT_12 = re.compile(r"[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+")
_FLOAT_12 = re.compile(r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
                       r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)")
_BOOL_12 = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}
_TAG = "tag:yaml.org,2002:"


class ProfileLoader(yaml.SafeLoader):
    """PyYAML's safe loader, bounded: no anchors, aliases or tags, at most MAX_DEPTH levels, and the YAML 1.2
    core schema: null, true/false, decimal / 0o / 0x integers and plain floats are resolved; every other plain
    scalar (timestamps, `yes`, `1:00`, `1_000`) is a string."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        """Refuse an alias, an anchor, a tag or one level too many before composing the node."""
        event = self.peek_event()
        where = _where(event.start_mark)
        if isinstance(event, yaml.AliasEvent) or event.anchor is not None:
            raise ConfigError(f"{where}YAML anchors and aliases (&name, *name) are not allowed in a profile; "
                              f"write the value out where it is used")
        if event.tag is not None:  # `!!python/object/apply:...`, `!!int "1:00"`, `!custom`, `!`
            raise ConfigError(f"{where}YAML tags ({event.tag}) are not allowed in a profile; write the plain value")
        if self.depth >= MAX_DEPTH and isinstance(event, yaml.CollectionStartEvent):
            raise ConfigError(f"{where}nested more than {MAX_DEPTH} levels deep; a profile needs at most 4 "
                              f"(params/default.yaml shows the layout)")
        self.depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


ProfileLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag == _TAG + "null"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
ProfileLoader.add_implicit_resolver(_TAG + "bool", re.compile(rf"^(?:{'|'.join(_BOOL_12)})$"), list("tTfF"))
ProfileLoader.add_implicit_resolver(_TAG + "int", re.compile(rf"^(?:{_INT_12.pattern})$"), list("-+0123456789"))
ProfileLoader.add_implicit_resolver(_TAG + "float", re.compile(rf"^(?:{_FLOAT_12.pattern})$"), list("-+.0123456789"))


def _construct_int(loader: ProfileLoader, node: yaml.ScalarNode) -> int:
    """A YAML 1.2 integer: decimal (leading zeros allowed, still decimal), 0o octal or 0x hexadecimal.

    (PyYAML's own would read `010` as octal and `1:00` as base 60; floats and booleans that the 1.2
    resolvers above let through read the same in both, so only integers need their own constructor.)"""
    text = loader.construct_scalar(node)
    if len(text) > MAX_INT_DIGITS:
        raise yaml.constructor.ConstructorError(None, None, f"an integer of {len(text)} digits is too long",
                                                node.start_mark)
    return int(text[2:], 8) if text.startswith("0o") else int(text[2:], 16) if text.startswith("0x") else int(text)


ProfileLoader.add_constructor(_TAG + "int", _construct_int)


def _where(mark: yaml.Mark | None) -> str:
    """'line L, column C: ' of a YAML mark (1-based), or '' without one."""
    return f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""


def _control_character(text: str) -> str | None:
    """'line L, column C: ...' for the first character a profile may not hold, or None."""
    found = _FORBIDDEN.search(text)
    if found is None:
        return None
    pos, char = found.start(), found.group()
    line, column = text.count("\n", 0, pos) + 1, pos - (text.rfind("\n", 0, pos) + 1) + 1
    name = {"\0": "NUL", "\x1b": "ESC", "\x7f": "DEL", "\x85": "NEL", "\u2028": "LINE SEPARATOR",
            "\u2029": "PARAGRAPH SEPARATOR"}.get(char, "a control character")
    return f"line {line}, column {column}: {name} (U+{ord(char):04X}) is not allowed in a profile (remove it)"


def _duplicate_key(node: yaml.Node, prefix: str = "") -> str | None:
    """The dotted key of the first key given twice in one mapping of a composed YAML tree, or None.

    Linear in the size of the tree: `ProfileLoader` refuses aliases, so no node is visited twice.
    """
    if isinstance(node, yaml.MappingNode):
        seen: set[Any] = set()
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node)
            if key in seen:
                return f"{prefix}{_key_text(key)}: given twice (second time on line {key_node.start_mark.line + 1})"
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
    """Parse one YAML document of a profile (bounded, YAML 1.2 scalars); every problem is one ConfigError line."""
    if len(text) > MAX_PROFILE_BYTES:
        raise ConfigError(f"{source}: {len(text):,} characters is too large for a profile "
                          f"(at most {MAX_PROFILE_BYTES // 1024} KiB)")
    text = text.removeprefix("\ufeff")  # a byte-order mark that some editors write
    bad = _control_character(text)
    if bad:
        raise ConfigError(f"{source}: {bad}")
    try:
        loader = ProfileLoader(text)
        try:
            node = loader.get_single_node()
            if node is None:
                raise ConfigError("the profile is empty, got no settings (write at least `name: <run name>`; "
                                  "params/default.yaml lists every key)")
            dup = _duplicate_key(node)
            if dup:
                raise ConfigError(f"{dup} (a repeated key would silently keep the last value; keep one)")
            return loader.construct_document(node)
        finally:
            loader.dispose()
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from None
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        problem = " ".join(str(err.problem or err.context or "unreadable").split())
        raise ConfigError(f"{source}: {_where(mark)}not valid YAML ({problem})") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{source}: not valid YAML ({' '.join(str(err).split())[:200]})") from None


def load_profile(path: str | Path) -> Profile:
    """Read, parse and validate params/<profile>.yaml (a regular file of at most MAX_PROFILE_BYTES of UTF-8)."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path}: is a folder, not a profile file (name a file such as params/default.yaml)")
    if not path.exists():
        raise ConfigError(f"{path}: profile file not found (profiles live in params/)")
    if not path.is_file():
        raise ConfigError(f"{path}: not a regular file (a device or a pipe?); name a profile file such as "
                          f"params/default.yaml")
    try:
        with path.open("rb") as f:
            data = f.read(MAX_PROFILE_BYTES + 1)
    except OSError as err:
        raise ConfigError(f"{path}: cannot read the profile ({type(err).__name__}: {err.strerror})") from None
    if len(data) > MAX_PROFILE_BYTES:
        raise ConfigError(f"{path}: {path.stat().st_size:,} bytes is too large for a profile "
                          f"(at most {MAX_PROFILE_BYTES // 1024} KiB; params/default.yaml is under 4 KiB)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text (byte {err.start} cannot be decoded); save the profile as UTF-8") \
            from None
    values = read_yaml(text, str(path))
    try:
        return parse_profile(values, source=str(path))
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None


def seeds_of(p: Profile) -> tuple[int, ...]:
    """The seeds a run covers: `seeds` when given, else `(seed,)`."""
    return p.seeds or (p.seed,)
