"""Target / shadow architectures. Every model ends in an nn.Linear that returns logits."""

from __future__ import annotations

import contextlib
import copy
from typing import Callable, Iterator

import torch
from torch import nn
from torchvision.models import ResNet50_Weights, efficientnet_b0, resnet18
from torchvision.models import resnet50 as tv_resnet50

from mia_nb.config import ARCHS, ConfigError


class SimpleCNN(nn.Module):
    """The paper's (Salem et al.) CNN: two 5×5 conv + max-pool blocks, then 128 → n_classes."""

    def __init__(self, in_channels: int = 3, size: int = 32, n_classes: int = 10, width: int = 32):
        super().__init__()
        if size % 4:
            raise ConfigError(f"data.image_size: SimpleCNN needs a size divisible by 4, got {size}")
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, width, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten())
        self.hidden = nn.Sequential(nn.Linear(width * (size // 4) ** 2, 128), nn.ReLU())
        self.fc = nn.Linear(128, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.hidden(self.features(x)))


def cifar_resnet18(n_classes: int, in_channels: int = 3) -> nn.Module:
    """torchvision ResNet-18 with the CIFAR stem: 3×3 stride-1 first conv, no max-pool."""
    m = resnet18(num_classes=n_classes)
    m.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
    m.maxpool = nn.Identity()
    return m


def cifar_efficientnet_b0(n_classes: int, in_channels: int = 3) -> nn.Module:
    """torchvision EfficientNet-B0 with a 3×3 stride-1 stem for 32 px inputs."""
    m = efficientnet_b0(num_classes=n_classes)
    stem = m.features[0][0]
    m.features[0][0] = nn.Conv2d(in_channels, stem.out_channels, 3, stride=1, padding=1, bias=False)
    return m


def resnet50(n_classes: int, pretrained: bool = False, in_channels: int = 3) -> nn.Module:
    """torchvision ResNet-50 (ImageNet weights on request) with a new n_classes head."""
    if in_channels != 3:
        raise ConfigError("model.arch: resnet50 needs 3-channel images")
    weights = ResNet50_Weights.IMAGENET1K_V2 if pretrained else None
    try:
        m = tv_resnet50(weights=weights)
    except Exception as err:  # offline: urllib / hub errors
        raise ConfigError(f"model.pretrained: ImageNet weights for resnet50 could not be loaded "
                          f"({type(err).__name__}); put them in $TORCH_HOME/hub/checkpoints or set "
                          f"model.pretrained: false") from None
    m.fc = nn.Linear(m.fc.in_features, n_classes)
    return m


Builder = Callable[[int, int, int, bool], nn.Module]  # (n_classes, in_channels, size, pretrained) -> model

# The architecture registry: `model.arch` name -> builder. The names are also the profile schema's allowed values
# (`mia_nb.config.ARCHS`, which cannot import torch); a name in one and not the other stops the import.
ARCHITECTURES: dict[str, Builder] = {
    "simple_cnn": lambda n_classes, channels, size, pretrained: SimpleCNN(channels, size, n_classes),
    "resnet18": lambda n_classes, channels, size, pretrained: cifar_resnet18(n_classes, channels),
    "efficientnet_b0": lambda n_classes, channels, size, pretrained: cifar_efficientnet_b0(n_classes, channels),
    "resnet50": lambda n_classes, channels, size, pretrained: resnet50(n_classes, pretrained, channels),
}
if set(ARCHITECTURES) != set(ARCHS):
    raise RuntimeError(f"ARCHITECTURES has {sorted(ARCHITECTURES)}, mia_nb.config.ARCHS {sorted(ARCHS)}: "
                       f"name each architecture in both")


def build_model(arch: str, n_classes: int, in_channels: int, size: int, pretrained: bool = False) -> nn.Module:
    """Build an architecture of `ARCHITECTURES` by name."""
    if arch not in ARCHITECTURES:
        raise ConfigError(f"model.arch: unknown value {arch!r} (choose one of: {', '.join(ARCHITECTURES)})")
    return ARCHITECTURES[arch](n_classes, in_channels, size, pretrained)


def last_linear(model: nn.Module) -> nn.Linear:
    """The final nn.Linear (the layer that returns logits)."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError("model has no nn.Linear layer")
    return linears[-1]


@contextlib.contextmanager
def channels_last(model: nn.Module, x: torch.Tensor) -> Iterator[None]:
    """Image batches run in channels-last layout (about 1.7x faster convolutions on CPU, same logits);
    the model's parameters are put back in the default layout afterwards."""
    cl = torch.channels_last
    convs = [w for w in model.parameters() if w.dim() == 4]
    # a weight with one input channel (or 1x1 kernels) looks contiguous in both layouts: judge by the others
    telling = [w for w in convs if not (w.is_contiguous() and w.is_contiguous(memory_format=cl))]
    if x.dim() != 4 or not convs or (telling and all(w.is_contiguous(memory_format=cl) for w in telling)):
        yield  # not images, no convolution, or already channels-last (a model in training): leave it as it is
        return
    model.to(memory_format=torch.channels_last)
    try:
        yield
    finally:
        model.to(memory_format=torch.contiguous_format)


# Inference batch: SimpleCNN's forward pass on one CPU thread runs at about 6,700 images/s in batches of 256 and
# 3,400 in batches of 1,000, whose activations (100 MB) leave the caches; the logits are bitwise the same
# (measured 2026-11-29; benchmarks/train_throughput.py times training batches).
INFER_BATCH = 256


@torch.no_grad()
def forward_logits(model: nn.Module, x: torch.Tensor, prep=None, batch_size: int = INFER_BATCH,
                   device: torch.device | str = "cpu") -> torch.Tensor:
    """Logits of `model` on `x` in eval mode, batched; `prep` maps a batch to model input."""
    model.eval()
    out = []
    with channels_last(model, x):
        for i in range(0, len(x), batch_size):
            xb = x[i:i + batch_size].to(device)
            out.append(model(prep(xb) if prep is not None else xb).float().cpu())
    return torch.cat(out) if out else torch.empty(0)


@torch.no_grad()
def forward_features(model: nn.Module, x: torch.Tensor, batch_size: int = INFER_BATCH,
                     device: torch.device | str = "cpu") -> torch.Tensor:
    """Penultimate features of `model` on `x`: the input of its last nn.Linear, batched, in eval mode."""
    model.eval()
    seen: list[torch.Tensor] = []
    hook = last_linear(model).register_forward_hook(lambda mod, inp, out: seen.append(inp[0].detach().float().cpu()))
    try:
        with channels_last(model, x):
            for i in range(0, len(x), batch_size):
                model(x[i:i + batch_size].to(device))
    finally:
        hook.remove()
    return torch.cat(seen) if seen else torch.empty(0)


def last_layer_head(model: nn.Module) -> nn.Module:
    """The model's last nn.Linear alone (a copy), fed with penultimate features: what last-layer Laplace needs."""
    return nn.Sequential(nn.Identity(), copy.deepcopy(last_linear(model)))
