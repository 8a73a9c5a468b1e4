"""The notebooks as a person opens them in JupyterLab, with nothing injected (issue 21): one seed, the profile's
first, in the folder the runner gives that seed; the claims notebook over the seeds that ran; progress while a
model trains; the engine's workers stopped after interactive training; the repository's notebooks untouched."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from mia_nb.config import EngineConfig, load_profile, seeds_of
from mia_nb.layout import CLAIMS_TABLE, HEADLINES_TABLE, SAMPLES, seed_folder
from mia_nb.models import jobs
from mia_nb.models.engine import HEADLESS
from mia_nb.runner.plan import LESSON, list_notebooks, plan, role
from mia_nb.study import Study, open_study, open_summary, run_command, seeds_with_samples

from conftest import loky_workers

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"


def two_seeds(folder: Path, name: str = "lab2", seeds: tuple[int, int] = (0, 1)) -> Path:
    """The smoke profile with two seeds (so that each seed gets its own folder), written into `folder`."""
    profile = yaml.safe_load((REPO / "params" / "smoke.yaml").read_text())
    profile.update(name=name, seed=seeds[0], seeds=list(seeds))
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(profile, sort_keys=False))
    return path


def parameters_cell(notebook: Path) -> str:
    """The source of a notebook's cell tagged `parameters`."""
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    found = ["".join(c["source"]) for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(found) == 1, notebook.name
    return found[0]


def run_notebooks() -> list[Path]:
    """The numbered notebooks a run executes (not the lesson)."""
    return [nb for nb in list_notebooks() if role(nb).stage != LESSON]


def test_the_parameters_cell_reads_the_profile_and_outputs_from_the_environment(monkeypatch, tmp_path):
    """`make lab PARAMS=...` sets MIA_NB_PARAMS; per-seed notebooks default to the first seed (None), and the
    summary notebook has no seed at all."""
    monkeypatch.setenv("MIA_NB_PARAMS", str(tmp_path / "p.yaml"))
    monkeypatch.setenv("MIA_NB_OUTPUTS", str(tmp_path / "out"))
    for nb in run_notebooks():
        scope: dict = {}
        exec(parameters_cell(nb), scope)  # noqa: S102 - the committed cell, run as JupyterLab would
        assert scope["params_file"] == str(tmp_path / "p.yaml"), nb.name
        assert scope["outputs_root"] == str(tmp_path / "out"), nb.name
        if role(nb).stage == "summary":
            assert "seed" not in scope, nb.name
        else:
            assert scope["seed"] is None, nb.name
            assert "first seed" in parameters_cell(nb), nb.name  # the cell says which seed it runs
    monkeypatch.delenv("MIA_NB_PARAMS")
    monkeypatch.delenv("MIA_NB_OUTPUTS")
    scope = {}
    exec(parameters_cell(run_notebooks()[0]), scope)  # noqa: S102
    assert (scope["params_file"], scope["outputs_root"]) == ("../params/default.yaml", "../outputs")


def test_opened_directly_a_notebook_writes_where_the_runner_writes_the_first_seed(tmp_path):
    prof = two_seeds(tmp_path)
    profile = load_profile(prof)
    base = tmp_path / "out" / profile.name
    runner = {seed: folder for chain in plan(run_notebooks(), profile, base).per_seed for _, seed, folder in chain}
    for seed in (None, -1):  # None: the committed cell; -1: what older copies of the cell say
        study = open_study(prof, tmp_path / "out", seed)
        assert study.seed == 0 and study.dir == runner[0] == seed_folder(base, 0)
        assert study.results_dir == seed_folder(base / "results", 0)
        assert study.figures_dir == seed_folder(base, 0) / "figures"
    assert open_study(prof, tmp_path / "out", 1).dir == runner[1]
    one = tmp_path / "one.yaml"  # a one-seed profile: the runner's folder is the profile's own
    one.write_text((REPO / "params" / "smoke.yaml").read_text())
    study = open_study(one, tmp_path / "out")
    assert study.dir == tmp_path / "out" / "smoke" and study.results_dir == study.dir / "results"


def test_the_summary_context_lists_the_seeds_that_ran_and_names_the_command_for_the_others(tmp_path):
    prof = two_seeds(tmp_path)
    summary = open_summary(prof, tmp_path / "out")
    assert summary.results_dir == summary.base / "results" and summary.figures_dir == summary.base / "figures"
    assert seeds_with_samples(summary) == ({}, [0, 1])
    samples = seed_folder(summary.base, 1) / SAMPLES
    samples.mkdir(parents=True)
    np.savez(samples / "vanilla.npz", x=np.zeros(2))
    assert seeds_with_samples(summary) == ({1: samples}, [0])
    line = run_command(prof, tmp_path / "out")
    assert line.startswith("python -m mia_nb run --params ") and str(prof) in line and str(tmp_path / "out") in line
    assert "--outputs" not in run_command(REPO / "params" / "smoke.yaml", REPO / "outputs")
    assert "params/smoke.yaml" in run_command(REPO / "params" / "smoke.yaml")  # relative to the repository


def test_one_model_trained_from_a_notebook_shows_a_bar_per_epoch(tiny_study, monkeypatch, capsys):
    """Interactive: a bar per epoch with the loss and the held-out accuracy; headless: the bar over jobs only."""
    monkeypatch.delenv(HEADLESS, raising=False)
    jobs.trained(tiny_study, "target")
    err = capsys.readouterr().err
    assert "target · vanilla" in err and "epoch" in err and "heldout=0." in err and "loss=" in err
    monkeypatch.setenv(HEADLESS, "1")
    jobs.trained(tiny_study, "shadow")
    err = capsys.readouterr().err
    assert "training · seed 3" in err and "heldout=" not in err


def _loky_children() -> list[int]:
    """This process's child processes that are loky workers (not the resource trackers, which stay)."""
    pids = []
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        try:
            pids += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            continue
    return loky_workers(pids)


@pytest.mark.slow  # starts worker processes
def test_several_models_from_a_notebook_release_the_workers(tiny_study, monkeypatch, capsys):
    """Interactive training of two models: a bar over jobs (with its ETA), then no idle worker is left holding
    memory (loky would keep them five minutes)."""
    monkeypatch.delenv(HEADLESS, raising=False)
    profile = dataclasses.replace(tiny_study.profile, engine=EngineConfig(workers=2))
    study = Study(profile, tiny_study.base.parent, seed=tiny_study.seed, pool=tiny_study.pool)
    jobs.ensure(study, [jobs.ModelRequest("target"), jobs.ModelRequest("shadow")])
    assert "2/2" in capsys.readouterr().err
    deadline = time.time() + 10
    while _loky_children() and time.time() < deadline:
        time.sleep(0.1)
    assert not _loky_children()


def _digest(paths: list[Path]) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}


def _tree(folder: Path) -> dict[str, str]:
    """Every file under `folder` with its content hash."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _git_status(folder: Path) -> str | None:
    try:
        proc = subprocess.run(["git", "status", "--porcelain", "--", str(folder)], cwd=REPO, capture_output=True,
                              text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout if proc.returncode == 0 else None


@pytest.mark.slow  # a two-seed smoke run, then every notebook once more, as JupyterLab runs them
def test_every_notebook_opened_directly_after_a_run(tmp_path, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    prof = two_seeds(tmp_path)
    out = tmp_path / "outputs"
    profile = load_profile(prof)
    first, other = seeds_of(profile)
    base = out / profile.name
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    proc = subprocess.run([sys.executable, "-m", "mia_nb", "run", "--params", str(prof), "--outputs", str(out)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=2400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    summary_tables = {f"{CLAIMS_TABLE}.csv", f"{HEADLINES_TABLE}.csv"}  # the claims notebook's own, rewritten
    aggregate = sorted(p for p in (base / "results").glob("*.csv") if p.name not in summary_tables)
    assert {"attacks.csv", "variants.csv", "models.csv"} <= {p.name for p in aggregate}
    before = _digest(aggregate)
    other_seed = _tree(seed_folder(base, other))
    committed, status = _tree(NOTEBOOKS), _git_status(NOTEBOOKS)
    started = time.time()

    monkeypatch.setenv("MIA_NB_PARAMS", str(prof))  # what `make lab PARAMS=...` sets; nothing is injected
    monkeypatch.setenv("MIA_NB_OUTPUTS", str(out))
    monkeypatch.delenv(HEADLESS, raising=False)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    texts: dict[str, str] = {}
    for path in list_notebooks():  # in order, the lesson first, as a newcomer goes through them
        nb = nbformat.read(str(path), as_version=4)
        NotebookClient(nb, timeout=1800, kernel_name="python3",
                       resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
        texts[path.name] = "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                                     for o in c.get("outputs", []) if o.get("output_type") == "stream")

    seed_dir = seed_folder(base, first)
    for path in run_notebooks():
        if role(path).stage == "summary":
            continue
        number = path.name[:2]
        fresh = [p for p in (seed_dir / "figures").glob(f"{number}_*.png") if p.stat().st_mtime >= started]
        assert fresh, f"{path.name} wrote no figure under {seed_dir}"
    assert (seed_dir / "data" / "splits.npz").stat().st_mtime >= started
    assert all(p.stat().st_mtime >= started for p in (seed_dir / SAMPLES).glob("vanilla*.npz"))
    assert not (base / "data").exists() and not (base / SAMPLES).exists()  # nothing per-seed in the run's folder
    assert _tree(seed_folder(base, other)) == other_seed  # the other seed is not touched
    assert _digest(aggregate) == before  # the runner's mean-over-seeds tables are untouched

    claims = next(p.name for p in run_notebooks() if role(p).stage == "summary")
    assert f"2 seed(s) [{first}, {other}]" in texts[claims], texts[claims][:2000]
    assert (base / "results" / f"{CLAIMS_TABLE}.csv").stat().st_mtime >= started

    assert _tree(NOTEBOOKS) == committed  # nothing written into notebooks/, no notebook changed
    assert _git_status(NOTEBOOKS) == status  # a clean checkout stays clean
