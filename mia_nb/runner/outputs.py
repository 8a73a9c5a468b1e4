"""The outputs folder before a run: outside the source tree, writable, with room for the profile's files (a
rough estimate), and what a full disk or an unwritable folder met later says. Every refusal is one line
naming `--outputs`."""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from pathlib import Path

import torch

from mia_nb import REPO_ROOT
from mia_nb.config import ConfigError, Profile, seeds_of
from mia_nb.data.datasets import dataset_info
from mia_nb.models.networks import build_model

DEFAULT_OUTPUTS = "outputs"  # the one folder of the checkout a run may write into (REPO_ROOT / "outputs")
FULL = (errno.ENOSPC, errno.EDQUOT)  # "no space left", "quota exceeded"
UNWRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOENT, errno.ENOTDIR)
MB = 1024 ** 2
FIXED_PER_SEED = 40 * MB  # executed notebooks, figures, the HTML report, result tables: about 10 MB on smoke
BYTES_PER_SCORE = 4 * 8  # float32 probabilities, logits, scores and the samples' arrays, several copies each
OOD_POOLS = 12  # non-member pools of a run (held-out, corruptions, noise, other datasets, ...), at most about


class OutputsError(ConfigError):
    """The outputs folder cannot take the run: inside the source tree, not writable, or too full."""


def check_outside_source(outputs_root: Path, repo_root: Path = REPO_ROOT) -> None:
    """Refuse an outputs folder inside the checkout other than its outputs/ (the default): a run must not
    write results among the notebooks, the package or the profiles."""
    root, repo = Path(outputs_root).resolve(), Path(repo_root).resolve()
    default = repo / DEFAULT_OUTPUTS
    if not (root == repo or repo in root.parents) or root == default or default in root.parents:
        return
    raise OutputsError(f"--outputs: {root} lies inside the source tree ({repo}); name a folder outside it, "
                       f"or one under {default} (the default)")


def model_bytes(profile: Profile) -> int:
    """Bytes of one stored model of the profile's architecture (its float32 parameters and buffers)."""
    info = dataset_info(profile)
    with torch.device("meta"):  # shapes only: nothing is allocated
        model = build_model(profile.model.arch, info.n_classes, info.channels, info.size)
    return 4 * sum(t.numel() for t in [*model.parameters(), *model.buffers()])


def space_needed(profile: Profile) -> int:
    """A rough estimate of the bytes a whole run of the profile writes: its stored models (every retrained pair
    and reference model), the model outputs and per-image arrays on its pools, the GAN's images and a fixed
    allowance for notebooks, figures and tables. Meant to catch a disk far too small, not to be exact."""
    seeds = seeds_of(profile)
    info = dataset_info(profile)
    c, d, r = profile.calibration, profile.defenses, profile.reference_models
    pairs = 1 + len(c.label_smoothing) + len(d.weight_decay) + len(d.dp_epsilons) + (1 if d.dp_epsilons else 0)
    with_refs = len(r.seeds or seeds[:1]) if r.k else 0
    models = 2 * pairs * len(seeds) + r.k * with_refs
    variants = pairs + len(c.temperatures) + len(c.llla.arms) + 1
    images = sum(vars(profile.splits).values()) + OOD_POOLS * profile.ood.max_pool_size
    outputs = images * info.n_classes * BYTES_PER_SCORE * variants
    gan = profile.ood.gan.n_images * (info.channels * info.size ** 2 + 1024)
    return int(models * model_bytes(profile) * 1.25 + len(seeds) * (outputs + gan + FIXED_PER_SEED))


def _existing(path: Path) -> Path:
    """`path` or its nearest existing parent."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def folder_bytes(folder: Path) -> int:
    """Bytes of the files under `folder` (0 when it does not exist)."""
    total = 0
    for dirpath, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
            except OSError:
                continue
    return total


def size_text(n: float) -> str:
    """Bytes as a short human-readable amount (binary units)."""
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:,.0f} {unit}" if unit == "bytes" else f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n:,.1f} TiB"  # pragma: no cover - the loop returns


def free_bytes(path: Path) -> int:
    """Free bytes on the file system that holds `path` (or would hold it)."""
    return shutil.disk_usage(_existing(Path(path))).free


def full_message(outputs_root: Path, profile: Profile, base: Path) -> str:
    """The one line for a full disk: where, how much is free, roughly how much the run needs."""
    need = max(0, space_needed(profile) - folder_bytes(base))
    return (f"--outputs: no space left on the disk that holds {outputs_root} ({size_text(free_bytes(outputs_root))} "
            f"free; a run of {profile.name!r} needs about {size_text(need)} more, a rough estimate); free some space "
            f"or name another --outputs folder")


def check_outputs(outputs_root: Path, base: Path, profile: Profile) -> None:
    """Before any work: the outputs folder is outside the source tree, `base` (<outputs>/<profile>) can be created
    and written, and its disk has room for the run (`space_needed`, less what `base` already holds). Writes and
    removes one probe file; the folders it made are removed again when the disk is too full."""
    check_outside_source(outputs_root)
    if outputs_root.exists() and not outputs_root.is_dir():
        raise OutputsError(f"--outputs: {outputs_root} is a file, not a folder (name a folder)")
    made = [p for p in (base, *base.parents) if not p.exists()]
    try:
        base.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-probe.", dir=base)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        if err.errno in FULL:
            _remove_empty(made)
            raise OutputsError(full_message(outputs_root, profile, base)) from None
        raise OutputsError(f"--outputs: cannot write into {base} ({err.strerror or err}); name a folder you can "
                           f"write to") from None
    need = space_needed(profile) - folder_bytes(base)
    free = free_bytes(base)
    if need > free:
        _remove_empty(made)
        raise OutputsError(f"--outputs: the disk that holds {outputs_root} has {size_text(free)} free, but a run of "
                           f"{profile.name!r} needs about {size_text(need)} more (a rough estimate); free some space "
                           f"or name another --outputs folder")


def _remove_empty(folders: list[Path]) -> None:
    """Remove the folders a refused check made (innermost first), if they are still empty."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return


def os_error_message(err: OSError, outputs_root: Path, profile: Profile, base: Path) -> str | None:
    """The one line for an OSError met while writing under the outputs folder, or None for another error."""
    if err.errno in FULL:
        return full_message(outputs_root, profile, base)
    where = Path(err.filename) if isinstance(err.filename, str) else None
    target, home = (where.resolve(), base.resolve()) if where is not None else (None, None)
    inside_outputs = target is not None and (target == home or home in target.parents)
    if err.errno in UNWRITABLE and inside_outputs:
        return f"--outputs: cannot write {where} ({err.strerror}); name a folder you can write to"
    return None
