"""Loaders on small data written in each loader's on-disk format; splits; preflight errors."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mia_nb import config
from mia_nb.config import ConfigError, parse_profile
from mia_nb.data import datasets, install, splits
from mia_nb.data.catalog import DATASET_INFO


def write_idx(path: Path, arr: np.ndarray) -> None:
    """Write an idx-ubyte file (the MNIST / Fashion-MNIST format), gzipped."""
    header = struct.pack(">BBBB", 0, 0, 0x08, arr.ndim) + b"".join(struct.pack(">I", d) for d in arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + arr.astype(np.uint8).tobytes())


@pytest.fixture
def debian_dir(tmp_path):
    """A fake /usr/share/datasets/fashion-mnist with 30 train and 20 test images."""
    d = tmp_path / "debian"
    d.mkdir()
    rng = np.random.default_rng(0)
    for split, n in (("train", 30), ("t10k", 20)):
        write_idx(d / f"{split}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        write_idx(d / f"{split}-labels-idx1-ubyte.gz", np.arange(n) % 10)
    return d


def test_fashion_mnist_from_debian_files(tmp_path, debian_dir):
    root = tmp_path / "data"
    raw = install.ensure_fashion_mnist(root, debian_dir=debian_dir)
    assert sorted(p.name for p in raw.iterdir()) == sorted(install.FASHION_FILES)
    x, y = datasets.load_fashion_mnist(root)
    assert x.shape == (50, 1, 28, 28) and x.dtype == torch.uint8
    assert y.tolist() == [i % 10 for i in range(30)] + [i % 10 for i in range(20)]


def test_fashion_mnist_missing_lists_three_ways(tmp_path):
    with pytest.raises(ConfigError, match="apt-get install dataset-fashion-mnist.*download.*idx files"):
        install.ensure_fashion_mnist(tmp_path, debian_dir=tmp_path / "nowhere")


def test_cifar_loader_reads_torchvision_format(tmp_path, monkeypatch):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for name, n in [(f"data_batch_{i}", 4) for i in range(1, 6)] + [("test_batch", 6)]:
        with open(folder / name, "wb") as f:
            pickle.dump({"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), "labels": list(range(n))}, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [str(i) for i in range(10)]}, f)
    # torchvision checks md5 sums of the real files; skip that for the fake ones
    import torchvision.datasets.cifar as tv_cifar
    monkeypatch.setattr(tv_cifar, "check_integrity", lambda *a, **k: True)
    x, y = datasets.load_cifar("cifar10", tmp_path)
    assert x.shape == (26, 3, 32, 32) and x.dtype == torch.uint8
    assert len(y) == 26


def test_cifar_missing_is_a_one_line_error(tmp_path):
    p = parse_profile({"data": {"dataset": "cifar10", "root": str(tmp_path)}})
    with pytest.raises(ConfigError, match="CIFAR-10 not found"):
        datasets.check_data_available(p, tmp_path)


def test_image_folder_loader(tmp_path):
    root = tmp_path / "stanford_dogs" / "Images"
    for c, breed in enumerate(["n1-Chihuahua", "n2-Beagle"]):
        (root / breed).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((40, 50, 3), 40 * c + i, np.uint8)).save(root / breed / f"{i}.jpg")
    assert datasets.stanford_dogs_dir(tmp_path) == root
    x, y, classes = datasets.read_image_folder(root, 16)
    assert x.shape == (6, 3, 16, 16) and classes == ("n1-Chihuahua", "n2-Beagle")
    assert y.tolist() == [0, 0, 0, 1, 1, 1]
    p = parse_profile({"data": {"dataset": "stanford_dogs", "root": str(tmp_path), "image_size": 16},
                       "model": {"arch": "resnet50"}, "ood": {"gan": {"n_images": 0}}})  # the GAN makes 28/32 px only
    pool = datasets.load_pool(p, tmp_path)
    assert len(pool) == 6 and pool.info.n_classes == 2
    with pytest.raises(ConfigError, match="image folder not found"):
        datasets.read_image_folder(tmp_path / "nope", 16)


def test_splits_are_disjoint_stratified_and_seeded():
    labels = np.repeat(np.arange(10), 100)
    sizes = {"a": 200, "b": 300, "c": 0, "d": 100}
    parts = splits.make_splits(labels, sizes, seed=3)
    assert {k: len(v) for k, v in parts.items()} == sizes
    splits.assert_disjoint(parts)
    assert np.all(np.bincount(labels[parts["a"]], minlength=10) == 20)
    again = splits.make_splits(labels, sizes, seed=3)
    other = splits.make_splits(labels, sizes, seed=4)
    assert all(np.array_equal(parts[k], again[k]) for k in parts)
    assert not np.array_equal(parts["a"], other["a"])


def test_split_sizes_larger_than_pool():
    with pytest.raises(ConfigError, match="splits.*add up to 1,100.*lower splits.b"):
        splits.make_splits(np.zeros(1000, int), {"a": 100, "b": 1000}, seed=0)


def test_overlap_is_caught():
    with pytest.raises(ValueError, match="a and b overlap"):
        splits.assert_disjoint({"a": np.array([1, 2]), "b": np.array([2, 3])})


def test_save_and_load_splits(tmp_path):
    pool = datasets.Pool(torch.zeros(10, 1, 4, 4, dtype=torch.uint8), torch.arange(10) % 2,
                         DATASET_INFO["fashion_mnist"], {"dataset": "x"})
    parts = {"target_train": np.array([0, 1]), "target_heldout": np.array([2, 3])}
    splits.save_splits(tmp_path, parts, pool, seed=1)
    back = splits.load_splits(tmp_path)
    assert set(back) == set(parts) and np.array_equal(back["target_heldout"], [2, 3])
    assert (tmp_path / "pool.json").is_file()
    with pytest.raises(FileNotFoundError, match="run notebooks/01_data_prep.ipynb first"):
        splits.load_splits(tmp_path / "empty")


def test_to_input_normalises():
    info = DATASET_INFO["fashion_mnist"]
    x = torch.full((2, 1, 3, 3), 255, dtype=torch.uint8)
    out = datasets.to_input(x, info)
    assert torch.allclose(out, torch.full_like(out, (1 - info.mean[0]) / info.std[0]))


def test_cifar100_svhn_stl10_loaders(tmp_path, monkeypatch):
    """Each torchvision loader on a few images written in its own on-disk format."""
    import scipy.io
    import torchvision.datasets.cifar as tv_cifar
    import torchvision.datasets.stl10 as tv_stl10
    import torchvision.datasets.svhn as tv_svhn
    for mod in (tv_cifar, tv_svhn, tv_stl10):  # md5 sums are those of the real files
        monkeypatch.setattr(mod, "check_integrity", lambda *a, **k: True)
    rng = np.random.default_rng(2)
    c100 = tmp_path / "cifar-100-python"
    c100.mkdir()
    for name, n in (("train", 5), ("test", 3)):
        with open(c100 / name, "wb") as f:
            pickle.dump({"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), "fine_labels": [7] * n}, f)
    with open(c100 / "meta", "wb") as f:
        pickle.dump({"fine_label_names": [str(i) for i in range(100)]}, f)
    x, y = datasets.load_cifar("cifar100", tmp_path)
    assert x.shape == (8, 3, 32, 32) and y.tolist() == [7] * 8

    scipy.io.savemat(tmp_path / "test_32x32.mat", {"X": rng.integers(0, 256, (32, 32, 3, 4), dtype=np.uint8),
                                                   "y": np.array([[1], [2], [10], [3]])})
    x, y = datasets.load_svhn(tmp_path)
    assert x.shape == (4, 3, 32, 32) and (y == -1).all()

    stl = tmp_path / "stl10_binary"
    stl.mkdir()
    rng.integers(0, 256, (4, 3, 96, 96), dtype=np.uint8).tofile(stl / "test_X.bin")
    np.array([1, 8, 3, 10], dtype=np.uint8).tofile(stl / "test_y.bin")  # 8 = monkey (1-based)
    x, y = datasets.load_stl10(tmp_path)
    assert x.shape == (3, 3, 96, 96)
    assert y.tolist() == [0, 1, 9]  # airplane, car → CIFAR automobile (1), truck; the monkey is gone


def test_unlabelled_image_folder_any_layout_with_limit(tmp_path):
    from PIL import Image
    rng = np.random.default_rng(0)
    (tmp_path / "sub").mkdir()
    arrays = [rng.integers(0, 256, (10, 10, 3), dtype=np.uint8) for _ in range(3)]
    for i, a in enumerate(arrays):
        Image.fromarray(a).save(tmp_path / ("sub" if i == 2 else ".") / f"img{i}.png")
    (tmp_path / "notes.txt").write_text("not an image")
    rgb, y, classes = datasets.read_image_folder(tmp_path, size=10, channels=3, labelled=False)
    assert rgb.shape == (3, 3, 10, 10) and rgb.dtype == torch.uint8 and classes == ()
    assert (y == -1).all()
    assert torch.equal(rgb[0], torch.from_numpy(arrays[0]).permute(2, 0, 1))
    grey, _, _ = datasets.read_image_folder(tmp_path, size=8, channels=1, labelled=False, limit=2, seed=0)
    assert grey.shape == (2, 1, 8, 8)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match="ood.fake_folder: no images found"):
        datasets.read_image_folder(empty, size=8, channels=1, labelled=False, key="ood.fake_folder")
    with pytest.raises(ConfigError, match="image folder not found"):
        datasets.read_image_folder(tmp_path / "missing", size=8, channels=1, labelled=False)


def test_the_schema_reads_dataset_names_and_native_sizes_from_the_catalog():
    assert config.DATASETS == tuple(DATASET_INFO)
    assert all(name == info.name for name, info in DATASET_INFO.items())
    dogs = parse_profile({"name": "d", "data": {"dataset": "stanford_dogs"}, "ood": {"gan": {"n_images": 0}}})
    assert datasets.dataset_info(dogs).size == DATASET_INFO["stanford_dogs"].size == 224
    with pytest.raises(ConfigError, match="ood.gan.n_images: the GAN makes 28 or 32 px images, not 224 px"):
        parse_profile({"name": "d", "data": {"dataset": "stanford_dogs"}})
