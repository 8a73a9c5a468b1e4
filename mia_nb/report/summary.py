"""report/summary.md from a run's tables, and the README's findings section refreshed from it.

The summary is written from results/claims.csv, results/headlines.csv (notebook 09) and
results/models.csv only: every number in it comes from the run. The claims appear block by block (the
paper's Findings 1-4, then the extensions), each with its four-outcome tally, the seeds behind every row,
the Holm column and one sentence on what the family-wise test guarantees; the commit that last changed
the bands file is printed beside them. `python -m mia_nb readme` copies the summary between the README's
findings markers and the key figures (`mia_nb.layout.KEY_FIGURES`, the same ones the HTML report shows)
into docs/figures/, so no number in that section is typed by hand.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pandas as pd

from mia_nb import REPO_ROOT
from mia_nb.claims.findings import (BANDS_FILE, BLOCK_ORDER, BLOCKS, EXTENSIONS, FAILS, HOLDS, NO_EFFECT,
                                    PAPER_BLOCKS, UNDETERMINED, family_sentence, load_bands, tally)
from mia_nb.layout import (CLAIMS_TABLE, FIGURES, HEADLINES_TABLE, KEY_FIGURES, MODELS_TABLE, REPORT, RESULTS,
                           seed_folders)
from mia_nb.store import write_text

CLAIM_COLUMNS = ("id", "block", "claim", "n_seeds", "measured", "ci_lo", "ci_hi", "counts_when", "verdict", "holm",
                 "gate", "gate_status")  # what the summary reads from results/claims.csv
OUTCOMES = (HOLDS, FAILS, NO_EFFECT, UNDETERMINED)

START, END = "<!-- findings:start -->", "<!-- findings:end -->"


def figure_path(run_dir: Path, name: str) -> Path | None:
    """A figure of the run: the run's own (summary notebooks), else that of the first seed that has it."""
    for folder in (Path(run_dir) / FIGURES, *(f / FIGURES for f in seed_folders(run_dir))):
        if (folder / f"{name}.png").is_file():
            return folder / f"{name}.png"
    return None


def _fmt(v: float, lo: float, hi: float) -> str:
    return f"{v:.3f} [{lo:.3f}, {hi:.3f}]"


def scope_lines(profile: object, models: pd.DataFrame | None) -> list[str]:
    """What the numbers are about: data, model, training set sizes, seeds; what was not run."""
    p = profile
    seeds = list(p.seeds) or [p.seed]
    lines = [f"* **Data and model:** {p.data.dataset} with {p.model.arch}; {p.splits.target_train:,} member images "
             f"per model, {p.splits.target_heldout:,} held-out non-members; {len(seeds)} seed(s) {seeds} "
             f"(profile `{p.name}`)."]
    if models is not None and {"variant", "role", "train_acc", "heldout_acc"} <= set(models.columns):
        t = models[(models.variant == "vanilla") & (models.role == "target")]
        if len(t):
            lines.append(f"* **Target:** train accuracy {t.train_acc.mean():.3f}, held-out accuracy "
                         f"{t.heldout_acc.mean():.3f} (mean over seeds).")
    lines.append("* **Not run here:** the paper's CIFAR-10 and Stanford Dogs profiles exist in `params/` but were "
                 "not run on their data; their numbers are the paper's, quoted beside ours, not reproduced.")
    return lines


def bands_commit(path: Path = BANDS_FILE) -> str:
    """Short hash of the commit that last changed the bands file ("… with uncommitted changes" when it has edits
    since), or "uncommitted" when git, the repository or a commit of the file is missing."""
    path = Path(path)

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args, "--", path.name], cwd=path.parent, capture_output=True, text=True,
                                 timeout=20)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip() if out.returncode == 0 else None
    commit = git("log", "-1", "--format=%h")
    if not commit:
        return "uncommitted"
    return f"{commit} (with uncommitted changes)" if git("status", "--porcelain") else commit


def _shown(path: Path) -> str:
    """A path relative to the checkout when inside it, else as given."""
    try:
        return str(Path(path).resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def _tally_text(claims: pd.DataFrame, block: str | None = None) -> str:
    counts = tally(claims, block)
    return ", ".join(f"{counts[v]} {v}" for v in OUTCOMES) + (
        f", {counts['not measured']} not measured" if counts["not measured"] else "")


def claim_lines(claims: pd.DataFrame, bands_path: Path = BANDS_FILE) -> list[str]:
    """The claims section: outcomes explained, bands on record, the family-wise sentence, one table per block."""
    missing = [c for c in CLAIM_COLUMNS if c not in claims.columns]
    if missing:
        raise ValueError(f"results/{CLAIMS_TABLE}.csv lacks columns {missing}: it was written by an older notebook 09; "
                         "rerun notebook 09 (python -m mia_nb run reruns it from the saved samples)")
    paper = claims[claims.block.isin(PAPER_BLOCKS)]
    out = [f"**Claims:** {len(claims)} tested: {len(paper)} on the paper's four findings ({_tally_text(paper)}) and "
           f"{len(claims) - len(paper)} extensions, never in the paper's tally ({_tally_text(claims, EXTENSIONS)}). "
           "A claim *holds* when its 95% interval lies beyond its no-effect band on the claimed side, *does not "
           "hold* when it lies beyond the band on the other side, shows *no effect* when it lies inside the band "
           "(the effect is smaller than the smallest that counts) and is *undetermined* otherwise. A precondition "
           "(gate) is shown beside a verdict, never instead of it.", "",
           f"**Bands on record:** `{_shown(bands_path)}` (the last commit that changed it: "
           f"{bands_commit(bands_path)}). "
           f"The file's own record: {load_bands(bands_path).recorded}", "",
           f"**Holm column.** {family_sentence(claims)}", ""]
    blocks = [b for b in BLOCK_ORDER if (claims.block == b).any()] + sorted(set(claims.block) - set(BLOCK_ORDER))
    for block in blocks:
        rows = claims[claims.block == block]
        out += [f"### {block}", "", f"*{BLOCKS.get(block, '')}*", "", f"Tally: {_tally_text(claims, block)}.", "",
                "| verdict | Holm | claim | seeds | measured [95% interval] | counts when | gate |",
                "|---|---|---|---|---|---|---|"]
        for r in rows.itertuples():
            measured = "–" if pd.isna(r.measured) else _fmt(r.measured, r.ci_lo, r.ci_hi)
            gate = f"{r.gate_status} ({r.gate})" if isinstance(r.gate, str) and r.gate else "–"
            out.append(f"| {r.verdict} | {r.holm} | {r.claim} | {r.n_seeds} | {measured} | {r.counts_when} | {gate} |")
        out.append("")
    return out


def write_summary(run_dir: Path, profile: object, bands_path: Path = BANDS_FILE) -> Path:
    """Write <run>/report/summary.md from the run's claims, headline and model tables."""
    run_dir = Path(run_dir)
    res = run_dir / RESULTS
    claims_csv, heads_csv = res / f"{CLAIMS_TABLE}.csv", res / f"{HEADLINES_TABLE}.csv"
    claims = pd.read_csv(claims_csv, keep_default_na=False, na_values=[""]) if claims_csv.is_file() else None
    heads = pd.read_csv(heads_csv) if heads_csv.is_file() else None
    model_csvs = (res / f"{MODELS_TABLE}.csv", *(f / f"{MODELS_TABLE}.csv" for f in seed_folders(res)))
    tables = [pd.read_csv(p) for p in model_csvs if p.is_file()]
    models = pd.concat(tables, ignore_index=True) if tables else None
    out = ["## What the study shows", "",
           f"Written by `python -m mia_nb run` from the run's tables (`{run_dir.name}`); refresh with "
           "`python -m mia_nb readme`. Each interval combines the seeds' paired image-bootstrap estimates into a "
           "95% interval built to hold its coverage with few seeds (notebook 09 explains the method).", "",
           *scope_lines(profile, models), ""]
    if heads is not None and len(heads):
        out += ["**Headline numbers** (vanilla target, threshold attack; no verdicts):", ""]
        out += [f"* {h.what}: {_fmt(h.value, h.lo, h.hi)}" for h in heads.itertuples()]
        out.append("")
    if claims is not None and len(claims):
        out += claim_lines(claims.fillna({"gate": "", "gate_status": ""}), bands_path)
    figs = [f for f in KEY_FIGURES if figure_path(run_dir, f) is not None]
    out += [f"![{f}](docs/figures/{f}.png)" for f in figs]
    return write_text(run_dir / REPORT / "summary.md", "\n".join(out).rstrip() + "\n")


def refresh_readme(readme: Path, run_dir: Path, figures_dir: Path) -> int:
    """Put <run>/report/summary.md between the README's findings markers and copy its figures; return #figures."""
    summary = Path(run_dir) / REPORT / "summary.md"
    if not summary.is_file():
        raise FileNotFoundError(f"{summary} not found: run the study first (python -m mia_nb run)")
    text = Path(readme).read_text()
    if START not in text or END not in text:
        raise ValueError(f"{readme}: no '{START}' … '{END}' markers around the findings section")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    write_text(readme, f"{head}{START}\n{summary.read_text()}{END}{tail}")
    figures_dir = Path(figures_dir)
    figures_dir.mkdir(parents=True, exist_ok=True)
    copied = 0
    for f in KEY_FIGURES:
        src = figure_path(run_dir, f)
        if src is not None:
            shutil.copyfile(src, figures_dir / f"{f}.png")
            copied += 1
    return copied
