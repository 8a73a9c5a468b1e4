"""Draw the README's pipeline figure: notebooks → store → tables → claims → report (docs/figures/pipeline.svg).

Run it after changing the pipeline: `.venv/bin/python docs/pipeline_figure.py` (the SVG is committed; nothing
of a run is in it). The stages name the folders of `mia_nb.layout`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

OUT = Path(__file__).resolve().parent / "figures" / "pipeline.svg"

STAGES = [  # (title, what it holds, who makes it)
    ("notebooks", "01 data · 02–03 target, shadow\n04–05 attacks, non-members\n06–07 calibration, defenses\n"
                  "08 reference attacks · 09 claims", "notebooks/*.ipynb\n(run by make study or JupyterLab)"),
    ("store", "trained models\ncached model outputs\n(keyed by config + code)", "outputs/<profile>/store/"),
    ("tables", "attacks.csv, variants.csv, ...\nper-image samples/*.npz\none folder per seed", "outputs/<profile>/\nresults/, samples/"),
    ("claims", "each finding as a test:\ninterval vs no-effect band\n→ holds / does not hold /\nno effect / undetermined",
     "results/claims.csv\nresults/headlines.csv"),
    ("report", "report/index.html\nexecuted notebooks\nREADME findings", "outputs/<profile>/report/"),
]
COLOURS = ["#dbe9f6", "#e8e0f3", "#def2e0", "#fdebd3", "#f3f3f3"]


def draw() -> plt.Figure:
    """The five stages as boxes left to right, joined by arrows."""
    fig, ax = plt.subplots(figsize=(13, 3.2))
    ax.set_xlim(0, 5 * 2.6)
    ax.set_ylim(0, 3.2)
    ax.axis("off")
    for i, ((title, body, where), colour) in enumerate(zip(STAGES, COLOURS)):
        x = 0.1 + i * 2.6
        ax.add_patch(FancyBboxPatch((x, 0.75), 2.1, 2.3, boxstyle="round,pad=0.02,rounding_size=0.12",
                                    facecolor=colour, edgecolor="#555"))
        ax.text(x + 1.05, 2.8, title, ha="center", va="center", fontsize=13, weight="bold")
        ax.text(x + 1.05, 1.75, body, ha="center", va="center", fontsize=8.5, linespacing=1.35)
        ax.text(x + 1.05, 0.38, where, ha="center", va="center", fontsize=7.5, color="#444", family="monospace")
        if i:
            ax.add_patch(FancyArrowPatch((x - 0.48, 1.9), (x - 0.02, 1.9), arrowstyle="-|>", mutation_scale=18,
                                         color="#333", lw=1.5))
    fig.tight_layout(pad=0.2)
    return fig


def main(argv: list[str] | None = None) -> Path:
    """Write the figure (to --out, default docs/figures/pipeline.svg) and return its path."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with matplotlib.rc_context():  # matplotlib's own style, whatever theme the caller set
        matplotlib.rcdefaults()
        plt.rcParams["svg.hashsalt"] = "mia-nb"  # stable ids: the same drawing gives the same file
        fig = draw()
        fig.savefig(args.out, metadata={"Date": None})
        plt.close(fig)
    return args.out


if __name__ == "__main__":
    print(main())
