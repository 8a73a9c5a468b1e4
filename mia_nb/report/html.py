"""HTML report: every executed notebook rendered with nbconvert, and an index page that reads at a glance.

report/index.html is written from a run's tables only (results/headlines.csv, results/claims.csv): the study's
question and its headline numbers first, then one row per paper finding (the claims' `block`) with its verdicts
in colour and the figure that shows it, then the extensions; the executed notebooks grouped by seed; the claims
table in plain-language columns with intervals as "[lo, hi]". Every number on the page comes from a table; the
page is one file with its style inline, and its figures are the run's own PNGs, referenced relatively, so it
opens from disk with no server.
"""

from __future__ import annotations

import html
from pathlib import Path

import nbformat
import pandas as pd
from matplotlib.colors import to_hex
from nbconvert import HTMLExporter

from mia_nb.claims.findings import BLOCK_ORDER, BLOCKS, EXTENSIONS, NOT_RUN, PAPER_BLOCKS, VERDICTS
from mia_nb.layout import CLAIMS_TABLE, FIGURES, HEADLINES_TABLE, KEY_FIGURES, NOTEBOOKS, REPORT, RESULTS, seed_folders
from mia_nb.report.figures_claims import COLOURS
from mia_nb.store import write_text

QUESTION = ("Can a model's prediction scores be trusted as evidence that an image was in its training set? "
            "A score-based membership inference attack calls an image a member when the model is confident on "
            "it; this study measures how often that accuses images the model never saw.")

# The figure that shows each block, by name without its notebook number ("05_fpr_heatmap" → "fpr_heatmap"),
# so a renumbered notebook keeps its figure here; the first name found is shown.
BLOCK_FIGURES: dict[str, tuple[str, ...]] = {
    "Finding 1": ("fpr_heatmap",),
    "Finding 2": ("mmps_by_pool", "false_positive_gallery"),
    "Finding 3": ("calibration_tradeoff",),
    "Finding 4": ("kde_separation",),
    EXTENSIONS: ("roc", "privacy_utility"),
}
CLAIMS_FIGURE = "claims"  # every claim's interval against its band (the claims notebook)

# What a headline number is near when nothing leaks: read beside the number, so no reader needs the paper.
HEADLINE_HINTS = {"fpr_heldout": "these images were never trained on: every one called a member is a false accusation",
                  "auroc": "0.5 is a coin flip, 1.0 a perfect attack",
                  "tpr_1pct": "0.01 is what guessing gets at a 1% false-positive rate",
                  "ece": "0 means the model's confidence matches its accuracy"}
DESCRIPTIVE_SUFFIX = "_minus_heldout"  # headline rows that describe a difference, shown apart from the levels

VERDICT_MEANING = {"holds": "the 95% interval lies beyond the no-effect band on the claimed side",
                   "does not hold": "it lies beyond the band on the other side",
                   "no effect": "it lies inside the band: any effect is smaller than the smallest that counts",
                   "undetermined": "it straddles an edge of the band: more images or seeds are needed",
                   NOT_RUN: "the run did not evaluate what the claim needs"}

CLAIM_COLUMNS = ("block", "claim", "verdict", "measured", "ci_lo", "ci_hi")  # what the index needs of claims.csv
HEADLINE_COLUMNS = ("id", "what", "value", "lo", "hi")  # ... and of headlines.csv

STYLE = """
* { box-sizing: border-box; }
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; color: #222; margin: 0; line-height: 1.45; }
main { max-width: 1200px; margin: 0 auto; padding: 1.5em 1.5em 4em; }
h1 { margin: .2em 0 .1em; font-size: 1.8em; }
h2 { margin-top: 2em; border-bottom: 2px solid #eee; padding-bottom: .2em; }
.question { font-size: 1.15em; max-width: 60em; }
.scope { color: #555; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(260px, 1fr)); gap: .8em; }
.card { border: 1px solid #ddd; border-radius: 8px; padding: .7em .9em; background: #fafafa; }
.card .value { font-size: 1.7em; font-weight: 600; }
.card .interval { color: #555; margin-left: .3em; }
.card .what { margin: .2em 0; }
.card .hint { color: #666; font-size: .85em; }
ul.described { color: #444; }
.legend span { margin-right: .6em; }
.pill { display: inline-block; border: 1px solid; border-radius: 999px; padding: 0 .55em; font-size: .85em;
        white-space: nowrap; color: #222; }
.finding { display: grid; grid-template-columns: minmax(0, 11fr) minmax(0, 9fr); gap: 1.2em; align-items: start;
           border-top: 1px solid #eee; padding: 1em 0; }
.finding h3 { margin: 0 0 .3em; }
.finding .tally { margin: .4em 0; }
.finding details li { margin: .25em 0; }
figure { margin: 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #ddd; display: block; }
figcaption { color: #666; font-size: .8em; }
.nogroup { color: #666; font-style: italic; }
.seeds { display: grid; grid-template-columns: repeat(auto-fill, minmax(220px, 1fr)); gap: .6em 1.2em; }
.seeds ol { margin: .2em 0; padding-left: 1.4em; }
table.claims { border-collapse: collapse; width: 100%; table-layout: fixed; font-size: .88em; }
table.claims th, table.claims td { border-bottom: 1px solid #e3e3e3; padding: .35em .5em; text-align: left;
                                    vertical-align: top; overflow-wrap: break-word; }
table.claims th { background: #f3f3f3; }
table.claims td.num { font-variant-numeric: tabular-nums; white-space: nowrap; }
.more { display: grid; grid-template-columns: repeat(auto-fill, minmax(340px, 1fr)); gap: 1em; }
"""
CLAIMS_TABLE_COLUMNS = (  # (heading, width) of the claims table, in order
    ("Finding", "9%"), ("Claim", "28%"), ("Verdict", "10%"), ("Measured [95% interval]", "16%"),
    ("Counts when", "11%"), ("Seeds", "6%"), ("Holm (Findings 1–4)", "9%"), ("Precondition", "11%"))


def render_notebook(executed: Path, out_dir: Path, prefix: str = "") -> Path:
    """One executed notebook → out_dir/<prefix><name>.html (images embedded, so no server is needed);
    kept as it is when it is newer than the executed notebook (the runner renders each notebook as soon
    as it has run, so the report at the end only writes its index)."""
    target = Path(out_dir) / f"{prefix}{executed.stem}.html"
    if target.is_file() and target.stat().st_mtime_ns >= Path(executed).stat().st_mtime_ns:
        return target
    nb = nbformat.read(str(executed), as_version=4)
    body, _ = HTMLExporter(embed_images=True).from_notebook_node(nb)
    return write_text(target, body)


def page_prefix(run_dir: Path, folder: Path) -> str:
    """The page-name prefix of the notebooks executed into `folder`: `seed_<s>_` for a seed's folder."""
    return "" if Path(folder) == Path(run_dir) else f"{Path(folder).name}_"


def executed_notebooks(run_dir: Path) -> list[tuple[str, Path]]:
    """(label prefix, path) of every executed notebook of a run: per-seed ones first, then the run's own."""
    found = [(page_prefix(run_dir, folder), p) for folder in seed_folders(run_dir)
             for p in sorted((folder / NOTEBOOKS).glob("*.ipynb"))]
    return found + [("", p) for p in sorted((run_dir / NOTEBOOKS).glob("*.ipynb"))]


# ----------------------------------------------------------------------------------------------- pieces


def _e(text: object) -> str:
    return html.escape(str(text))


def interval(value: float, lo: float, hi: float) -> str:
    """'0.797 [0.773, 0.821]'; '–' when the value is missing."""
    if pd.isna(value):
        return "–"
    return f"{value:.3f} [{lo:.3f}, {hi:.3f}]" if not (pd.isna(lo) or pd.isna(hi)) else f"{value:.3f}"


def verdict_colour(verdict: str) -> str:
    """The verdict's colour as hex, the same as the claims figure's."""
    return to_hex(COLOURS.get(verdict, "tab:gray"))


def pill(verdict: str, text: str | None = None) -> str:
    """A verdict as a coloured pill (tinted background, coloured border)."""
    colour = verdict_colour(verdict)
    return (f'<span class="pill verdict" data-verdict="{_e(verdict)}" style="border-color:{colour};'
            f'background:{colour}2e">{_e(text or verdict)}</span>')


def find_figure(run_dir: Path, name: str) -> Path | None:
    """figures/<NN>_<name>.png of the run (its own folder first, then the first seed that has it)."""
    for folder in (Path(run_dir) / FIGURES, *(f / FIGURES for f in seed_folders(run_dir))):
        found = sorted(p for p in folder.glob(f"*_{name}.png") if p.stem.split("_", 1)[0].isdigit()
                       and p.stem.split("_", 1)[1] == name)
        if found:
            return found[0]
    return None


def figure_html(fig: Path, out_dir: Path, caption: str = "") -> str:
    """An <img> of a figure, referenced relative to the report folder, with its name (and seed) as caption."""
    out_dir = Path(out_dir)
    rel = Path("..") / fig.relative_to(out_dir.parent) if fig.is_relative_to(out_dir.parent) else fig.resolve()
    where = fig.parent.parent.name.replace("_", " ") if fig.parent.parent != out_dir.parent else ""
    label = caption or (f"{fig.stem} ({where})" if where else fig.stem)
    return f'<figure><img src="{_e(rel.as_posix())}" alt="{_e(fig.stem)}"><figcaption>{_e(label)}</figcaption></figure>'


def read_table(path: Path, needs: tuple[str, ...]) -> pd.DataFrame | None:
    """A result table, or None when it is missing; ValueError naming the columns it lacks."""
    if not Path(path).is_file():
        return None
    df = pd.read_csv(path, keep_default_na=False, na_values=[""])
    missing = [c for c in needs if c not in df.columns]
    if missing:
        raise ValueError(f"{path} lacks columns {missing}: rerun the notebook that writes it")
    return df


# ----------------------------------------------------------------------------------------------- sections


def headline_section(heads: pd.DataFrame | None) -> str:
    """The headline numbers as cards (levels), then the descriptive differences as a list."""
    if heads is None or not len(heads):
        return "<p class='nogroup'>No headline numbers yet: the claims notebook writes results/headlines.csv.</p>"
    levels = heads[~heads["id"].astype(str).str.endswith(DESCRIPTIVE_SUFFIX)]
    described = heads[heads["id"].astype(str).str.endswith(DESCRIPTIVE_SUFFIX)]
    cards = []
    for r in levels.itertuples():
        hint = HEADLINE_HINTS.get(str(r.id), "")
        cards.append(f'<div class="card headline" data-id="{_e(r.id)}"><span class="value">{r.value:.3f}</span>'
                     f'<span class="interval">[{r.lo:.3f}, {r.hi:.3f}]</span><p class="what">{_e(r.what)}</p>'
                     + (f'<p class="hint">{_e(hint)}</p>' if hint else "") + "</div>")
    out = f'<div class="cards">{"".join(cards)}</div>'
    if len(described):
        items = "".join(f"<li>{_e(r.what)}: {interval(r.value, r.lo, r.hi)}</li>" for r in described.itertuples())
        out += f'<p>Compared with held-out images (a description, no verdict):</p><ul class="described">{items}</ul>'
    return out


def tally_pills(rows: pd.DataFrame) -> str:
    """'3 holds · 1 does not hold …' as coloured pills, one per verdict present."""
    counts = rows["verdict"].value_counts()
    order = [v for v in VERDICTS if v in counts] + sorted(set(counts.index) - set(VERDICTS))
    return " ".join(pill(v, f"{counts[v]} {v}") for v in order)


def block_figure(run_dir: Path, block: str) -> Path | None:
    """The figure that shows a block (`BLOCK_FIGURES`): the first of its names the run has."""
    return next((f for name in BLOCK_FIGURES.get(block, ()) if (f := find_figure(run_dir, name))), None)


def block_section(block: str, rows: pd.DataFrame, run_dir: Path, out_dir: Path) -> str:
    """One finding (or the extensions): its statement, its verdicts in colour, its claims, its figure."""
    figure = block_figure(run_dir, block)
    claims = "".join(f"<li>{pill(str(r.verdict))} {_e(r.claim)}: {interval(r.measured, r.ci_lo, r.ci_hi)}</li>"
                     for r in rows.itertuples())
    return (f'<section class="finding" data-block="{_e(block)}"><div><h3>{_e(block)}</h3>'
            f'<p>{_e(BLOCKS.get(block, ""))}</p><div class="tally">{tally_pills(rows)}</div>'
            f'<details><summary>its {len(rows)} claim(s) on this run</summary><ul>{claims}</ul></details></div>'
            f'{figure_html(figure, out_dir) if figure else "<p class=nogroup>Its figure is not in this run.</p>"}'
            "</section>")


def findings_section(claims: pd.DataFrame | None, run_dir: Path, out_dir: Path) -> tuple[str, str]:
    """(the paper's findings, the extensions) as rows; a placeholder when there is no claims table."""
    if claims is None or not len(claims):
        none = "<p class='nogroup'>No claims yet: the claims notebook writes results/claims.csv.</p>"
        return none, none
    blocks = [b for b in BLOCK_ORDER if (claims.block == b).any()] + sorted(set(claims.block) - set(BLOCK_ORDER))
    paper = "".join(block_section(b, claims[claims.block == b], run_dir, out_dir) for b in blocks if b in PAPER_BLOCKS)
    rest = "".join(block_section(b, claims[claims.block == b], run_dir, out_dir) for b in blocks
                   if b not in PAPER_BLOCKS)
    return paper or "<p class='nogroup'>No claim of the paper's findings in this run.</p>", \
        rest or "<p class='nogroup'>No extension claim in this run.</p>"


def notebook_label(stem: str) -> str:
    """'01_data_prep' → '01 · data prep'."""
    number, _, rest = stem.partition("_")
    return f"{number} · {rest.replace('_', ' ')}" if number.isdigit() and rest else stem.replace("_", " ")


def notebooks_section(run_dir: Path, pages: list[tuple[str, Path]]) -> str:
    """The rendered notebooks, one list per seed, then the run's own (the claims over every seed)."""
    groups: dict[str, list[Path]] = {}
    for prefix, page in pages:
        groups.setdefault(prefix, []).append(page)
    several = bool(seed_folders(run_dir))
    blocks = []
    for prefix, found in groups.items():
        heading = prefix.rstrip("_").replace("_", " ").capitalize() if prefix else \
            ("Over all seeds" if several else "This run")
        links = "".join(f'<li><a href="{_e(p.name)}">{_e(notebook_label(p.stem[len(prefix):]))}</a></li>'
                        for p in found)
        blocks.append(f'<div class="seed-group"><h3>{_e(heading)}</h3><ol>{links}</ol></div>')
    return f'<div class="seeds">{"".join(blocks)}</div>'


def claims_table(claims: pd.DataFrame | None) -> str:
    """Every claim in plain-language columns: finding, claim, verdict, measured [lo, hi], when it counts, seeds,
    Holm, precondition."""
    if claims is None or not len(claims):
        return "<p class='nogroup'>No claims table yet (the claims notebook writes it).</p>"
    head = "".join(f'<col style="width:{w}">' for _, w in CLAIMS_TABLE_COLUMNS)
    titles = "".join(f"<th>{_e(t)}</th>" for t, _ in CLAIMS_TABLE_COLUMNS)
    body = []
    for r in claims.itertuples():
        gate, status = getattr(r, "gate", ""), getattr(r, "gate_status", "")
        gate_cell = pill(str(status), f"{status}") + f" <small>{_e(gate)}</small>" \
            if isinstance(gate, str) and gate else "–"
        seeds = getattr(r, "n_seeds", "–")
        body.append(f'<tr style="border-left:4px solid {verdict_colour(str(r.verdict))}"><td>{_e(r.block)}</td>'
                    f"<td>{_e(r.claim)}</td><td>{pill(str(r.verdict))}</td>"
                    f'<td class="num">{interval(r.measured, r.ci_lo, r.ci_hi)}</td>'
                    f"<td>{_e(getattr(r, 'counts_when', '–'))}</td><td>{_e(seeds)}</td>"
                    f"<td>{_e(getattr(r, 'holm', '–'))}</td><td>{gate_cell}</td></tr>")
    return (f'<table class="claims"><colgroup>{head}</colgroup><thead><tr>{titles}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table>')


def legend() -> str:
    """What each verdict means, in its colour."""
    return "<p class='legend'>" + " ".join(f"{pill(v)} {_e(m)}." for v, m in VERDICT_MEANING.items()) + "</p>"


def index_page(run_dir: Path, pages: list[tuple[str, Path]], title: str) -> str:
    """The index page's HTML from the run's tables and figures and its rendered notebook pages."""
    run_dir = Path(run_dir)
    out_dir = run_dir / REPORT
    heads = read_table(run_dir / RESULTS / f"{HEADLINES_TABLE}.csv", HEADLINE_COLUMNS)
    claims = read_table(run_dir / RESULTS / f"{CLAIMS_TABLE}.csv", CLAIM_COLUMNS)
    seeds = [f.name.replace("_", " ") for f in seed_folders(run_dir)]
    scope = f"Run <code>{_e(run_dir.name)}</code>" + (f", {len(seeds)} seeds ({_e(', '.join(seeds))})" if seeds else "")
    paper, extensions = findings_section(claims, run_dir, out_dir)
    overview = find_figure(run_dir, CLAIMS_FIGURE)
    shown = {block_figure(run_dir, b) for b in (claims.block.unique() if claims is not None else ())} | {overview}
    more = [f for name in KEY_FIGURES if (f := find_figure(run_dir, name.partition("_")[2])) and f not in shown]
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(title)}</title><style>{STYLE}</style></head><body><main>
<h1>{_e(title)}</h1>
<p class="question">{_e(QUESTION)}</p>
<p class="scope">{scope}. Every number below is read from the run's tables (results/); intervals are 95%.</p>
<h2 id="headlines">Headline numbers</h2>
<p>The unchanged target model, attacked with the global threshold on its top softmax score:</p>
{headline_section(heads)}
<h2 id="findings">The paper's four findings, tested</h2>
{legend()}
{paper}
<h2 id="extensions">Beyond the paper</h2>
{extensions}
<h2 id="notebooks">The executed notebooks</h2>
<p>Each one rendered with its outputs; per-seed notebooks first, then the claims over every seed.</p>
{notebooks_section(run_dir, pages)}
<h2 id="claims">Every claim</h2>
{f"<details><summary>Every claim's interval against its band, as a figure</summary>{figure_html(overview, out_dir)}</details>" if overview else ""}
{claims_table(claims)}
<h2 id="figures">More figures</h2>
<div class="more">{''.join(figure_html(f, out_dir) for f in more) or "<p class='nogroup'>No other key figure.</p>"}</div>
</main></body></html>
"""


def write_report(run_dir: Path, title: str = "mia-nb report") -> Path:
    """Render every executed notebook of a run and write report/index.html; return its path."""
    run_dir = Path(run_dir)
    out_dir = run_dir / REPORT
    notebooks = executed_notebooks(run_dir)
    if not notebooks:
        raise FileNotFoundError(f"{run_dir} holds no executed notebook: run the study first")
    pages = [(prefix, render_notebook(nb, out_dir, prefix)) for prefix, nb in notebooks]
    return write_text(out_dir / "index.html", index_page(run_dir, pages, title))
