"""Notebook 09's claim phase at the default run's sizes (issue 19's goal: at most 30 s on 2 cores).

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/claims_phase.py [--seeds 3] [--n-boot 2000]

Writes synthetic sample files (`mia_nb.attacks.samples`, the format notebooks 04-08 write) for the default
run: 3 seeds; 2,500 members; 5,000 held-out images and the default pools (transforms, corruptions at
severities 1 and 3, inverted, digits of 1,797, uniform, GAN fakes, 5,000 each); every variant of the default
profile (vanilla, 6 temperatures, 2 label smoothings, 3 LLLA arms, 2 L2, 2 DP-SGD, dp_clip) with the four
attacks; the reference attacks' file on the first seed. Then times what notebook 09 does with them: read every
seed (`findings.load_seed`), every claim (`findings.check`) and the headline numbers (`findings.headlines`)
with the profile's 2,000 resamples. Not a test: machines differ ~3× in speed. `--tiny` runs the same steps on
a few hundred images, two seeds and 50 resamples, in seconds (tests/test_benchmarks.py: the script still runs).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from mia_nb.attacks.samples import SampleFile, write_samples
from mia_nb.claims import findings
from mia_nb.layout import REFERENCE_VARIANT

ATTACKS = ("threshold", "entropy", "salem", "loss")
REF_ATTACKS = (*findings.REF_ATTACKS, "threshold", "loss")
GROUPS = {"heldout": "in distribution", "permuted": "transform", "scaled255": "transform", "unnormalized": "transform",
          **{f"{c}_{s}": "corruption" for c in ("noise", "blur", "contrast") for s in (1, 3)},
          "inverted": "corruption", "digits": "other content", "uniform": "other content", "gan": "generated"}
VARIANTS = {"vanilla": ("vanilla", None), "temp_fitted": ("temperature", 1.7),
            **{f"temp_{t:g}": ("temperature", t) for t in (0.25, 0.5, 2.0, 5.0, 10.0)},
            "ls_0.0083": ("label_smoothing", 0.0083), "ls_0.1": ("label_smoothing", 0.1), "llla": ("llla", None),
            "llla_marglik": ("llla", None), "llla_leaky": ("llla", None), "l2_0.0003": ("weight_decay", 0.0003),
            "l2_0.001": ("weight_decay", 0.001), "dp_1": ("dp", 1.0), "dp_8": ("dp", 8.0), "dp_clip": ("dp_clip", None)}


def sizes(scale: float) -> dict[str, int]:
    """Images per set at the default sizes times `scale` (digits: scikit-learn's 1,797 at most)."""
    n = {name: int(5000 * scale) for name in GROUPS}
    n["digits"] = min(1797, n["digits"])
    return {"members": int(2500 * scale), **n}


def variant_file(name: str, seed: int, n: dict[str, int], rng: np.random.Generator) -> SampleFile:
    """One variant's arrays: members a little more confident and more often called member than non-members."""
    family, strength = VARIANTS[name]
    arrays: dict[str, np.ndarray] = {}
    for set_name, size in n.items():
        member = set_name == "members"
        arrays[f"conf/{set_name}"] = 1 / (1 + np.exp(-rng.normal(3.0 if member else 2.5, 1.5, size)))
        if GROUPS.get(set_name) not in ("other content", "generated"):
            arrays[f"correct/{set_name}"] = rng.random(size) < (0.99 if member else 0.86)
        for a in ATTACKS:
            arrays[f"{a}/score/{set_name}"] = rng.normal(0.3 if member else 0.0, 1.0, size)
            arrays[f"{a}/member/{set_name}"] = rng.random(size) < (0.85 if member else 0.7)
    base = {p: "heldout" if GROUPS[p] in ("transform", "corruption", "in distribution") else p for p in GROUPS}
    return SampleFile(name, family, strength, name == "llla_leaky", seed, tuple(GROUPS), base, dict(GROUPS), arrays)


def reference_file(seed: int, n: dict[str, int], rng: np.random.Generator) -> SampleFile:
    """Notebook 08's arrays: scores and decisions at the 1% / 0.1% held-out operating points, and heldout_pop."""
    sets = {**n, "heldout_pop": n["members"]}
    arrays: dict[str, np.ndarray] = {f"conf/{s}": rng.random(size) for s, size in sets.items()}
    for a in REF_ATTACKS:
        for s, size in sets.items():
            arrays[f"{a}/score/{s}"] = rng.normal(0.3 if s == "members" else 0.0, 1.0, size)
            for point in ("1pct", "01pct"):
                arrays[f"{a}@{point}/member/{s}"] = rng.random(size) < 0.01
    return SampleFile(REFERENCE_VARIANT, "reference", 16, False, seed, tuple(GROUPS), {}, dict(GROUPS), arrays)


def write_run(root: Path, seeds: int, scale: float) -> list[Path]:
    """samples/ folders of `seeds` seeds (the reference attacks on the first only); their paths."""
    n = sizes(scale)
    folders = []
    for i in range(seeds):
        folder = root / f"seed_{42 + i}" / "samples"
        folder.mkdir(parents=True)
        rng = np.random.default_rng(i)
        for name in VARIANTS:
            write_samples(folder, variant_file(name, 42 + i, n, rng))
        if i == 0:
            write_samples(folder, reference_file(42 + i, n, rng))
        folders.append(folder)
    return folders


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3, help="seeds of the run")
    ap.add_argument("--n-boot", type=int, default=2000, help="paired resamples per seed (attacks.n_boot)")
    ap.add_argument("--tiny", action="store_true", help="a seconds-long run on tiny sizes (checks the script runs)")
    args = ap.parse_args()
    seeds, n_boot, scale = (2, 50, 0.05) if args.tiny else (args.seeds, args.n_boot, 1.0)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        folders = write_run(Path(tmp), seeds, scale)
        print(f"wrote {seeds} seed(s) x {len(VARIANTS)} variants (+ reference attacks on the first), "
              f"{sizes(scale)['members']:,} members, {len(GROUPS)} pools: {time.perf_counter() - t0:.1f} s (setup)",
              flush=True)
        t0, cpu0 = time.perf_counter(), time.process_time()
        data = [findings.load_seed(f) for f in folders]
        t_load = time.perf_counter() - t0
        t0 = time.perf_counter()
        resampling = findings.Resampling(n_boot)
        table = findings.check(data, n_boot=n_boot, resampling=resampling)
        t_check = time.perf_counter() - t0
        t0 = time.perf_counter()
        heads = findings.headlines(data, n_boot=n_boot, resampling=resampling)
        t_heads = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
    measured = int((table.verdict != findings.NOT_RUN).sum())
    print(f"read samples {t_load:.1f} s; {len(table)} claims ({measured} measured), {n_boot:,} resamples per seed: "
          f"{t_check:.1f} s; {len(heads)} headline numbers: {t_heads:.1f} s")
    print(f"claim phase: {t_load + t_check + t_heads:.1f} s wall, {cpu:.1f} s CPU of this process "
          f"(goal: <= 30 s on 2 cores; on a busy machine the CPU time is the steadier figure)")


if __name__ == "__main__":
    main()
