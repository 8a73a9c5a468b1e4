"""Notebook 00, the lesson: a run never executes it, its links lead to the numbered series, and it runs on its own
(no store, no outputs folder, nothing written) in under a minute, drawing every figure it promises."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from mia_nb.config import load_profile
from mia_nb.runner.plan import LESSON, Role, list_notebooks, plan, role

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "00_membership_inference_in_ten_minutes.ipynb"
SKIPPED = {".git", ".venv", "__pycache__", ".pytest_cache", ".ipynb_checkpoints"}  # not the study's files
FIGURE_CALLS = ("plt.subplots(", "plt.figure(", "score_distributions(")  # a cell with one of these draws a figure


def repository_files() -> dict[str, tuple[int, int]]:
    """Every file and folder under the repository (but SKIPPED) with its modification time and size."""
    found: dict[str, tuple[int, int]] = {}
    for folder, subfolders, files in os.walk(REPO):
        subfolders[:] = [d for d in subfolders if d not in SKIPPED]
        for name in subfolders + files:
            path = Path(folder) / name
            info = path.lstat()
            found[str(path.relative_to(REPO))] = (info.st_mtime_ns, info.st_size if path.is_file() else 0)
    return found


def test_the_lesson_is_a_lesson_that_no_run_executes(tmp_path):
    assert role(NOTEBOOK) == Role(LESSON)
    jobs = plan(list_notebooks(), load_profile(REPO / "params" / "smoke.yaml"), tmp_path / "smoke").jobs()
    assert jobs and NOTEBOOK not in {nb for nb, _, _ in jobs}


def test_the_lesson_links_every_notebook_of_the_series():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    linked = re.findall(r"\]\(([^)\s]+\.ipynb)\)", text)
    series = [p.name for p in list_notebooks() if role(p).stage != LESSON]
    assert linked == series, "link the numbered notebooks, in order, from the lesson's last section"


def test_the_lesson_uses_no_store_and_no_outputs_folder():
    sources = "\n".join(c.source for c in nbformat.read(NOTEBOOK, as_version=4).cells if c.cell_type == "code")
    for name in ("open_study", "mia_nb.store", "mia_nb.study", "outputs_root", "savefig", "save_figure", "to_csv"):
        assert name not in sources, name


@pytest.mark.slow  # starts a kernel and trains three tiny models: about 15 s on 2 cores
def test_the_lesson_runs_alone_in_a_minute_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.delenv("MPLBACKEND", raising=False)  # conftest's Agg would keep the kernel from showing figures
    nb = nbformat.read(NOTEBOOK, as_version=4)
    before = repository_files()
    started = time.perf_counter()
    NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    seconds = time.perf_counter() - started
    assert seconds < 60, f"the lesson promises under a minute; it took {seconds:.0f} s"
    after = repository_files()
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    assert not changed, f"written under the repository while the lesson ran: {changed[:10]}"
    assert not any(tmp_path.iterdir()), "the lesson wrote into its working folder"

    code = [c for c in nb.cells if c.cell_type == "code"]
    outputs = [o for c in code for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    for cell in code:
        if any(call in cell.source for call in FIGURE_CALLS):
            assert any("image/png" in o.get("data", {}) for o in cell.outputs), cell.source[:200]
    shows = [o.text for c in code if "this run shows" in c.source for o in c.outputs
             if o.output_type == "stream" and o.name == "stdout"]
    assert len(shows) == sum("this run shows" in c.source for c in code)
    assert all(t.startswith("this run shows:") and "nan" not in t for t in shows), shows
