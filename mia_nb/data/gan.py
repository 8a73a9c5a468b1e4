"""The in-study GAN: a small class-conditional DCGAN, its training, its samples as PNG files, and the study's GAN.

The study trains it once per profile, as an engine job, on the `generator` split (disjoint from every
model's training set); its samples, saved as PNGs, are the "gan" non-member pool of
`mia_nb.data.nonmembers`: the paper's "infinite false positives" pool of same-content, never-seen fakes.
Images are raw floats in [0, 1], shape [N, C, H, W]; labels int64 class ids.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image
from tqdm.auto import tqdm

from mia_nb.config import ConfigError
from mia_nb.data.transforms import normalize
from mia_nb.models.device import resolve_device
from mia_nb.models.engine import interactive, release_workers, run_jobs, runs_here

if TYPE_CHECKING:
    from mia_nb.study import Study

_BASE = {28: 7, 32: 8}        # side length before the two stride-2 upsamplings
MANIFEST = "manifest.json"
ARCH = "cdcgan-onehotG-projD-v2"   # bump when Generator/Discriminator change; put it in store keys
_PNG = re.compile(r"^(\d+)_(\d+)\.png$")


def _base(size: int) -> int:
    """The side length before the two stride-2 upsamplings, for a 28 or 32 px image."""
    if size not in _BASE:
        raise ValueError(f"GAN image size must be 28 or 32, got {size}")
    return _BASE[size]


# ------------------------------------------------------------------------------------ the network

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


# --------------------------------------------------------------------------- training and samples

def _check_training_data(raw: torch.Tensor, labels: np.ndarray, n_classes: int, epochs: int,
                         batch_size: int) -> None:
    """Raise a one-line ValueError unless raw images, labels and settings can train the GAN."""
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


@dataclass(frozen=True)
class GanHistory:
    """How the GAN's training went: per-epoch losses and seconds, epochs run, whether the time budget stopped it."""

    d_loss: list[float]
    g_loss: list[float]
    seconds: list[float]
    epochs_done: int
    stopped_early: bool
    images_per_s: float


def train_gan(raw: torch.Tensor, labels: np.ndarray, n_classes: int, *, epochs: int, batch_size: int,
              lr: float = 2e-4, latent_dim: int = 64, width: int = 32, seed: int,
              time_budget_s: float | None = None, progress: bool = True,
              device: str | None = None) -> tuple[Generator, GanHistory]:
    """Train a class-conditional DCGAN (non-saturating BCE, Adam(0.5, 0.999)) -> (generator on CPU, history).

    With `time_budget_s`, no new epoch starts once the time spent plus the last epoch's duration would
    exceed it; the history's `epochs_done` reports how many ran.
    """
    labels = np.asarray(labels, dtype=np.int64)
    _check_training_data(raw, labels, n_classes, epochs, batch_size)
    dev = resolve_device(device or "auto")
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
    return gen.cpu().eval(), GanHistory(**history)


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


# -------------------------------------------------------------- the study's GAN: store key, job, fakes

def gan_config(study: Study) -> dict[str, Any]:
    """What identifies the study's GAN: its architecture, the generator split, the GAN settings, the seed.

    The `generator` split and the profile's `seed` are the same for every seed of a multi-seed run, so
    the GAN is trained once per profile and no seed's fakes come from another seed's members.
    """
    g = study.profile.ood.gan
    return {"generator_part": study.part_pool("generator"), "arch": ARCH, "epochs": g.epochs,
            "batch_size": g.batch_size, "latent_dim": g.latent_dim, "time_budget_s": g.time_budget_s,
            "seed": study.profile.seed}


def gan_folder(study: Study) -> Path:
    """outputs/<profile>/generated/gan_<key>_<n>: the PNG files of the generated non-members (all seeds)."""
    key = study.store.key("gan", gan_config(study))
    return study.base / "generated" / f"gan_{key}_{study.profile.ood.gan.n_images}"


@dataclass
class GanJob:
    """The GAN as an engine job: its config and the generator split's images."""

    name: str
    config: dict[str, Any]
    raw: torch.Tensor  # uint8 generator-split images
    labels: np.ndarray
    n_classes: int
    channels: int
    size: int
    device: str = "cpu"
    progress: bool = False  # a bar per epoch: only where the job runs in the caller's process (`engine.runs_here`)

    def __call__(self) -> dict[str, Any]:
        c = self.config
        gen, hist = train_gan(self.raw.float() / 255.0, self.labels, self.n_classes, epochs=c["epochs"],
                              batch_size=c["batch_size"], latent_dim=c["latent_dim"], seed=c["seed"],
                              time_budget_s=c["time_budget_s"], device=self.device, progress=self.progress)
        return {"state_dict": gen.state_dict(), "history": dataclasses.asdict(hist),
                "shape": {"latent_dim": gen.latent_dim, "n_classes": self.n_classes, "channels": self.channels,
                          "size": self.size}}


def missing_gan(study: Study) -> list[tuple[GanJob, Callable[[Any], None]]]:
    """The GAN's training job when the profile generates fakes and the store lacks it (else nothing)."""
    if study.profile.ood.gan.n_images == 0:
        return []
    cfg = gan_config(study)
    if study.store.has("gan", cfg):
        return []
    x, y = study.part("generator")
    job = GanJob("GAN", cfg, x, y.numpy(), study.info.n_classes, study.info.channels, study.info.size,
                 str(study.device))
    return [(job, lambda record: study.store.put("gan", cfg, record))]


def make_fakes(study: Study) -> tuple[Path, GanHistory]:
    """Train (or load) the class-conditional GAN on the `generator` split and save its samples as PNGs;
    return their folder and the GAN's training history."""
    g = study.profile.ood.gan
    if g.n_images == 0:
        raise ConfigError("ood.gan.n_images: 0, so this profile generates no fake images")
    cfg = gan_config(study)
    for job, store in missing_gan(study):  # from a notebook a person runs: a bar per epoch, then no idle workers
        job.progress = interactive() and runs_here(study.profile.engine, 1)
        store(run_jobs([job], study.profile.engine, desc="GAN", progress=not job.progress)[0])
        if interactive():
            release_workers(study.profile.engine)
    record = study.store.get("gan", cfg)
    folder = gan_folder(study)
    if not (folder / MANIFEST).is_file():
        gen = load_generator(record)
        raw, labels = sample(gen, g.n_images, study.info.n_classes, seed=study.profile.seed + 1)
        save_pngs(raw, labels, folder)
    return folder, GanHistory(**record["history"])  # stored as a plain dict


def load_generator(record: dict[str, Any]) -> Generator:
    """Rebuild the generator of a stored GAN record."""
    s = record["shape"]
    gen = Generator(s["latent_dim"], s["n_classes"], s["channels"], s["size"])
    gen.load_state_dict(record["state_dict"])
    return gen.eval()


def gan_pool(study: Study) -> tuple[torch.Tensor, np.ndarray]:
    """The generated images of `make_fakes` as model input, with the classes they were generated for."""
    folder = gan_folder(study)
    if not (folder / MANIFEST).is_file():
        raise FileNotFoundError(f"{folder} holds no generated images: run notebooks/05_ood_fpr.ipynb first")
    raw, labels = load_pngs(folder)
    return normalize(raw, study.info.mean, study.info.std), labels
