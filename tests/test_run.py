"""The papermill runner: selection, failure reporting, and the notebooks' committed form."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from mia_nb.config import ConfigError
from mia_nb.run import NotebookFailed, list_notebooks, main, run_study, select

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


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebooks_are_committed_clean(path):
    nb = json.loads(path.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), "strip outputs"
    tagged = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1
    assert nb["cells"][0]["cell_type"] == "markdown"
    assert not any("def " in "".join(c["source"]) for c in code), "no function definitions in notebooks"


def test_failing_notebook_is_named_and_kept(tmp_path, capsys):
    nbdir = tmp_path / "nbs"
    nbdir.mkdir()
    for name, src in (("01_ok.ipynb", "x = 1"), ("02_bad.ipynb", "raise ValueError('broken on purpose')"),
                      ("03_never.ipynb", "y = 2")):
        nb = new_notebook(cells=[new_code_cell("params_file = ''\noutputs_root = ''\nseed = -1",
                                               metadata={"tags": ["parameters"]}), new_code_cell(src)])
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(nb, nbdir / name)
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
    from mia_nb.report import write_report
    run = tmp_path / "run"
    for sub in ("notebooks", "seed_1/notebooks", "seed_2/notebooks"):
        (run / sub).mkdir(parents=True)
    (run / "figures").mkdir()
    (run / "figures" / "04_roc_curves.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    for sub, name in (("seed_1/notebooks", "01_a"), ("seed_2/notebooks", "01_a"), ("notebooks", "08_claims")):
        nb = new_notebook(cells=[new_code_cell("1 + 1")])
        nbformat.write(nb, run / sub / f"{name}.ipynb")
    index = write_report(run)
    page = index.read_text()
    for html_name in ("seed_1_01_a.html", "seed_2_01_a.html", "08_claims.html"):
        assert f'href="{html_name}"' in page and (index.parent / html_name).is_file()
    assert 'src="../figures/04_roc_curves.png"' in page
