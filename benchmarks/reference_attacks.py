"""The reference-model attack phase at the default profile's sizes, from logits only (issue 13's goal: < 20 s).

    .venv/bin/python benchmarks/reference_attacks.py [--k 16] [--pools 13]

Synthetic logits of the default sizes (2,500 members, 5,000 held-out, `--pools` pools of 5,000 images,
2,000 population images, 10 classes) for the target and K reference models; times
`refmodels.scores` (LiRA online / offline, RMIA with `a` chosen on the references) over every set,
then the TPR-vs-K curve. Not a test: machines differ ~3x in speed.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from mia_nb import reference
from mia_nb.refmodels import Candidates, scores


def synthetic(k: int, n_pools: int, seed: int = 0) -> dict[str, Candidates]:
    """Members, held-out, pools and population z with complementary IN masks on the first 5,000 candidates."""
    rng = np.random.default_rng(seed)
    n_m, n_h, n_p, n_z, c = 2500, 5000, 5000, 2000, 10
    pop_mask = reference.complementary_splits(np.arange(2 * n_m), k, seed)

    def world(n: int, mask: np.ndarray, member: bool) -> Candidates:
        y = rng.integers(0, c, n)
        base = rng.normal(0, 1, (n, c))
        base[np.arange(n), y] += rng.normal(4, 2, n)  # per-image difficulty
        refs = base[None] + rng.normal(0, 0.5, (k, n, c))
        refs[:, np.arange(n), y] += 1.5 * mask
        target = base + rng.normal(0, 0.5, (n, c))
        target[np.arange(n), y] += 1.5 * member
        return Candidates(target.astype(np.float32), refs.astype(np.float32), y, mask)
    out = {"members": world(n_m, pop_mask[:, :n_m], True)}
    held_mask = np.zeros((k, n_h), bool)
    held_mask[:, :n_m] = pop_mask[:, n_m:]
    out["heldout"] = world(n_h, held_mask, False)
    for i in range(n_pools):
        out[f"pool_{i}"] = world(n_p, np.zeros((k, n_p), bool), False)
    out["population_z"] = world(n_z, np.zeros((k, n_z), bool), False)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--k", type=int, default=16)
    ap.add_argument("--pools", type=int, default=13)
    args = ap.parse_args()
    data = synthetic(args.k, args.pools)
    t0 = time.perf_counter()
    s, a = scores(data)
    t1 = time.perf_counter()
    for k in (2, 4, 8, args.k):
        scores(data, k=k, a=a)
    t2 = time.perf_counter()
    n = sum(len(c.target) for c in data.values())
    print(f"K = {args.k}, {len(data)} sets, {n:,} images: every attack on every set {t1 - t0:.1f} s "
          f"(RMIA a = {a:.2f} chosen on the references); TPR-vs-K curve (4 values of k) {t2 - t1:.1f} s")


if __name__ == "__main__":
    main()
