"""report/summary.md and the README's findings section, from a hand-made multi-seed run folder."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from mia_nb.claims import findings
from mia_nb.config import parse_profile
from mia_nb.layout import KEY_FIGURES, seed_folder
from mia_nb.report.summary import END, START, bands_commit, figure_path, refresh_readme, write_summary

PNG = b"\x89PNG\r\n\x1a\n"


def _claims() -> pd.DataFrame:
    """Three claims as notebook 09 writes them: a paper claim that holds after Holm, a gated one, an extension."""
    rows = [("fpr_heldout", "Finding 1", "Held-out images are called members at a high rate", 3, 0.8, 0.7, 0.9,
             "> 0.25 (level 0.2 + band 0.05)", "holds", "holds", "", ""),
            ("leak_auroc_ls_0.1", "Finding 3", "ls_0.1 raises leakage: attack AUROC", 3, 0.065, 0.02, 0.11, "> +0.01",
             "holds", "not shown", "calibrates_ls_0.1", "undetermined"),
            ("ref_tpr_rmia", "Extensions", "rmia beats the global threshold attack at 0.1% FPR", 1, 0.0, -0.1, 0.1,
             "> +0.005", "undetermined", "not in the family", "", "")]
    columns = ["id", "block", "claim", "n_seeds", "measured", "ci_lo", "ci_hi", "counts_when", "verdict", "holm",
               "gate", "gate_status"]
    return pd.DataFrame(rows, columns=columns)


def _run(tmp_path: Path) -> Path:
    """Two seeds: per-seed models tables and figures, the run's own claims and headline tables."""
    run = tmp_path / "two"
    for s, acc in ((1, 0.8), (2, 0.9)):
        seed_folder(run / "results", s).mkdir(parents=True)
        pd.DataFrame([{"variant": "vanilla", "role": "target", "seed": s, "train_acc": 1.0, "heldout_acc": acc}]).to_csv(
            seed_folder(run / "results", s) / "models.csv", index=False)
        (seed_folder(run, s) / "figures").mkdir(parents=True)
    (seed_folder(run, 1) / "figures" / f"{KEY_FIGURES[0]}.png").write_bytes(PNG)
    (seed_folder(run, 2) / "figures" / f"{KEY_FIGURES[0]}.png").write_bytes(PNG)
    (seed_folder(run, 2) / "figures" / f"{KEY_FIGURES[1]}.png").write_bytes(PNG)  # the first seed that has it
    (run / "figures").mkdir()
    (run / "figures" / f"{KEY_FIGURES[-1]}.png").write_bytes(PNG)
    _claims().to_csv(run / "results" / "claims.csv", index=False)
    pd.DataFrame([{"what": "AUROC", "value": 0.7, "lo": 0.6, "hi": 0.8}]).to_csv(run / "results" / "headlines.csv",
                                                                               index=False)
    return run


def _bands(tmp_path: Path) -> Path:
    """A copy of the shipped bands file outside any git repository."""
    path = tmp_path / "bands" / "bands.yaml"
    path.parent.mkdir()
    shutil.copyfile(findings.BANDS_FILE, path)
    return path


def test_summary_reads_the_seed_folders_and_shows_the_key_figures(tmp_path):
    run = _run(tmp_path)
    assert figure_path(run, KEY_FIGURES[0]) == seed_folder(run, 1) / "figures" / f"{KEY_FIGURES[0]}.png"
    assert figure_path(run, KEY_FIGURES[1]) == seed_folder(run, 2) / "figures" / f"{KEY_FIGURES[1]}.png"
    assert figure_path(run, KEY_FIGURES[2]) is None
    text = write_summary(run, parse_profile({"name": "two", "seeds": [1, 2]}), _bands(tmp_path)).read_text()
    assert "held-out accuracy 0.850 (mean over seeds)" in text
    assert "* AUROC: 0.700 [0.600, 0.800]" in text
    shown = [line for line in text.splitlines() if line.startswith("![")]
    assert shown == [f"![{f}](docs/figures/{f}.png)" for f in (*KEY_FIGURES[:2], KEY_FIGURES[-1])]


def test_summary_shows_each_block_with_its_tally_seeds_holm_gate_and_the_bands_commit(tmp_path):
    run = _run(tmp_path)
    text = write_summary(run, parse_profile({"name": "two", "seeds": [1, 2]}), _bands(tmp_path)).read_text()
    assert ("**Claims:** 3 tested: 2 on the paper's four findings (2 holds, 0 does not hold, 0 no effect, "
            "0 undetermined) and 1 extensions, never in the paper's tally (0 holds, 0 does not hold, 0 no effect, "
            "1 undetermined).") in text
    headers = [line for line in text.splitlines() if line.startswith("### ")]
    assert headers == ["### Finding 1", "### Finding 3", "### Extensions"]  # blocks without claims are left out
    assert f"*{findings.BLOCKS['Finding 1']}*" in text
    assert "Tally: 1 holds, 0 does not hold, 0 no effect, 0 undetermined." in text
    assert "| verdict | Holm | claim | seeds | measured [95% interval] | counts when | gate |" in text
    assert ("| holds | not shown | ls_0.1 raises leakage: attack AUROC | 3 | 0.065 [0.020, 0.110] | > +0.01 | "
            "undetermined (calibrates_ls_0.1) |") in text
    assert "| undetermined | not in the family | rmia beats the global threshold attack at 0.1% FPR | 1 |" in text
    assert "**Holm column.** Family-wise: the 2 measured claims of Findings 1–4" in text
    assert "any of the 1 claims marked \"holds\" in the Holm column" in text
    assert "(the last commit that changed it: uncommitted)" in text  # a copy outside git
    assert findings.load_bands().recorded in text


def test_a_claims_table_from_an_older_notebook_09_asks_for_a_rerun(tmp_path):
    run = _run(tmp_path)
    _claims().drop(columns=["block", "holm"]).to_csv(run / "results" / "claims.csv", index=False)
    with pytest.raises(ValueError, match=r"lacks columns \['block', 'holm'\].*rerun notebook 09"):
        write_summary(run, parse_profile({"name": "two", "seeds": [1, 2]}), _bands(tmp_path))


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_bands_commit_names_the_last_commit_of_the_file(tmp_path):
    path = _bands(tmp_path)
    assert bands_commit(path) == "uncommitted"
    env = ["-c", "user.name=t", "-c", "user.email=t@example.org", "-c", "commit.gpgsign=false"]
    repo = path.parent
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    subprocess.run(["git", *env, "add", path.name], cwd=repo, check=True)
    assert bands_commit(path) == "uncommitted"  # staged, never committed
    subprocess.run(["git", *env, "commit", "-q", "-m", "bands"], cwd=repo, check=True)
    head = subprocess.run(["git", "log", "-1", "--format=%h"], cwd=repo, capture_output=True, text=True).stdout.strip()
    assert bands_commit(path) == head
    path.write_text(path.read_text().replace("auroc: 0.01", "auroc: 0.02"))
    assert bands_commit(path) == f"{head} (with uncommitted changes)"


def test_refresh_readme_replaces_the_findings_section_and_copies_the_figures(tmp_path):
    run = _run(tmp_path)
    write_summary(run, parse_profile({"name": "two", "seeds": [1, 2]}), _bands(tmp_path))
    readme = tmp_path / "README.md"
    readme.write_text(f"# head\n{START}\nold numbers\n{END}\ntail\n")
    assert refresh_readme(readme, run, tmp_path / "docs" / "figures") == 3
    text = readme.read_text()
    assert "old numbers" not in text and text.startswith("# head\n") and text.endswith(f"{END}\ntail\n")
    assert "### Finding 1" in text and "Holm column" in text
    assert sorted(p.name for p in (tmp_path / "docs" / "figures").iterdir()) == sorted(
        f"{f}.png" for f in (*KEY_FIGURES[:2], KEY_FIGURES[-1]))
    readme.write_text("no markers")
    with pytest.raises(ValueError, match="markers"):
        refresh_readme(readme, run, tmp_path / "docs" / "figures")
