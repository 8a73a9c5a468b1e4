"""Tests for mia_nb.models.calibration: temperature scaling and last-layer Laplace via laplace-torch."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
import torch
from scipy.special import softmax
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from mia_nb.models import calibration as C

CENTERS = torch.tensor([[0.0, 3.0], [3.0, -2.0], [-3.0, -2.0]])


def _blobs(n: int, spread: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n points of three 2-D Gaussian blobs, labels 0..2."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    return CENTERS[y] + spread * torch.randn(n, 2, generator=g), y


def _mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 3))


@pytest.fixture(scope="module")
def toy():
    """A tiny ReLU MLP trained to near-zero loss on 200 blob points, plus held-out calibration data."""
    x, y = _blobs(200, 1.5, seed=0)
    xc, yc = _blobs(200, 1.5, seed=1)
    torch.manual_seed(0)
    model = _mlp()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(300):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    model.eval()
    return {
        "model": model,
        "x": x,
        "train": DataLoader(TensorDataset(x, y), batch_size=64),
        "calib": DataLoader(TensorDataset(xc, yc), batch_size=64),
    }


@pytest.fixture(scope="module")
def fitted(toy):
    return C.fit_llla(toy["model"], toy["train"], prior="marglik", seed=0)


# ----------------------------------------------------------------------------- temperature


@pytest.mark.parametrize("t_true", [0.5, 3.0])
def test_fit_temperature_recovers_known_temperature(t_true):
    rng = np.random.default_rng(0)
    z = 4.0 * rng.standard_normal((4000, 5))
    p = softmax(z / t_true, axis=1)
    labels = (p.cumsum(1) > rng.random((4000, 1))).argmax(1)
    t_hat = C.fit_temperature(z.astype(np.float32), labels)
    assert abs(t_hat - t_true) < 0.08 * t_true


def test_fit_temperature_warns_on_bound_for_separable_training_logits():
    z = np.eye(3)[np.arange(30) % 3] * 5.0
    with pytest.warns(UserWarning, match="search bound"):
        assert C.fit_temperature(z, np.arange(30) % 3) == pytest.approx(0.01)


def test_fit_temperature_rejects_missing_labels_and_bad_shapes():
    with pytest.raises(ValueError, match="labels"):
        C.fit_temperature(np.zeros((3, 2)), np.array([0, -1, 1]))
    with pytest.raises(ValueError, match="logits"):
        C.fit_temperature(np.zeros(3), np.array([0, 1, 1]))


def test_llla_probs_sum_to_one_and_less_confident_far_away(toy, fitted):
    assert fitted.prior_precision > 0 and fitted.backend == C.DEFAULT_BACKEND
    far = toy["x"] * 100
    with torch.no_grad():
        map_conf = torch.softmax(toy["model"](far), 1).max(1).values.numpy()
    # probit uses only the logits' marginal variances, so it is the less confident of the two.
    for link, margin in (("probit", 0.05), ("mc", 0.01)):
        p = np.exp(C.llla_log_predict(fitted, far, link=link, seed=0, batch_size=64))
        assert p.shape == (200, 3)
        np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-5)
        assert p.max(1).mean() < map_conf.mean() - margin
    near = C.llla_log_predict(fitted, toy["x"], seed=0)
    assert (near.argmax(1) == toy["model"](toy["x"]).argmax(1).numpy()).mean() > 0.95


def test_llla_mc_is_deterministic_for_a_seed(toy, fitted):
    a = C.llla_log_predict(fitted, toy["x"], link="mc", n_samples=20, seed=3)
    b = C.llla_log_predict(fitted, toy["x"], link="mc", n_samples=20, seed=3)
    c = C.llla_log_predict(fitted, toy["x"], link="mc", n_samples=20, seed=4)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_grid_prior_warns_on_edge_and_not_inside(toy):
    # Scored on its own training data, the sharpest posterior (largest precision) always wins.
    with pytest.warns(UserWarning, match="edge"):
        r = C.fit_llla(toy["model"], toy["train"], prior="grid", calib_loader=toy["train"], grid=(-2, 2, 5), seed=0)
    assert r.on_grid_edge and r.prior_precision == pytest.approx(100.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        r = C.fit_llla(toy["model"], toy["train"], prior="grid", calib_loader=toy["calib"], grid=(-3, 3, 7), seed=0)
    assert not r.on_grid_edge
    assert r.prior_precision == pytest.approx(r.grid[int(np.argmin(r.grid_nll))], rel=1e-6)


def test_state_roundtrip_gives_identical_predictions(toy, fitted):
    buf = io.BytesIO()
    torch.save(C.llla_state(fitted), buf)
    buf.seek(0)
    la = C.load_llla(toy["model"], torch.load(buf, weights_only=False))
    for link in ("probit", "mc"):
        a = C.llla_log_predict(fitted, toy["x"], link=link, n_samples=10, seed=0)
        b = C.llla_log_predict(la, toy["x"], link=link, n_samples=10, seed=0)
        assert np.array_equal(a, b)
    other = _mlp()
    with pytest.raises(ValueError, match="weights differ"):
        C.load_llla(other, C.llla_state(fitted))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"prior": "cv"}, "prior method"),
        ({"hessian_structure": "lowrank"}, "hessian_structure"),
        ({"backend": "backpack_ef"}, "backend"),
        ({"link": "bridge"}, "link"),
        ({"prior": "grid"}, "calib_loader"),
    ],
)
def test_fit_llla_rejects_bad_options(toy, kwargs, match):
    with pytest.raises(ValueError, match=match):
        C.fit_llla(toy["model"], toy["train"], seed=0, **kwargs)


def test_fit_llla_rejects_model_without_final_linear(toy):
    model = nn.Sequential(nn.Linear(2, 3), nn.Softmax(dim=1))
    with pytest.raises(ValueError, match="nn.Linear"):
        C.fit_llla(model, toy["train"], seed=0)
    with pytest.raises(ValueError, match="link"):
        C.llla_log_predict(toy["model"], toy["x"], link="bridge", seed=0)


@pytest.mark.parametrize("prior", ["marglik", "grid"])
def test_llla_on_cached_features_equals_llla_on_the_whole_model(prior):
    """Last-layer Laplace depends on the penultimate features only: fitting and predicting through
    `last_layer_head` on cached features gives the full model's Laplace, prior and probabilities."""
    from mia_nb.models.networks import SimpleCNN, forward_features, last_layer_head
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = SimpleCNN(1, 28, 10).eval()
    x, y = torch.randn(96, 1, 28, 28, generator=g), torch.randint(0, 10, (96,), generator=g)
    xc, yc, xt = x[:32] + 0.5, y[:32], torch.randn(40, 1, 28, 28, generator=g)
    kw = {"prior": prior, "seed": 0, "link": "probit"}
    if prior == "grid":
        kw["grid"] = (-2.0, 2.0, 5)
    full = C.fit_llla(model, DataLoader(TensorDataset(x, y), batch_size=32),
                      calib_loader=DataLoader(TensorDataset(xc, yc), batch_size=32) if prior == "grid" else None, **kw)
    f, fc, ft = (forward_features(model, v) for v in (x, xc, xt))
    head = C.fit_llla(last_layer_head(model), DataLoader(TensorDataset(f, y), batch_size=32),
                      calib_loader=DataLoader(TensorDataset(fc, yc), batch_size=32) if prior == "grid" else None, **kw)
    assert head.prior_precision == pytest.approx(full.prior_precision, rel=1e-4)
    np.testing.assert_allclose(np.exp(C.llla_log_predict(head, ft, seed=0)), np.exp(C.llla_log_predict(full, xt, seed=0)),
                               atol=1e-5)


@pytest.mark.parametrize("prior_precision", [1e-3, 1.0, 1e3])
@pytest.mark.parametrize("through", ["head", "whole model"])
def test_closed_form_kron_variance_equals_laplace_torch(toy, prior_precision, through):
    """`glm_moments` (the closed form for a last Linear layer) gives laplace-torch's own GLM mean and
    covariance, on far-away points too, at weak and strong priors, fitted through the head or the model."""
    from mia_nb.models.networks import forward_features, last_layer_head
    model = toy["model"]
    x, y = next(iter(toy["train"]))
    far = torch.cat([x, 20 * torch.randn(16, 2, generator=torch.Generator().manual_seed(3))])
    if through == "head":
        feats = forward_features(model, toy["x"])
        res = C.fit_llla(last_layer_head(model), DataLoader(TensorDataset(feats, _blobs(200, 1.5, 0)[1]), batch_size=64),
                         prior="marglik", seed=0)
        inputs = forward_features(model, far)
    else:
        res = C.fit_llla(model, toy["train"], prior="marglik", seed=0)
        inputs = far
    res.la.prior_precision = prior_precision
    f_mu, f_var = C.glm_moments(res, inputs)
    ref_mu, ref_var = res.la._glm_predictive_distribution(inputs)
    assert f_var.dtype == torch.float64 and f_var.shape == (len(far), 3, 3)
    np.testing.assert_allclose(f_mu.numpy(), ref_mu.double().numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(f_var.numpy(), ref_var.double().numpy(), rtol=1e-3,
                               atol=1e-4 * float(ref_var.abs().max()))


def test_kron_closed_form_declines_other_structures(toy):
    """A diagonal last-layer Laplace goes through laplace-torch's generic predictive unchanged."""
    res = C.fit_llla(toy["model"], toy["train"], hessian_structure="diag", prior="marglik", seed=0)
    f_mu, f_var = C.glm_moments(res, toy["x"][:10])
    ref_mu, ref_var = res.la._glm_predictive_distribution(toy["x"][:10])
    np.testing.assert_allclose(f_var.numpy(), ref_var.double().numpy(), rtol=1e-6)


def test_mc_predictive_does_not_depend_on_the_batch_size(toy, fitted):
    """Each image gets its own row of seeded draws, so batching changes nothing beyond float32 rounding."""
    a = C.llla_log_predict(fitted, toy["x"][:50], link="mc", n_samples=30, seed=5, batch_size=7)
    b = C.llla_log_predict(fitted, toy["x"][:50], link="mc", n_samples=30, seed=5, batch_size=1000)
    np.testing.assert_allclose(a, b, atol=1e-4)  # float32 forward passes differ by batch at ~1e-6; other draws by ~1e-2
