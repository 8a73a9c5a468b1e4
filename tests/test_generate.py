"""Tests for mia_nb.data.gan: a tiny GAN run, sampling, PNG round-trip."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mia_nb.data import gan


@pytest.fixture(scope="module")
def tiny_gan():
    g = torch.Generator().manual_seed(0)
    raw = torch.rand(64, 1, 28, 28, generator=g)
    labels = np.arange(64) % 4
    before = torch.random.get_rng_state()
    gen, hist = gan.train_gan(raw, labels, 4, epochs=1, batch_size=16, latent_dim=8, width=4,
                              seed=0, progress=False, device="cpu")
    assert torch.equal(before, torch.random.get_rng_state())          # global RNG untouched
    return gen, hist


@pytest.mark.parametrize("size,base", [(28, 7), (32, 8)])
def test_networks_shapes(size, base):
    gen = gan.Generator(8, 3, 3, size, width=4)
    disc = gan.Discriminator(3, 3, size, width=4)
    y = torch.tensor([0, 2])
    out = gen(torch.randn(2, 8), y)
    assert out.shape == (2, 3, size, size) and out.min() >= 0 and out.max() <= 1
    assert disc(out, y).shape == (2,)
    with pytest.raises(ValueError, match="28 or 32"):
        gan.Generator(8, 3, 1, 64)


def test_train_gan_runs_and_reports(tiny_gan):
    gen, hist = tiny_gan
    assert hist.epochs_done == 1 and len(hist.d_loss) == len(hist.g_loss) == len(hist.seconds) == 1
    assert np.isfinite(hist.d_loss[0]) and np.isfinite(hist.g_loss[0]) and hist.images_per_s > 0
    assert not hist.stopped_early
    assert not gen.training


def test_train_gan_time_budget_and_input_checks():
    raw, labels = torch.rand(16, 1, 28, 28), np.arange(16) % 2
    _, hist = gan.train_gan(raw, labels, 2, epochs=50, batch_size=8, latent_dim=4, width=2, seed=0,
                                 time_budget_s=0.0, progress=False, device="cpu")
    assert hist.epochs_done == 1 and hist.stopped_early
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        gan.train_gan(raw * 3 - 1, labels, 2, epochs=1, batch_size=8, seed=0, progress=False)
    with pytest.raises(ValueError, match="labels must lie in 0..1"):
        gan.train_gan(raw, labels + 1, 2, epochs=1, batch_size=8, seed=0, progress=False)


def test_sample_shapes_balance_and_determinism(tiny_gan):
    gen, _ = tiny_gan
    x, y = gan.sample(gen, 22, 4, seed=3, batch_size=5)
    assert x.shape == (22, 1, 28, 28) and x.min() >= 0 and x.max() <= 1
    assert y.dtype == np.int64 and np.bincount(y).tolist() == [6, 6, 5, 5]
    x2, y2 = gan.sample(gen, 22, 4, seed=3)
    assert torch.allclose(x, x2, atol=1e-6) and np.array_equal(y, y2)
    assert not torch.allclose(x, gan.sample(gen, 22, 4, seed=4)[0])


def test_save_load_pngs_round_trip_and_incomplete_folder(tmp_path):
    raw = torch.rand(5, 3, 32, 32)
    labels = np.array([0, 1, 2, 0, 1])
    paths = gan.save_pngs(raw, labels, tmp_path / "fakes")
    assert [p.name for p in paths][:2] == ["000000_0.png", "000001_1.png"] and all(p.exists() for p in paths)
    back, y = gan.load_pngs(tmp_path / "fakes")
    assert back.shape == raw.shape and np.array_equal(y, labels)
    assert (back - raw).abs().max() <= 0.5 / 255 + 1e-6
    grey, _ = gan.load_pngs(gan.save_pngs(raw[:, :1], labels, tmp_path / "grey")[0].parent)
    assert grey.shape == (5, 1, 32, 32)
    gan.save_pngs(raw[:2], labels[:2], tmp_path / "fakes")      # overwrite replaces the folder
    assert len(gan.load_pngs(tmp_path / "fakes")[1]) == 2
    assert not list(tmp_path.glob(".fakes*"))                          # no temp folders left behind
    (tmp_path / "fakes" / "000001_1.png").unlink()                  # a file lost after writing
    with pytest.raises(ValueError, match="incomplete"):
        gan.load_pngs(tmp_path / "fakes")
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "000000_0.png").write_bytes(b"")
    with pytest.raises(ValueError, match="incomplete"):
        gan.load_pngs(tmp_path / "half")
    manifest = json.loads((tmp_path / "grey" / "manifest.json").read_text())
    assert manifest["count"] == 5
