"""The study's GAN: its store key, its training as an engine job, and the fake images it makes.

The class-conditional GAN (`mia_nb.generate`) is trained once per profile on the `generator` split; its
samples, saved as PNGs, are the "gan" non-member pool of `mia_nb.ood.pool_specs`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch

from . import generate, pools
from .config import ConfigError

if TYPE_CHECKING:
    from .study import Study


def gan_config(study: Study) -> dict[str, Any]:
    """What identifies the study's GAN: its architecture, the generator split, the GAN settings, the seed.

    The `generator` split and the profile's `seed` are the same for every seed of a multi-seed run, so
    the GAN is trained once per profile and no seed's fakes come from another seed's members.
    """
    g = study.profile.ood.gan
    return {"generator_part": study.part_pool("generator"), "arch": generate.ARCH, "epochs": g.epochs, "batch_size": g.batch_size,
            "latent_dim": g.latent_dim, "time_budget_s": g.time_budget_s, "seed": study.profile.seed}


def gan_folder(study: Study) -> Path:
    """outputs/<profile>/generated/gan_<key>_<n>: the PNG files of the generated non-members (all seeds)."""
    key = study.store.path("gan", gan_config(study)).stem
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

    def __call__(self) -> dict[str, Any]:
        c = self.config
        gen, hist = generate.train_gan(self.raw.float() / 255.0, self.labels, self.n_classes, epochs=c["epochs"],
                                       batch_size=c["batch_size"], latent_dim=c["latent_dim"], seed=c["seed"],
                                       time_budget_s=c["time_budget_s"], device=self.device, progress=False)
        return {"state_dict": gen.state_dict(), "history": hist,
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


def make_fakes(study: Study) -> tuple[Path, dict[str, Any]]:
    """Train (or load) the class-conditional GAN on the `generator` split and save its samples as PNGs."""
    from .trained import run_missing
    g = study.profile.ood.gan
    if g.n_images == 0:
        raise ConfigError("ood.gan.n_images: 0, so this profile generates no fake images")
    cfg = gan_config(study)
    run_missing(missing_gan(study), study.profile.engine, desc="GAN")
    record = study.store.get("gan", cfg)
    folder = gan_folder(study)
    if not (folder / generate.MANIFEST).is_file():
        gen = load_generator(record)
        raw, labels = generate.sample(gen, g.n_images, study.info.n_classes, seed=study.profile.seed + 1)
        generate.save_pngs(raw, labels, folder)
    return folder, record


def load_generator(record: dict[str, Any]) -> generate.Generator:
    """Rebuild the generator of a stored GAN record."""
    s = record["shape"]
    gen = generate.Generator(s["latent_dim"], s["n_classes"], s["channels"], s["size"])
    gen.load_state_dict(record["state_dict"])
    return gen.eval()


def gan_pool(study: Study) -> tuple[torch.Tensor, np.ndarray]:
    """The generated images of `make_fakes` as model input, with the classes they were generated for."""
    folder = gan_folder(study)
    if not (folder / generate.MANIFEST).is_file():
        raise FileNotFoundError(f"{folder} holds no generated images: run notebooks/05_ood_fpr.ipynb first")
    raw, labels = generate.load_pngs(folder)
    return pools.normalize(raw, study.info.mean, study.info.std), labels
