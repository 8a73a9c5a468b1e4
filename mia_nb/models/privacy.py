"""DP-SGD helpers through Opacus (1.6): make a model DP-compatible, make training private, read epsilon.

No training loop lives here; `mia_nb.models.training` drives the epochs. What the caller's loop must do with
the objects `make_private` returns:
- build the optimizer AFTER `make_dp_compatible` (it returns a new module, not the one passed in);
- train with the returned model, optimizer and loader only (the loader does Poisson sampling:
  variable batch sizes, possibly empty batches, which Opacus handles: do not skip them);
- `model.train()` during training; the loss must be a mean over the batch
  (e.g. `nn.CrossEntropyLoss()` default) because Opacus is set up with `loss_reduction="mean"`;
- no gradient accumulation across batches (Poisson sampling forbids it), `optimizer.zero_grad()`
  before every backward; no in-place ops on module outputs that Opacus hooks, and no parameter
  module called twice in one forward;
- the returned model is an Opacus `GradSampleModule`: its `state_dict()` keys carry a `_module.`
  prefix; save `model._module.state_dict()` to get the plain model's weights.
Noise and Poisson sampling draw from two `torch.Generator`s seeded from `seed`; with
`secure_mode=False` (used here) Opacus allows this. Model init, dropout etc. remain the caller's.
"""

from __future__ import annotations

import importlib.util
import math
import warnings
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from mia_nb.config import ConfigError

ACCOUNTANTS = ("prv", "rdp", "gdp")


def check_secure_mode(secure_mode: bool) -> None:
    """`defenses.dp_secure_mode: true` needs torchcsprng installed; a one-line ConfigError if it is not."""
    if secure_mode and importlib.util.find_spec("torchcsprng") is None:
        raise ConfigError("defenses.dp_secure_mode: needs torchcsprng, which is not installed, got True "
                          "(set it to false, or pip install torchcsprng)")


class _CopiedOutput(nn.Module):
    """A copy of its input: put after a layer Opacus hooks, it hands the layer's output on as a new tensor."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.clone()


def make_dp_compatible(model: nn.Module) -> nn.Module:
    """A copy of `model` that Opacus can train: its fixes applied (BatchNorm -> GroupNorm, ...), activations made
    out-of-place, and each GroupNorm's output handed on as a copy. Opacus wraps a hooked layer's output in a
    backward hook that forbids in-place changes, which torchvision's residual blocks make (`out += identity` on
    a norm's output, in-place ReLU / SiLU after it)."""
    from opacus.validators import ModuleValidator  # lazy: Opacus is only needed for the DP arms

    fixed = ModuleValidator.fix(model)
    for sub in fixed.modules():
        if getattr(sub, "inplace", False) is True:
            sub.inplace = False
    norms = [(name, sub) for name, sub in fixed.named_modules() if isinstance(sub, nn.GroupNorm)]
    for name, norm in norms:
        parent_name, _, child = name.rpartition(".")
        parent = fixed.get_submodule(parent_name) if parent_name else fixed
        setattr(parent, child, nn.Sequential(norm, _CopiedOutput()))
    return fixed


def dp_problems(model: nn.Module) -> list[str]:
    """'name: ModuleType' for every trainable submodule Opacus cannot train with DP."""
    from opacus.validators import ModuleValidator  # lazy: Opacus is only needed for the DP arms
    from opacus.utils.module_utils import trainable_modules  # lazy: Opacus is only needed for the DP arms

    problems = []
    for name, sub in trainable_modules(model):
        check = ModuleValidator.VALIDATORS.get(type(sub))
        if check is not None and check(sub):
            problems.append(f"{name or '<root>'}: {type(sub).__name__}")
    # Opacus only inspects modules with trainable parameters; a non-affine BatchNorm still mixes
    # samples of a batch, which breaks per-sample privacy.
    for name, sub in model.named_modules():
        if isinstance(sub, nn.modules.batchnorm._BatchNorm) and not any(p.requires_grad for p in sub.parameters()):
            problems.append(f"{name or '<root>'}: {type(sub).__name__} (no trainable affine; use GroupNorm)")
    return problems


def check_dp_compatible(model: nn.Module) -> None:
    """Raise a one-line ValueError naming the modules Opacus cannot handle (train/eval mode ignored)."""
    problems = dp_problems(model)
    if problems:
        raise ValueError(
            "model is not DP-SGD compatible (run make_dp_compatible first): " + ", ".join(problems)
        )


def _seeds(seed: int) -> tuple[int, int]:
    """Two independent 63-bit seeds (noise, sampling) from one seed."""
    a, b = np.random.SeedSequence(seed).generate_state(2, dtype=np.uint64)
    return int(a >> np.uint64(1)), int(b >> np.uint64(1))


def make_private(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loader: DataLoader,
    *,
    target_epsilon: float | None,
    delta: float,
    epochs: int,
    max_grad_norm: float,
    seed: int,
    accountant: str = "prv",
    criterion: nn.Module | None = None,
    secure_mode: bool = False,
) -> tuple[nn.Module, torch.optim.Optimizer, DataLoader, Any, nn.Module]:
    """Wrap model/optimizer/loader for DP-SGD reaching (target_epsilon, delta) after `epochs` epochs.

    `target_epsilon=None`: the clip-only control, the same Poisson sampling and per-sample clipping
    with noise multiplier 0 (no privacy guarantee; it separates what noise does from what clipping and
    the DP schedule do). `secure_mode`: Opacus' cryptographically secure noise (needs torchcsprng; the
    noise can then not be seeded, so runs are not reproducible: off by default).

    Per-sample gradients are clipped by Opacus' ghost clipping (the per-sample norms are computed
    without materialising per-sample gradients: the same clipped update, about 2x faster here than
    the hooks mode on a CPU); the returned loss wraps `criterion` (default cross-entropy) and must be
    the one training calls `backward` on.
    Returns (GradSampleModule, DPOptimizer, Poisson-sampling DPDataLoader, PrivacyEngine, DP loss).
    """
    from opacus import PrivacyEngine  # lazy: Opacus is only needed for the DP arms

    check_secure_mode(secure_mode)
    clip_only = target_epsilon is None
    if not clip_only and not (isinstance(target_epsilon, (int, float)) and math.isfinite(target_epsilon)
                              and target_epsilon > 0):
        raise ValueError(f"target_epsilon must be a finite number > 0, got {target_epsilon!r}")
    if not (isinstance(delta, (int, float)) and 0 < delta < 1):
        raise ValueError(f"delta must lie in (0, 1), got {delta!r}")
    if not (isinstance(epochs, int) and epochs >= 1):
        raise ValueError(f"epochs must be an int >= 1, got {epochs!r}")
    if not (isinstance(max_grad_norm, (int, float)) and math.isfinite(max_grad_norm) and max_grad_norm > 0):
        raise ValueError(f"max_grad_norm must be a finite number > 0, got {max_grad_norm!r}")
    if accountant not in ACCOUNTANTS:
        raise ValueError(f"unknown accountant {accountant!r}; use one of {ACCOUNTANTS}")
    if not isinstance(loader, DataLoader) or not hasattr(loader.dataset, "__len__") or len(loader.dataset) == 0:
        raise ValueError("loader must be a torch DataLoader over a non-empty map-style dataset")
    if loader.drop_last:
        raise ValueError("loader must not use drop_last (Opacus replaces the sampler with Poisson sampling)")
    check_dp_compatible(model)
    n = len(loader.dataset)
    if delta >= 1.0 / n and not clip_only:
        warnings.warn(f"delta={delta:g} >= 1/N = {1.0 / n:.3g}: the (epsilon, delta) guarantee is weak", stacklevel=2)

    noise_seed, sample_seed = _seeds(seed)
    model.train()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Secure RNG turned off")
        # PRV bounds its domain with an RDP pass whose alpha range is often too short: harmless.
        warnings.filterwarnings("ignore", message="Optimal order is the largest alpha")
        engine = PrivacyEngine(accountant=accountant, secure_mode=secure_mode)
        common = dict(module=model, optimizer=optimizer, data_loader=loader, max_grad_norm=float(max_grad_norm),
                      loss_reduction="mean", poisson_sampling=True, grad_sample_mode="ghost",
                      noise_generator=None if secure_mode else torch.Generator().manual_seed(noise_seed),
                      criterion=criterion if criterion is not None else nn.CrossEntropyLoss())
        if clip_only:
            dp_model, dp_opt, dp_loss, dp_loader = engine.make_private(noise_multiplier=0.0, **common)
        else:
            dp_model, dp_opt, dp_loss, dp_loader = engine.make_private_with_epsilon(
                target_epsilon=float(target_epsilon), target_delta=float(delta), epochs=epochs, **common)
    if not secure_mode:
        # Opacus seeds Poisson sampling only from the original loader's generator (or its secure RNG);
        # give the sampler its own seeded generator so batches are reproducible without touching `loader`.
        dp_loader.batch_sampler.generator = torch.Generator().manual_seed(sample_seed)
    return dp_model, dp_opt, dp_loader, engine, dp_loss


def noise_multiplier(optimizer: torch.optim.Optimizer) -> float:
    """The noise multiplier sigma Opacus chose for a DPOptimizer."""
    return float(optimizer.noise_multiplier)


def spent_epsilon(engine: Any, delta: float) -> float:
    """Epsilon spent so far at `delta` (0.0 before any private step)."""
    if not (isinstance(delta, (int, float)) and 0 < delta < 1):
        raise ValueError(f"delta must lie in (0, 1), got {delta!r}")
    if len(engine.accountant) == 0:
        return 0.0
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Optimal order is the largest alpha")
        return float(engine.get_epsilon(delta))
