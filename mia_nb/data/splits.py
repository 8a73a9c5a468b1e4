"""Splits: the seeded, class-stratified, disjoint parts of a study's pool, saved and checked.

Parts are arrays of pool indices (`mia_nb.data.datasets.Pool`); the shared parts (`SHARED_PARTS`) are the same
for every seed of a profile.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from mia_nb.config import SPLIT_PARTS, ConfigError, Profile
from mia_nb.data.datasets import Pool
from mia_nb.store import atomic_write, write_json


def split_sizes(p: Profile) -> dict[str, int]:
    """Requested size of every split part, in the fixed part order."""
    return {part: int(getattr(p.splits, part)) for part in SPLIT_PARTS}


def check_split_sizes(sizes: dict[str, int], n_pool: int, dataset: str) -> None:
    """One-line error when the parts do not fit in the pool."""
    total = sum(sizes.values())
    if total > n_pool:
        biggest = max(sizes, key=sizes.get)
        raise ConfigError(f"splits: the parts add up to {total:,} images but the {dataset} pool has {n_pool:,}; "
                          f"lower splits.{biggest} (now {sizes[biggest]:,}) or another part")


SHARED_PARTS = ("generator",)  # the same for every seed of a profile: drawn first, with the profile's seed


def make_splits(labels: np.ndarray, sizes: dict[str, int], seed: int,
                shared_seed: int | None = None) -> dict[str, np.ndarray]:
    """Seeded, class-stratified, disjoint parts of the pool (arrays of pool indices, sorted).

    The shared parts (`SHARED_PARTS`) are drawn first from the whole pool with `shared_seed` (default
    `seed`), so every seed of a profile gets the same ones; the other parts come from the rest with `seed`.
    """
    labels = np.asarray(labels)
    check_split_sizes(sizes, len(labels), "dataset")
    shared_seed = seed if shared_seed is None else shared_seed
    remaining = np.arange(len(labels))
    parts: dict[str, np.ndarray] = {}
    order = sorted(enumerate(sizes.items()), key=lambda item: item[1][0] not in SHARED_PARTS)
    for i, (name, n) in order:
        if n == 0:
            parts[name] = np.array([], dtype=np.int64)
            continue
        if n == len(remaining):
            take, remaining = remaining, remaining[:0]
        else:
            base = shared_seed if name in SHARED_PARTS else seed
            state = int(np.random.SeedSequence([base, i]).generate_state(1)[0])
            take, remaining = train_test_split(remaining, train_size=n, stratify=labels[remaining],
                                               random_state=state)
        parts[name] = np.sort(take).astype(np.int64)
    parts = {name: parts[name] for name in sizes}
    assert_disjoint(parts)
    return parts


def assert_same_shared_parts(parts_by_seed: dict[int, dict[str, np.ndarray]]) -> None:
    """Raise unless every seed's shared parts (the GAN's `generator` split) are the same indices."""
    seeds = list(parts_by_seed)
    for name in SHARED_PARTS:
        for s in seeds[1:]:
            a, b = parts_by_seed[seeds[0]].get(name), parts_by_seed[s].get(name)
            if a is None or b is None or not np.array_equal(a, b):
                raise ValueError(f"split part {name} differs between seeds {seeds[0]} and {s}: rerun notebook 01 "
                                 "for every seed (the shared parts are drawn with the profile's seed)")


def indices_sha(idx: np.ndarray) -> str:
    """A short hash of an index array: what identifies a split part in store keys."""
    return hashlib.sha256(np.ascontiguousarray(idx).tobytes()).hexdigest()[:16]


def assert_disjoint(parts: dict[str, np.ndarray]) -> None:
    """Raise naming the first two parts that share an index."""
    names = list(parts)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            common = np.intersect1d(parts[a], parts[b])
            if len(common):
                raise ValueError(f"split parts {a} and {b} overlap in {len(common)} indices (e.g. {common[0]})")


def save_splits(folder: Path, parts: dict[str, np.ndarray], pool: Pool, seed: int) -> Path:
    """Write data/splits.npz (one index array per part) and data/pool.json, atomically."""
    folder = Path(folder)

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **parts)
    path = atomic_write(folder / "splits.npz", write)
    write_json(folder / "pool.json", {**pool.description, "seed": seed,
                                      "parts": {k: int(len(v)) for k, v in parts.items()},
                                      "classes": list(pool.info.classes)})
    return path


class DamagedFile(ValueError):
    """A file the study wrote earlier cannot be read back; the message says which notebook remakes it."""


def load_splits(folder: Path) -> dict[str, np.ndarray]:
    """Read data/splits.npz (never with pickle); a one-line error says to rerun notebook 01 when it is
    missing or damaged."""
    path = Path(folder) / "splits.npz"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run notebooks/01_data_prep.ipynb first "
                                f"(python -m mia_nb run --params <profile> --force --only 01)")
    try:
        with np.load(path, allow_pickle=False) as z:
            parts = {k: np.asarray(z[k]) for k in z.files}
    except Exception as err:  # noqa: BLE001 - truncated, not a zip, pickled objects: all mean "damaged"
        raise DamagedFile(_damaged(path, f"cannot be read: {type(err).__name__}")) from None
    if not parts:
        raise DamagedFile(_damaged(path, "no split parts in it"))
    for k, v in parts.items():
        if v.ndim != 1 or v.dtype.kind not in "iu" or (len(v) and v.min() < 0):
            raise DamagedFile(_damaged(path, f"part {k} is not a list of image indices"))
    try:
        assert_disjoint(parts)
    except ValueError as err:
        raise DamagedFile(_damaged(path, str(err))) from None
    return parts


def _damaged(path: Path, reason: str) -> str:
    return (f"{path} is damaged ({reason}); rerun notebook 01 to redraw the splits "
            f"(python -m mia_nb run --params <profile> --force --only 01)")


SPLIT_ROLES = {
    "target_train": "target members", "target_heldout": "target non-members",
    "shadow_train": "shadow members", "shadow_heldout": "shadow non-members",
    "calibration": "reserved: calibration", "generator": "reserved: GAN training",
}


def split_table(parts: dict[str, np.ndarray]) -> pd.DataFrame:
    """One row per split part: name, role, number of images."""
    return pd.DataFrame([{"part": k, "role": SPLIT_ROLES.get(k, ""), "n_images": int(len(v))}
                         for k, v in parts.items()])


def class_balance(parts: dict[str, np.ndarray], labels: np.ndarray, classes: tuple[str, ...]) -> pd.DataFrame:
    """Fraction of each class in each non-empty part (rows: parts, columns: classes)."""
    labels = np.asarray(labels)
    n_classes = len(classes) or int(labels.max()) + 1
    rows = {k: np.bincount(labels[v], minlength=n_classes) / len(v) for k, v in parts.items() if len(v)}
    cols = list(classes) if classes else [str(c) for c in range(n_classes)]
    return pd.DataFrame.from_dict(rows, orient="index", columns=cols)
