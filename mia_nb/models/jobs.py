"""Trained models: config → model through the engine, stored by the hash of that config.

A model is described by a JSON config (dataset, architecture, training settings, the indices it was
trained on, its job seed); the hash of that config is its store key. `ensure` loads the models that
are stored and trains the missing ones in parallel through `mia_nb.models.engine`, storing each as soon as it
is done. Trained from a notebook a person runs (`engine.interactive`), one model shows a bar per epoch (loss,
held-out accuracy), several a bar over jobs with its ETA, and the engine's workers are stopped when they are done;
the kernels of `python -m mia_nb run` keep the bar over jobs only. Roles are open-ended: `target` and `shadow`
train on `<role>_train` and are measured on `<role>_heldout`; other roles (reference models) pass their own
training indices.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from torchvision.transforms import v2

from mia_nb.data import datasets as data_mod
from mia_nb.config import EngineConfig, TrainConfig
from mia_nb.models.engine import interactive, release_workers, run_jobs, runs_here
from mia_nb.attacks.metrics import ece
from mia_nb.layout import MODELS_TABLE
from mia_nb.models.networks import build_model, forward_logits
from mia_nb.models.privacy import make_dp_compatible, make_private, spent_epsilon
from mia_nb.models.training import make_optimizer, train_model
from mia_nb.attacks.scores import softmax
from mia_nb.data.splits import indices_sha

if TYPE_CHECKING:
    from mia_nb.study import Study

EVAL_SUBSET = 1000  # held-out images used for the per-epoch learning curve


def job_seed(seed: int, role: str, variant: str) -> int:
    """An independent 31-bit seed per (study seed, role, variant): target and shadow never share randomness."""
    digest = hashlib.sha256(f"{int(seed)}/{role}/{variant}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


@dataclass
class TrainJob:
    """Everything a worker needs to train one model: its config (the store key) and its data."""

    name: str
    config: dict[str, Any]
    info: data_mod.DatasetInfo
    train: TrainConfig
    x: torch.Tensor  # uint8 training images
    y: torch.Tensor
    x_eval: torch.Tensor  # uint8 held-out images for the learning curve
    y_eval: torch.Tensor
    measure: dict[str, torch.Tensor] = field(default_factory=dict)  # part -> uint8 images to score once
    device: str = "cpu"
    progress: bool = False  # a bar per epoch: only where the job runs in the caller's process (`engine.runs_here`)

    def __call__(self) -> dict[str, Any]:
        return run_train_job(self)


@dataclass(frozen=True)
class ModelMetrics:
    """A trained model's measured figures (None where not measured: reference models have no held-out part)."""

    train_acc: float | None = None
    heldout_acc: float | None = None
    ece: float | None = None  # held-out, 15 bins
    gap: float | None = None  # train_acc - heldout_acc
    train_seconds: float | None = None
    dp_epsilon: float | None = None  # DP-SGD models: epsilon spent (inf without noise)
    dp_noise_multiplier: float | None = None

    def as_dict(self) -> dict[str, float]:
        """The measured figures only, in the stored record's order (the columns of results/models.csv)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


@dataclass(frozen=True)
class DPSettings:
    """A DP-SGD model's privacy settings, as in its config (epsilon None: the clip-only control)."""

    epsilon: float | None
    delta: float
    max_grad_norm: float
    secure_mode: bool = False


@dataclass
class TrainedModel:
    """A trained model with the config that made it and its measured figures."""

    model: nn.Module
    role: str
    variant: str
    key: str
    config: dict[str, Any]  # the store key's JSON; read the settings through `train` and `dp`
    history: dict[str, list[float]]  # per-epoch series, as `mia_nb.models.training.train_model` returns them
    metrics: ModelMetrics
    train: TrainConfig  # the training settings it was trained with
    loaded: bool = False  # True when it came from the store instead of being trained now

    @property
    def dp(self) -> DPSettings | None:
        """Its DP-SGD settings, None when it was trained without DP."""
        dp = self.config.get("dp")
        return DPSettings(**dp) if dp else None

    def summary(self) -> dict[str, Any]:
        """One flat row: role, variant, store key, whether loaded, and the measured figures."""
        return {"role": self.role, "variant": self.variant, "key": self.key, "loaded": self.loaded,
                **self.metrics.as_dict()}


def new_model(config: dict[str, Any], info: data_mod.DatasetInfo) -> nn.Module:
    """A freshly initialised model of a config's architecture, seeded by the config (no global seeding)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config["seed"])
        model = build_model(config["arch"], info.n_classes, info.channels, info.size, config["pretrained"])
    return make_dp_compatible(model) if config.get("dp") else model


def load_model(config: dict[str, Any], info: data_mod.DatasetInfo, state: dict[str, Any],
               device: torch.device | str) -> nn.Module:
    """A config's model with trained weights `state`, in eval mode on `device` (the one way a model is rebuilt)."""
    model = new_model(config, info)
    model.load_state_dict(state)
    return model.to(torch.device(device)).eval()


def augmenter(info: data_mod.DatasetInfo) -> Any:
    """Random rotation / crop / flip per image (the paper's Dogs recipe)."""
    tf = v2.Compose([v2.RandomRotation(10), v2.RandomResizedCrop(info.size, scale=(0.8, 1.0), antialias=True),
                     v2.RandomHorizontalFlip()])
    return lambda batch: torch.stack([tf(img) for img in batch])


def run_train_job(job: TrainJob) -> dict[str, Any]:
    """Train one model (in a worker): its weights, history, seconds, DP budget spent and logits to cache."""

    cfg, device = job.config, torch.device(job.device)
    prep = lambda b: data_mod.to_input(b, job.info)  # noqa: E731
    dp = cfg.get("dp")
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():  # augmentation, dropout: torch's RNG
        # Opacus' per-sample-gradient hooks fire on the first layer, whose input needs no gradient: harmless
        warnings.filterwarnings("ignore", message="Full backward hook is firing")
        torch.manual_seed(cfg["seed"])
        model = new_model(cfg, job.info)
        kw: dict[str, Any] = {}
        trained = model
        if dp:
            model.to(device)
            loader = DataLoader(TensorDataset(job.x, job.y), batch_size=job.train.batch_size)
            trained, opt, loader, engine, loss = make_private(
                model, make_optimizer(model.parameters(), job.train), loader, target_epsilon=dp.get("epsilon"),
                delta=dp["delta"], epochs=job.train.epochs, max_grad_norm=dp["max_grad_norm"], seed=cfg["seed"],
                criterion=torch.nn.CrossEntropyLoss(label_smoothing=job.train.label_smoothing),
                secure_mode=bool(dp.get("secure_mode", False)))
            kw = {"optimizer": opt, "loader": loader, "loss_fn": loss}
        t0 = time.perf_counter()
        hist = train_model(trained, job.x, job.y, job.train, seed=cfg["seed"], prep=prep,
                           augment=augmenter(job.info) if cfg["augment"] else None, x_eval=job.x_eval,
                           y_eval=job.y_eval, device=device, desc=job.name, progress=job.progress, **kw)
        seconds = time.perf_counter() - t0
    out: dict[str, Any] = {"state_dict": {k: v.cpu() for k, v in model.state_dict().items()}, "history": hist,
                           "train_seconds": seconds,
                           "logits": {part: forward_logits(model, x, prep, device=device).numpy()
                                      for part, x in job.measure.items()}}
    if dp:
        out["dp_noise_multiplier"] = float(opt.noise_multiplier)
        out["dp_epsilon"] = spent_epsilon(engine, dp["delta"]) if dp.get("epsilon") is not None else float("inf")
    return out


# -------------------------------------------------------------------------------------- the study side

def model_config(study: Study, role: str, variant: str, train: TrainConfig, indices: np.ndarray,
                 dp: dict[str, float] | None = None) -> dict[str, Any]:
    """The JSON config that identifies a trained model (its store key hashes this)."""
    p, info = study.profile, study.info
    cfg = {k: v for k, v in dataclasses.asdict(train).items() if k != "eval_every"}
    out = {"dataset": info.name, "image_size": info.size, "arch": p.model.arch, "pretrained": p.model.pretrained,
           "augment": p.data.augment, "train": cfg, "role": role, "n_train": int(len(indices)),
           "indices_sha": indices_sha(indices), "seed": job_seed(study.seed, role, variant)}
    if dp:
        out["dp"] = dict(sorted(dp.items()))
    return out


@dataclass
class ModelRequest:
    """A model a notebook needs: role, variant name, training settings, training indices, DP settings."""

    role: str
    variant: str = "vanilla"
    train: TrainConfig | None = None
    dp: dict[str, float] | None = None
    indices: np.ndarray | None = None  # default: the split part <role>_train


def _indices(study: Study, req: ModelRequest) -> np.ndarray:
    if req.indices is not None:
        return np.asarray(req.indices)
    part = f"{req.role}_train"
    if part not in study.splits:
        raise ValueError(f"role {req.role!r}: no split part {part!r}; pass the training indices")
    return study.splits[part]


def _measure_parts(study: Study, req: ModelRequest) -> list[str]:
    """Split parts a model is measured on (accuracy, ECE): its own train and held-out parts."""
    return [p for p in (f"{req.role}_train", f"{req.role}_heldout") if p in study.splits and req.indices is None]


def request_config(study: Study, req: ModelRequest) -> dict[str, Any]:
    """The model config (store key) of a request."""
    return model_config(study, req.role, req.variant, req.train or study.profile.train, _indices(study, req), req.dp)


def make_job(study: Study, req: ModelRequest) -> TrainJob:
    """The training job of a request."""
    train = req.train or study.profile.train
    idx = _indices(study, req)
    config = request_config(study, req)
    x, y = study.pool.images[torch.as_tensor(idx)], study.pool.labels[torch.as_tensor(idx)]
    heldout = f"{req.role}_heldout" if f"{req.role}_heldout" in study.splits else "target_heldout"
    xh, yh = study.part(heldout)
    sub = torch.as_tensor(np.random.default_rng(config["seed"]).permutation(len(yh))[:EVAL_SUBSET])
    measure = {part: study.part(part)[0] for part in _measure_parts(study, req)}
    return TrainJob(f"{req.role} · {req.variant}", config, study.info, train, x, y, xh[sub], yh[sub], measure,
                    str(study.device))


def measure(study: Study, key: str, role: str) -> dict[str, float]:
    """Train / held-out accuracy and held-out ECE (15 bins) of a stored model, from its cached logits."""
    out: dict[str, float] = {}
    for which in ("train", "heldout"):
        part = f"{role}_{which}"
        if part not in study.splits:
            continue
        logits = study.store.get("logits", {"model": key, **study.part_pool(part)})
        probs, labels = softmax(logits), study.labels(part)
        out[f"{which}_acc"] = float((probs.argmax(1) == labels).mean())
        if which == "heldout":
            out["ece"] = ece(probs, labels)
    if "train_acc" in out and "heldout_acc" in out:
        out["gap"] = out["train_acc"] - out["heldout_acc"]
    return out


def _store_result(study: Study, job: TrainJob, result: dict[str, Any]) -> None:
    """Cache the logits a worker computed, measure the model and store it (the model record last)."""
    key = study.store.key("model", job.config)
    for part, logits in result["logits"].items():
        study.store.put("logits", {"model": key, **study.part_pool(part)}, logits.astype(np.float32))
    metrics = measure(study, key, job.config["role"])
    metrics["train_seconds"] = result["train_seconds"]
    for k in ("dp_epsilon", "dp_noise_multiplier"):
        if k in result:
            metrics[k] = result[k]
    study.store.put("model", job.config, {"state_dict": result["state_dict"], "history": result["history"],
                                          "metrics": metrics})


def missing(study: Study, requests: list[ModelRequest]) -> list[tuple[TrainJob, Callable[[Any], None]]]:
    """Training jobs of the requested models the store lacks (each once), with the callback that stores one."""
    out: dict[str, tuple[TrainJob, Callable[[Any], None]]] = {}
    for req in requests:
        config = request_config(study, req)
        key = study.store.key("model", config)
        if key not in out and not study.store.has("model", config):  # data is sliced for missing models only
            job = make_job(study, req)
            out[key] = (job, lambda res, job=job: _store_result(study, job, res))
    return list(out.values())


def run_missing(items: list[tuple[Any, Callable[[Any], None]]], engine: EngineConfig, desc: str = "training",
                progress: bool = True) -> None:
    """Run jobs through the engine; each result is stored by its callback as soon as it is in."""
    run_jobs([job for job, _ in items], engine, desc=desc, progress=progress,
             on_result=lambda i, res: items[i][1](res))


def ensure(study: Study, requests: list[ModelRequest], progress: bool = True) -> list[TrainedModel]:
    """The requested models: loaded from the store, the missing ones trained through the engine first.

    `progress`: one model trained from a notebook a person runs shows a bar per epoch, otherwise a bar over jobs
    (with its ETA); after training there, the engine's idle workers are stopped (their memory is freed at once).
    """
    todo = missing(study, requests)
    new_keys = {study.store.key("model", job.config) for job, _ in todo}
    engine, person = study.profile.engine, interactive()
    per_epoch = progress and person and len(todo) == 1 and runs_here(engine, 1)
    for job, _ in todo:
        job.progress = per_epoch
    run_missing(todo, engine, desc=f"training · seed {study.seed}", progress=progress and not per_epoch)
    if todo and person:
        release_workers(engine)
    out = []
    for req in requests:
        config = request_config(study, req)
        key = study.store.key("model", config)
        record = study.store.get("model", config)
        if record is None:
            raise RuntimeError(f"model {req.role} · {req.variant} ({key}) is missing from the store after training")
        model = load_model(config, study.info, record["state_dict"], study.device)
        out.append(TrainedModel(model, req.role, req.variant, key, config, record["history"],
                                ModelMetrics(**record["metrics"]), req.train or study.profile.train,
                                loaded=key not in new_keys))
    record_rows(study, out)
    return out


def trained(study: Study, role: str, variant: str = "vanilla", train: TrainConfig | None = None,
            dp: dict[str, float] | None = None) -> TrainedModel:
    """One model: loaded from the store, or trained through the engine and stored."""
    return ensure(study, [ModelRequest(role, variant, train, dp)])[0]


def record_rows(study: Study, models: list[TrainedModel]) -> None:
    """Upsert one row per model into results/models.csv."""
    rows = [{"variant": tm.variant, "role": tm.role, "seed": study.seed, "key": tm.key, "arch": tm.config["arch"],
             "epochs": tm.config["train"]["epochs"], "n_train": tm.config["n_train"], **tm.metrics.as_dict()}
            for tm in models]
    if rows:
        study.save_table(pd.DataFrame(rows), MODELS_TABLE)
