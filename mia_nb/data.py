"""Datasets, the pool of images a study draws from, and its seeded stratified splits.

A pool is every labelled image of the study's dataset, kept in memory as uint8 `[N, C, H, W]`
(fast path: no per-sample decoding in the training loop). `to_input` turns a uint8 batch into
model input (float, normalised with the dataset's mean / std).
"""

from __future__ import annotations

import gzip
import hashlib
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.model_selection import train_test_split

from . import REPO_ROOT
from .config import SPLIT_PARTS, ConfigError, Profile
from .store import atomic_write, write_json

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
FASHION_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                 "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class DatasetInfo:
    """What a model needs to know about a dataset."""

    name: str
    channels: int
    size: int
    n_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    classes: tuple[str, ...] = ()
    n_images: int = 0  # size of the whole pool, 0 = only known after reading a folder


DATASET_INFO = {
    "fashion_mnist": DatasetInfo("fashion_mnist", 1, 28, 10, (0.2860,), (0.3530,), (
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
        "Ankle boot"), 70000),
    "cifar10": DatasetInfo("cifar10", 3, 32, 10, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), (
        "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"), 60000),
    "stanford_dogs": DatasetInfo("stanford_dogs", 3, 224, 120, IMAGENET_MEAN, IMAGENET_STD, (), 0),
}


@dataclass
class Pool:
    """All labelled images of a dataset, uint8 in memory, plus what they are."""

    images: torch.Tensor  # uint8 [N, C, H, W]
    labels: torch.Tensor  # int64 [N]
    info: DatasetInfo
    description: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.labels)


def dataset_info(p: Profile) -> DatasetInfo:
    """The profile's dataset facts, with `data.image_size` applied."""
    info = DATASET_INFO[p.data.dataset]
    size = p.data.image_size or info.size
    return DatasetInfo(info.name, info.channels, size, info.n_classes, info.mean, info.std, info.classes,
                       info.n_images)


def to_input(batch: torch.Tensor, info: DatasetInfo) -> torch.Tensor:
    """uint8 images → float model input normalised with the dataset's mean / std."""
    from .pools import normalize
    return normalize(batch.float() / 255.0, info.mean, info.std)


def resolve(path: str | Path, repo_root: Path) -> Path:
    """A profile path: absolute as given (`~` expanded), else relative to the repository root."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else Path(repo_root) / path


def data_root(p: Profile, repo_root: Path) -> Path:
    """The profile's data folder, resolved against the repository root."""
    return resolve(p.data.root, repo_root)


def check_data_root(root: Path, repo_root: Path, key: str = "data.root", given: str | None = None) -> Path:
    """The data folder must be an existing folder, or the repository's own data/ (made on first install).

    This is what stops a mistyped root from being filled with a fresh copy of the data: nothing is
    ever written into a data folder that does not exist yet, except the default one.
    """
    root = Path(root)
    expected = Path(repo_root) / "data"
    given = str(root) if given is None else given
    if root.exists() and not root.is_dir():
        raise ConfigError(f"{key}: {root} is a file, not a folder, got {given!r} (name the data folder, "
                          f"e.g. {expected})")
    if not root.exists() and root.resolve() != expected.resolve():
        raise ConfigError(f"{key}: folder {root} does not exist, got {given!r} (expected {expected} or another "
                          f"existing folder; typo? create the folder first if you mean it)")
    return root


# ---------------------------------------------------------------------------------------- Fashion-MNIST

def ensure_fashion_mnist(root: Path, download: bool = False, debian_dir: Path = DEBIAN_FASHION_MNIST) -> Path:
    """Make sure torchvision's FashionMNIST/raw files exist under `root`; return the raw folder.

    Filled, in order, from what is already there, from Debian's `dataset-fashion-mnist` files, or
    (when `download`) by torchvision; otherwise a one-line error lists the three ways.
    """
    raw = Path(root) / "FashionMNIST" / "raw"
    if all((raw / name).is_file() for name in FASHION_FILES):
        return raw
    if all((debian_dir / f"{name}.gz").is_file() for name in FASHION_FILES):
        raw.mkdir(parents=True, exist_ok=True)
        for name in FASHION_FILES:
            def unzip(tmp: str, src: Path = debian_dir / f"{name}.gz") -> None:
                with gzip.open(src, "rb") as fin, open(tmp, "wb") as fout:
                    shutil.copyfileobj(fin, fout)
            atomic_write(raw / name, unzip)
        return raw
    if download:
        from torchvision.datasets import FashionMNIST
        FashionMNIST(str(root), train=True, download=True)
        FashionMNIST(str(root), train=False, download=True)
        return raw
    raise ConfigError(
        f"data.root: Fashion-MNIST not found in {raw}; install it with `apt-get install dataset-fashion-mnist`, "
        f"or set data.download: true (needs internet), or copy the four idx files into {raw}")


def _from_arrays(images: np.ndarray | torch.Tensor, labels: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Arrays in HWC / HW layout → uint8 NCHW tensor and int64 labels."""
    x = torch.as_tensor(np.asarray(images))
    if x.ndim == 3:
        x = x.unsqueeze(1)
    elif x.shape[-1] in (1, 3):
        x = x.permute(0, 3, 1, 2)
    return x.contiguous().to(torch.uint8), torch.as_tensor(np.asarray(labels), dtype=torch.int64)


def load_fashion_mnist(root: Path, download: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """All 70,000 Fashion-MNIST images (train then test) as uint8 [N,1,28,28] and labels."""
    from torchvision.datasets import FashionMNIST
    ensure_fashion_mnist(root, download)
    parts = [FashionMNIST(str(root), train=t, download=False) for t in (True, False)]
    return (torch.cat([d.data.unsqueeze(1) for d in parts]).to(torch.uint8),
            torch.cat([d.targets for d in parts]).to(torch.int64))


def load_cifar(name: str, root: Path, download: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """CIFAR-10 or CIFAR-100 through torchvision (train then test)."""
    from torchvision.datasets import CIFAR10, CIFAR100
    cls = {"cifar10": CIFAR10, "cifar100": CIFAR100}[name]
    try:
        parts = [cls(str(root), train=t, download=download) for t in (True, False)]
    except RuntimeError as err:
        raise ConfigError(f"data.root: {name} not found under {root} ({err}); set data.download: true "
                          f"or place torchvision's {name} files there") from None
    x, y = zip(*(_from_arrays(d.data, d.targets) for d in parts))
    return torch.cat(x), torch.cat(y)


STL10_TO_CIFAR10 = {0: 0, 1: 2, 2: 1, 3: 3, 4: 4, 5: 5, 6: 7, 8: 8, 9: 9}  # 7 = monkey: removed


def load_svhn(root: Path, download: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """SVHN test split through torchvision; labels are digits, not CIFAR classes (−1)."""
    from torchvision.datasets import SVHN
    try:
        d = SVHN(str(root), split="test", download=download)
    except RuntimeError as err:
        raise ConfigError(f"ood.extra_datasets: svhn not found under {root} ({err})") from None
    x = torch.as_tensor(d.data, dtype=torch.uint8)
    return x, torch.full((len(x),), -1, dtype=torch.int64)


def load_stl10(root: Path, download: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """STL-10 test split, monkeys removed, labels mapped to CIFAR-10 classes (96 px; resize later)."""
    from torchvision.datasets import STL10
    try:
        d = STL10(str(root), split="test", download=download)
    except RuntimeError as err:
        raise ConfigError(f"ood.extra_datasets: stl10 not found under {root} ({err})") from None
    keep = np.isin(d.labels, list(STL10_TO_CIFAR10))
    labels = np.array([STL10_TO_CIFAR10[int(v)] for v in d.labels[keep]])
    return torch.as_tensor(d.data[keep], dtype=torch.uint8), torch.as_tensor(labels, dtype=torch.int64)


def read_image_folder(path: Path, size: int, channels: int = 3, labelled: bool = True, key: str = "",
                      limit: int | None = None, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, tuple[str, ...]]:
    """Images of a folder, resized, as uint8 NCHW, their labels and class names.

    `labelled`: a class-per-subfolder tree (torchvision ImageFolder); else every image file below
    `path` (any layout, sorted by path) with label -1. With `limit` below the number of images, a
    seeded random subset (kept in path order). Errors are one line naming `key` (the profile key that
    names the folder) and the folder or file.
    """
    from torchvision import transforms
    from torchvision.datasets import ImageFolder
    from torchvision.datasets.folder import IMG_EXTENSIONS, default_loader
    path = Path(path)
    where = f"{key}: " if key else ""
    if not path.is_dir():
        raise ConfigError(f"{where}{path}: image folder not found")
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    if labelled:
        try:
            ds = ImageFolder(str(path))
        except (FileNotFoundError, RuntimeError) as err:
            raise ConfigError(f"{where}no images found in {path} ({str(err).splitlines()[0]})") from None
        samples, classes = list(ds.samples), tuple(ds.classes)
    else:
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMG_EXTENSIONS)
        if not files:
            raise ConfigError(f"{where}no images found in {path} ({'/'.join(IMG_EXTENSIONS)})")
        samples, classes = [(str(f), -1) for f in files], ()
    if limit is not None and limit < len(samples):
        keep = np.sort(np.random.default_rng(seed).choice(len(samples), size=limit, replace=False))
        samples = [samples[i] for i in keep]
    mode = "L" if channels == 1 else "RGB"
    tf = transforms.Compose([transforms.Resize((size, size)), transforms.PILToTensor()])
    from tqdm.auto import tqdm
    xs = []
    for file, _ in tqdm(samples, desc=f"reading {path.name}", leave=False):
        try:
            xs.append(tf(default_loader(file).convert(mode)))
        except (OSError, ValueError) as err:  # PIL.UnidentifiedImageError is an OSError
            raise ConfigError(f"{where}cannot read image {file} ({type(err).__name__}); "
                              f"remove or replace that file") from None
    labels = torch.as_tensor([label for _, label in samples], dtype=torch.int64)
    return torch.stack(xs), labels, classes


def stanford_dogs_dir(root: Path) -> Path:
    """The folder of breed subfolders: <root>/stanford_dogs/Images or <root>/stanford_dogs."""
    base = Path(root) / "stanford_dogs"
    return base / "Images" if (base / "Images").is_dir() else base


EXTRA_DATASET_FILES = {"cifar100": "cifar-100-python", "svhn": "test_32x32.mat", "stl10": "stl10_binary"}


def check_data_available(p: Profile, repo_root: Path) -> None:
    """Raise a one-line ConfigError before any long work when the profile's data cannot be had.

    Covers the study's dataset, every `ood.extra_datasets` entry and `ood.fake_folder`. Writes only
    when Fashion-MNIST is unpacked from Debian's files, and only after the data root was checked.
    """
    root = check_data_root(data_root(p, repo_root), repo_root, given=p.data.root)
    if p.data.dataset == "fashion_mnist":
        ensure_fashion_mnist(root, p.data.download)
    elif p.data.dataset == "cifar10" and not p.data.download and not (root / "cifar-10-batches-py").is_dir():
        raise ConfigError(f"data.root: CIFAR-10 not found in {root}/cifar-10-batches-py; set data.download: true "
                          f"(needs internet) or copy torchvision's CIFAR-10 files there")
    elif p.data.dataset == "stanford_dogs" and not stanford_dogs_dir(root).is_dir():
        raise ConfigError(f"data.root: Stanford Dogs not found; put the breed folders (Images/n02085620-Chihuahua/…) "
                          f"under {root}/stanford_dogs")
    for i, name in enumerate(p.ood.extra_datasets):
        key = f"ood.extra_datasets[{i}]"
        if name == "stanford_dogs":
            where = stanford_dogs_dir(root)
        elif name.startswith("afhq_"):
            if not p.ood.afhq_root:
                raise ConfigError(f"ood.afhq_root: needed for {key} ({name}); name the AFHQ folder with cat/ dog/ wild/")
            where = resolve(p.ood.afhq_root, repo_root) / name.split("_", 1)[1]
        elif p.data.download:
            continue  # torchvision fetches it into data.root
        else:
            where = root / EXTRA_DATASET_FILES[name]
        if not where.exists():
            raise ConfigError(f"{key}: {name} not found, got {name!r} (expected {where}; put the files there"
                              f"{'' if name in ('stanford_dogs',) or name.startswith('afhq_') else ' or set data.download: true'}"
                              f", or remove it from ood.extra_datasets)")
    if p.ood.fake_folder and not resolve(p.ood.fake_folder, repo_root).is_dir():
        raise ConfigError(f"ood.fake_folder: folder {resolve(p.ood.fake_folder, repo_root)} not found, "
                          f"got {p.ood.fake_folder!r} (name a folder of images, or leave it out)")


def load_pool(p: Profile, repo_root: Path) -> Pool:
    """Read the profile's whole dataset into memory (uint8)."""
    check_data_available(p, repo_root)
    root = data_root(p, repo_root)
    info = dataset_info(p)
    if p.data.dataset == "fashion_mnist":
        x, y = load_fashion_mnist(root, p.data.download)
        desc = {"files": [f"FashionMNIST/raw/{f}" for f in FASHION_FILES],
                "order": "train (60,000) then test (10,000)"}
    elif p.data.dataset == "cifar10":
        x, y = load_cifar("cifar10", root, p.data.download)
        desc = {"files": ["cifar-10-batches-py"], "order": "train (50,000) then test (10,000)"}
    else:
        folder = stanford_dogs_dir(root)
        x, y, classes = read_image_folder(folder, info.size, 3, key="data.root")
        info = DatasetInfo(info.name, 3, info.size, len(classes), info.mean, info.std, classes, len(y))
        desc = {"files": [str(folder)], "order": "ImageFolder order (class folder, then file name)"}
    if x.shape[-1] != info.size:
        x = torch.nn.functional.interpolate(x.float(), size=(info.size, info.size), mode="bilinear",
                                            antialias=True).round().clamp(0, 255).to(torch.uint8)
    desc.update({"dataset": p.data.dataset, "n_images": int(len(y)), "shape": list(x.shape[1:]),
                 "root": str(root)})
    return Pool(x, y, info, desc)


# ----------------------------------------------------------------------------------------------- splits

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
                                f"(python -m mia_nb run --params <profile> --only 01)")
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
            f"(python -m mia_nb run --params <profile> --only 01)")


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


def install_fashion_mnist(root: Path, download: bool = True, debian_dir: Path = DEBIAN_FASHION_MNIST,
                          repo_root: Path | None = None, key: str = "--root") -> Path:
    """Fill `<root>/FashionMNIST/raw` with Fashion-MNIST: Debian's package via apt-get where that works,
    else torchvision.

    `root` must be an existing folder or the repository's data/ (see `check_data_root`), so a
    mistyped root is refused before anything is written. Raises a one-line ConfigError listing the
    three ways when neither source works.
    """
    import os
    import subprocess
    root = check_data_root(Path(root), repo_root or REPO_ROOT, key)
    if not all((debian_dir / f"{n}.gz").is_file() for n in FASHION_FILES) and shutil.which("apt-get"):
        sudo = [] if os.geteuid() == 0 else (["sudo", "-n"] if shutil.which("sudo") else None)
        if sudo is not None:
            env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
            for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "dataset-fashion-mnist"]):
                if subprocess.run(sudo + cmd, env=env, capture_output=True).returncode != 0:
                    break
    try:
        return ensure_fashion_mnist(root, download=False, debian_dir=debian_dir)
    except ConfigError:
        if not download:
            raise
    try:
        return ensure_fashion_mnist(root, download=True, debian_dir=debian_dir)
    except Exception as err:  # no internet
        raise ConfigError(
            f"Fashion-MNIST could not be installed ({type(err).__name__}): run `apt-get install dataset-fashion-mnist`, "
            f"or allow torchvision's download (needs internet), or copy the four idx files into "
            f"{Path(root) / 'FashionMNIST' / 'raw'}") from None
