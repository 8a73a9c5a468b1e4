"""The run context a notebook opens: profile, seed, output folders, store, data, trained models."""

from __future__ import annotations

import dataclasses
import hashlib
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from . import data as data_mod
from .config import Profile, TrainConfig, load_profile, seeds_of
from .metrics import ece
from .models import build_model, forward_logits
from .results import upsert_csv
from .scores import Outputs, cached_logits, log_softmax, softmax
from .store import Store, atomic_write
from .privacy import make_dp_compatible, make_private, spent_epsilon
from .train import make_optimizer, resolve_device, train_model

REPO_ROOT = Path(__file__).resolve().parents[1]
EVAL_SUBSET = 1000  # held-out images used for the per-epoch learning curve


@dataclass
class TrainedModel:
    """A trained target or shadow, with the config that made it and its measured figures."""

    model: nn.Module
    role: str
    variant: str
    key: str
    config: dict[str, Any]
    history: dict[str, list[float]]
    metrics: dict[str, float]
    loaded: bool = False  # True when it came from the store instead of being trained now

    def summary(self) -> dict[str, Any]:
        """One flat row: role, variant, store key, whether loaded, and the measured figures."""
        return {"role": self.role, "variant": self.variant, "key": self.key, "loaded": self.loaded, **self.metrics}


class Study:
    """Everything a notebook needs for one profile and one seed."""

    def __init__(self, profile: Profile, outputs_root: str | Path | None = None, seed: int | None = None):
        self.profile = profile
        self.multi_seed = len(seeds_of(profile)) > 1
        self.aggregate = self.multi_seed and seed is None  # summary notebooks of a multi-seed run
        self.seed = profile.seed if seed is None else int(seed)
        root = Path(outputs_root) if outputs_root else REPO_ROOT / "outputs"
        self.base = root / profile.name
        self.dir = self.base / f"seed_{self.seed}" if self.multi_seed and not self.aggregate else self.base
        self.store = Store(self.base / "store")
        self.device = resolve_device(profile.device)

    # ----------------------------------------------------------------------------------- folders
    def folder(self, name: str) -> Path:
        """outputs/<profile>[/seed_<s>]/<name>, created."""
        path = self.dir / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def data_dir(self) -> Path:
        return self.folder("data")

    @property
    def results_dir(self) -> Path:
        """results/ (single seed or the seed aggregate), or results/seed_<s>/ for one seed of several."""
        if self.multi_seed and not self.aggregate:
            path = self.base / "results" / f"seed_{self.seed}"
            path.mkdir(parents=True, exist_ok=True)
            return path
        return self.folder("results")

    @property
    def figures_dir(self) -> Path:
        return self.folder("figures")

    def save_figure(self, fig: Any, name: str) -> Path:
        """Save a matplotlib Figure as figures/<name>.png (atomically) and return the path."""
        return atomic_write(self.figures_dir / f"{name}.png",
                            lambda tmp: fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight"))

    def save_table(self, df: pd.DataFrame, name: str, keys: list[str] | None = None) -> Path:
        """Write results/<name>.csv; with `keys`, upsert rows into the existing table."""
        path = self.results_dir / f"{name}.csv"
        if keys:
            upsert_csv(df, path, keys)
        else:
            atomic_write(path, lambda tmp: df.to_csv(tmp, index=False))
        return path

    # -------------------------------------------------------------------------------------- data
    @cached_property
    def info(self) -> data_mod.DatasetInfo:
        return self.pool.info

    @cached_property
    def pool(self) -> data_mod.Pool:
        return data_mod.load_pool(self.profile, REPO_ROOT)

    @cached_property
    def splits(self) -> dict[str, np.ndarray]:
        return data_mod.load_splits(self.data_dir)

    def make_splits(self) -> dict[str, np.ndarray]:
        """Draw the seeded stratified splits, save them, and return them."""
        sizes = data_mod.split_sizes(self.profile)
        data_mod.check_split_sizes(sizes, len(self.pool), self.profile.data.dataset)
        parts = data_mod.make_splits(self.pool.labels.numpy(), sizes, self.seed)
        data_mod.save_splits(self.data_dir, parts, self.pool, self.seed)
        self.__dict__["splits"] = parts
        return parts

    def part(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 images and labels of one split part."""
        idx = torch.as_tensor(self.splits[name])
        return self.pool.images[idx], self.pool.labels[idx]

    def prep(self, batch: torch.Tensor) -> torch.Tensor:
        """uint8 batch → model input."""
        return data_mod.to_input(batch, self.info)

    def inputs(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Model-input tensor and labels of one split part."""
        x, y = self.part(name)
        return self.prep(x), y

    # ------------------------------------------------------------------------------------ models
    def model_config(self, role: str, train: TrainConfig, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """The JSON config that identifies a trained model (its store key hashes this)."""
        part = f"{role}_train"
        idx = self.splits[part]
        cfg = {k: v for k, v in dataclasses.asdict(train).items() if k != "eval_every"}
        return {"dataset": self.info.name, "image_size": self.info.size, "arch": self.profile.model.arch,
                "pretrained": self.profile.model.pretrained, "augment": self.profile.data.augment,
                "train": cfg, "part": part, "n_train": int(len(idx)),
                "indices_sha": hashlib.sha256(np.ascontiguousarray(idx).tobytes()).hexdigest()[:16],
                "seed": self.seed, **(extra or {})}

    def new_model(self) -> nn.Module:
        """A freshly initialised model of the profile's architecture (seeded)."""
        torch.manual_seed(self.seed)
        p, info = self.profile, self.info
        return build_model(p.model.arch, info.n_classes, info.channels, info.size, p.model.pretrained)

    def trained(self, role: str, variant: str = "vanilla", train: TrainConfig | None = None,
                dp: dict[str, float] | None = None) -> TrainedModel:
        """The target or shadow of a variant: loaded from the store, or trained and stored.

        `dp` = {"epsilon", "delta", "max_grad_norm"} trains with DP-SGD through Opacus.
        """
        if role not in ("target", "shadow"):
            raise ValueError(f"role must be 'target' or 'shadow', got {role!r}")
        train = train or self.profile.train
        config = self.model_config(role, train, {"dp": dict(sorted(dp.items()))} if dp else None)
        record = self.store.get("model", config)
        loaded = record is not None
        model = self.new_model()
        if dp:
            model = make_dp_compatible(model)
        if record is None:
            record = self._train(model, role, variant, train, config, dp)
            self.store.put("model", config, record)
        model.load_state_dict(record["state_dict"])
        model.to(self.device).eval()
        key = self.store.path("model", config).stem
        tm = TrainedModel(model, role, variant, key, config, record["history"], record["metrics"], loaded)
        self._record_row(tm)
        return tm

    def _train(self, model: nn.Module, role: str, variant: str, train: TrainConfig, config: dict[str, Any],
               dp: dict[str, float] | None = None) -> dict[str, Any]:
        x, y = self.part(f"{role}_train")
        xh, yh = self.part(f"{role}_heldout")
        sub = np.random.default_rng(self.seed).permutation(len(yh))[:EVAL_SUBSET]
        kw: dict[str, Any] = {}
        if dp:
            model.to(self.device)
            loader = DataLoader(TensorDataset(x, y), batch_size=train.batch_size)
            trained, opt, loader, engine = make_private(
                model, make_optimizer(model.parameters(), train), loader, target_epsilon=dp["epsilon"],
                delta=dp["delta"], epochs=train.epochs, max_grad_norm=dp["max_grad_norm"], seed=self.seed)
            kw = {"optimizer": opt, "loader": loader}
        else:
            trained = model
        t0 = time.perf_counter()
        hist = train_model(trained, x, y, train, seed=self.seed, prep=self.prep, augment=self.augment(),
                           x_eval=xh[sub], y_eval=yh[sub], device=self.device, desc=f"{role} · {variant}", **kw)
        seconds = time.perf_counter() - t0
        metrics = self.measure(model, role, self.store.path("model", config).stem)
        metrics["train_seconds"] = seconds
        if dp:
            metrics["dp_epsilon"] = spent_epsilon(engine, dp["delta"])
        return {"state_dict": {k: v.cpu() for k, v in model.state_dict().items()}, "history": hist,
                "metrics": metrics}

    def augment(self) -> Callable[[torch.Tensor], torch.Tensor] | None:
        """Random rotation / crop / flip per image when the profile asks (the paper's Dogs recipe)."""
        if not self.profile.data.augment:
            return None
        from torchvision.transforms import v2
        size = self.info.size
        tf = v2.Compose([v2.RandomRotation(10), v2.RandomResizedCrop(size, scale=(0.8, 1.0), antialias=True),
                         v2.RandomHorizontalFlip()])
        return lambda batch: torch.stack([tf(img) for img in batch])

    def measure(self, model: nn.Module, role: str, key: str) -> dict[str, float]:
        """Train / held-out accuracy and held-out ECE (15 bins) of a model (from cached logits)."""
        out: dict[str, float] = {}
        for which in ("train", "heldout"):
            part = f"{role}_{which}"
            logits = self.logits_by_key(key, model, part)
            probs = softmax(logits)
            labels = self.splits_labels(part)
            out[f"{which}_acc"] = float((probs.argmax(1) == labels).mean())
            if which == "heldout":
                out["ece"] = ece(probs, labels)
        out["gap"] = out["train_acc"] - out["heldout_acc"]
        return out

    # ----------------------------------------------------------------------------- model outputs
    def part_pool(self, part: str) -> dict[str, Any]:
        """The store description of a split part (what the cached logits were computed on)."""
        idx = self.splits[part]
        return {"pool": part, "dataset": self.info.name, "image_size": self.info.size,
                "indices_sha": hashlib.sha256(np.ascontiguousarray(idx).tobytes()).hexdigest()[:16]}

    def logits(self, tm: TrainedModel, pool: dict[str, Any], x: torch.Tensor | Callable[[], torch.Tensor],
               prep: Any = None) -> np.ndarray:
        """Cached logits of a model on a pool; `x` (or the callable making it) is used only on a miss."""
        def compute() -> torch.Tensor:
            xs = x() if callable(x) else x
            return forward_logits(tm.model, xs, prep, device=self.device)
        return cached_logits(self.store, tm.key, pool, compute)

    def logits_by_key(self, key: str, model: nn.Module, part: str) -> np.ndarray:
        """Cached logits of the model stored under `key` on a split part (the same cache as `logits`)."""
        return cached_logits(self.store, key, self.part_pool(part),
                             lambda: forward_logits(model, self.part(part)[0], self.prep, device=self.device))

    def part_logits(self, tm: TrainedModel, part: str) -> np.ndarray:
        """Cached logits of a model on one split part."""
        return self.logits_by_key(tm.key, tm.model, part)

    def part_outputs(self, tm: TrainedModel, part: str, temperature: float = 1.0) -> Outputs:
        """Softmax outputs (at `temperature`) and labels of a model on one split part."""
        logits = self.part_logits(tm, part)
        return Outputs(softmax(logits, temperature), self.splits_labels(part), log_softmax(logits, temperature))

    def splits_labels(self, part: str) -> np.ndarray:
        """Labels of one split part."""
        return self.pool.labels[torch.as_tensor(self.splits[part])].numpy()

    def _record_row(self, tm: TrainedModel) -> None:
        row = {"variant": tm.variant, "role": tm.role, "seed": self.seed, "key": tm.key,
               "arch": tm.config["arch"], "epochs": tm.config["train"]["epochs"],
               "n_train": tm.config["n_train"], **tm.metrics}
        self.save_table(pd.DataFrame([row]), "models", keys=["variant", "role", "seed"])


def open_study(params: str | Path, outputs_root: str | Path | None = None, seed: int | None = None) -> Study:
    """Load and validate a profile and open its run context.

    seed < 0 or None: the profile's seed, or for a profile with several `seeds`, the aggregate over them.
    """
    profile = load_profile(params)
    return Study(profile, outputs_root, None if seed is None or seed < 0 else seed)
