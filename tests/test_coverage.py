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


def simulate_shared(ratio: float, shared_sd: float, repeats: int = REPEATS, seed: int = 1) -> float:
    """As `simulate`, plus images every seed shares: a common image error N(0, shared_sd²) in every seed's point,
    and in every seed's resamples the same common draw per resample (one weight matrix for all seeds)."""
    sigma, tau = IMAGE_SD, ratio * IMAGE_SD
    rng = np.random.default_rng(seed)
    common = rng.normal(0.0, shared_sd, (repeats, 1))
    points = MU + rng.normal(0.0, tau, (repeats, N_SEEDS)) + rng.normal(0.0, sigma, (repeats, N_SEEDS)) + common
    shared_draws = shared_sd * rng.standard_normal((repeats, 1, N_BOOT))
    draws = points[:, :, None] + sigma * rng.standard_normal((repeats, N_SEEDS, N_BOOT)) + shared_draws
    hits = 0
    for y, d in zip(points, draws):
        iv = paired.combine(y, list(d))
        hits += iv.lo <= MU <= iv.hi
    return hits / repeats


@pytest.mark.parametrize("ratio", [0.0, 1.0, 4.0])
def test_coverage_when_the_seeds_share_their_images(ratio):
    coverage = simulate_shared(ratio, shared_sd=2 * IMAGE_SD)
    print(f"coverage with shared images, between-seed SD / image SD = {ratio}: {coverage:.3f}")
    assert 0.92 <= coverage <= 0.98


def test_the_shared_images_check_can_fail(monkeypatch):
    """Without the shared part (the seeds' spread alone), the interval under-covers when the seeds share images."""
    monkeypatch.setattr(paired, "shared_variance", lambda mat: 0.0)
    assert simulate_shared(0.0, shared_sd=2 * IMAGE_SD, repeats=500) < 0.85


def test_seeds_that_resample_their_own_images_share_about_nothing():
    rng = np.random.default_rng(3)
    own = rng.standard_normal((3, 2000))
    assert paired.shared_variance(own) < 0.05
    common = rng.standard_normal((1, 2000))
    assert abs(paired.shared_variance(own + 2 * common) - 4.0) < 0.5
