"""Fashion-MNIST's installer: the data folder check, Debian's `dataset-fashion-mnist` via apt-get, torchvision.

Nothing is written into a data folder that does not exist yet, except the repository's own data/, nor into
one that holds other files and no FashionMNIST/ folder. The four raw files are checked against their idx
headers (a truncated or zero-byte file is named before any work; `python -m mia_nb data` reinstalls it).
"""

from __future__ import annotations

import gzip
import math
import os
import shlex
import shutil
import struct
import subprocess
import sys
from pathlib import Path

from torchvision.datasets import FashionMNIST

from mia_nb import REPO_ROOT
from mia_nb.config import ConfigError
from mia_nb.store import atomic_write

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
FASHION_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                 "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")  # torchvision's FashionMNIST/raw files


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


def idx_problem(path: Path) -> str | None:
    """What is wrong with an idx file (torchvision's raw Fashion-MNIST format), or None: its header names the type
    (unsigned bytes) and the dimensions, so its size is known; a truncated, padded or zero-byte file fails."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(4)
            if len(head) < 4:
                return f"{size:,} bytes, too short for an idx header"
            if head[:3] != b"\x00\x00\x08" or head[3] not in (1, 3):
                return "not an idx file of unsigned bytes (its first bytes are wrong)"
            dims = struct.unpack(f">{head[3]}I", f.read(4 * head[3]).ljust(4 * head[3], b"\x00"))
    except OSError as err:
        return f"cannot be read: {err.strerror or err}"
    expected = 4 + 4 * len(dims) + math.prod(dims)
    if size != expected:
        shape = " x ".join(f"{d:,}" for d in dims)
        return f"{size:,} bytes, its header ({shape}) says {expected:,}: truncated or damaged"
    return None


def damaged_files(raw: Path) -> dict[Path, str]:
    """The Fashion-MNIST raw files present under `raw` that fail `idx_problem`, with the problem."""
    found = {raw / name: idx_problem(raw / name) for name in FASHION_FILES if (raw / name).is_file()}
    return {path: problem for path, problem in found.items() if problem}


def check_install_target(root: Path, repo_root: Path = REPO_ROOT, key: str = "data.root") -> None:
    """Fashion-MNIST is written only into the repository's data/, an empty folder, or one that already holds
    a FashionMNIST/ folder: a data.root that names a folder of something else (a typo, `../../etc`) is not
    filled with 55 MB of images."""
    root = Path(root)
    if not root.exists() or root.resolve() == (Path(repo_root) / "data").resolve() or (root / "FashionMNIST").is_dir():
        return  # a folder that does not exist yet is `check_data_root`'s to refuse or allow
    try:
        entries = sorted(p.name for p in root.iterdir())
    except OSError as err:
        raise ConfigError(f"{key}: cannot read the folder {root} ({err.strerror or err})") from None
    if entries:
        shown = ", ".join(entries[:3]) + (f" and {len(entries) - 3:,} more" if len(entries) > 3 else "")
        where = root.resolve()
        raise ConfigError(f"{key}: {where} holds other files ({shown}) and no FashionMNIST/ folder; Fashion-MNIST "
                          f"is installed only into an empty folder or one that holds it (name such a folder, e.g. "
                          f"{Path(repo_root) / 'data'}, or create {where / 'FashionMNIST'} if you mean this one)")


def ensure_fashion_mnist(root: Path, download: bool = False, debian_dir: Path = DEBIAN_FASHION_MNIST,
                         repair: bool = False, key: str = "data.root", repo_root: Path = REPO_ROOT) -> Path:
    """Make sure torchvision's FashionMNIST/raw files exist whole under `root`; return the raw folder.

    Filled, in order, from what is already there, from Debian's `dataset-fashion-mnist` files, or
    (when `download`) by torchvision; otherwise a one-line error lists the three ways. A file whose size
    does not match its header (truncated, zero bytes) is a one-line error naming it and the command that
    reinstalls it, or with `repair` (that command) moved aside to `<name>.corrupt` and installed again.
    Writes only where `check_install_target` allows.
    """
    raw = Path(root) / "FashionMNIST" / "raw"
    damaged = damaged_files(raw)
    if damaged and not repair:
        path, problem = next(iter(damaged.items()))
        raise ConfigError(f"{key}: {path} is damaged ({problem}); reinstall it with: "
                          f"python -m mia_nb data --root {shlex.quote(str(root))}")
    for path, problem in damaged.items():
        aside = path.with_name(path.name + ".corrupt")
        os.replace(path, aside)
        print(f"data: {path} is damaged ({problem}); moved aside to {aside.name}, installing it again",
              file=sys.stderr, flush=True)
    if all((raw / name).is_file() for name in FASHION_FILES):
        return raw
    if all((debian_dir / f"{name}.gz").is_file() for name in FASHION_FILES):
        check_install_target(root, repo_root, key)
        raw.mkdir(parents=True, exist_ok=True)
        for name in FASHION_FILES:
            def unzip(tmp: str, src: Path = debian_dir / f"{name}.gz") -> None:
                with gzip.open(src, "rb") as fin, open(tmp, "wb") as fout:
                    shutil.copyfileobj(fin, fout)
            atomic_write(raw / name, unzip)
        return raw
    if download:
        check_install_target(root, repo_root, key)
        FashionMNIST(str(root), train=True, download=True)
        FashionMNIST(str(root), train=False, download=True)
        return raw
    raise ConfigError(
        f"{key}: Fashion-MNIST not found in {raw}; install it with `apt-get install dataset-fashion-mnist`, "
        f"or set data.download: true (needs internet), or copy the four idx files into {raw}")


def install_fashion_mnist(root: Path, download: bool = True, debian_dir: Path = DEBIAN_FASHION_MNIST,
                          repo_root: Path | None = None, key: str = "--root") -> Path:
    """Fill `<root>/FashionMNIST/raw` with Fashion-MNIST: Debian's package via apt-get where that works,
    else torchvision.

    `root` must be an existing folder or the repository's data/ (see `check_data_root`), and empty or
    already holding FashionMNIST/ (`check_install_target`), so a mistyped root is refused before anything
    is written. Damaged raw files are moved aside and installed again. Raises a one-line ConfigError
    listing the three ways when neither source works.
    """
    root = check_data_root(Path(root), repo_root or REPO_ROOT, key)
    check_install_target(root, repo_root or REPO_ROOT, key)
    if not all((debian_dir / f"{n}.gz").is_file() for n in FASHION_FILES) and shutil.which("apt-get"):
        sudo = [] if os.geteuid() == 0 else (["sudo", "-n"] if shutil.which("sudo") else None)
        if sudo is not None:
            env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
            for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "dataset-fashion-mnist"]):
                if subprocess.run(sudo + cmd, env=env, capture_output=True).returncode != 0:
                    break
    where = {"repair": True, "key": key, "repo_root": repo_root or REPO_ROOT}
    try:
        return ensure_fashion_mnist(root, download=False, debian_dir=debian_dir, **where)
    except ConfigError:
        if not download:
            raise
    try:
        return ensure_fashion_mnist(root, download=True, debian_dir=debian_dir, **where)
    except Exception as err:  # no internet
        raise ConfigError(
            f"Fashion-MNIST could not be installed ({type(err).__name__}): run `apt-get install dataset-fashion-mnist`, "
            f"or allow torchvision's download (needs internet), or copy the four idx files into "
            f"{Path(root) / 'FashionMNIST' / 'raw'}") from None
