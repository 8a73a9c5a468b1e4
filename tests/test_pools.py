"""Tests for mia_nb.data.transforms and the pool registry mia_nb.data.nonmembers, on small synthetic images."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mia_nb.claims import findings
from mia_nb.config import parse_profile
from mia_nb.data import nonmembers, transforms

MEAN3, STD3 = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)


def _raw(n: int = 6, c: int = 3, size: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, c, size, size, generator=torch.Generator().manual_seed(seed))


def test_unnormalize_inverts_normalize_per_channel():
    raw = _raw()
    x = transforms.normalize(raw, MEAN3, STD3)
    assert torch.allclose(x[:, 1], (raw[:, 1] - 0.48) / 0.24)
    assert torch.allclose(transforms.unnormalize(x, MEAN3, STD3), raw, atol=1e-6)
    assert torch.allclose(transforms.undo_normalization(x, MEAN3, STD3), raw, atol=1e-6)
    with pytest.raises(ValueError, match="mean/std"):
        transforms.normalize(raw, (0.5, 0.5), (0.2, 0.2))


def test_permute_pixels_keeps_multiset_and_shares_permutation_across_channels():
    raw = _raw(n=5, c=3, size=6)
    out = transforms.permute_pixels(raw, seed=1)
    assert out.shape == raw.shape and not torch.equal(out, raw)
    flat_in, flat_out = raw.flatten(2), out.flatten(2)
    for i in range(len(raw)):
        for c in range(3):  # each image-channel keeps its multiset of values
            assert torch.equal(flat_in[i, c].sort().values, flat_out[i, c].sort().values)
        # recover the permutation from channel 0 (values are distinct a.s.) and check it on channels 1, 2
        perm = torch.stack([(flat_in[i, 0] == v).nonzero()[0, 0] for v in flat_out[i, 0]])
        assert torch.equal(flat_in[i, 1:, perm], flat_out[i, 1:])
    assert torch.equal(out, transforms.permute_pixels(raw, seed=1))
    assert not torch.equal(out, transforms.permute_pixels(raw, seed=2))


def test_permute_pixels_differs_between_images():
    same = torch.arange(16.0).view(1, 1, 4, 4).repeat(4, 1, 1, 1)     # four identical images
    out = transforms.permute_pixels(same, seed=0)
    assert len({tuple(img.flatten().tolist()) for img in out}) == 4


def test_scale255():
    x = transforms.normalize(_raw(), MEAN3, STD3)
    assert torch.allclose(transforms.scale255(x), x * 255.0)


CORRUPTIONS = {"noise": lambda raw, sev: transforms.gaussian_noise(raw, sev, seed=0),
               "blur": transforms.blur, "contrast": transforms.contrast}


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_corruptions_shape_range_and_monotonic_severity(name):
    raw = _raw(n=8, c=1, size=28) * 0.5 + 0.25                            # interior values: no clamping
    raw[:, :, 8:20, 8:20] = 0.9                                          # a structure for blur/contrast
    dists = []
    for sev in (1, 2, 3):
        out = CORRUPTIONS[name](raw, sev)
        assert out.shape == raw.shape and out.min() >= 0 and out.max() <= 1
        dists.append(float((out - raw).abs().mean()))
    assert 0 < dists[0] < dists[1] < dists[2], dists
    with pytest.raises(ValueError, match="severity"):
        CORRUPTIONS[name](raw, 4)


def test_noise_is_seeded_and_invert_is_an_involution():
    raw = _raw()
    assert torch.equal(transforms.gaussian_noise(raw, 2, seed=3), transforms.gaussian_noise(raw, 2, seed=3))
    assert not torch.equal(transforms.gaussian_noise(raw, 2, seed=3), transforms.gaussian_noise(raw, 2, seed=4))
    assert torch.allclose(transforms.invert(transforms.invert(raw)), raw)
    assert torch.allclose(transforms.invert(raw), 1 - raw)


def test_digits_pool_and_uniform_noise():
    x, y = transforms.digits_pool(28, 3, n=50)
    assert x.shape == (50, 3, 28, 28) and x.min() >= 0 and x.max() <= 1 and x.max() > 0.9
    assert torch.equal(x[:, 0], x[:, 2]) and (y == -1).all() and y.dtype == np.int64
    assert len(transforms.digits_pool(32, 1)[0]) == 1797
    u = transforms.uniform_noise(10, 1, 32, seed=0)
    assert u.shape == (10, 1, 32, 32) and u.min() >= 0 and u.max() <= 1
    assert torch.equal(u, transforms.uniform_noise(10, 1, 32, seed=0))


def test_build_pool_every_name():
    raw, y = _raw(n=7, c=1, size=28), np.arange(7) % 3
    mean, std = (0.286,), (0.353,)
    names = nonmembers.pool_names([1, 2, 3])
    corrupted = [f"{k}_{s}" for k in ("noise", "blur", "contrast") for s in (1, 2, 3)]
    assert names == ["heldout", "permuted", "scaled255", "unnormalized", *corrupted, "inverted", "digits", "uniform"]
    for name in names:
        x, labels = nonmembers.build_pool(name, raw, y, mean, std, spec={"n": 5}, seed=0)
        other = name in ("digits", "uniform")
        assert x.dtype == torch.float32 and x.shape == ((5 if other else 7), 1, 28, 28), name
        assert (labels == -1).all() if other else np.array_equal(labels, y), name
    x, _ = nonmembers.build_pool("unnormalized", raw, y, mean, std, seed=0)
    assert torch.allclose(x, raw, atol=1e-6)                          # raw image fed without normalisation
    x, _ = nonmembers.build_pool("heldout", raw, y, mean, std, seed=0)
    assert torch.allclose(x, (raw - 0.286) / 0.353)
    x, _ = nonmembers.build_pool("blur_2", raw, y, mean, std, seed=0)
    assert torch.allclose(x, transforms.normalize(transforms.blur(raw, 2), mean, std))
    x, _ = nonmembers.build_pool("noise_3", raw, y, mean, std, seed=5)
    assert torch.allclose(x, transforms.normalize(transforms.gaussian_noise(raw, 3, seed=5), mean, std))
    with pytest.raises(ValueError, match="unknown pool 'fog'.*heldout"):
        nonmembers.build_pool("fog", raw, y, mean, std, seed=0)
    with pytest.raises(ValueError, match="unknown pool 'blur_4'"):
        nonmembers.build_pool("blur_4", raw, y, mean, std, seed=0)
    with pytest.raises(ValueError, match="severity"):
        nonmembers.pool_names([4])
    with pytest.raises(ValueError, match="raw images"):
        nonmembers.build_pool("heldout", (raw - 0.286) / 0.353, y, mean, std, seed=0)


def test_groups_and_the_claims_groups_come_from_the_pool_registry():
    assert [nonmembers.group_of(n) for n in ("heldout", "scaled255", "contrast_3", "inverted", "uniform", "gan",
                                             "fake_folder", "svhn", "afhq_cat")] == [
        "in distribution", "transform", "corruption", "corruption", "other content", "generated", "generated",
        "other dataset", "other dataset"]
    assert nonmembers.OOD_GROUPS == ("transform", "corruption", "other content", "generated")
    assert nonmembers.LABELLED_GROUPS == ("transform", "corruption")
    assert findings.OOD_GROUPS is nonmembers.OOD_GROUPS and findings.LABELLED_GROUPS is nonmembers.LABELLED_GROUPS
    with pytest.raises(ValueError, match="unknown pool 'noise_9'"):
        nonmembers.group_of("noise_9")
    with pytest.raises(ValueError, match="unknown pool 'extra_datasets'"):
        nonmembers.group_of("extra_datasets")


def test_a_new_pool_is_one_registry_entry(monkeypatch):
    flipped = nonmembers.PoolKind("transform", True, lambda h: (h.input(h.raw.flip(-1)), h.labels))
    monkeypatch.setitem(nonmembers.POOLS, "flipped", flipped)
    raw, y = _raw(n=4, c=1, size=8), np.arange(4)
    assert nonmembers.pool_names([1])[-1] == "flipped" and nonmembers.group_of("flipped") == "transform"
    x, labels = nonmembers.build_pool("flipped", raw, y, (0.5,), (0.25,))
    assert torch.allclose(x, (raw.flip(-1) - 0.5) / 0.25) and np.array_equal(labels, y)
    profile = parse_profile({"name": "p", "ood": {"corruption_severities": [2], "gan": {"n_images": 0},
                                                  "extra_datasets": ["svhn", "cifar100"]}})
    names = [n for key, kind in nonmembers.POOLS.items() for n in kind.pools(key, profile)]
    assert names == ["heldout", "permuted", "scaled255", "unnormalized", "noise_2", "blur_2", "contrast_2",
                     "inverted", "digits", "uniform", "svhn", "cifar100", "flipped"]


def test_the_profile_check_and_the_corruptions_know_the_same_severities():
    from mia_nb.config import CORRUPTION_SEVERITIES
    for table in (transforms.NOISE_STD, transforms.BLUR_SIGMA, transforms.CONTRAST_FACTOR):
        assert tuple(table) == CORRUPTION_SEVERITIES
