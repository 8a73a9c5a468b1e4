"""The training phase between the `data` and the `per_seed` notebooks: every model of every seed, and the
GAN, in one engine call. Each model's job also runs the forward passes the notebooks read of it (its logits on
every pool, the features last-layer Laplace needs: `variants.training_jobs`), so the notebooks find them in the
store. The phase's seconds go to <profile>/notebooks/training.json (`TIMING`), beside the executed notebooks,
whose papermill metadata hold theirs."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path

from mia_nb.attacks import reference_models, reference_variants
from mia_nb.config import Profile
from mia_nb.data import gan
from mia_nb.data.splits import assert_same_shared_parts
from mia_nb.layout import DATA, NOTEBOOKS, inside
from mia_nb.models import jobs, variants
from mia_nb.models.engine import release_workers
from mia_nb.store import write_json
from mia_nb.study import Study

TIMING = "training.json"  # the training phase's record, in the profile folder's notebooks/


def train_models(profile: Profile, outputs_root: Path, seeds: tuple[int, ...], quiet: bool = False) -> int:
    """Train every model the per-seed notebooks will ask for (all seeds, and the GAN) in one engine call, each
    job with the forward passes the notebooks read of its model.

    The notebooks then load models, logits and features from the store; one bar shows models done / total and
    the ETA. Seeds whose splits are not drawn yet are skipped (their notebooks train what they need).
    Returns the number of jobs run; records the phase's seconds (`record_timing`).
    """
    studies = [Study(profile, outputs_root, seed) for seed in seeds]
    studies = [st for st in studies if (st.dir / DATA / "splits.npz").is_file()]
    if not studies:
        return 0
    assert_same_shared_parts({st.seed: st.splits for st in studies})
    t0, started = time.perf_counter(), datetime.now(timezone.utc)
    models = [item for st in studies
              for item in variants.training_jobs(st, variants.all_model_requests(st) + reference_models.requests(st)
                                                 + reference_variants.requests(st))]
    models.sort(key=lambda item: not item[0].config.get("dp"))  # the slowest jobs first
    items = gan.missing_gan(studies[0]) + models
    if items and not quiet:
        print(f"training {len(items)} models through the engine ({profile.engine.backend})", flush=True)
    jobs.run_missing(items, profile.engine, desc="models", progress=not quiet)
    if items:
        release_workers(profile.engine)  # the notebooks' kernels need the memory the idle workers hold
    seconds = time.perf_counter() - t0
    if items and not quiet:
        print(f"    trained {len(items)} models in {seconds:.0f} s", flush=True)
    record_timing(studies[0].base, len(items), started, seconds)
    return len(items)


def record_timing(base: Path, n_jobs: int, started: datetime, seconds: float) -> Path:
    """Write the training phase's record (jobs run, start time, seconds, pool images and labels built included)
    atomically to <profile folder>/notebooks/training.json."""
    return write_json(inside(base, Path(NOTEBOOKS) / TIMING),
                      {"phase": "training", "jobs": n_jobs, "started": started.isoformat(timespec="seconds"),
                       "seconds": round(seconds, 3)})
