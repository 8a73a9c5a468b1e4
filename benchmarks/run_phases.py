"""Seconds per phase of a study run, read from the runner's own records: the training phase, then each notebook.

    .venv/bin/python benchmarks/run_phases.py --outputs /tmp/before --outputs /tmp/after [--params params/smoke.yaml]
    .venv/bin/python benchmarks/run_phases.py --run --params params/smoke.yaml --outputs /tmp/run

A run leaves its timings where it writes: the training phase in <profile>/notebooks/training.json
(`mia_nb.runner.training.record_timing`: jobs run, seconds, pool images built and forward passes on them included)
and each notebook in its executed copy's papermill metadata (the notebook's seconds and each cell's). Prints one row
per phase (training, then each notebook of each seed, in the order the first run ran them), one column per outputs
folder (two folders: a before / after table), and each notebook's slowest cells in the last folder. `--run` runs the
profile into the (first) outputs folder first. Timings on a busy machine move by tens of percent: compare runs made
one after the other on the same machine.

Below the table, each run's training jobs as the models' own records give them (results/seed_*/models.csv: each
model's training seconds, epochs and images): worker-seconds spent in training steps, the rate of a non-DP job in
GFLOP/s (the training step's FLOPs counted by torch's flop counter, held-out checks left out, so a lower bound) against
a one-thread float32 matmul timed here, and how much of the phase's wall time the training steps fill with the
profile's workers (the rest: forward passes on the pools, the GAN, starting workers and shipping data). `--no-rate`
skips the matmul.

`--tiny` runs a tiny profile's data notebook, training phase and notebook 02 (`--only 01,02`) into a temporary
folder and prints its table, in about a minute: it checks that the script still reads the runner's records
(tests/test_benchmarks.py), it measures nothing.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml

import pandas as pd
import torch

from mia_nb.config import Profile, load_profile
from mia_nb.data.datasets import dataset_info
from mia_nb.layout import MODELS_TABLE, NOTEBOOKS, RESULTS, SEED_PREFIX
from mia_nb.models.engine import n_workers
from mia_nb.models.networks import build_model
from mia_nb.runner.training import TIMING

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_throughput import matmul_flops_per_s, train_step_flops  # noqa: E402 - the sibling benchmark

REPO = Path(__file__).resolve().parents[1]
TINY = {"name": "phases_tiny", "seed": 0, "device": "cpu",
        "splits": {"target_train": 64, "target_heldout": 64, "shadow_train": 64, "shadow_heldout": 64,
                   "calibration": 40, "generator": 0},
        "train": {"epochs": 1, "batch_size": 32},
        "ood": {"max_pool_size": 32, "corruption_severities": [1], "gan": {"n_images": 0, "supply_sizes": []}},
        "calibration": {"label_smoothing": []}, "defenses": {"weight_decay": [], "dp_epsilons": []},
        "engine": {"workers": 1}}


@dataclass(frozen=True)
class Phase:
    """One phase of a run: what ran, for which seed folder, when it started, its seconds and slowest cells."""

    name: str  # "training" or a notebook's stem
    folder: str  # "" (the profile's folder) or seed_<s>
    started: str
    seconds: float
    slowest: tuple[tuple[int, float, str], ...] = ()  # (cell index, seconds, its first line)


def first_line(source: str | list[str]) -> str:
    """A cell's first line of code (not an import), for the slowest-cells list."""
    lines = "".join(source).splitlines()
    return next((ln for ln in lines if ln.strip() and not ln.startswith(("import ", "from ", "#"))), "")[:80]


def notebook_phase(path: Path, folder: str, n_cells: int = 3) -> Phase | None:
    """A notebook's phase from its executed copy's papermill metadata (None when it has none: not run through)."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    meta = nb.get("metadata", {}).get("papermill", {})
    if meta.get("duration") is None:
        return None
    cells = [(i, float(c["metadata"].get("papermill", {}).get("duration") or 0.0), first_line(c["source"]))
             for i, c in enumerate(nb["cells"]) if c.get("cell_type") == "code"]
    slowest = tuple(sorted(cells, key=lambda c: -c[1])[:n_cells])
    return Phase(path.stem, folder, str(meta.get("start_time", "")), float(meta["duration"]), slowest)


def run_phases(base: Path) -> list[Phase]:
    """Every recorded phase of the run in a profile folder, in the order they started."""
    phases = []
    timing = base / NOTEBOOKS / TIMING
    if timing.is_file():
        t = json.loads(timing.read_text(encoding="utf-8"))
        phases.append(Phase("training", "", t["started"], float(t["seconds"])))
    for folder in [base, *sorted(base.glob(f"{SEED_PREFIX}*"))]:
        label = "" if folder == base else folder.name
        for path in sorted((folder / NOTEBOOKS).glob("*.ipynb")):
            phase = notebook_phase(path, label)
            if phase is not None:
                phases.append(phase)
    return sorted(phases, key=lambda p: p.started)


def table(runs: dict[str, list[Phase]]) -> str:
    """Phases as rows (training first, then the notebooks in the order the runs ran them), runs as columns of
    seconds, and the total of each run."""
    rows: dict[tuple[str, str], dict[str, float]] = {("training", ""): {}}
    for label, phases in runs.items():
        for p in phases:
            rows.setdefault((p.name, p.folder), {})[label] = p.seconds
    width = max([len(f"{n} {f}".strip()) for n, f in rows] + [len("phase")])
    cols = {label: max(len(label), 9) for label in runs}
    lines = [f"{'phase':{width}s}  " + "  ".join(f"{label:>{w}s}" for label, w in cols.items())]
    for (name, folder), secs in rows.items():
        cells = [f"{secs[label]:{w - 2}.1f} s" if label in secs else f"{'-':>{w}s}" for label, w in cols.items()]
        lines.append(f"{f'{name} {folder}'.strip():{width}s}  " + "  ".join(cells))
    totals = [f"{sum(p.seconds for p in runs[label]):{w - 2}.1f} s" for label, w in cols.items()]
    lines.append(f"{'total':{width}s}  " + "  ".join(totals))
    return "\n".join(lines)


def slowest_cells(phases: list[Phase]) -> str:
    """Each notebook's slowest cells."""
    out = []
    for p in phases:
        if p.slowest:
            out.append(f"{p.name} {p.folder}".strip() + ": " + "; ".join(
                f"cell {i} {s:.1f} s ({line})" for i, s, line in p.slowest))
    return "\n".join(out)


def model_rows(base: Path) -> pd.DataFrame:
    """Every seed's models table of the run in a profile folder (one row per model the seed's notebooks used)."""
    tables = [pd.read_csv(f) for f in sorted((base / RESULTS).glob(f"{SEED_PREFIX}*/{MODELS_TABLE}.csv"))]
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()


def flops_per_image(profile: Profile) -> float:
    """FLOPs of one training image (forward + backward) of the profile's model at its batch size."""
    torch.manual_seed(0)
    info = dataset_info(profile)
    model = build_model(profile.model.arch, info.n_classes, info.channels, info.size)
    b = profile.train.batch_size
    x, y = torch.randn(b, info.channels, info.size, info.size), torch.randint(0, info.n_classes, (b,))
    return train_step_flops(model, x, y) / b


def training_rate(base: Path, profile: Profile, peak: float | None) -> str:
    """The run's training jobs: worker-seconds in training steps, a non-DP job's GFLOP/s (and its share of
    `peak`), and the share of the training phase's wall time those steps fill with the profile's workers."""
    rows = model_rows(base)
    timing = base / NOTEBOOKS / TIMING
    if rows.empty or "train_seconds" not in rows or not timing.is_file():
        return "training jobs: no models table or training record in this run"
    rows = rows.drop_duplicates("key")  # a model two notebooks list is one job
    # a DP-SGD model's record carries its noise multiplier (0 for the clip-only control); the others none
    dp = rows["dp_noise_multiplier"].notna() if "dp_noise_multiplier" in rows else pd.Series(False, rows.index)
    plain = rows[~dp]
    per_image = flops_per_image(profile)
    gflops = float((plain["epochs"] * plain["n_train"] * per_image).sum() / plain["train_seconds"].sum()) / 1e9
    phase = float(json.loads(timing.read_text(encoding="utf-8"))["seconds"])
    workers = n_workers(profile.engine, len(rows))
    busy = float(rows["train_seconds"].sum())
    line = (f"training jobs: {len(rows)} models, {busy:.0f} worker-seconds in training steps "
            f"({rows.loc[dp, 'train_seconds'].sum():.0f} of them DP-SGD); a non-DP job "
            f"{gflops:.1f} GFLOP/s per worker")
    if peak:
        line += f" = {gflops * 1e9 / peak:.0%} of a one-thread matmul here ({peak / 1e9:.1f} GFLOP/s)"
    return line + (f"; with {workers} workers the steps fill {busy / workers / phase:.0%} of the training phase's "
                   f"{phase:.0f} s")


def run(params: Path, outputs: Path, only: str | None = None) -> None:
    """`python -m mia_nb run` of a profile into `outputs` (the repository's folder as working directory)."""
    cmd = [sys.executable, "-m", "mia_nb", "run", "--params", str(params), "--outputs", str(outputs)]
    subprocess.run(cmd + (["--only", only] if only else []), cwd=REPO, check=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--outputs", action="append", default=[], help="an outputs root (twice: before and after)")
    ap.add_argument("--params", default="params/smoke.yaml", help="the profile (its name names the folder)")
    ap.add_argument("--run", action="store_true", help="run the profile into the first outputs root first")
    ap.add_argument("--tiny", action="store_true", help="a tiny run (--only 01,02) into a temporary folder")
    ap.add_argument("--no-rate", action="store_true", help="skip timing a matmul (the training rate's reference)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.tiny:
            args.params, args.outputs = str(Path(tmp) / "tiny.yaml"), [str(Path(tmp) / "outputs")]
            Path(args.params).write_text(yaml.safe_dump(TINY, sort_keys=False))
        profile = load_profile(args.params)
        name = profile.name
        if not args.outputs:
            ap.error("give --outputs (or --tiny)")
        if args.run or args.tiny:
            run(Path(args.params).resolve(), Path(args.outputs[0]).resolve(), "01,02" if args.tiny else None)
        labels = [Path(o).name for o in args.outputs]
        labels = labels if len(set(labels)) == len(labels) else [str(Path(o)) for o in args.outputs]
        runs = {label: run_phases(Path(o) / name) for label, o in zip(labels, args.outputs)}
        print(f"seconds per phase, profile {name} (training: {TIMING}; notebooks: papermill metadata)")
        print(table(runs))
        if not args.no_rate:
            torch.set_num_threads(1)
            peak = matmul_flops_per_s(512, 5) if args.tiny else matmul_flops_per_s()
        for o in args.outputs:
            print(f"{Path(o).name}: " + training_rate(Path(o) / name, profile, None if args.no_rate else peak))
        print("slowest cells (" + list(runs)[-1] + "):")
        print(slowest_cells(list(runs.values())[-1]))


if __name__ == "__main__":
    main()
