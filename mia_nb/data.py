"""Datasets: their registry, their loaders, and the pool of images a study draws from.

A pool is every labelled image of the study's dataset, kept in memory as uint8 `[N, C, H, W]`
(fast path: no per-sample decoding in the training loop). `to_input` turns a uint8 batch into
model input (float, normalised with the dataset's mean / std). Fashion-MNIST's installer is
`mia_nb.install`; the seeded splits of a pool are `mia_nb.splits`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .config import ConfigError, Profile

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
    from torchvision.datasets import FashionMNIST

    from .install import ensure_fashion_mnist
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
    from .install import check_data_root, ensure_fashion_mnist
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
