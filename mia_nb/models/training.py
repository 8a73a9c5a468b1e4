"""Training loop for targets and shadows: optimizer, label smoothing, weight decay, history."""

from __future__ import annotations

import time
from typing import Any, Callable, Iterable, Optional

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from mia_nb.config import TrainConfig
from mia_nb.models.networks import forward_logits

Prep = Optional[Callable[[torch.Tensor], torch.Tensor]]


def make_optimizer(params: Any, cfg: TrainConfig) -> torch.optim.Optimizer:
    """The profile's optimizer (weight decay = the L2 defense)."""
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def make_scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig, batches_per_epoch: int) -> Any:
    """The profile's learning-rate schedule, stepped once per batch (None for a constant rate)."""
    if cfg.schedule == "constant":
        return None
    steps = cfg.epochs * max(1, batches_per_epoch)
    return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=steps)


def accuracy_of(model: nn.Module, x: torch.Tensor, y: torch.Tensor, prep: Prep, device: torch.device) -> float:
    """Top-1 accuracy of `model` on (x, y)."""
    if len(y) == 0:
        return float("nan")
    logits = forward_logits(model, x, prep, device=device)
    return float((logits.argmax(1) == y).float().mean())


def train_model(model: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig, *, seed: int,
                prep: Prep = None, augment: Prep = None, x_eval: torch.Tensor | None = None,
                y_eval: torch.Tensor | None = None, device: torch.device | str = "cpu",
                desc: str = "train", optimizer: torch.optim.Optimizer | None = None,
                loader: Iterable[tuple[torch.Tensor, torch.Tensor]] | None = None,
                progress: bool = True, loss_fn: Callable[..., torch.Tensor] | None = None) -> dict[str, list[float]]:
    """Train in place on in-memory tensors; one tqdm bar over epochs (a widget in a notebook, text elsewhere) with
    the training loss and accuracy and the last held-out accuracy measured; return the per-epoch history.

    `prep` maps a stored batch (e.g. uint8) to model input, `augment` is applied before it.
    Held-out accuracy is measured every `cfg.eval_every` epochs on (x_eval, y_eval) (NaN between).
    `optimizer` and `loader` replace the profile's optimizer and the seeded shuffling (DP-SGD passes
    Opacus' private optimizer and its Poisson-sampling loader over (x, y)); `loss_fn` replaces the
    cross-entropy (DP-SGD passes Opacus' ghost-clipping loss). `progress=False` hides the epoch bar
    (engine workers: the engine shows one bar over jobs).
    """
    if len(x) != len(y) or len(y) == 0:
        raise ValueError(f"training data: {len(x)} images and {len(y)} labels (need the same, non-zero)")
    device = torch.device(device)
    model.to(device)
    # channels-last convolutions are markedly faster on CPU (benchmarks/train_throughput.py); DP-SGD's epochs too
    # (Opacus' per-sample gradients of SimpleCNN, one thread: 9.5 s -> 8.0 s for 3 epochs, measured 2026-11-29)
    channels_last = x.dim() == 4
    if channels_last:
        model.to(memory_format=torch.channels_last)
    opt = optimizer or make_optimizer(model.parameters(), cfg)
    scheduler = make_scheduler(opt, cfg, len(loader) if loader is not None else -(-len(y) // cfg.batch_size))
    loss_fn = loss_fn or nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    gen = torch.Generator().manual_seed(seed)
    hist: dict[str, list[float]] = {k: [] for k in ("epoch", "train_loss", "train_acc", "heldout_acc", "seconds")}
    bar = tqdm(range(1, cfg.epochs + 1), desc=desc, unit="epoch", disable=not progress)
    last_heldout = float("nan")  # shown between the epochs that measure it
    for epoch in bar:
        t0 = time.perf_counter()
        model.train()
        if loader is None:
            order = torch.randperm(len(y), generator=gen)
            batches = ((x[idx], y[idx]) for idx in order.split(cfg.batch_size))
        else:
            batches = iter(loader)
        total_loss, correct, seen = 0.0, 0, 0
        for xb, yb in batches:
            xb, yb = xb.to(device), yb.to(device)
            if augment is not None:
                xb = augment(xb)
            if prep is not None:
                xb = prep(xb)
            if channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            opt.zero_grad(set_to_none=True)
            out = model(xb)
            loss = loss_fn(out, yb)
            loss.backward()
            opt.step()
            if scheduler is not None:
                scheduler.step()
            total_loss += float(loss.detach()) * len(yb)
            correct += int((out.detach().argmax(1) == yb).sum())
            seen += len(yb)
        seen = max(seen, 1)
        evaluate = x_eval is not None and cfg.eval_every > 0 and (epoch % cfg.eval_every == 0 or epoch == cfg.epochs)
        heldout = accuracy_of(model, x_eval, y_eval, prep, device) if evaluate else float("nan")
        for k, v in zip(hist, (epoch, total_loss / seen, correct / seen, heldout, time.perf_counter() - t0)):
            hist[k].append(float(v))
        last_heldout = last_heldout if np.isnan(heldout) else heldout
        bar.set_postfix(loss=f"{hist['train_loss'][-1]:.3f}", acc=f"{hist['train_acc'][-1]:.3f}",
                        heldout="-" if np.isnan(last_heldout) else f"{last_heldout:.3f}")
    bar.close()
    if channels_last:
        model.to(memory_format=torch.contiguous_format)
    return hist
