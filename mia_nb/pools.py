"""Non-member pools: the paper's transforms of held-out images, corruptions, other content, folders.

Raw images are float tensors in [0, 1], shape [N, C, H, W]; pools are returned in model-input space
((raw - mean) / std per channel) with int64 labels, -1 meaning "no true label" (other content).
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF


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


CORRUPTIONS: dict[str, Callable[..., torch.Tensor]] = {
    "noise": gaussian_noise,
    "blur": blur,
    "contrast": contrast,
    "invert": invert,
}
SEVERITIES: dict[str, tuple[int, ...]] = {
    "noise": tuple(NOISE_STD), "blur": tuple(BLUR_SIGMA), "contrast": tuple(CONTRAST_FACTOR), "invert": (1,),
}


def corrupt(raw: torch.Tensor, name: str, severity: int, seed: int) -> torch.Tensor:
    """Apply corruption `name` at `severity` to raw [0,1] images."""
    if name not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {name!r}; valid: {sorted(CORRUPTIONS)}")
    _check_severity(severity, SEVERITIES[name], name)
    if name == "noise":
        return gaussian_noise(raw, severity, seed)
    if name == "invert":
        return invert(raw)
    return CORRUPTIONS[name](raw, severity)


# ---------------------------------------------------------------- other content
def digits_pool(size: int, channels: int, n: int | None = None) -> tuple[torch.Tensor, np.ndarray]:
    """scikit-learn's bundled 8x8 digits (first n of 1797) as raw [0,1] size x size images, labels -1."""
    from sklearn.datasets import load_digits

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


# ---------------------------------------------------------------- dispatcher
TRANSFORM_POOLS = ("heldout", "permuted", "scaled255", "unnormalized")
SEVERITY_POOLS = ("noise", "blur", "contrast")          # pool names "<kind>_<severity>"
OTHER_POOLS = ("digits", "uniform")
DIGITS_MAX = 1797


def pool_names(corruption_severities: Sequence[int] = (1, 2, 3)) -> list[str]:
    """The default pool list, in display order."""
    for sev in corruption_severities:
        _check_severity(sev, NOISE_STD, "noise/blur/contrast")
    corrupted = [f"{kind}_{sev}" for kind in SEVERITY_POOLS for sev in corruption_severities]
    return [*TRANSFORM_POOLS, *corrupted, "inverted", *OTHER_POOLS]


def build_pool(name: str, heldout_x: torch.Tensor, heldout_y: np.ndarray, mean, std,
               spec: dict | None = None, seed: int = 0) -> tuple[torch.Tensor, np.ndarray]:
    """Pool `name` made from raw [0,1] held-out images -> (model-input float32 tensor, int64 labels).

    spec (optional): {"n": size of the other-content pools; default len(heldout_x), digits capped at 1797}.
    """
    valid = pool_names(list(NOISE_STD))
    if name not in valid:
        raise ValueError(f"unknown pool {name!r}; valid: {valid}")
    y = np.asarray(heldout_y, dtype=np.int64)
    if heldout_x.ndim != 4 or len(heldout_x) != len(y):
        raise ValueError(f"heldout_x must be [N, C, H, W] with N = len(heldout_y), "
                         f"got {tuple(heldout_x.shape)} and {len(y)} labels")
    if len(heldout_x) and (float(heldout_x.min()) < 0.0 or float(heldout_x.max()) > 1.0):
        raise ValueError("heldout_x must be raw images in [0, 1], not model input; build_pool normalises")
    _, c, size, _ = heldout_x.shape
    n_other = int((spec or {}).get("n", len(heldout_x)))
    norm = lambda raw: normalize(raw.float(), mean, std)  # noqa: E731
    x_in = norm(heldout_x)
    table: dict[str, Callable[[], tuple[torch.Tensor, np.ndarray]]] = {
        "heldout": lambda: (x_in, y),
        "permuted": lambda: (permute_pixels(x_in, seed), y),
        "scaled255": lambda: (scale255(x_in), y),
        "unnormalized": lambda: (undo_normalization(x_in, mean, std), y),
        "inverted": lambda: (norm(invert(heldout_x)), y),
        "digits": lambda: (lambda d: (norm(d[0]), d[1]))(digits_pool(size, c, min(n_other, DIGITS_MAX))),
        "uniform": lambda: (norm(uniform_noise(n_other, c, size, seed)), np.full(n_other, -1, np.int64)),
    }
    if name not in table:                                   # "<kind>_<severity>"
        kind, sev = name.rsplit("_", 1)
        return norm(corrupt(heldout_x, kind, int(sev), seed)), y
    return table[name]()
