"""The papermill runner: selection, failure reporting, and the notebooks' committed form."""

from __future__ import annotations

import json
import time
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from mia_nb.config import ConfigError, load_profile
from mia_nb.runner.chains import NotebookFailed, side_by_side
from mia_nb.runner.cli import main
from mia_nb.runner.pipeline import run_study
from mia_nb.runner.plan import LESSON, ROLE_KEY, Role, list_notebooks, plan, role, select

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = list_notebooks()


def test_select():
    nbs = [Path(f"{i:02d}_x.ipynb") for i in range(1, 9)]
    assert [p.name[:2] for p in select(nbs, "01-03")] == ["01", "02", "03"]
    assert [p.name[:2] for p in select(nbs, "02,05-06")] == ["02", "05", "06"]
    assert select(nbs, None) == nbs
    with pytest.raises(ConfigError, match="--only"):
        select(nbs, "one")
    with pytest.raises(ConfigError, match="matches no notebook"):
        select(nbs, "42")


def test_every_notebook_has_a_role():
    """Each committed notebook names its stage in its metadata (a missing one is a one-line error at run
    start); the data notebooks come first in file order, as they run first; lessons (notebook 00, which no
    run executes) come before them."""
    stages = [role(p).stage for p in NOTEBOOKS]
    lessons = stages.count(LESSON)
    assert stages[:lessons] == [LESSON] * lessons
    stages = stages[lessons:]
    assert set(stages) == {"data", "per_seed", "summary"}
    assert stages[:stages.count("data")] == ["data"] * stages.count("data")


def test_a_notebook_without_a_role_is_named_in_one_line(tmp_path):
    nbdir = _stand_ins(tmp_path / "nbs", {"01_a.ipynb": "x = 1"})
    nb = nbformat.read(nbdir / "01_a.ipynb", as_version=4)
    del nb.metadata[ROLE_KEY]
    nbformat.write(nb, nbdir / "01_a.ipynb")
    with pytest.raises(ConfigError, match=r"01_a.ipynb: metadata mia_nb.stage is None") as info:
        role(nbdir / "01_a.ipynb")
    assert "\n" not in str(info.value)
    nb.metadata[ROLE_KEY] = {"stage": "per_seed", "seeds": "some"}
    nbformat.write(nb, nbdir / "01_a.ipynb")
    with pytest.raises(ConfigError, match="mia_nb.seeds is 'some'"):
        role(nbdir / "01_a.ipynb")


def test_roles_not_numbers_decide_the_phases(tmp_path):
    """A summary notebook numbered first still runs last and once; one marked for the reference-model seeds
    runs only for them (the profile's first seed here); seeds get their own folders."""
    sources = {"01_sum.ipynb": "", "02_prep.ipynb": "", "03_a.ipynb": "", "04_ref.ipynb": ""}
    nbdir = _stand_ins(tmp_path / "nbs", sources,
                       {"01_sum.ipynb": "summary", "02_prep.ipynb": "data"})
    nb = nbformat.read(nbdir / "04_ref.ipynb", as_version=4)
    nb.metadata[ROLE_KEY]["seeds"] = "reference_models"
    nbformat.write(nb, nbdir / "04_ref.ipynb")
    assert role(nbdir / "04_ref.ipynb") == Role("per_seed", "reference_models")
    base = tmp_path / "out" / "two"
    jobs = plan(list_notebooks(nbdir), load_profile(_two_seed_profile(tmp_path)), base)
    short = lambda chain: [(nb.name[:2], seed, folder.name) for nb, seed, folder in chain]  # noqa: E731
    assert [short(c) for c in jobs.data] == [[("02", 42, "seed_42")], [("02", 43, "seed_43")]]
    assert [short(c) for c in jobs.per_seed] == [[("03", 42, "seed_42"), ("04", 42, "seed_42")],
                                                 [("03", 43, "seed_43")]]
    assert short(jobs.summary) == [("01", -1, "two")] and jobs.train
    assert jobs.jobs()[-1][0].name == "01_sum.ipynb"
    assert not plan(list_notebooks(nbdir)[:2], load_profile(_two_seed_profile(tmp_path)), base).train


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebooks_are_committed_clean(path):
    nb = json.loads(path.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), "strip outputs"
    tagged = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1
    assert nb["cells"][0]["cell_type"] == "markdown"
    assert not any("def " in "".join(c["source"]) for c in code), "no function definitions in notebooks"


@pytest.mark.slow  # runs notebooks through papermill
def test_failing_notebook_is_named_and_kept(tmp_path, capsys):
    sources = {"01_ok.ipynb": "x = 1", "02_bad.ipynb": "raise ValueError('broken on purpose')", "03_never.ipynb": "y = 2"}
    nbdir = _stand_ins(tmp_path / "nbs", sources, {"01_ok.ipynb": "data"})
    with pytest.raises(NotebookFailed) as info:
        run_study(REPO / "params" / "smoke.yaml", outputs_root=tmp_path / "out", notebook_dir=nbdir, quiet=True)
    err = info.value
    assert err.name == "02_bad.ipynb" and "broken on purpose" in err.error and err.cell is not None
    assert err.copy.is_file()
    assert not (tmp_path / "out" / "smoke" / "notebooks" / "03_never.ipynb").exists()


def test_cli_bad_profile_exits_nonzero(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  epoch: 3\n")
    assert main(["run", "--params", str(bad), "--outputs", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "train.epoch" in err and err.count("\n") == 1


def test_report_links_every_notebook(tmp_path):
    from mia_nb.report.html import write_report
    run = tmp_path / "run"
    for sub in ("notebooks", "seed_1/notebooks", "seed_2/notebooks"):
        (run / sub).mkdir(parents=True)
    (run / "figures").mkdir()
    (run / "figures" / "04_roc_curves.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    for sub, name in (("seed_1/notebooks", "01_a"), ("seed_2/notebooks", "01_a"), ("notebooks", "09_claims")):
        nb = new_notebook(cells=[new_code_cell("1 + 1")])
        nbformat.write(nb, run / sub / f"{name}.ipynb")
    index = write_report(run)
    page = index.read_text()
    for html_name in ("seed_1_01_a.html", "seed_2_01_a.html", "09_claims.html"):
        assert f'href="{html_name}"' in page and (index.parent / html_name).is_file()
    assert 'src="../figures/04_roc_curves.png"' in page


def _stand_ins(folder: Path, sources: dict[str, str], stages: dict[str, str] | None = None) -> Path:
    """Stand-in notebooks (name -> code after the parameters cell), each with its runner role in its metadata
    (`stages`: name -> stage; per_seed when not named)."""
    folder.mkdir()
    for name, src in sources.items():
        nb = new_notebook(cells=[new_code_cell("params_file = ''\noutputs_root = ''\nseed = -1",
                                               metadata={"tags": ["parameters"]}), new_code_cell(src)])
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nb.metadata[ROLE_KEY] = {"stage": (stages or {}).get(name, "per_seed")}
        nbformat.write(nb, folder / name)
    return folder


def _two_seed_profile(tmp_path: Path, extra: str = "") -> Path:
    prof = tmp_path / "two.yaml"
    prof.write_text((REPO / "params" / "smoke.yaml").read_text().replace("name: smoke", "name: two")
                    + "\nseeds: [42, 43]\n" + extra)
    return prof


@pytest.mark.slow  # runs notebooks through papermill
def test_seeds_run_side_by_side(tmp_path):
    """Each seed's notebooks run in order, and the seeds' chains at the same time: notebook 02 of each seed
    waits until the other seed's 02 has started, which only a side-by-side run can satisfy (60 s limit)."""
    import os
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs two cores")
    flags = tmp_path / "flags"
    flags.mkdir()
    wait = (f"import os, time, pathlib\nd = pathlib.Path({str(flags)!r})\n(d / str(seed)).write_text(os.environ.get('OMP_NUM_THREADS', ''))\n"
            "t0 = time.time()\nwhile len(list(d.iterdir())) < 2:\n    assert time.time() - t0 < 60, 'seeds ran one after the other'\n"
            "    time.sleep(0.1)")
    nbdir = _stand_ins(tmp_path / "nbs", {"01_a.ipynb": "x = 1", "02_wait.ipynb": wait, "03_c.ipynb": "y = 2",
                                          "08_summary.ipynb": "z = 3"},
                       {"01_a.ipynb": "data", "08_summary.ipynb": "summary"})
    done = run_study(_two_seed_profile(tmp_path), outputs_root=tmp_path / "out", notebook_dir=nbdir, quiet=True,
                     report=False)
    names = [(p.parent.parent.name, p.name[:2]) for p in done]
    for seed in ("seed_42", "seed_43"):
        mine = [n for s, n in names if s == seed]
        assert mine == ["01", "02", "03"]
    assert names[-1] == ("two", "08")  # the summary last, once
    from mia_nb.models.engine import default_workers
    threads = str(max(1, default_workers() // 2))  # two kernels share the cores: one thread each on 2 cores
    assert {f.read_text() for f in flags.iterdir()} == {threads}


def test_one_worker_runs_seeds_in_turn(tmp_path):
    assert side_by_side(load_profile(_two_seed_profile(tmp_path, "engine:\n  workers: 1\n")), 3) == 1
    assert side_by_side(load_profile(_two_seed_profile(tmp_path)), 1) == 1


@pytest.mark.slow  # runs notebooks through papermill
def test_failure_in_one_seed_stops_the_others(tmp_path):
    nbdir = _stand_ins(tmp_path / "nbs", {"02_bad.ipynb": "assert seed != 43, 'broken on purpose'",
                                          "03_next.ipynb": "import time; time.sleep(1)"})
    with pytest.raises(NotebookFailed, match="broken on purpose") as info:
        run_study(_two_seed_profile(tmp_path), outputs_root=tmp_path / "out", notebook_dir=nbdir, quiet=True)
    assert info.value.copy.parent.parent.name == "seed_43"
    assert not (tmp_path / "out" / "two" / "seed_43" / "notebooks" / "03_next.ipynb").exists()
    # the run returned only after the other seed's chain had stopped: nothing of it is still being written
    time.sleep(2)
    assert not (tmp_path / "out" / "two" / "seed_42" / "notebooks" / "03_next.ipynb").exists() or \
        json.loads((tmp_path / "out" / "two" / "seed_42" / "notebooks" / "03_next.ipynb").read_text())["cells"]


def test_report_pages_are_rendered_once_per_execution(tmp_path):
    """A page newer than its executed notebook is kept (the runner renders each notebook as it finishes);
    a notebook executed again is rendered again."""
    import os
    from mia_nb.report.html import render_notebook
    nb_path = tmp_path / "01_a.ipynb"
    nbformat.write(new_notebook(cells=[new_code_cell("1 + 1")]), nb_path)
    page = render_notebook(nb_path, tmp_path / "report")
    os.utime(page, ns=(nb_path.stat().st_mtime_ns + 10**9,) * 2)
    page.write_text("kept")
    assert render_notebook(nb_path, tmp_path / "report").read_text() == "kept"
    os.utime(nb_path, ns=(page.stat().st_mtime_ns + 10**9,) * 2)  # executed again, later
    assert "kept" != render_notebook(nb_path, tmp_path / "report").read_text()


@pytest.mark.slow  # runs notebooks through papermill, three times
def test_up_to_date_notebooks_are_skipped_and_what_follows_a_change_reruns(tmp_path):
    """A rerun with nothing changed executes nothing; a changed notebook runs again with everything after it
    in its seed and the summary; --force reruns all; a failed notebook is never taken as up to date."""
    log = tmp_path / "ran.txt"
    cell = lambda name: f"open({str(log)!r}, 'a').write({name!r} + chr(10))"  # noqa: E731
    sources = {"01_a.ipynb": cell("01"), "02_b.ipynb": cell("02"), "03_c.ipynb": cell("03"), "08_s.ipynb": cell("08")}
    nbdir = _stand_ins(tmp_path / "nbs", sources, {"01_a.ipynb": "data", "08_s.ipynb": "summary"})
    kw = {"outputs_root": tmp_path / "out", "notebook_dir": nbdir, "quiet": True, "report": False}
    smoke = REPO / "params" / "smoke.yaml"

    def runs() -> list[str]:
        text = log.read_text() if log.exists() else ""
        log.unlink(missing_ok=True)
        return text.split()

    run_study(smoke, **kw)
    assert runs() == ["01", "02", "03", "08"]
    done = run_study(smoke, **kw)
    assert runs() == [] and len(done) == 4
    nb = nbformat.read(nbdir / "02_b.ipynb", as_version=4)
    nb.cells[1].source += "\nx = 2"
    nbformat.write(nb, nbdir / "02_b.ipynb")
    run_study(smoke, **kw)
    assert runs() == ["02", "03", "08"]
    run_study(smoke, force=True, **kw)
    assert runs() == ["01", "02", "03", "08"]
    nb.cells[1].source += "\nraise ValueError('broken')"
    nbformat.write(nb, nbdir / "02_b.ipynb")
    with pytest.raises(NotebookFailed):
        run_study(smoke, **kw)
    nb.cells[1].source = cell("02")
    nbformat.write(nb, nbdir / "02_b.ipynb")
    runs()
    run_study(smoke, **kw)  # the source is back to the version that ran through, but the copy holds the failure
    assert runs() == ["02", "03", "08"]
