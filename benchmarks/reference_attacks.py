"""The reference-model attack phase at the default profile's sizes, from logits only (issue 13's goal: < 20 s).

    .venv/bin/python benchmarks/reference_attacks.py [--k 16] [--pools 13] [--views 1]

Synthetic logits of the default sizes (2,500 members, 5,000 held-out, `--pools` pools of 5,000 images,
2,000 population images, 10 classes) for the target and K reference models; the first half of the pools are
made from the held-out images (honest masks by source), the rest are OUT for every model. Times
`reference_models.scores` (one fit: LiRA's spreads and shift, RMIA's `a` chosen on the references; then
LiRA online / offline and RMIA on every set), the TPR-vs-K curve (one refit per k) and the options table.
Not a test: machines differ ~3x in speed. `--tiny` runs the same steps on a few hundred images per set, in
seconds (tests/test_benchmarks.py: the script still runs; it measures nothing).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from mia_nb.attacks import lira_rmia
from mia_nb.attacks.reference_models import HELDOUT, MEMBERS, POPULATION_Z, Candidates, option_table, scores
from mia_nb.config import ReferenceConfig


def synthetic(k: int, n_pools: int, seed: int = 0, scale: float = 1.0, views: int = 1) -> dict[str, Candidates]:
    """Members, held-out, pools and population z (the default sizes times `scale`) with complementary IN masks
    on the population (members + the first n_members held-out images); pools 0, 2, ... take the held-out masks."""
    rng = np.random.default_rng(seed)
    n_m, n_p, n_z, c = int(2500 * scale), int(5000 * scale), int(2000 * scale), 10
    n_h = 2 * n_m
    pop_mask = lira_rmia.complementary_splits(np.arange(2 * n_m), k, seed)
    held_mask = np.zeros((k, n_h), bool)
    held_mask[:, :n_m] = pop_mask[:, n_m:]

    def world(n: int, mask: np.ndarray, member: bool) -> Candidates:
        y = rng.integers(0, c, n)
        base = rng.normal(0, 1, (n, c))
        base[np.arange(n), y] += rng.normal(4, 2, n)  # per-image difficulty
        refs = base[None, None] + rng.normal(0, 0.5, (k, views, n, c))
        refs[:, :, np.arange(n), y] += 1.5 * mask[:, None]
        target = base[None] + rng.normal(0, 0.5, (views, n, c))
        target[:, np.arange(n), y] += 1.5 * member
        return Candidates(target.astype(np.float32), refs.astype(np.float32), y, mask)
    out = {MEMBERS: world(n_m, pop_mask[:, :n_m], True), HELDOUT: world(n_h, held_mask, False)}
    for i in range(n_pools):
        out[f"pool_{i}"] = world(n_p, held_mask[:, :n_p] if i % 2 == 0 else np.zeros((k, n_p), bool), False)
    out[POPULATION_Z] = world(n_z, np.zeros((k, n_z), bool), False)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--k", type=int, default=16)
    ap.add_argument("--pools", type=int, default=13)
    ap.add_argument("--views", type=int, default=1, help="test-time views per image (2: tta_flip)")
    ap.add_argument("--tiny", action="store_true", help="a seconds-long run on tiny sizes (checks the script runs)")
    args = ap.parse_args()
    if args.tiny:
        args.k, args.pools, args.views = 4, 2, 2
    data = synthetic(args.k, args.pools, scale=0.04 if args.tiny else 1.0, views=args.views)
    cfg = ReferenceConfig(k=args.k, tta_flip=args.views > 1)
    t0 = time.perf_counter()
    _, fitted = scores(data, cfg)
    t1 = time.perf_counter()
    curve = sorted({k for k in (2, 4, 8) if k < args.k} | {args.k})
    for k in curve:
        scores(data, cfg, k=k, sets=(MEMBERS, HELDOUT))
    t2 = time.perf_counter()
    table = option_table(data, cfg, seed=0)
    t3 = time.perf_counter()
    n = sum(c.n for c in data.values())
    print(f"K = {args.k}, {args.views} view(s), {len(data)} sets, {n:,} images: one fit and every attack on every "
          f"set {t1 - t0:.1f} s (RMIA a = {fitted.rmia.a:.2f} chosen on the references); TPR-vs-K curve "
          f"({len(curve)} refits) {t2 - t1:.1f} s; options table ({len(table)} rows) {t3 - t2:.1f} s; "
          f"total {t3 - t0:.1f} s")


if __name__ == "__main__":
    main()
