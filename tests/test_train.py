"""Models and the training loop."""

from __future__ import annotations

import pytest
import torch

from mia_nb.config import ConfigError, TrainConfig
from mia_nb.models.networks import build_model, last_linear
from mia_nb.models.training import train_model


@pytest.mark.parametrize("arch, channels, size", [("simple_cnn", 1, 28), ("simple_cnn", 3, 32),
                                                  ("resnet18", 3, 32), ("efficientnet_b0", 3, 32)])
def test_models_return_logits(arch, channels, size):
    torch.manual_seed(0)
    m = build_model(arch, 10, channels, size).eval()
    assert isinstance(last_linear(m), torch.nn.Linear) and last_linear(m).out_features == 10
    with torch.no_grad():
        assert m(torch.randn(2, channels, size, size)).shape == (2, 10)


def test_resnet50_head_and_offline_weights(monkeypatch):
    m = build_model("resnet50", 120, 3, 224)
    assert last_linear(m).out_features == 120

    def offline(*a, **k):
        raise OSError("no network")
    import torchvision.models.resnet as rn
    monkeypatch.setattr(rn, "resnet50", offline)
    with pytest.raises(ConfigError, match="model.pretrained"):
        build_model("resnet50", 120, 3, 224, pretrained=True)


def test_unknown_arch():
    with pytest.raises(ConfigError, match="model.arch"):
        build_model("vgg", 10, 3, 32)


def test_training_step_learns_and_is_seeded():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (64, 1, 28, 28), generator=g, dtype=torch.uint8)
    y = torch.arange(64) % 2
    x[y == 1, :, :14] = 255  # a learnable signal
    cfg = TrainConfig(epochs=4, batch_size=16, lr=0.003)
    prep = lambda b: b.float() / 255  # noqa: E731
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        m = build_model("simple_cnn", 2, 1, 28)
        h = train_model(m, x, y, cfg, seed=1, prep=prep, x_eval=x, y_eval=y)
        runs.append((h, m.state_dict()))
    h = runs[0][0]
    assert h["epoch"] == [1, 2, 3, 4] and h["train_loss"][-1] < h["train_loss"][0]
    assert h["heldout_acc"][-1] > 0.9
    assert all(torch.equal(runs[0][1][k], runs[1][1][k]) for k in runs[0][1])


def test_training_refuses_mismatched_data():
    with pytest.raises(ValueError, match="training data"):
        train_model(build_model("simple_cnn", 2, 1, 28), torch.zeros(3, 1, 28, 28), torch.zeros(2, dtype=torch.long),
                    TrainConfig(epochs=1), seed=0)


def test_inference_runs_channels_last_and_leaves_the_model_as_it_was():
    """forward_logits switches a (1-channel) CNN to channels-last for the pass and back afterwards; a model
    already channels-last (mid-training) stays so; the logits are those of the default layout."""
    from mia_nb.models.networks import SimpleCNN, channels_last, forward_logits
    torch.manual_seed(0)
    model, x = SimpleCNN(1, 28, 10).eval(), torch.randn(8, 1, 28, 28)
    conv2 = model.features[3].weight
    with channels_last(model, x):
        assert model.features[3].weight.is_contiguous(memory_format=torch.channels_last)
        assert not model.features[3].weight.is_contiguous()
    assert model.features[3].weight.is_contiguous() and conv2.shape == model.features[3].weight.shape
    with torch.no_grad():
        plain = model(x)
    torch.testing.assert_close(forward_logits(model, x), plain, atol=1e-5, rtol=1e-5)
    model.to(memory_format=torch.channels_last)
    forward_logits(model, x)
    assert model.features[3].weight.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("arch, size", [("simple_cnn", 8), pytest.param("resnet18", 8, marks=pytest.mark.slow),
                                        pytest.param("efficientnet_b0", 8, marks=pytest.mark.slow)])
def test_dp_sgd_trains_channels_last_and_hands_back_the_default_layout(arch, size):
    """DP-SGD's epochs run channels-last like plain training (Opacus' per-sample gradients of convolutions and
    GroupNorm accept it), torchvision's residual networks included (their in-place adds and activations broke
    Opacus' hooks); the model comes back in the default layout, its weights moved and finite."""
    from torch.utils.data import DataLoader, TensorDataset

    from mia_nb.models.privacy import make_dp_compatible, make_private
    from mia_nb.models.training import make_optimizer

    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (64, 3, size, size), generator=g, dtype=torch.uint8)
    y = torch.arange(64) % 2
    cfg = TrainConfig(epochs=2, batch_size=16, lr=0.003)
    torch.manual_seed(0)
    model = make_dp_compatible(build_model(arch, 2, 3, size))
    before = [p.detach().clone() for p in model.parameters()]
    loader = DataLoader(TensorDataset(x, y), batch_size=cfg.batch_size)
    dp_model, opt, dp_loader, _, loss = make_private(model, make_optimizer(model.parameters(), cfg), loader,
                                                     target_epsilon=8.0, delta=1e-3, epochs=cfg.epochs,
                                                     max_grad_norm=1.0, seed=3, accountant="rdp")
    seen = []
    hook = model.register_forward_pre_hook(lambda mod, inp: seen.append(inp[0].is_contiguous(
        memory_format=torch.channels_last)))
    h = train_model(dp_model, x, y, cfg, seed=1, prep=lambda b: b.float() / 255, optimizer=opt, loader=dp_loader,
                    loss_fn=loss, progress=False)
    hook.remove()
    assert seen and all(seen)  # every training batch went in channels-last
    convs = [p for p in model.parameters() if p.dim() == 4]
    assert convs and all(p.is_contiguous() for p in convs)
    assert all(torch.isfinite(p).all() for p in model.parameters()) and len(h["train_loss"]) == 2
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
