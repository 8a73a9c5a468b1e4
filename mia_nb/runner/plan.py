"""What a run executes: the notebooks, `--only`, each notebook's role, the jobs per seed, and up-to-date marks.

A notebook's role is written in its own top-level metadata, never derived from its number:

    "metadata": {"mia_nb": {"stage": "data" | "per_seed" | "summary", "seeds": "all" | "reference_models"}}

`data` notebooks run for every seed before the training phase; `per_seed` ones after it, for the seeds
`seeds` names (default `all`; `reference_models`: only the seeds the profile gives reference models);
`summary` ones run once, over all seeds, after every per-seed notebook. A `lesson` (notebook 00) is for reading
in JupyterLab: it uses no store and no outputs folder, and a run never executes it.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

import nbformat

from mia_nb import REPO_ROOT
from mia_nb.config import ConfigError, Profile, seeds_of
from mia_nb.layout import NOTEBOOKS, run_folder
from mia_nb.store import write_text
from mia_nb.versions import package_version

NOTEBOOK_DIR = REPO_ROOT / "notebooks"
NB_PATTERN = re.compile(r"^(\d\d)_.+\.ipynb$")
ROLE_KEY = "mia_nb"  # a notebook's top-level metadata key holding its role
STAGES = ("data", "per_seed", "summary")  # in the order a run goes through them
LESSON = "lesson"  # a stage no run executes: a self-contained lesson read in JupyterLab (notebook 00)
SEED_RULES = ("all", "reference_models")
FINGERPRINT_KEY = "mia_nb_fingerprint"  # in an executed copy's metadata, written only after it ran through

Job = tuple[Path, int, Path]  # (notebook, seed or -1 for the summary notebooks, run folder)


def list_notebooks(folder: Path = NOTEBOOK_DIR) -> list[Path]:
    """The numbered notebooks NN_name.ipynb in order."""
    return sorted(p for p in Path(folder).iterdir() if NB_PATTERN.match(p.name))


def select(notebooks: list[Path], only: str | None) -> list[Path]:
    """Filter by `--only`: '03', '01-03' or '01,04-05'; a one-line error for a bad selection."""
    if not only:
        return notebooks
    wanted: set[int] = set()
    for chunk in only.split(","):
        m = re.fullmatch(r"\s*(\d{1,2})\s*(?:-\s*(\d{1,2})\s*)?", chunk)
        if not m:
            raise ConfigError(f"--only: cannot read {chunk!r}; use e.g. 03, 01-03 or 01,04-05")
        lo = int(m.group(1))
        hi = int(m.group(2) or lo)
        if hi < lo:
            raise ConfigError(f"--only: the range {chunk.strip()!r} is reversed, got {only!r} "
                              f"(write the lower number first: {hi:02d}-{lo:02d})")
        wanted.update(range(lo, hi + 1))
    picked = [p for p in notebooks if int(p.name[:2]) in wanted]
    if not picked:
        raise ConfigError(f"--only: {only!r} matches no notebook")
    return picked


def only_value(names: list[str] | set[str]) -> str:
    """The --only value that selects these notebooks (by their numbers), e.g. "01" or "02,04-06"."""
    runs: list[list[int]] = []
    for n in sorted({int(name[:2]) for name in names}):
        if runs and n == runs[-1][-1] + 1:
            runs[-1].append(n)
        else:
            runs.append([n])
    return ",".join(f"{r[0]:02d}" if len(r) == 1 else f"{r[0]:02d}-{r[-1]:02d}" for r in runs)


def remaining_only(jobs: list[Job], selected: list[Path], only: str | None) -> str | None:
    """An --only value covering the notebooks of the jobs not yet finished (None: keep `only` as it was)."""
    if len({nb.name[:2] for nb, _, _ in jobs}) == len(selected):
        return only
    return only_value({nb.name for nb, _, _ in jobs})


@dataclass(frozen=True)
class Role:
    """A notebook's role in a run, from its metadata: its stage and the seeds it runs for."""

    stage: str
    seeds: str = "all"


def role(notebook: Path) -> Role:
    """The role in the notebook's top-level metadata; a one-line ConfigError when it is missing or unknown."""
    try:
        meta = json.loads(Path(notebook).read_text(encoding="utf-8")).get("metadata", {}).get(ROLE_KEY)
    except (OSError, ValueError, AttributeError) as err:
        raise ConfigError(f"{notebook}: cannot read the notebook ({type(err).__name__})") from None
    stage = meta.get("stage") if isinstance(meta, dict) else None
    if stage not in STAGES + (LESSON,):
        raise ConfigError(f"{notebook}: metadata {ROLE_KEY}.stage is {stage!r}; add "
                          f'"{ROLE_KEY}": {{"stage": "data" | "per_seed" | "summary" | "lesson"}} to the notebook\'s '
                          f'metadata')
    seeds = meta.get("seeds", "all")
    if seeds not in SEED_RULES:
        raise ConfigError(f"{notebook}: metadata {ROLE_KEY}.seeds is {seeds!r}; use one of {', '.join(SEED_RULES)}")
    return Role(stage, seeds)


def applies(role_: Role, profile: Profile, seed: int) -> bool:
    """Whether a notebook with this role runs for a seed (`seeds: reference_models`: only where the profile
    gives that seed reference models)."""
    if role_.seeds == "all":
        return True
    r = profile.reference_models
    return r.k > 0 and seed in (r.seeds or (seeds_of(profile)[0],))


@dataclass(frozen=True)
class Plan:
    """A run's jobs in the order of its phases: one chain per seed before training (`data`) and after it
    (`per_seed`, the longest chain first), then the `summary` chain once; `train`: whether the training
    phase runs (a `per_seed` notebook is selected, even one that applies to no seed)."""

    data: list[list[Job]]
    per_seed: list[list[Job]]
    summary: list[Job]
    train: bool

    def jobs(self) -> list[Job]:
        """Every job, in the order the phases run."""
        return [j for c in self.data for j in c] + [j for c in self.per_seed for j in c] + self.summary


def plan(notebooks: list[Path], profile: Profile, base: Path) -> Plan:
    """The jobs of the selected notebooks for every seed of the profile, by the notebooks' roles (a lesson gets
    none)."""
    seeds = seeds_of(profile)
    roles = {nb: role(nb) for nb in notebooks}
    staged = {stage: [nb for nb in notebooks if roles[nb].stage == stage] for stage in STAGES}
    folder = {seed: run_folder(base, seed, seeds) for seed in seeds}
    data = [[(nb, seed, folder[seed]) for nb in staged["data"]] for seed in seeds]
    per_seed = [[(nb, seed, folder[seed]) for nb in staged["per_seed"] if applies(roles[nb], profile, seed)]
                for seed in seeds]
    per_seed.sort(key=len, reverse=True)  # the longest chain (the seed with reference models) starts first
    return Plan(data, per_seed, [(nb, -1, base) for nb in staged["summary"]], bool(staged["per_seed"]))


def executed_copy(job: Job) -> Path:
    """Where a job's executed notebook is written: `<run folder>/notebooks/<name>`."""
    nb, _, folder = job
    return folder / NOTEBOOKS / nb.name


def source_of(notebook: Path) -> str:
    """What of a notebook decides what it computes, as canonical JSON: each cell's type, source and tags (the
    `parameters` tag is where papermill injects), the notebook's role and its kernel; not outputs, execution
    counts, cell ids or what an editor records (language_info, a kernel's display name, timings)."""
    try:
        nb = json.loads(Path(notebook).read_text(encoding="utf-8"))
        meta = nb.get("metadata", {})
        cells = [[c["cell_type"], "".join(c.get("source", "")), list(c.get("metadata", {}).get("tags", []))]
                 for c in nb["cells"]]
    except (OSError, ValueError, AttributeError, KeyError, TypeError) as err:
        raise ConfigError(f"{notebook}: cannot read the notebook ({type(err).__name__})") from None
    kernel = (meta.get("kernelspec") or {}).get("name")
    return json.dumps({"cells": cells, "role": meta.get(ROLE_KEY), "kernel": kernel}, sort_keys=True)


def fingerprint(notebook: Path, params: dict, profile_file: Path) -> str:
    """What an executed notebook is a function of, apart from the store: the notebook's source (`source_of`:
    cells, role and kernel, not outputs), its parameters, the profile file and every module of `mia_nb`."""
    h = hashlib.sha256()
    h.update(source_of(notebook).encode())
    h.update(json.dumps(params, sort_keys=True).encode())
    h.update(Path(profile_file).read_bytes())
    h.update(package_version().encode())
    return h.hexdigest()[:16]


def up_to_date(out: Path, print_: str) -> bool:
    """Whether the executed copy `out` ran through with this fingerprint."""
    try:
        return json.loads(Path(out).read_text(encoding="utf-8"))["metadata"].get(FINGERPRINT_KEY) == print_
    except (OSError, ValueError, KeyError):
        return False


def mark_up_to_date(out: Path, print_: str) -> None:
    """Record the fingerprint in the executed copy's metadata (atomically)."""
    nb = nbformat.read(str(out), as_version=4)
    nb.metadata[FINGERPRINT_KEY] = print_
    write_text(out, nbformat.writes(nb))
