"""report/index.html from a hand-made two-seed run: question and headline numbers first, one row per finding with
its verdicts in colour and its figure, the extensions, notebooks grouped by seed, a plain claims table."""

from __future__ import annotations

import html
import re
from pathlib import Path

import matplotlib
import nbformat
import numpy as np
import pandas as pd
import pytest
from nbformat.v4 import new_code_cell, new_notebook, new_output

from mia_nb.claims.findings import BLOCKS, EXTENSIONS, PAPER_BLOCKS
from mia_nb.layout import seed_folder
from mia_nb.report.html import (BLOCK_FIGURES, QUESTION, find_figure, interval, notebook_label, verdict_colour,
                                write_report)

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)

SEEDS = (42, 43)
PER_SEED = ("01_data_prep", "04_attacks")
FIGURES = {  # where each figure of the hand-made run lives: a seed's folder or the run's own
    "05_fpr_heatmap": 42, "05_mmps_by_pool": 43, "06_calibration_tradeoff": 42, "07_kde_separation": 42,
    "08_roc": 42, "04_roc_curves": 42, "09_claims": None}


def png(path: Path, label: str) -> Path:
    """A small real PNG (a browser can decode it) with a label drawn in it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot([0, 1], [0, 1])
    ax.set_title(label)
    fig.savefig(path, dpi=60)
    plt.close(fig)
    return path


def claims_table(rng: np.random.Generator) -> pd.DataFrame:
    """Claims as the claims notebook writes them (the columns the index reads), with numbers drawn at random so
    that nothing on the page can be typed in: two per paper finding and two extensions."""
    verdicts = ["holds", "does not hold", "no effect", "undetermined", "not measured"]
    rows = []
    for i, block in enumerate((*PAPER_BLOCKS, EXTENSIONS)):
        for j in range(2):
            v = verdicts[(2 * i + j) % len(verdicts)]
            m = rng.uniform(-0.5, 0.5)
            lo, hi = m - rng.uniform(0.01, 0.1), m + rng.uniform(0.01, 0.1)
            if v == "not measured":
                m = lo = hi = np.nan
            rows.append({"id": f"c{i}{j}", "block": block,
                         "claim": f"Claim {i}{j} of {block}, said in a long plain sentence that has to wrap inside "
                                  "its column at 1,280 pixels instead of widening the page",
                         "compared": "a − b", "n_seeds": 2, "measured": m, "ci_lo": lo, "ci_hi": hi, "side": ">",
                         "reference": 0.0, "band": 0.05, "band_key": "fpr", "counts_when": "> +0.05", "verdict": v,
                         "p_value": 0.01, "gate": "calibrates_ls_0.1" if j else "", "paper": "Fig. 1",
                         "n_boot": 1000, "gate_status": "holds" if j else "",
                         "holm": "not in the family" if block == EXTENSIONS else "not shown", "in_words": ""})
    return pd.DataFrame(rows)


def headlines_table(rng: np.random.Generator) -> pd.DataFrame:
    """Headline numbers as the claims notebook writes them, values drawn at random."""
    ids = [("fpr_heldout", "held-out images called members"), ("auroc", "attack AUROC, members vs held-out"),
           ("fpr_gan", "generated non-members called members (gan)"),
           ("fpr_gan_minus_heldout", "generated FPR minus held-out FPR (description)")]
    rows = []
    for key, what in ids:
        v = rng.uniform(0.1, 0.9)
        rows.append({"id": key, "what": what, "value": v, "lo": v - 0.02, "hi": v + 0.02, "n_seeds": 2})
    return pd.DataFrame(rows)


def executed(path: Path, text: str) -> Path:
    """A tiny executed notebook: one code cell with its output."""
    path.parent.mkdir(parents=True, exist_ok=True)
    cell = new_code_cell(f"print({text!r})", execution_count=1,
                         outputs=[new_output("stream", name="stdout", text=f"{text}\n")])
    nbformat.write(new_notebook(cells=[cell]), path)
    return path


def make_run(root: Path, seed: int = 0) -> tuple[Path, pd.DataFrame, pd.DataFrame]:
    """A two-seed run folder: per-seed executed notebooks and figures, the run's claims notebook, claims and
    headline tables; returns (run folder, claims, headlines)."""
    rng = np.random.default_rng(seed)
    run = root / "two"
    for s in SEEDS:
        for name in PER_SEED:
            executed(seed_folder(run, s) / "notebooks" / f"{name}.ipynb", f"{name} of seed {s}")
    executed(run / "notebooks" / "09_claims.ipynb", "claims over every seed")
    for name, s in FIGURES.items():
        png((seed_folder(run, s) if s else run) / "figures" / f"{name}.png", name)
    (run / "results").mkdir(parents=True)
    claims, heads = claims_table(rng), headlines_table(rng)
    claims.to_csv(run / "results" / "claims.csv", index=False)
    heads.to_csv(run / "results" / "headlines.csv", index=False)
    return run, claims, heads


def text_of(page: str) -> str:
    """The page's visible text, tags removed (order kept)."""
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<style>.*?</style>|<[^>]+>", " ", page, flags=re.S)))


@pytest.fixture
def report(tmp_path) -> tuple[str, Path, pd.DataFrame, pd.DataFrame]:
    run, claims, heads = make_run(tmp_path)
    index = write_report(run, title="mia-nb · two")
    return index.read_text(encoding="utf-8"), index, claims, heads


def test_question_and_headlines_come_first_from_the_table(report):
    page, _, _, heads = report
    text = text_of(page)
    assert QUESTION.split("?")[0] in text
    first_finding = text.index(PAPER_BLOCKS[0])
    for r in heads.itertuples():  # every headline number as the table has it, before the findings
        shown = f"{r.value:.3f}"
        assert shown in text and text.index(shown) < first_finding, r.id
    level = heads.iloc[0]
    assert f"[{level.lo:.3f}, {level.hi:.3f}]" in text


def test_headlines_follow_the_table_not_the_code(tmp_path):
    """Two runs with other numbers give other pages: nothing on the page is typed in."""
    pages = []
    for seed in (1, 2):
        run, _, heads = make_run(tmp_path / str(seed), seed=seed)
        pages.append((text_of(write_report(run).read_text(encoding="utf-8")), heads))
    (a, heads_a), (b, heads_b) = pages
    assert f"{heads_a.value[0]:.3f}" in a and f"{heads_a.value[0]:.3f}" not in b
    assert f"{heads_b.value[0]:.3f}" in b


def test_one_row_per_finding_in_order_with_its_verdicts_and_figure(report):
    page, index, claims, _ = report
    rows = re.findall(r'<section class="finding" data-block="([^"]+)">(.*?)</section>', page, flags=re.S)
    assert [b for b, _ in rows] == [*PAPER_BLOCKS, EXTENSIONS]
    assert page.index('id="findings"') < page.index(f'data-block="{PAPER_BLOCKS[0]}"')
    assert page.index(f'data-block="{PAPER_BLOCKS[-1]}"') < page.index('id="extensions"') \
        < page.index(f'data-block="{EXTENSIONS}"')
    for block, body in rows:
        assert BLOCKS[block].split(".")[0] in body
        for v in claims[claims.block == block].verdict:
            assert f'data-verdict="{v}"' in body and verdict_colour(v) in body
        src = re.search(r'<img src="([^"]+)"', body).group(1)
        assert (index.parent / src).resolve() == find_figure(index.parent.parent, BLOCK_FIGURES[block][0]).resolve()
    # Finding 2's figure is in the second seed only: the first seed that has it is shown, and named
    assert "../seed_43/figures/05_mmps_by_pool.png" in dict(rows)["Finding 2"]


def test_verdicts_have_distinct_colours():
    colours = {verdict_colour(v) for v in ("holds", "does not hold", "no effect", "undetermined", "not measured")}
    assert len(colours) == 5


def test_notebooks_grouped_by_seed_and_linked(report):
    page, index, _, _ = report
    section = page[page.index('id="notebooks"'):page.index('id="claims"')]
    groups = re.findall(r"<h3>([^<]+)</h3><ol>(.*?)</ol>", section, flags=re.S)
    assert [g for g, _ in groups] == ["Seed 42", "Seed 43", "Over all seeds"]
    for (heading, links), s in zip(groups, SEEDS):
        for name in PER_SEED:
            assert f'href="seed_{s}_{name}.html"' in links and (index.parent / f"seed_{s}_{name}.html").is_file()
            assert notebook_label(name) in links
    assert 'href="09_claims.html"' in groups[-1][1]


def test_claims_table_reads_plainly(report):
    page, _, claims, _ = report
    table = page[page.index('<table class="claims">'):page.index("</table>")]
    headings = re.findall(r"<th>([^<]+)</th>", table)
    assert headings[:4] == ["Finding", "Claim", "Verdict", "Measured [95% interval]"]
    for raw in ("ci_lo", "ci_hi", "n_boot", "side", "p_value", "band_key"):
        assert raw not in headings
    assert table.count("<tr ") == len(claims)
    for r in claims.itertuples():
        assert interval(r.measured, r.ci_lo, r.ci_hi) in table
    measured = claims.dropna(subset=["measured"]).iloc[0]
    assert f"{measured.measured:.3f} [{measured.ci_lo:.3f}, {measured.ci_hi:.3f}]" in table
    assert "table-layout: fixed" in page and "overflow-wrap: break-word" in page


def test_report_without_tables_says_what_writes_them(tmp_path):
    run = tmp_path / "bare"
    executed(run / "notebooks" / "01_data_prep.ipynb", "one seed")
    page = text_of(write_report(run).read_text(encoding="utf-8"))
    assert "results/headlines.csv" in page and "results/claims.csv" in page
    assert "This run" in page


def test_a_claims_table_missing_columns_is_named(tmp_path):
    run, claims, _ = make_run(tmp_path)
    claims.drop(columns=["ci_hi"]).to_csv(run / "results" / "claims.csv", index=False)
    with pytest.raises(ValueError, match=r"claims.csv lacks columns \['ci_hi'\]"):
        write_report(run)


def test_interval_and_labels():
    assert interval(0.7971, 0.7734, 0.8212) == "0.797 [0.773, 0.821]"
    assert interval(float("nan"), 0.0, 1.0) == "–"
    assert notebook_label("08_reference_attacks") == "08 · reference attacks"


def test_readme_answers_quote_the_findings_block():
    """Every number in the README's five-sentence answer is quoted from its findings block (written from a run by
    `python -m mia_nb readme`): after a refresh, a sentence whose number has changed fails here until it is
    updated from the block."""
    from mia_nb.report.summary import END, START
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    answers = readme.split("<!-- answers:start -->", 1)[1].split("<!-- answers:end -->", 1)[0]
    findings = readme.split(START, 1)[1].split(END, 1)[0]
    quoted = re.findall(r"\d+\.\d+", answers)
    assert len(quoted) >= 3, "the answers quote the headline numbers"
    missing = [q for q in quoted if not re.search(rf"(?<![\d.]){re.escape(q)}(?![\d])", findings)]
    assert not missing, f"README answers quote {missing}, which the findings block does not hold: update them from it"
    assert readme.index("<!-- answers:start -->") < readme.index("## Start here") < readme.index(START)


def test_member_heldout_scores_has_a_panel_per_model_and_checks_its_input():
    from mia_nb.report.figures_training import member_heldout_scores
    rng = np.random.default_rng(0)
    members, heldout = 1 - rng.exponential(1e-4, 300), 1 - rng.exponential(1e-2, 500).clip(max=0.9)
    fig = member_heldout_scores({"target": (members, heldout), "shadow": (heldout, members)})
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == ["target", "shadow"]
    legend = [t.get_text() for t in panels[0].get_legend().get_texts()]
    assert legend[0].startswith("members (n=300)") and legend[1].startswith("held-out (n=500)")
    assert f"{np.median(members):.4f}" in legend[0]
    plt.close(fig)
    with pytest.raises(ValueError, match="non-empty"):
        member_heldout_scores({"target": (members, np.array([]))})


def test_committed_pipeline_figure_is_the_scripts_drawing(tmp_path):
    """docs/figures/pipeline.svg (the README's pipeline figure) is what docs/pipeline_figure.py draws now: a changed
    drawing must be committed with its script."""
    import importlib.util
    docs = Path(__file__).resolve().parents[1] / "docs"
    spec = importlib.util.spec_from_file_location("pipeline_figure", docs / "pipeline_figure.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    drawn = module.main(["--out", str(tmp_path / "pipeline.svg")])
    assert drawn.read_bytes() == (docs / "figures" / "pipeline.svg").read_bytes(), \
        "run .venv/bin/python docs/pipeline_figure.py and commit docs/figures/pipeline.svg"
