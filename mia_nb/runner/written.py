"""What each notebook wrote: the sha256 of every file it wrote under data/, results/ and samples/ (the splits,
the result tables, the per-image arrays), recorded when it finishes and checked before a notebook counts as up
to date, so that a table damaged or edited since is noticed instead of being read as a result.

    <run folder>/notebooks/written.json   {"<path under the profile's folder>": {"sha256": ..., "by": [notebooks]}}

`by` names every notebook that wrote the file (a keyed table's rows come from several). A file that no longer
matches its hash is moved aside to `<name>.corrupt` and every notebook in `by` reruns; when one of them is not
selected by `--only`, the run stops before any work with one line naming the file and the command that rebuilds
it. The splits of a run from before these records are checked by loading them (`damaged_splits`).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from mia_nb.config import ConfigError
from mia_nb.data.splits import DamagedFile, load_splits
from mia_nb.layout import DATA, NOTEBOOKS, RESULTS, SAMPLES, seed_folder
from mia_nb.store import write_json

MANIFEST = "written.json"
WATCHED = (DATA, RESULTS, SAMPLES)  # the folders whose files later notebooks read back
CHUNK = 1 << 20


class NeedsRerun(ConfigError):
    """A damaged file whose writers this run does not select; `only` is the --only value that rebuilds it (the
    command line adds `--force` and the rest of the command)."""

    def __init__(self, message: str, only: str):
        self.only = only
        super().__init__(message)


@dataclass(frozen=True)
class Damage:
    """A recorded file that is missing or changed: its path, what is wrong, its run folder and its writers."""

    path: Path
    reason: str
    folder: Path
    by: tuple[str, ...]


def sha256(path: Path) -> str:
    """The sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def manifest_path(folder: Path) -> Path:
    """Where a run folder's record lives: `<folder>/notebooks/written.json`."""
    return Path(folder) / NOTEBOOKS / MANIFEST


def load(folder: Path) -> dict[str, dict]:
    """A run folder's record ({} when there is none or it cannot be read: then nothing is checked)."""
    try:
        data = json.loads(manifest_path(folder).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items()
            if isinstance(v, dict) and isinstance(v.get("sha256"), str) and isinstance(v.get("by"), list)}


def watched(base: Path, folder: Path, seed: int) -> list[Path]:
    """The folders a job's notebook writes its files into: its run folder's data/, results/ and samples/, and
    for one seed of several, results/seed_<s>/ under the profile's folder."""
    dirs = [Path(folder) / name for name in WATCHED]
    if seed >= 0 and Path(folder) != Path(base):
        dirs.append(seed_folder(Path(base) / RESULTS, seed))
    return dirs


def written_since(dirs: list[Path], t0: float) -> list[Path]:
    """The files directly in `dirs` modified at or after `t0` (temporary and moved-aside files left out)."""
    found = []
    for d in dirs:
        try:
            entries = list(os.scandir(d))
        except OSError:
            continue
        for e in entries:
            if e.name.startswith(".") or e.name.endswith(".corrupt") or not e.is_file(follow_symlinks=False):
                continue
            try:
                if e.stat(follow_symlinks=False).st_mtime >= t0:
                    found.append(Path(e.path))
            except OSError:
                continue
    return sorted(found)


def record(base: Path, folder: Path, seed: int, notebook: str, t0: float) -> list[Path]:
    """After `notebook` ran in `folder` (started at `t0`): record the sha256 of every file it wrote and add it to
    each file's writers. Returns the files recorded."""
    files = written_since(watched(base, folder, seed), t0)
    if not files:
        return files
    entries = load(folder)
    for path in files:
        key = path.relative_to(base).as_posix()
        by = sorted(set(entries.get(key, {}).get("by", [])) | {notebook})
        try:
            entries[key] = {"sha256": sha256(path), "by": by}
        except OSError:  # removed meanwhile: nothing to record
            entries.pop(key, None)
    write_json(manifest_path(folder), entries)
    return files


def check(base: Path, folders: list[Path]) -> list[Damage]:
    """Every recorded file of these run folders that is missing or whose sha256 changed since it was written."""
    found = []
    for folder in dict.fromkeys(Path(f) for f in folders):
        for key, entry in sorted(load(folder).items()):
            path = Path(base) / key
            if not path.is_file():
                reason = "is missing"
            else:
                try:
                    same = sha256(path) == entry["sha256"]
                    reason = "" if same else "changed (its sha256 differs from the one recorded)"
                except OSError as err:
                    reason = f"cannot be read ({err.strerror or err})"
            if reason:
                found.append(Damage(path, reason, Path(folder), tuple(entry["by"])))
    return found


def move_aside(damage: Damage, base: Path) -> None:
    """Heal: move the damaged file to `<name>.corrupt`, forget its record, and say so in one line on stderr."""
    aside = damage.path.with_name(damage.path.name + ".corrupt")
    if damage.path.exists():
        os.replace(damage.path, aside)
    entries = load(damage.folder)
    entries.pop(damage.path.relative_to(base).as_posix(), None)
    write_json(manifest_path(damage.folder), entries)
    moved = f"moved aside to {aside.name}, " if aside.exists() else ""
    names = ", ".join(name.removesuffix(".ipynb") for name in damage.by)
    print(f"healing: {damage.path} {damage.reason} since {names} wrote it; {moved}rerunning {names}",
          file=sys.stderr, flush=True)


def damaged_splits(folder: Path) -> str | None:
    """Why a run folder's data/splits.npz cannot be read (one line), or None when it reads or is absent."""
    if not (Path(folder) / DATA / "splits.npz").is_file():
        return None
    try:
        load_splits(Path(folder) / DATA)
    except DamagedFile as err:
        return str(err).split(";")[0]
    return None
