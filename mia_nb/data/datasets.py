"""Datasets: their loaders (`LOADERS`, one per dataset of the catalog), the data checks before a run, and the
pool of images a study draws from.

A pool is every labelled image of the study's dataset, kept in memory as uint8 `[N, C, H, W]`
(fast path: no per-sample decoding in the training loop). `to_input` turns a uint8 batch into
model input (float, normalised with the dataset's mean / std). The datasets' facts are in
`mia_nb.data.catalog`, Fashion-MNIST's installer is `mia_nb.data.install`, the seeded splits of a
pool are `mia_nb.data.splits`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torchvision import transforms as tv_transforms
from torchvision.datasets import CIFAR10, CIFAR100, STL10, SVHN, FashionMNIST, ImageFolder
from torchvision.datasets.folder import IMG_EXTENSIONS, default_loader
from tqdm.auto import tqdm

from mia_nb.config import ConfigError, Profile
from mia_nb.data.catalog import DATASET_INFO, DatasetInfo
from mia_nb.data.install import FASHION_FILES, check_data_root, ensure_fashion_mnist
from mia_nb.data.transforms import normalize


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
    return normalize(batch.float() / 255.0, info.mean, info.std)


def resolve(path: str | Path, repo_root: Path) -> Path:
    """A profile path: absolute as given (`~` expanded), else relative to the repository root."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else Path(repo_root) / path


def data_root(p: Profile, repo_root: Path) -> Path:
    """The profile's data folder, resolved against the repository root."""
    return resolve(p.data.root, repo_root)


# ---------------------------------------------------------------------------------------- loaders

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
    ensure_fashion_mnist(root, download)
    parts = [FashionMNIST(str(root), train=t, download=False) for t in (True, False)]
    return (torch.cat([d.data.unsqueeze(1) for d in parts]).to(torch.uint8),
            torch.cat([d.targets for d in parts]).to(torch.int64))


def load_cifar(name: str, root: Path, download: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """CIFAR-10 or CIFAR-100 through torchvision (train then test)."""
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
    try:
        d = SVHN(str(root), split="test", download=download)
    except RuntimeError as err:
        raise ConfigError(f"ood.extra_datasets: svhn not found under {root} ({err})") from None
    x = torch.as_tensor(d.data, dtype=torch.uint8)
    return x, torch.full((len(x),), -1, dtype=torch.int64)


def load_stl10(root: Path, download: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """STL-10 test split, monkeys removed, labels mapped to CIFAR-10 classes (96 px; resize later)."""
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
    tf = tv_transforms.Compose([tv_transforms.Resize((size, size)), tv_transforms.PILToTensor()])
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


# ------------------------------------------------------------------------------ the loader registry

Loaded = tuple[torch.Tensor, torch.Tensor, DatasetInfo, dict[str, Any]]  # uint8 NCHW, int64 labels, facts, files


def _check_fashion_mnist(p: Profile, root: Path) -> None:
    """Fashion-MNIST in the data folder, unpacked from Debian's files or downloaded when missing."""
    ensure_fashion_mnist(root, p.data.download)


def _read_fashion_mnist(p: Profile, root: Path, info: DatasetInfo) -> Loaded:
    """All 70,000 Fashion-MNIST images, train then test."""
    x, y = load_fashion_mnist(root, p.data.download)
    return x, y, info, {"files": [f"FashionMNIST/raw/{f}" for f in FASHION_FILES],
                        "order": "train (60,000) then test (10,000)"}


def _check_cifar10(p: Profile, root: Path) -> None:
    """CIFAR-10's files in the data folder, unless torchvision may download them."""
    if not p.data.download and not (root / "cifar-10-batches-py").is_dir():
        raise ConfigError(f"data.root: CIFAR-10 not found in {root}/cifar-10-batches-py; set data.download: true "
                          f"(needs internet) or copy torchvision's CIFAR-10 files there")


def _read_cifar10(p: Profile, root: Path, info: DatasetInfo) -> Loaded:
    """All 60,000 CIFAR-10 images, train then test."""
    x, y = load_cifar("cifar10", root, p.data.download)
    return x, y, info, {"files": ["cifar-10-batches-py"], "order": "train (50,000) then test (10,000)"}


def _check_stanford_dogs(p: Profile, root: Path) -> None:
    """Stanford Dogs' breed folders under the data folder."""
    if not stanford_dogs_dir(root).is_dir():
        raise ConfigError(f"data.root: Stanford Dogs not found; put the breed folders (Images/n02085620-Chihuahua/…) "
                          f"under {root}/stanford_dogs")


def _read_stanford_dogs(p: Profile, root: Path, info: DatasetInfo) -> Loaded:
    """Every Stanford Dogs image at the study's size; the classes are the breed folders found."""
    folder = stanford_dogs_dir(root)
    x, y, classes = read_image_folder(folder, info.size, 3, key="data.root")
    info = DatasetInfo(info.name, 3, info.size, len(classes), info.mean, info.std, classes, len(y))
    return x, y, info, {"files": [str(folder)], "order": "ImageFolder order (class folder, then file name)"}


@dataclass(frozen=True)
class Loader:
    """How a dataset of the catalog is checked before a run and read into memory."""

    check: Callable[[Profile, Path], None]  # (profile, data folder): a one-line ConfigError when the data is missing
    read: Callable[[Profile, Path, DatasetInfo], Loaded]  # (profile, data folder, facts at the study's size)


# One loader per dataset of `mia_nb.data.catalog.DATASET_INFO` (which names what a profile may choose); a dataset in
# one and not the other stops the import.
LOADERS: dict[str, Loader] = {
    "fashion_mnist": Loader(_check_fashion_mnist, _read_fashion_mnist),
    "cifar10": Loader(_check_cifar10, _read_cifar10),
    "stanford_dogs": Loader(_check_stanford_dogs, _read_stanford_dogs),
}
if set(LOADERS) != set(DATASET_INFO):
    raise RuntimeError(f"LOADERS has {sorted(LOADERS)}, mia_nb.data.catalog.DATASET_INFO {sorted(DATASET_INFO)}: "
                       f"give each dataset of the catalog a loader")


EXTRA_DATASET_FILES = {"cifar100": "cifar-100-python", "svhn": "test_32x32.mat", "stl10": "stl10_binary"}


def check_data_available(p: Profile, repo_root: Path) -> None:
    """Raise a one-line ConfigError before any long work when the profile's data cannot be had.

    Covers the study's dataset, every `ood.extra_datasets` entry and `ood.fake_folder`. Writes only
    when Fashion-MNIST is unpacked from Debian's files, and only after the data root was checked.
    """
    root = check_data_root(data_root(p, repo_root), repo_root, given=p.data.root)
    LOADERS[p.data.dataset].check(p, root)
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
    """Read the profile's whole dataset into memory (uint8) through its `LOADERS` entry."""
    check_data_available(p, repo_root)
    root = data_root(p, repo_root)
    x, y, info, desc = LOADERS[p.data.dataset].read(p, root, dataset_info(p))
    if x.shape[-1] != info.size:
        x = torch.nn.functional.interpolate(x.float(), size=(info.size, info.size), mode="bilinear",
                                            antialias=True).round().clamp(0, 255).to(torch.uint8)
    desc.update({"dataset": p.data.dataset, "n_images": int(len(y)), "shape": list(x.shape[1:]),
                 "root": str(root)})
    return Pool(x, y, info, desc)
