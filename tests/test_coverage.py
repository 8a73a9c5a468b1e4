"""Coverage of `paired.combine` with three seeds: the 95% interval must cover the mean effect whatever the ratio
of between-seed to image variation (issue 19: the former seed bootstrap covered 72-99.5% here)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from mia_nb.claims import paired

N_SEEDS, N_BOOT, REPEATS, MU, IMAGE_SD = 3, 200, 2000, 0.3, 0.01


def simulate(ratio: float, repeats: int = REPEATS, seed: int = 0) -> float:
    """Share of `repeats` simulated studies whose combined 95% interval covers the true mean effect MU.

    Seed s has true effect MU + b_s, b_s ~ N(0, tau²); its point is that plus image noise N(0, sigma²), and
    its N_BOOT paired resamples scatter around its point with the image SD sigma. tau / sigma = `ratio`
    (inf: sigma = 0, the seeds' resamples do not vary)."""
    sigma, tau = (0.0, IMAGE_SD) if np.isinf(ratio) else (IMAGE_SD, ratio * IMAGE_SD)
    rng = np.random.default_rng(seed)
    points = MU + rng.normal(0.0, tau, (repeats, N_SEEDS)) + rng.normal(0.0, 1.0, (repeats, N_SEEDS)) * sigma
    draws = points[:, :, None] + sigma * rng.standard_normal((repeats, N_SEEDS, N_BOOT))
    hits = 0
    for y, d in zip(points, draws):
        iv = paired.combine(y, list(d))
        hits += iv.lo <= MU <= iv.hi
    return hits / repeats


@pytest.mark.parametrize("ratio", [0.0, 1.0, 4.0, np.inf])
def test_coverage_with_three_seeds_at_every_ratio(ratio):
    t0 = time.perf_counter()
    coverage = simulate(ratio)
    print(f"coverage, between-seed SD / image SD = {ratio}: {coverage:.3f} ({time.perf_counter() - t0:.1f} s)")
    assert 0.92 <= coverage <= 0.98


def test_simulation_detects_an_interval_that_ignores_the_seeds(monkeypatch):
    """The check can fail: an interval from the image resamples alone under-covers when seeds differ."""
    def images_only(points, draws, seed=0):
        pts, d = np.asarray(points, dtype=float), np.stack(draws)
        half = 1.96 * np.sqrt(d.var(axis=1, ddof=1).mean() / pts.size)
        return paired.Interval(pts.mean(), pts.mean() - half, pts.mean() + half, pts.size, d.shape[1])
    monkeypatch.setattr(paired, "combine", images_only)
    assert simulate(4.0, repeats=300) < 0.5
