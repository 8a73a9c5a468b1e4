"""report/summary.md from a run's tables, and the README's findings section refreshed from it.

The summary is written from results/claims.csv, results/headlines.csv (notebook 08) and
results/models.csv only: every number in it comes from the run. `python -m mia_nb readme` copies it
between the README's findings markers and the key figures into docs/figures/, so no number in that
section is typed by hand.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd

from .store import write_text

START, END = "<!-- findings:start -->", "<!-- findings:end -->"
FIGURES = ("04_roc_curves", "05_fpr_heatmap", "05_false_positive_gallery", "06_calibration_tradeoff",
           "07_kde_separation", "08_claims")


def figure_path(run_dir: Path, name: str) -> Path | None:
    """A figure of the run: the run's own (summary notebooks), else the first seed's."""
    for folder in (Path(run_dir) / "figures", *sorted(Path(run_dir).glob("seed_*/figures"))):
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


def write_summary(run_dir: Path, profile: object) -> Path:
    """Write <run>/report/summary.md from the run's claims, headline and model tables."""
    run_dir = Path(run_dir)
    res = run_dir / "results"
    claims = pd.read_csv(res / "claims.csv") if (res / "claims.csv").is_file() else None
    heads = pd.read_csv(res / "headlines.csv") if (res / "headlines.csv").is_file() else None
    tables = [pd.read_csv(p) for p in (res / "models.csv", *sorted(res.glob("seed_*/models.csv"))) if p.is_file()]
    models = pd.concat(tables, ignore_index=True) if tables else None
    out = ["## What the study shows", "",
           f"Written by `python -m mia_nb run` from the run's tables (`{run_dir.name}`); refresh with "
           "`python -m mia_nb readme`. Intervals are paired 95% bootstrap intervals over images and seeds "
           "(notebook 08).", "", *scope_lines(profile, models), ""]
    if heads is not None and len(heads):
        out += ["**Headline numbers** (vanilla target, threshold attack):", ""]
        out += [f"* {h.what}: {_fmt(h.value, h.lo, h.hi)}" for h in heads.itertuples()]
        out.append("")
    if claims is not None and len(claims):
        counts = claims.verdict.value_counts()
        out += [f"**Claims:** {len(claims)} tested; " + ", ".join(f"{n} {v}" for v, n in counts.items()) + ".", "",
                "| verdict | claim | measured [95% interval] | counts when |", "|---|---|---|---|"]
        for r in claims.itertuples():
            rel = {">": f"> +{r.band:g}", "<": f"< −{r.band:g}", "=": f"within ±{r.band:g}"}[r.side]
            measured = "–" if pd.isna(r.measured) else _fmt(r.measured, r.ci_lo, r.ci_hi)
            out.append(f"| {r.verdict} | {r.claim} | {measured} | {rel} |")
        out.append("")
    figs = [f for f in FIGURES if figure_path(run_dir, f) is not None]
    out += [f"![{f}](docs/figures/{f}.png)" for f in figs]
    return write_text(run_dir / "report" / "summary.md", "\n".join(out).rstrip() + "\n")


def refresh_readme(readme: Path, run_dir: Path, figures_dir: Path) -> int:
    """Put <run>/report/summary.md between the README's findings markers and copy its figures; return #figures."""
    summary = Path(run_dir) / "report" / "summary.md"
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
    for f in FIGURES:
        src = figure_path(run_dir, f)
        if src is not None:
            shutil.copyfile(src, figures_dir / f"{f}.png")
            copied += 1
    return copied
