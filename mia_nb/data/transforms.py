"""The image transforms behind the non-member pools: the paper's transforms, corruptions, other content.

Raw images are float tensors in [0, 1], shape [N, C, H, W]; model input is (raw - mean) / std per channel.
Which pool applies which transform is the registry `mia_nb.data.nonmembers.POOLS`.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF
from sklearn.datasets import load_digits


# Severity -> parameter of each corruption (CIFAR-10-C style, scaled for 28/32 px images).
NOISE_STD = {1: 0.08, 2: 0.16, 3: 0.32}
BLUR_SIGMA = {1: 0.7, 2: 1.2, 3: 2.0}
CONTRAST_FACTOR = {1: 0.5, 2: 0.3, 3: 0.15}


# ---------------------------------------------------------------- normalisation and transforms
def _stats(mean: Sequence[float] | torch.Tensor, std: Sequence[float] | torch.Tensor,
           x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean/std as [1, C, 1, 1] tensors matching x's channels (length C or 1)."""
    if x.ndim != 4:
        raise ValueError(f"images must have shape [N, C, H, W], got {tuple(x.shape)}")
    m = torch.as_tensor(mean, dtype=x.dtype).flatten()
    s = torch.as_tensor(std, dtype=x.dtype).flatten()
    c = x.shape[1]
    if len(m) not in (1, c) or len(s) not in (1, c):
        raise ValueError(f"mean/std need 1 or {c} values (one per channel), got {len(m)} and {len(s)}")
    if bool((s <= 0).any()):
        raise ValueError(f"std must be positive, got {s.tolist()}")
    return m.view(1, -1, 1, 1), s.view(1, -1, 1, 1)


def normalize(raw: torch.Tensor, mean, std) -> torch.Tensor:
    """Raw [0,1] images -> model-input space: (raw - mean) / std per channel."""
    m, s = _stats(mean, std, raw)
    return (raw - m) / s


def unnormalize(x: torch.Tensor, mean, std) -> torch.Tensor:
    """Model-input space -> raw [0,1] images: x * std + mean per channel (inverse of normalize)."""
    m, s = _stats(mean, std, x)
    return x * s + m


def permute_pixels(x: torch.Tensor, seed: int) -> torch.Tensor:
    """Shuffle each image's H*W pixel positions with its own seeded permutation, same for all channels."""
    if x.ndim != 4:
        raise ValueError(f"images must have shape [N, C, H, W], got {tuple(x.shape)}")
    n, c, h, w = x.shape
    g = torch.Generator().manual_seed(seed)
    perm = torch.rand(n, h * w, generator=g).argsort(dim=1)          # one permutation per image
    flat = x.reshape(n, c, h * w)
    return flat.gather(2, perm.unsqueeze(1).expand(n, c, h * w)).reshape(n, c, h, w)


def scale255(x: torch.Tensor) -> torch.Tensor:
    """The paper's 'Scaled' pool: normalised tensor x 255 (far from the data, ReLU nets overconfident)."""
    return x * 255.0


def undo_normalization(x: torch.Tensor, mean, std) -> torch.Tensor:
    """The paper's 'Un-normalised' pool: feed the raw [0,1] image without normalisation."""
    return unnormalize(x, mean, std)


# ---------------------------------------------------------------- corruptions of raw images
def _check_severity(severity: int, allowed: Sequence[int], name: str) -> None:
    if severity not in allowed:
        raise ValueError(f"severity for corruption {name!r} must be one of {list(allowed)}, got {severity!r}")


def gaussian_noise(raw: torch.Tensor, severity: int, seed: int) -> torch.Tensor:
    """Add seeded Gaussian noise (std NOISE_STD[severity]) to raw images, clamped to [0, 1]."""
    _check_severity(severity, NOISE_STD, "noise")
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(raw.shape, generator=g, dtype=raw.dtype)
    return (raw + NOISE_STD[severity] * noise).clamp(0.0, 1.0)


def blur(raw: torch.Tensor, severity: int) -> torch.Tensor:
    """Gaussian blur with sigma BLUR_SIGMA[severity] (kernel 2*ceil(3 sigma)+1), clamped to [0, 1]."""
    _check_severity(severity, BLUR_SIGMA, "blur")
    sigma = BLUR_SIGMA[severity]
    k = 2 * math.ceil(3 * sigma) + 1
    k = min(k, 2 * ((min(raw.shape[-2:]) - 1) // 2) + 1)             # kernel must fit the image
    return TF.gaussian_blur(raw, kernel_size=[k, k], sigma=[sigma, sigma]).clamp(0.0, 1.0)


def contrast(raw: torch.Tensor, severity: int) -> torch.Tensor:
    """Pull each image towards its per-channel mean by CONTRAST_FACTOR[severity], clamped to [0, 1]."""
    _check_severity(severity, CONTRAST_FACTOR, "contrast")
    mu = raw.mean(dim=(-2, -1), keepdim=True)
    return ((raw - mu) * CONTRAST_FACTOR[severity] + mu).clamp(0.0, 1.0)


def invert(raw: torch.Tensor) -> torch.Tensor:
    """Photographic negative 1 - x (one severity)."""
    return 1.0 - raw




# ---------------------------------------------------------------- other content
DIGITS_MAX = 1797  # images in scikit-learn's digits


def digits_pool(size: int, channels: int, n: int | None = None) -> tuple[torch.Tensor, np.ndarray]:
    """scikit-learn's bundled 8x8 digits (first n of 1797) as raw [0,1] size x size images, labels -1."""
    data = load_digits().data                                          # [1797, 64], values 0..16
    if n is not None and not 0 < n <= len(data):
        raise ValueError(f"digits pool size n must be in 1..{len(data)}, got {n}")
    data = data[: n if n is not None else len(data)]
    x = torch.as_tensor(data / 16.0, dtype=torch.float32).reshape(-1, 1, 8, 8)
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).clamp(0.0, 1.0)
    return x.repeat(1, channels, 1, 1), np.full(len(x), -1, dtype=np.int64)


def uniform_noise(n: int, channels: int, size: int, seed: int) -> torch.Tensor:
    """n raw images of i.i.d. uniform [0,1] pixels."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, channels, size, size, generator=g)
