"""The in-study GAN: a small class-conditional DCGAN for same-content, never-seen fake images.

Trained on a split disjoint from every model's training set, it yields the paper's "infinite false
positives" pool. Images are raw floats in [0, 1], shape [N, C, H, W]; labels int64 class ids.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

_BASE = {28: 7, 32: 8}        # side length before the two stride-2 upsamplings
MANIFEST = "manifest.json"
ARCH = "cdcgan-onehotG-projD-v2"   # bump when Generator/Discriminator change; put it in store keys
_PNG = re.compile(r"^(\d+)_(\d+)\.png$")


def _base(size: int) -> int:
    if size not in _BASE:
        raise ValueError(f"GAN image size must be 28 or 32, got {size}")
    return _BASE[size]


class Generator(nn.Module):
    """[z, one-hot(y)] -> Linear -> [2w, s, s] -> ConvT -> [w, 2s, 2s] -> ConvT -> sigmoid [C, 4s, 4s].

    The label enters as a plain one-hot vector: a learned embedding as large as z let the generator
    ignore z and collapse to one image per class (measured on Fashion-MNIST).
    """

    def __init__(self, latent_dim: int, n_classes: int, channels: int, size: int, width: int = 32):
        super().__init__()
        s = _base(size)
        self.latent_dim, self.n_classes, self.channels, self.size = latent_dim, n_classes, channels, size
        self.fc = nn.Sequential(nn.Linear(latent_dim + n_classes, 2 * width * s * s, bias=False),
                                nn.BatchNorm1d(2 * width * s * s), nn.ReLU(True))
        self.net = nn.Sequential(
            nn.Unflatten(1, (2 * width, s, s)),
            nn.ConvTranspose2d(2 * width, width, 4, 2, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(True),
            nn.ConvTranspose2d(width, channels, 4, 2, 1), nn.Sigmoid(),
        )

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.net(self.fc(torch.cat([z, F.one_hot(y, self.n_classes).to(z.dtype)], dim=1)))


class Discriminator(nn.Module):
    """Conv -> Conv -> features phi; logit = linear(phi) + <embed(y), phi> (projection discriminator)."""

    def __init__(self, n_classes: int, channels: int, size: int, width: int = 32):
        super().__init__()
        s = _base(size)
        self.net = nn.Sequential(
            nn.Conv2d(channels, width, 4, 2, 1), nn.LeakyReLU(0.2, True),
            nn.Conv2d(width, 2 * width, 4, 2, 1, bias=False), nn.BatchNorm2d(2 * width), nn.LeakyReLU(0.2, True),
            nn.Flatten(),
        )
        feat = 2 * width * s * s
        self.out = nn.Linear(feat, 1)
        self.embed = nn.Embedding(n_classes, feat)
        nn.init.normal_(self.embed.weight, std=0.01)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        phi = self.net(x)
        return (self.out(phi) + (self.embed(y) * phi).sum(1, keepdim=True)).squeeze(1)


def _check_training_data(raw: torch.Tensor, labels: np.ndarray, n_classes: int, epochs: int,
                         batch_size: int) -> None:
    if raw.ndim != 4 or raw.shape[-1] != raw.shape[-2]:
        raise ValueError(f"raw must be square images [N, C, H, W], got {tuple(raw.shape)}")
    _base(raw.shape[-1])
    if len(raw) != len(labels):
        raise ValueError(f"raw has {len(raw)} images but labels has {len(labels)} entries")
    if float(raw.min()) < 0.0 or float(raw.max()) > 1.0:
        raise ValueError("raw images must lie in [0, 1] (pass raw images, not model input)")
    if len(labels) and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(f"labels must lie in 0..{n_classes - 1}, got {labels.min()}..{labels.max()}")
    if epochs < 1 or batch_size < 2 or len(raw) < 2:
        raise ValueError(f"need epochs >= 1, batch_size >= 2 and >= 2 images, got {epochs}, {batch_size}, {len(raw)}")


def train_gan(raw: torch.Tensor, labels: np.ndarray, n_classes: int, *, epochs: int, batch_size: int,
              lr: float = 2e-4, latent_dim: int = 64, width: int = 32, seed: int,
              time_budget_s: float | None = None, progress: bool = True,
              device: str | None = None) -> tuple[Generator, dict]:
    """Train a class-conditional DCGAN (non-saturating BCE, Adam(0.5, 0.999)) -> (generator on CPU, history).

    With `time_budget_s`, no new epoch starts once the time spent plus the last epoch's duration would
    exceed it; history["epochs_done"] reports how many ran.
    """
    labels = np.asarray(labels, dtype=np.int64)
    _check_training_data(raw, labels, n_classes, epochs, batch_size)
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    x_all = raw.float().to(dev)
    y_all = torch.as_tensor(labels, device=dev)
    n, channels, size = len(raw), raw.shape[1], raw.shape[-1]
    history: dict = {"d_loss": [], "g_loss": [], "seconds": [], "epochs_done": 0, "stopped_early": False}
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):                 # seeded init without touching global state
        torch.manual_seed(seed)
        gen = Generator(latent_dim, n_classes, channels, size, width).to(dev)
        disc = Discriminator(n_classes, channels, size, width).to(dev)
    opt_g = torch.optim.Adam(gen.parameters(), lr=lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(disc.parameters(), lr=lr, betas=(0.5, 0.999))
    bce = F.binary_cross_entropy_with_logits
    start = time.perf_counter()
    bar = tqdm(range(epochs), desc="GAN", unit="epoch", disable=not progress)
    for _ in bar:
        t0 = time.perf_counter()
        d_sum = g_sum = 0.0
        order = torch.randperm(n, generator=g).to(dev)
        batches = [order[i:i + batch_size] for i in range(0, n, batch_size)]
        batches = batches if len(batches[-1]) > 1 else batches[:-1]    # BatchNorm needs >= 2 images
        for idx in batches:
            real, y = x_all[idx], y_all[idx]
            b = len(idx)
            z = torch.randn(b, latent_dim, generator=g).to(dev)
            y_fake = torch.randint(n_classes, (b,), generator=g).to(dev)
            fake = gen(z, y_fake)
            ones, zeros = torch.ones(b, device=dev), torch.zeros(b, device=dev)
            d_loss = bce(disc(real, y), ones) + bce(disc(fake.detach(), y_fake), zeros)
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()
            g_loss = bce(disc(fake, y_fake), ones)          # non-saturating generator loss
            opt_g.zero_grad(set_to_none=True)
            g_loss.backward()
            opt_g.step()
            d_sum += d_loss.item() * b
            g_sum += g_loss.item() * b
        seen = sum(len(i) for i in batches)
        history["d_loss"].append(d_sum / seen)
        history["g_loss"].append(g_sum / seen)
        history["seconds"].append(time.perf_counter() - t0)
        history["epochs_done"] += 1
        bar.set_postfix(d_loss=f"{d_sum / seen:.3f}", g_loss=f"{g_sum / seen:.3f}")
        spent = time.perf_counter() - start
        if (time_budget_s is not None and history["epochs_done"] < epochs
                and spent + history["seconds"][-1] > time_budget_s):
            history["stopped_early"] = True
            break
    bar.close()
    history["images_per_s"] = n * history["epochs_done"] / max(sum(history["seconds"]), 1e-9)
    return gen.cpu().eval(), history


@torch.no_grad()
def sample(generator: Generator, n: int, n_classes: int, seed: int,
           batch_size: int = 1000) -> tuple[torch.Tensor, np.ndarray]:
    """n seeded samples with class labels round-robin 0, 1, ..., K-1, 0, ... -> (raw [n,C,H,W] in [0,1], labels)."""
    if n < 1 or n_classes < 1:
        raise ValueError(f"need n >= 1 and n_classes >= 1, got {n} and {n_classes}")
    g = torch.Generator().manual_seed(seed)
    was_training = generator.training
    generator.eval()
    dev = next(generator.parameters()).device
    labels = torch.arange(n) % n_classes
    z = torch.randn(n, generator.latent_dim, generator=g)
    out = torch.cat([generator(z[i:i + batch_size].to(dev), labels[i:i + batch_size].to(dev)).cpu()
                     for i in range(0, n, batch_size)])
    generator.train(was_training)
    return out.clamp(0.0, 1.0), labels.numpy().astype(np.int64)


def save_pngs(raw: torch.Tensor, labels: np.ndarray, folder: str | Path) -> list[Path]:
    """Write one 8-bit PNG per image, `<index>_<class>.png`, plus manifest.json, atomically -> paths."""
    from PIL import Image

    folder = Path(folder)
    labels = np.asarray(labels, dtype=np.int64)
    if raw.ndim != 4 or raw.shape[1] not in (1, 3) or len(raw) != len(labels):
        raise ValueError(f"need raw [N, 1|3, H, W] and N labels, got {tuple(raw.shape)} and {len(labels)}")
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".{folder.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    arr = (raw.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    width = max(6, len(str(len(raw) - 1)))
    names = [f"{i:0{width}d}_{int(c)}.png" for i, c in enumerate(labels)]
    for a, name in zip(arr, names):
        Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a).save(tmp / name)
    manifest = {"count": len(names), "shape": list(raw.shape[1:]), "files": names}
    (tmp / MANIFEST).write_text(json.dumps(manifest))           # written last: marks the folder complete
    if folder.exists():                                            # replace an older copy
        old = folder.parent / f".{folder.name}.old-{os.getpid()}"
        os.replace(folder, old)
        os.replace(tmp, folder)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, folder)
    return [folder / name for name in names]


def load_pngs(folder: str | Path) -> tuple[torch.Tensor, np.ndarray]:
    """Read a save_pngs folder back in index order -> (raw [N,C,H,W] in [0,1], labels)."""
    from PIL import Image

    folder = Path(folder)
    man_path = folder / MANIFEST
    if not man_path.is_file():
        raise ValueError(f"PNG folder {str(folder)!r} is missing or incomplete (no {MANIFEST}); regenerate it")
    manifest = json.loads(man_path.read_text())
    names = manifest["files"]
    on_disk = {p.name for p in folder.glob("*.png")}
    if len(names) != manifest["count"] or not set(names) <= on_disk:
        raise ValueError(f"PNG folder {str(folder)!r} is incomplete: manifest lists {manifest['count']} "
                         f"images, {len(on_disk & set(names))} found; regenerate it")
    c, h, w = manifest["shape"]
    out = torch.empty(len(names), c, h, w)
    labels = np.empty(len(names), dtype=np.int64)
    for i, name in enumerate(names):
        m = _PNG.match(name)
        if m is None or int(m.group(1)) != i:
            raise ValueError(f"PNG folder {str(folder)!r}: unexpected file name {name!r} at index {i}")
        labels[i] = int(m.group(2))
        with Image.open(folder / name) as im:
            a = np.asarray(im.convert("L" if c == 1 else "RGB"), dtype=np.float32) / 255.0
        out[i] = torch.from_numpy(a.reshape(h, w, c)).permute(2, 0, 1)
    return out, labels
