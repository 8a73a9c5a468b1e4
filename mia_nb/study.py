"""The run context a notebook opens: profile, seed, output folders, store, data and splits.

A per-seed notebook works on one seed and writes where `python -m mia_nb run` writes that seed:
`outputs/<profile>/seed_<s>/` (results in `results/seed_<s>/`) for a profile with several `seeds`, the profile's
own folder for a one-seed profile. Opened in JupyterLab, with nothing injected, it takes the profile's first seed.
Only the summary context (`open_summary`, the claims notebook) writes into the profile's folder of a multi-seed run;
the mean over seeds of the tables is the runner's (`mia_nb.tables.aggregate_seed_tables`).

Models (`mia_nb.models.jobs`), model outputs (`mia_nb.models.variants`) and tables (`mia_nb.tables`) are
functions of this context; it trains and computes nothing itself.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from mia_nb import REPO_ROOT
from mia_nb.data import datasets as data_mod
from mia_nb.data import splits as splits_mod
from mia_nb.config import Profile, load_profile, seeds_of
from mia_nb.tables import upsert_csv
from mia_nb.layout import (DATA, FIGURES, RESULTS, SAMPLES, STORE, TABLE_KEYS, inside, run_folder, samples_folders,
                           seed_folder)
from mia_nb.store import Store, atomic_write
from mia_nb.models.device import resolve_device


class Study:
    """Everything a notebook needs for one profile and one seed (or, `summary`, for the run over its seeds)."""

    def __init__(self, profile: Profile, outputs_root: str | Path | None = None, seed: int | None = None,
                 pool: data_mod.Pool | None = None, summary: bool = False):
        """`seed` None: the profile's first seed; folders as the runner lays them out for that seed.

        `pool`: images to draw the splits from instead of the profile's dataset (tests, a user's own arrays).
        `summary`: the context of a notebook that runs once over every seed (the claims): its tables and
        figures go to the profile's own results/ and figures/; `seed` is then the first seed, for reference.
        """
        self.profile = profile
        seeds = seeds_of(profile)
        self.multi_seed = len(seeds) > 1
        self.summary = summary
        self.seed = seeds[0] if seed is None else int(seed)
        root = Path(outputs_root) if outputs_root else REPO_ROOT / "outputs"
        self.base = inside(root, profile.name)
        self.dir = self.base if summary else run_folder(self.base, self.seed, seeds)
        self.store = Store(self.base / STORE)
        self.device = resolve_device(profile.device)
        self._splits: dict[str, np.ndarray] | None = None
        self._pool = pool

    # ----------------------------------------------------------------------------------- folders
    def folder(self, name: str) -> Path:
        """outputs/<profile>[/seed_<s>]/<name>, created."""
        path = inside(self.base, self.dir / name)
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def data_dir(self) -> Path:
        return self.folder(DATA)

    @property
    def results_dir(self) -> Path:
        """results/ (a one-seed profile, or the summary), or results/seed_<s>/ for one seed of several."""
        if self.multi_seed and not self.summary:
            path = seed_folder(self.base / RESULTS, self.seed)
            path.mkdir(parents=True, exist_ok=True)
            return path
        return self.folder(RESULTS)

    @property
    def figures_dir(self) -> Path:
        return self.folder(FIGURES)

    @property
    def samples_dir(self) -> Path:
        """samples/: this seed's per-image sample files (`mia_nb.attacks.samples`)."""
        return self.folder(SAMPLES)

    def save_figure(self, fig: Any, name: str) -> Path:
        """Save a matplotlib Figure as figures/<name>.png (atomically) and return the path."""
        return atomic_write(self.figures_dir / f"{name}.png",
                            lambda tmp: fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight"))

    def save_table(self, df: pd.DataFrame, name: str) -> Path:
        """Write results/<name>.csv; the rows of a keyed table (`layout.TABLE_KEYS`) are upserted by its keys."""
        path = self.results_dir / f"{name}.csv"
        if name in TABLE_KEYS:
            upsert_csv(df, path, list(TABLE_KEYS[name]))
        else:
            atomic_write(path, lambda tmp: df.to_csv(tmp, index=False))
        return path

    # -------------------------------------------------------------------------------------- data
    @property
    def info(self) -> data_mod.DatasetInfo:
        """The dataset's facts (size, channels, classes, normalisation)."""
        return self.pool.info

    @property
    def pool(self) -> data_mod.Pool:
        """Every labelled image of the dataset, uint8 in memory (read on first use)."""
        if self._pool is None:
            self._pool = data_mod.load_pool(self.profile, REPO_ROOT)
        return self._pool

    @property
    def splits(self) -> dict[str, np.ndarray]:
        """The split parts (pool indices) notebook 01 saved for this seed."""
        if self._splits is None:
            self._splits = splits_mod.load_splits(self.data_dir)
        return self._splits

    def make_splits(self) -> dict[str, np.ndarray]:
        """Draw the seeded stratified splits, save them, and return them.

        Shared parts (the GAN's `generator` split) are drawn first with the profile's `seed`, the same for
        every seed of a multi-seed run; the per-seed parts are drawn from the rest with this seed.
        """
        sizes = splits_mod.split_sizes(self.profile)
        splits_mod.check_split_sizes(sizes, len(self.pool), self.profile.data.dataset)
        parts = splits_mod.make_splits(self.pool.labels.numpy(), sizes, self.seed, shared_seed=self.profile.seed)
        splits_mod.save_splits(self.data_dir, parts, self.pool, self.seed)
        self._splits = parts
        return parts

    def part(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 images and labels of one split part."""
        idx = torch.as_tensor(self.splits[name])
        return self.pool.images[idx], self.pool.labels[idx]

    def prep(self, batch: torch.Tensor) -> torch.Tensor:
        """uint8 batch → model input."""
        return data_mod.to_input(batch, self.info)

    def inputs(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Model-input tensor and labels of one split part."""
        x, y = self.part(name)
        return self.prep(x), y

    def labels(self, part: str) -> np.ndarray:
        """Labels of one split part."""
        return self.pool.labels[torch.as_tensor(self.splits[part])].numpy()

    def part_pool(self, part: str) -> dict[str, Any]:
        """The store description of a split part (what cached logits on it were computed on)."""
        return {"pool": part, "dataset": self.info.name, "image_size": self.info.size,
                "indices_sha": splits_mod.indices_sha(self.splits[part])}


def open_study(params: str | Path, outputs_root: str | Path | None = None, seed: int | None = None) -> Study:
    """Load and validate a profile and open the run context of one seed (None or < 0: the profile's first seed)."""
    profile = load_profile(params)
    return Study(profile, outputs_root, None if seed is None or seed < 0 else seed)


def open_summary(params: str | Path, outputs_root: str | Path | None = None) -> Study:
    """Load and validate a profile and open the context of a notebook that runs once over every seed."""
    return Study(load_profile(params), outputs_root, summary=True)


def seeds_with_samples(study: Study) -> tuple[dict[int, Path], list[int]]:
    """The profile's seeds whose samples/ folder (where the runner puts it) holds per-image samples, with that
    folder, and the seeds whose folder holds none yet; both in the profile's order."""
    seeds = seeds_of(study.profile)
    folders = dict(zip(seeds, samples_folders(study.base, seeds)))
    found = {s: f for s, f in folders.items() if f.is_dir() and any(f.glob("*.npz"))}
    return found, [s for s in seeds if s not in found]


def run_command(params: str | Path, outputs_root: str | Path | None = None) -> str:
    """The `python -m mia_nb run` line, typed in the repository's folder, that writes every seed of a profile
    (notebooks that are up to date are skipped)."""
    def shown(path: str | Path) -> str:
        full = Path(path).resolve()
        return str(full.relative_to(REPO_ROOT)) if full.is_relative_to(REPO_ROOT) else str(full)
    cmd = ["python", "-m", "mia_nb", "run", "--params", shown(params)]
    if outputs_root and Path(outputs_root).resolve() != (REPO_ROOT / "outputs").resolve():
        cmd += ["--outputs", shown(outputs_root)]
    return " ".join(shlex.quote(c) for c in cmd)
