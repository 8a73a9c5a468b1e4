"""The training phase between the `data` and the `per_seed` notebooks: every model of every seed, and the
GAN, in one engine call."""

from __future__ import annotations

import time
from pathlib import Path

from mia_nb.attacks import reference_models
from mia_nb.config import Profile
from mia_nb.data import gan
from mia_nb.data.splits import assert_same_shared_parts
from mia_nb.layout import DATA
from mia_nb.models import jobs, variants
from mia_nb.models.engine import release_workers
from mia_nb.study import Study


def train_models(profile: Profile, outputs_root: Path, seeds: tuple[int, ...], quiet: bool = False) -> int:
    """Train every model the per-seed notebooks will ask for (all seeds, and the GAN) in one engine call.

    The notebooks then load them from the store; one bar shows models done / total and the ETA.
    Seeds whose splits are not drawn yet are skipped (their notebooks train what they need).
    Returns the number of jobs run.
    """
    studies = [Study(profile, outputs_root, seed) for seed in seeds]
    studies = [st for st in studies if (st.dir / DATA / "splits.npz").is_file()]
    if not studies:
        return 0
    assert_same_shared_parts({st.seed: st.splits for st in studies})
    models = [item for st in studies
              for item in jobs.missing(st, variants.all_model_requests(st) + reference_models.requests(st))]
    models.sort(key=lambda item: not item[0].config.get("dp"))  # the slowest jobs first
    items = gan.missing_gan(studies[0]) + models
    if items and not quiet:
        print(f"training {len(items)} models through the engine ({profile.engine.backend})", flush=True)
    t0 = time.perf_counter()
    jobs.run_missing(items, profile.engine, desc="models", progress=not quiet)
    if items:
        release_workers(profile.engine)  # the notebooks' kernels need the memory the idle workers hold
    if items and not quiet:
        print(f"    trained {len(items)} models in {time.perf_counter() - t0:.0f} s", flush=True)
    return len(items)
