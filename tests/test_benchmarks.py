"""Every script in benchmarks/ runs in its tiny mode (`--tiny`, seconds), so a benchmark cannot break unseen.

A tiny run checks that a script still runs against the package's current API; its timings mean nothing.
Each run is a fresh interpreter that imports torch, torchvision and the package (about 5 s of CPU before the
benchmark starts), so over 10 s on a busy 2-core machine: all of them are `slow` (in `make test`, not in
`make test-fast`).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = REPO / "benchmarks"
SCRIPTS = sorted(p.name for p in BENCHMARKS.glob("*.py"))


def run_benchmark(script: str, *args: str) -> subprocess.CompletedProcess:
    """Run benchmarks/<script> with `args` from the repository root on one torch thread; the finished process."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(BENCHMARKS / script), *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)


def test_the_benchmarks_are_found():
    assert {"attack_phase.py", "engine.py", "llla_backends.py"} <= set(SCRIPTS), SCRIPTS


@pytest.mark.slow
@pytest.mark.parametrize("script", SCRIPTS)
def test_benchmark_runs_in_tiny_mode(script):
    proc = run_benchmark(script, "--tiny")
    assert proc.returncode == 0, f"benchmarks/{script} --tiny failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    assert proc.stdout.strip(), f"benchmarks/{script} --tiny printed nothing"


@pytest.mark.slow
def test_train_throughput_prints_a_bf16_row_on_request():
    proc = run_benchmark("train_throughput.py", "--tiny", "--bf16")
    assert proc.returncode == 0, proc.stderr[-4000:]
    rows = [line.split() for line in proc.stdout.splitlines() if line.split()[:1] == ["16"]]
    assert [r[1:3] for r in rows] == [["contiguous", "float32"], ["channels_last", "float32"], ["channels_last", "bf16"]]


@pytest.mark.slow
def test_llla_benchmark_runs_on_a_profiles_models(tmp_path, tiny_study, tiny_profile_file):
    """`llla_backends.py --profile` times notebook 06's LLLA arms on a study's vanilla pair (trained by the run)."""
    proc = run_benchmark("llla_backends.py", "--profile", str(tiny_profile_file), "--outputs", str(tmp_path),
                         "--seed", str(tiny_study.seed), "--repeats", "1")
    assert proc.returncode == 0, f"llla_backends.py --profile failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    assert "all arms:" in proc.stdout, proc.stdout[-2000:]


def test_the_phase_table_reads_the_training_rate_off_the_models_records(tmp_path, monkeypatch):
    """run_phases' training line: GFLOP/s of the non-DP jobs from their own seconds, and how much of the phase's
    wall time the training steps fill; a model listed by two seeds' tables is one job."""
    import json

    import pandas as pd
    sys.path.insert(0, str(BENCHMARKS))
    import run_phases
    from mia_nb.config import load_profile

    base = tmp_path / "default"
    (base / "notebooks").mkdir(parents=True)
    (base / "notebooks" / "training.json").write_text(json.dumps({"seconds": 100.0}))
    rows = [{"variant": "vanilla", "key": "a", "epochs": 10, "n_train": 100, "train_seconds": 20.0},
            {"variant": "l2_0.001", "key": "b", "epochs": 10, "n_train": 100, "train_seconds": 30.0},
            {"variant": "dp_8", "key": "c", "epochs": 5, "n_train": 100, "train_seconds": 90.0,
             "dp_noise_multiplier": 0.7}]
    for seed, part in (("seed_1", rows[:2]), ("seed_2", rows[1:])):
        (base / "results" / seed).mkdir(parents=True)
        pd.DataFrame(part).to_csv(base / "results" / seed / "models.csv", index=False)
    monkeypatch.setattr(run_phases, "flops_per_image", lambda profile: 1e9)
    monkeypatch.setattr(run_phases, "n_workers", lambda cfg, n_jobs: 2)  # whatever this machine's cores
    line = run_phases.training_rate(base, load_profile(REPO / "params" / "default.yaml"), peak=100e9)
    # 2,000 images x 1 GFLOP in 50 s = 40 GFLOP/s; 140 worker-seconds on 2 workers fill 70 s of 100 s
    assert "3 models, 140 worker-seconds" in line and "(90 of them DP-SGD)" in line, line
    assert "40.0 GFLOP/s per worker = 40% of" in line and "fill 70% of the training phase's 100 s" in line, line
