"""HTML report: every executed notebook rendered with nbconvert, linked from an index page."""

from __future__ import annotations

import html
from pathlib import Path

import nbformat
import pandas as pd
from nbconvert import HTMLExporter

from mia_nb.layout import CLAIMS_TABLE, FIGURES, KEY_FIGURES, NOTEBOOKS, REPORT, RESULTS, seed_folders
from mia_nb.store import write_text


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


def _figure_block(fig: Path, out_dir: Path) -> str:
    """An <img> of a figure, referenced relative to the report folder."""
    rel = Path("..") / fig.relative_to(out_dir.parent) if fig.is_relative_to(out_dir.parent) else fig.resolve()
    return f'<figure><img src="{html.escape(str(rel))}" alt="{fig.stem}"><figcaption>{fig.stem}</figcaption></figure>'


def write_report(run_dir: Path, title: str = "mia-nb report") -> Path:
    """Render every executed notebook of a run and write report/index.html; return its path."""
    run_dir = Path(run_dir)
    out_dir = run_dir / REPORT
    notebooks = executed_notebooks(run_dir)
    if not notebooks:
        raise FileNotFoundError(f"{run_dir} holds no executed notebook: run the study first")
    pages = [render_notebook(nb, out_dir, prefix) for prefix, nb in notebooks]
    links = "\n".join(f'<li><a href="{p.name}">{html.escape(p.stem)}</a></li>' for p in pages)
    fig_dirs = [run_dir / FIGURES, *(f / FIGURES for f in seed_folders(run_dir) if (f / FIGURES).is_dir())]
    figures = [f for name in KEY_FIGURES for d in fig_dirs[:2] for f in sorted(d.glob(f"{name}*.png"))]
    claims_path = run_dir / RESULTS / f"{CLAIMS_TABLE}.csv"
    claims = pd.read_csv(claims_path).to_html(index=False, classes="claims", na_rep="–", float_format="%.3f") \
        if claims_path.is_file() else "<p>No claims table yet (notebook 08 writes it).</p>"
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; color: #222; }}
figure {{ display: inline-block; margin: .5em; max-width: 48%; vertical-align: top; }}
figure img {{ max-width: 100%; border: 1px solid #ddd; }}
table.claims {{ border-collapse: collapse; font-size: 90%; }}
table.claims td, table.claims th {{ border: 1px solid #ccc; padding: .3em .6em; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<h2>Notebooks</h2><ol>{links}</ol>
<h2>Claims check</h2>{claims}
<h2>Key figures</h2>{''.join(_figure_block(f, out_dir) for f in figures) or '<p>No key figures yet.</p>'}
</body></html>
"""
    return write_text(out_dir / "index.html", page)
