"""Tests for mia_nb.pools on small synthetic images."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mia_nb import pools

MEAN3, STD3 = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)


def _raw(n: int = 6, c: int = 3, size: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, c, size, size, generator=torch.Generator().manual_seed(seed))


def test_unnormalize_inverts_normalize_per_channel():
    raw = _raw()
    x = pools.normalize(raw, MEAN3, STD3)
    assert torch.allclose(x[:, 1], (raw[:, 1] - 0.48) / 0.24)
    assert torch.allclose(pools.unnormalize(x, MEAN3, STD3), raw, atol=1e-6)
    assert torch.allclose(pools.undo_normalization(x, MEAN3, STD3), raw, atol=1e-6)
    with pytest.raises(ValueError, match="mean/std"):
        pools.normalize(raw, (0.5, 0.5), (0.2, 0.2))


def test_permute_pixels_keeps_multiset_and_shares_permutation_across_channels():
    raw = _raw(n=5, c=3, size=6)
    out = pools.permute_pixels(raw, seed=1)
    assert out.shape == raw.shape and not torch.equal(out, raw)
    flat_in, flat_out = raw.flatten(2), out.flatten(2)
    for i in range(len(raw)):
        for c in range(3):  # each image-channel keeps its multiset of values
            assert torch.equal(flat_in[i, c].sort().values, flat_out[i, c].sort().values)
        # recover the permutation from channel 0 (values are distinct a.s.) and check it on channels 1, 2
        perm = torch.stack([(flat_in[i, 0] == v).nonzero()[0, 0] for v in flat_out[i, 0]])
        assert torch.equal(flat_in[i, 1:, perm], flat_out[i, 1:])
    assert torch.equal(out, pools.permute_pixels(raw, seed=1))
    assert not torch.equal(out, pools.permute_pixels(raw, seed=2))


def test_permute_pixels_differs_between_images():
    same = torch.arange(16.0).view(1, 1, 4, 4).repeat(4, 1, 1, 1)     # four identical images
    out = pools.permute_pixels(same, seed=0)
    assert len({tuple(img.flatten().tolist()) for img in out}) == 4


def test_scale255():
    x = pools.normalize(_raw(), MEAN3, STD3)
    assert torch.allclose(pools.scale255(x), x * 255.0)


@pytest.mark.parametrize("name", ["noise", "blur", "contrast"])
def test_corruptions_shape_range_and_monotonic_severity(name):
    raw = _raw(n=8, c=1, size=28) * 0.5 + 0.25                            # interior values: no clamping
    raw[:, :, 8:20, 8:20] = 0.9                                          # a structure for blur/contrast
    dists = []
    for sev in (1, 2, 3):
        out = pools.corrupt(raw, name, sev, seed=0)
        assert out.shape == raw.shape and out.min() >= 0 and out.max() <= 1
        dists.append(float((out - raw).abs().mean()))
    assert 0 < dists[0] < dists[1] < dists[2], dists


def test_noise_is_seeded_and_invert_is_an_involution():
    raw = _raw()
    assert torch.equal(pools.gaussian_noise(raw, 2, seed=3), pools.corrupt(raw, "noise", 2, seed=3))
    assert not torch.equal(pools.gaussian_noise(raw, 2, seed=3), pools.gaussian_noise(raw, 2, seed=4))
    assert torch.allclose(pools.invert(pools.invert(raw)), raw)
    assert torch.allclose(pools.corrupt(raw, "invert", 1, seed=0), 1 - raw)


def test_corrupt_rejects_unknown_name_and_severity():
    with pytest.raises(ValueError, match="unknown corruption 'fog'"):
        pools.corrupt(_raw(), "fog", 1, seed=0)
    with pytest.raises(ValueError, match="severity"):
        pools.corrupt(_raw(), "blur", 4, seed=0)
    with pytest.raises(ValueError, match="severity"):
        pools.corrupt(_raw(), "invert", 2, seed=0)


def test_digits_pool_and_uniform_noise():
    x, y = pools.digits_pool(28, 3, n=50)
    assert x.shape == (50, 3, 28, 28) and x.min() >= 0 and x.max() <= 1 and x.max() > 0.9
    assert torch.equal(x[:, 0], x[:, 2]) and (y == -1).all() and y.dtype == np.int64
    assert len(pools.digits_pool(32, 1)[0]) == 1797
    u = pools.uniform_noise(10, 1, 32, seed=0)
    assert u.shape == (10, 1, 32, 32) and u.min() >= 0 and u.max() <= 1
    assert torch.equal(u, pools.uniform_noise(10, 1, 32, seed=0))


def test_build_pool_every_name():
    raw, y = _raw(n=7, c=1, size=28), np.arange(7) % 3
    mean, std = (0.286,), (0.353,)
    names = pools.pool_names([1, 2, 3])
    assert len(names) == 4 + 9 + 1 + 2 and names[0] == "heldout"
    for name in names:
        x, labels = pools.build_pool(name, raw, y, mean, std, spec={"n": 5}, seed=0)
        other = name in ("digits", "uniform")
        assert x.dtype == torch.float32 and x.shape == ((5 if other else 7), 1, 28, 28), name
        assert (labels == -1).all() if other else np.array_equal(labels, y), name
    x, _ = pools.build_pool("unnormalized", raw, y, mean, std, seed=0)
    assert torch.allclose(x, raw, atol=1e-6)                          # raw image fed without normalisation
    x, _ = pools.build_pool("heldout", raw, y, mean, std, seed=0)
    assert torch.allclose(x, (raw - 0.286) / 0.353)
    with pytest.raises(ValueError, match="unknown pool 'fog'.*heldout"):
        pools.build_pool("fog", raw, y, mean, std, seed=0)
    with pytest.raises(ValueError, match="severity"):
        pools.pool_names([4])
    with pytest.raises(ValueError, match="raw images"):
        pools.build_pool("heldout", (raw - 0.286) / 0.353, y, mean, std, seed=0)
