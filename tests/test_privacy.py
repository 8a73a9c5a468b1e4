"""Tests for mia_nb.models.privacy: Opacus DP-SGD helpers on a tiny model with a BatchNorm layer."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from mia_nb.models import privacy as P

TARGET_EPS, DELTA = 3.0, 1e-3


def _bn_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 3))


def _loader() -> DataLoader:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 4, generator=g)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()
    return DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True)


def _one_private_epoch(seed: int, accountant: str = "prv") -> tuple[nn.Module, nn.Module, float, object]:
    """Fix the model, make it private, train one epoch; return (before, after-plain, eps, optimizer)."""
    model = P.make_dp_compatible(_bn_model())
    before = copy.deepcopy(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    dp_model, dp_opt, dp_loader, engine, dp_loss = P.make_private(
        model, opt, _loader(), target_epsilon=TARGET_EPS, delta=DELTA, epochs=1, max_grad_norm=1.0, seed=seed,
        accountant=accountant,
    )
    assert P.spent_epsilon(engine, DELTA) == 0.0
    dp_model.train()
    for x, y in dp_loader:
        dp_opt.zero_grad()
        dp_loss(dp_model(x), y).backward()
        dp_opt.step()
    return before, dp_model._module, P.spent_epsilon(engine, DELTA), dp_opt


def test_check_dp_compatible_catches_batchnorm_and_fix_replaces_it():
    model = _bn_model()
    with pytest.raises(ValueError, match=r"1: BatchNorm1d"):
        P.check_dp_compatible(model)
    fixed = P.make_dp_compatible(model)
    P.check_dp_compatible(fixed)
    assert any(isinstance(m, nn.GroupNorm) for m in fixed.modules())
    assert not any(isinstance(m, nn.BatchNorm1d) for m in fixed.modules())
    assert any(isinstance(m, nn.BatchNorm1d) for m in model.modules())  # the input is left alone


def test_check_dp_compatible_catches_non_affine_batchnorm():
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8, affine=False), nn.Linear(8, 2))
    with pytest.raises(ValueError, match="no trainable affine"):
        P.check_dp_compatible(model)


@pytest.mark.slow  # DP-SGD training
def test_one_dp_epoch_spends_at_most_the_target_and_changes_weights():
    before, after, eps, dp_opt = _one_private_epoch(seed=0)
    assert math.isfinite(eps) and 0 < eps <= TARGET_EPS * 1.05
    assert P.noise_multiplier(dp_opt) > 0
    changed = [not torch.equal(a, b) for a, b in zip(before.state_dict().values(), after.state_dict().values())]
    assert all(changed)


@pytest.mark.slow  # DP-SGD training, twice
def test_dp_training_is_reproducible_for_a_seed():
    # rdp: its noise calibration is faster than prv's; accounting is not under test here.
    _, a, _, _ = _one_private_epoch(seed=7, accountant="rdp")
    _, b, _, _ = _one_private_epoch(seed=7, accountant="rdp")
    _, c, _, _ = _one_private_epoch(seed=8, accountant="rdp")
    wa, wb, wc = (nn.utils.parameters_to_vector(m.parameters()) for m in (a, b, c))
    assert torch.equal(wa, wb)
    assert not torch.equal(wa, wc)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"target_epsilon": 0.0}, "target_epsilon"),
        ({"delta": 1.5}, "delta"),
        ({"epochs": 0}, "epochs"),
        ({"max_grad_norm": -1.0}, "max_grad_norm"),
    ],
)
def test_make_private_rejects_bad_budgets(kwargs, match):
    model = P.make_dp_compatible(_bn_model())
    args = dict(target_epsilon=TARGET_EPS, delta=DELTA, epochs=1, max_grad_norm=1.0, seed=0) | kwargs
    with pytest.raises(ValueError, match=match):
        P.make_private(model, torch.optim.SGD(model.parameters(), lr=0.1), _loader(), **args)


def test_make_private_refuses_a_batchnorm_model():
    model = _bn_model()
    with pytest.raises(ValueError, match="make_dp_compatible"):
        P.make_private(
            model, torch.optim.SGD(model.parameters(), lr=0.1), _loader(),
            target_epsilon=TARGET_EPS, delta=DELTA, epochs=1, max_grad_norm=1.0, seed=0,
        )
