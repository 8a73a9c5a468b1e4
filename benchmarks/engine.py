"""Models per minute through the engine: 1 worker vs 2 workers (1 torch thread each), and 1 process × 2 threads.

    .venv/bin/python benchmarks/engine.py [--params params/default.yaml] [--models 4] [--epochs 0]

Trains `--models` copies of the profile's target recipe (distinct job seeds) on the default profile's
data, three ways, in one run on one machine, and prints models per minute and the speed-ups.
Goal (issue 10): the second worker gives >= 1.4x on 2 cores. Not a test: machines differ ~3x in speed.
`--tiny` trains two one-epoch models of the smoke profile each way, in seconds: it checks that the script
still runs (tests/test_benchmarks.py), it measures nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time

import torch

from mia_nb.config import EngineConfig, load_profile
from mia_nb.models.engine import run_jobs
from mia_nb.study import Study
from mia_nb.models.jobs import ModelRequest, make_job


def jobs_for(study: Study, n: int, epochs: int) -> list:
    """`n` target-recipe jobs with distinct variants (so distinct seeds)."""
    train = study.profile.train
    if epochs:
        train = dataclasses.replace(train, epochs=epochs)
    return [make_job(study, ModelRequest("target", f"bench_{i}", train)) for i in range(n)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="params/default.yaml")
    ap.add_argument("--models", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=0, help="0 = the profile's epochs")
    ap.add_argument("--tiny", action="store_true", help="a seconds-long run on tiny sizes (checks the script runs)")
    args = ap.parse_args()
    if args.tiny:
        args.params, args.models, args.epochs = "params/smoke.yaml", 2, 1
    profile = dataclasses.replace(load_profile(args.params), seeds=())
    with tempfile.TemporaryDirectory() as tmp:
        study = Study(profile, tmp, profile.seed)
        study.make_splits()
        jobs = jobs_for(study, args.models, args.epochs)
        rows = {}
        for label, workers in (("1 worker x 1 thread", 1), ("2 workers x 1 thread", 2)):
            t0 = time.perf_counter()
            run_jobs(jobs, EngineConfig(workers=workers), progress=False)
            rows[label] = time.perf_counter() - t0
        torch.set_num_threads(2)
        t0 = time.perf_counter()
        for job in jobs:  # in this process, two intra-op threads per model, one model after another
            job()
        rows["1 process x 2 threads"] = time.perf_counter() - t0
    epochs = args.epochs or profile.train.epochs
    print(f"{args.models} models, {epochs} epochs each, {len(jobs[0].y)} training images ({profile.name} recipe)")
    base = rows["1 worker x 1 thread"]
    for label, seconds in rows.items():
        print(f"  {label:24s} {seconds:7.1f} s  {60 * args.models / seconds:6.2f} models/min  "
              f"speed-up vs 1 worker {base / seconds:4.2f}x")


if __name__ == "__main__":
    main()
