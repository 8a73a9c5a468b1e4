"""The datasets a profile may name, and their facts: channels, native size, classes, normalisation.

Plain data (no torch), so the profile schema (`mia_nb.config.DATASETS`, the native size that
`data.image_size: 0` means) reads it from here; the loaders are in `mia_nb.data.datasets`.
"""

from __future__ import annotations

from dataclasses import dataclass

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class DatasetInfo:
    """What a model needs to know about a dataset."""

    name: str
    channels: int
    size: int  # the native image size (`data.image_size` may resize)
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
