"""Fashion-MNIST's installer: the data folder check, Debian's `dataset-fashion-mnist` via apt-get, torchvision.

Nothing is written into a data folder that does not exist yet, except the repository's own data/.
"""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

from . import REPO_ROOT
from .config import ConfigError
from .data import FASHION_FILES
from .store import atomic_write

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


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
