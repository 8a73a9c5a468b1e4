"""Post-hoc calibration: temperature scaling and last-layer Laplace (LLLA) through laplace-torch.

All curvature, prior and predictive computations are laplace-torch's; this module only chooses
options, checks inputs, seeds, and packs results for the artifact store.

Facts about laplace-torch (installed 0.3) that shaped this module:
- `Laplace(..., subset_of_weights="last_layer")` deep-copies the model; the last layer is found by a
  forward hook on the first training batch and must be an `nn.Linear`.
- `optimize_prior_precision(method="marglik")` returns None and sets `la.prior_precision`
  (a 1-element tensor for `prior_structure="scalar"`), after 100 Adam steps on log precision.
- Its `method="gridsearch"` reuses one `RunningNLLMetric` across grid points without resetting it,
  so each point is scored on the running mean over all earlier points (cf. aleximmer/Laplace#194);
  the grid path here therefore loops over the grid itself, scoring NLL with `la(...)`.
- The GLM predictive with `link_approx="mc"` ignores `generator` and draws from torch's global RNG;
  the MC predictive here therefore samples from laplace-torch's GLM moments with its own seeded
  draws, one row of draws per image (independent of the batch size).
- For kron, laplace-torch's GLM covariance multiplies generic [N, K, K·D+K] Jacobians through every
  Kronecker block; `glm_moments` computes the same covariance from laplace-torch's decomposition in
  closed form for a last Linear layer (checked equal in the tests), which makes the prior grid cheap.
- `la.state_dict()` of a last-layer Laplace stores the whole first training batch (used to find the
  last layer again on load); `llla_state` keeps only its first sample.
- `link="probit"` uses only the diagonal of the logits' covariance and is markedly less confident
  than `link="mc"` (which samples the full, correlated covariance): on the tests' toy problem mean
  max score 0.87 vs 0.98 far from the data. Use one link for tuning, attacking and reporting.
- The default backend asdl registers old-style (non-full) backward hooks, which torch deprecates;
  if a future torch drops them, pass backend="backpack_ggn" or "curvlinops_ggn" (same numbers).
"""

from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax
from torch import nn
from torch.nn.utils import parameters_to_vector
from torch.utils.data import DataLoader

from mia_nb.config import HESSIAN_STRUCTURES, LLLA_LINKS as LINKS, LLLA_PRIORS as PRIOR_METHODS  # noqa: E402
BACKENDS = ("curvlinops_ggn", "curvlinops_ef", "asdl_ggn", "asdl_ef", "backpack_ggn")
# Fastest exact-GGN last-layer KFAC fit on CPU, per benchmarks/llla_backends.py (asdl ~1.1 s,
# backpack ~1.6-2.1 s, curvlinops ~2.2-2.9 s for 2,500 SimpleCNN inputs); all three agree to 1e-8.
DEFAULT_BACKEND = "asdl_ggn"
DEFAULT_GRID = (-4.0, 4.0, 33)  # log10 min, log10 max, number of points
STATE_FORMAT = "mia_nb.llla/1"

_LOG_T_BOUNDS = (math.log(1e-2), math.log(1e2))


# --------------------------------------------------------------------------- temperature


def _check_logits_labels(logits: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate and convert logits [N, K] and labels [N] in [0, K)."""
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels)
    if z.ndim != 2 or z.shape[0] == 0 or z.shape[1] < 2:
        raise ValueError(f"logits must be a non-empty [N, K>=2] array, got shape {z.shape}")
    if not np.all(np.isfinite(z)):
        raise ValueError("logits contain NaN or inf")
    if y.ndim != 1 or y.shape[0] != z.shape[0] or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be int [N={z.shape[0]}], got {y.dtype} shape {y.shape}")
    if y.min() < 0 or y.max() >= z.shape[1]:
        raise ValueError(f"labels must lie in [0, {z.shape[1]}) (no -1 'no label' entries)")
    return z, y.astype(np.int64)


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """Temperature T > 0 minimising the NLL of softmax(logits / T) (fit on a calibration split)."""
    z, y = _check_logits_labels(logits, labels)
    rows = np.arange(len(y))

    def nll(log_t: float) -> float:
        return float(-log_softmax(z / math.exp(log_t), axis=1)[rows, y].mean())

    res = minimize_scalar(nll, bounds=_LOG_T_BOUNDS, method="bounded", options={"xatol": 1e-7})
    log_t, best = float(res.x), float(res.fun)
    # A bound that does at least as well means no interior optimum (e.g. separable training logits,
    # where the NLL keeps falling, down to float64 resolution, as T -> 0).
    at_bound = [b for b in _LOG_T_BOUNDS if nll(b) <= best + 1e-12]
    if at_bound:
        log_t = at_bound[0]
        warnings.warn(
            f"fitted temperature {math.exp(log_t):.3g} sits on the search bound "
            f"[{math.exp(_LOG_T_BOUNDS[0]):g}, {math.exp(_LOG_T_BOUNDS[1]):g}]; "
            "fit on held-out calibration data, not on training data",
            stacklevel=2,
        )
    return math.exp(log_t)


# --------------------------------------------------------------------------- LLLA


@dataclass
class LaplaceResult:
    """A fitted last-layer Laplace and how its prior precision was chosen."""

    la: Any  # laplace.baselaplace.ParametricLaplace (a *LLLaplace)
    hessian_structure: str
    backend: str
    prior_method: str
    prior_precision: float
    log_marglik: float
    grid: list[float] | None = None  # prior precisions tried (grid path)
    grid_nll: list[float] | None = None  # calibration NLL per grid value
    on_grid_edge: bool = False
    info: dict[str, Any] = field(default_factory=dict)


def _backend_cls(name: str) -> type:
    """Map a backend name to laplace-torch's curvature class."""
    from laplace import curvature as c  # lazy: laplace-torch is only needed when an LLLA arm is fitted

    table = {
        "curvlinops_ggn": "CurvlinopsGGN",
        "curvlinops_ef": "CurvlinopsEF",
        "asdl_ggn": "AsdlGGN",
        "asdl_ef": "AsdlEF",
        "backpack_ggn": "BackPackGGN",
    }
    cls = getattr(c, table[name], None)
    if cls is None:
        raise ValueError(f"laplace-torch backend {name!r} is not importable here; pick one of {BACKENDS}")
    return cls


def _backend_name(la: Any) -> str:
    """The backend name of a fitted Laplace."""
    for name in BACKENDS:
        try:
            if la._backend_cls is _backend_cls(name):
                return name
        except ValueError:
            continue
    raise ValueError(f"unknown laplace-torch backend {la._backend_cls.__name__}")


def _structure_name(la: Any) -> str:
    """The Hessian structure of a last-layer Laplace from its class key."""
    key = getattr(type(la), "_key", None)
    if not key or key[0] != "last_layer" or key[1] not in HESSIAN_STRUCTURES:
        raise ValueError(f"expected a last-layer Laplace, got {type(la).__name__}")
    return key[1]


def _check_last_linear(model: nn.Module) -> None:
    """The model's last registered leaf module must be an nn.Linear (the logits layer)."""
    leaves = [m for m in model.modules() if len(list(m.children())) == 0]
    if not leaves or not isinstance(leaves[-1], nn.Linear):
        last = type(leaves[-1]).__name__ if leaves else "nothing"
        raise ValueError(f"model must end in nn.Linear returning logits; its last module is {last}")


def _check_choice(what: str, value: Any, allowed: tuple) -> None:
    """One-line error for a value outside a fixed set."""
    if value not in allowed:
        raise ValueError(f"unknown {what} {value!r}; use one of {allowed}")


def _check_loader(name: str, loader: Any) -> None:
    """A (X, y) DataLoader with a sized dataset."""
    if not isinstance(loader, DataLoader) or not hasattr(loader.dataset, "__len__") or len(loader.dataset) == 0:
        raise ValueError(f"{name} must be a torch DataLoader over a non-empty (X, y) dataset")


def _check_grid(grid: Any) -> tuple[float, float, int]:
    """grid = (log10 min, log10 max, n) with min < max and n >= 3."""
    try:
        lo, hi, n = grid
        lo, hi, n = float(lo), float(hi), int(n)
    except (TypeError, ValueError):
        raise ValueError(f"grid must be (log10_min, log10_max, n_points), got {grid!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi and n >= 3):
        raise ValueError(f"grid needs finite log10_min < log10_max and n_points >= 3, got {grid!r}")
    return lo, hi, n


def _scalar_prior(la: Any) -> float:
    """The (scalar) prior precision of a Laplace as a float."""
    return float(torch.as_tensor(la.prior_precision).reshape(-1)[0])


def _kron_last_layer_variance(la: Any, phi: torch.Tensor) -> torch.Tensor | None:
    """f_var [N, K, K] (float64) of a kron last-layer Laplace at penultimate features `phi` [N, D].

    laplace-torch fits the posterior and decomposes its precision (`la.posterior_precision`, a
    KronDecomposed: per block eigenvectors, eigenvalues and the prior precision `deltas`); its GLM
    predictive then multiplies the generic Jacobians [N, K, K·D + K] through every block, which costs
    O(N·K·D²·K) per call. A last Linear layer's Jacobian is structured, J = [I_K ⊗ phiᵀ, I_K], so with the
    same decomposition J Σ Jᵀ = Q_out diag_i(Σ_j (phi Q_in)_j² / λ_ij) Q_outᵀ + Σ_bias, O(N·D²).
    `tests/test_calibration.py` checks it against `la.functional_variance` of laplace-torch (laplace-torch
    has the same idea as an unfinished `functional_variance_fast`). None when the blocks are not one
    Linear layer's weight (+ bias): the caller then uses laplace-torch's generic path.
    """
    from laplace.utils.matrix import KronDecomposed  # lazy: laplace-torch is only needed when an LLLA arm is fitted
    post = la.posterior_precision
    if not isinstance(post, KronDecomposed) or post.damping or phi.dim() != 2:
        return None  # damped factors (laplace-torch drops `damping` in 0.3 anyway) go the generic way
    phi = phi.double()
    d = phi.shape[1]
    blocks = list(zip(post.eigenvalues, post.eigenvectors, post.deltas))
    if not 1 <= len(blocks) <= 2 or len(blocks[0][0]) != 2 or (len(blocks) == 2 and len(blocks[1][0]) != 1):
        return None
    (l_out, l_in), (q_out, q_in), delta = blocks[0]
    l_out, l_in, q_out, q_in, delta = (t.double() for t in (l_out, l_in, q_out, q_in, delta))
    if len(l_in) != d:
        return None
    lam = torch.outer(l_out, l_in) + delta
    weights = ((phi @ q_in) ** 2) @ (1.0 / lam).T  # [N, K]: the variance along each output eigenvector
    f_var = torch.einsum("ci,ni,ki->nck", q_out, weights, q_out)
    if len(blocks) == 2:
        (l_b,), (q_b,), delta_b = blocks[1]
        l_b, q_b, delta_b = l_b.double(), q_b.double(), delta_b.double()
        f_var = f_var + (q_b / (l_b + delta_b)) @ q_b.T
    return f_var


def glm_moments(la: Any, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The GLM predictive's mean and covariance (f_mu [N, K], f_var [N, K, K], float64) of a last-layer
    Laplace at inputs `x`: the closed form of `_kron_last_layer_variance` for kron, laplace-torch's
    `_glm_predictive_distribution` otherwise."""
    la = _unwrap(la)
    with torch.no_grad():
        x = x.to(la._device)
        if _structure_name(la) == "kron":
            f_mu, phi = la.model.forward_with_features(x)
            f_var = _kron_last_layer_variance(la, phi)
            if f_var is not None:
                return f_mu.double().cpu(), f_var.cpu()
        f_mu, f_var = la._glm_predictive_distribution(x)
    return f_mu.double().cpu(), f_var.double().cpu()


DRAW_BLOCK = 1000  # images per block of cached normal draws


@functools.lru_cache(maxsize=8)
def _draw_block(seed: int, block: int, n_samples: int, k: int) -> torch.Tensor:
    """Standard normal draws [DRAW_BLOCK, S, K] (float64) for images block·DRAW_BLOCK onwards, seeded by
    (seed, block); cached (8 MB each for S=100, K=10), so a prior grid reuses the same draws at every prior."""
    gen = torch.Generator().manual_seed(int(np.random.SeedSequence([seed, block]).generate_state(1)[0]))
    return torch.randn((DRAW_BLOCK, n_samples, k), generator=gen, dtype=torch.float64)


def _normal_draws(seed: int, start: int, stop: int, n_samples: int, k: int) -> torch.Tensor:
    """The draws [stop - start, S, K] of images start..stop-1: image i always gets the same row, whatever
    the batches (common random numbers across priors, batch sizes and calls)."""
    blocks = range(start // DRAW_BLOCK, (stop - 1) // DRAW_BLOCK + 1)
    rows = torch.cat([_draw_block(seed, b, n_samples, k) for b in blocks])
    first = blocks[0] * DRAW_BLOCK
    return rows[start - first:stop - first]


def log_predictive(la: Any, x: torch.Tensor, link: str, n_samples: int, seed: int,
                   batch_size: int = 1000) -> torch.Tensor:
    """log p(y | x) [N, K] in float64 from the GLM predictive moments (`glm_moments`).

    mc: the mean of softmax over `n_samples` seeded draws f ~ N(f_mu, f_var), averaged in log space
    (logsumexp), so a confident prediction keeps its distance from 1 instead of rounding to 1.0; image
    i always gets the i-th row of the draws, whatever the batch size;
    probit: log_softmax(f_mu / sqrt(1 + pi/8 diag f_var)), laplace-torch's multiclass probit.
    """
    la = _unwrap(la)
    out = []
    for i in range(0, len(x), batch_size):
        f_mu, f_var = glm_moments(la, x[i:i + batch_size])
        if link == "probit":
            kappa = 1.0 / torch.sqrt(1.0 + math.pi / 8.0 * torch.diagonal(f_var, dim1=-2, dim2=-1))
            out.append(torch.log_softmax(f_mu * kappa, dim=-1))
            continue
        k = f_mu.shape[-1]
        eps = _normal_draws(int(seed), i, i + len(f_mu), int(n_samples), k)
        chol = torch.linalg.cholesky(f_var + 1e-10 * torch.eye(k, dtype=torch.float64))
        f = f_mu[:, None, :] + torch.einsum("nij,nsj->nsi", chol, eps)
        out.append(torch.logsumexp(torch.log_softmax(f, dim=-1), dim=1) - math.log(n_samples))
    return torch.cat(out) if out else torch.empty(0, dtype=torch.float64)


def _calib_nll(la: Any, loader: DataLoader, link: str, n_samples: int, seed: int) -> float:
    """Mean NLL of the LLLA predictive on a loader's (X, y); y = -1 rows count as the cross-entropy to uniform."""
    x, y = (torch.cat(t) for t in zip(*loader))
    logp = log_predictive(la, x, link, n_samples, seed)
    y = y.long()
    known = y >= 0
    total = float(-logp[known].gather(1, y[known].view(-1, 1)).sum()) + float(-logp[~known].mean(1).sum())
    return total / len(y)


def fit_llla(
    model: nn.Module,
    train_loader: DataLoader,
    *,
    hessian_structure: str = "kron",
    backend: str | None = None,
    prior: str = "marglik",
    calib_loader: DataLoader | None = None,
    grid: tuple[float, float, int] | None = None,
    link: str = "probit",
    n_samples: int = 100,
    seed: int,
    ood_loader: DataLoader | None = None,
    ood_weight: float = 0.25,
) -> LaplaceResult:
    """Fit a last-layer Laplace on the model's own (un-augmented) training data; tune its prior.

    prior="marglik": maximise the marginal likelihood on the training fit (no extra data).
    prior="grid": pick the prior precision with the lowest NLL on `calib_loader` (data disjoint from
    every evaluation set) over `grid` = (log10 min, log10 max, n), scored with `link`; with `ood_loader`
    (inputs labelled -1, e.g. uniform noise) the objective adds `ood_weight` x their cross-entropy to the
    uniform distribution (the paper's recipe); warns when the choice sits on the grid's edge.
    """
    from laplace import Laplace  # lazy: laplace-torch is only needed when an LLLA arm is fitted

    _check_choice("hessian_structure", hessian_structure, HESSIAN_STRUCTURES)
    _check_choice("prior method", prior, PRIOR_METHODS)
    _check_choice("link", link, LINKS)
    backend = DEFAULT_BACKEND if backend is None else backend
    _check_choice("backend", backend, BACKENDS)
    backend_cls = _backend_cls(backend)
    _check_last_linear(model)
    _check_loader("train_loader", train_loader)
    if prior == "grid":
        if calib_loader is None:
            raise ValueError('prior="grid" needs calib_loader (held-out calibration data)')
        _check_loader("calib_loader", calib_loader)
        lo, hi, n = _check_grid(DEFAULT_GRID if grid is None else grid)
    elif calib_loader is not None or grid is not None or ood_loader is not None:
        raise ValueError('calib_loader / grid / ood_loader are only used with prior="grid"')
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}")

    la = Laplace(
        model,
        "classification",
        subset_of_weights="last_layer",
        hessian_structure=hessian_structure,
        backend=backend_cls,
    )
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        torch.manual_seed(seed)
        # asdl registers old-style backward hooks; torch deprecates them (FutureWarning).
        warnings.filterwarnings("ignore", message="Using a non-full backward hook")
        la.fit(train_loader)
    if not isinstance(la.model.last_layer, nn.Linear):
        raise ValueError(f"laplace-torch found last layer {type(la.model.last_layer).__name__}, not nn.Linear")

    result_grid: list[float] | None = None
    grid_nll: list[float] | None = None
    on_edge = False
    if prior == "marglik":
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="By default `link_approx` is `probit`")
            la.optimize_prior_precision(
                pred_type="glm", method="marglik", prior_structure="scalar", link_approx=link
            )
    else:
        result_grid = [float(v) for v in np.logspace(lo, hi, n)]
        grid_nll = []
        for value in result_grid:
            la.prior_precision = value
            try:
                nll = _calib_nll(la, calib_loader, link, n_samples, seed)
                if ood_loader is not None:
                    nll += ood_weight * _calib_nll(la, ood_loader, link, n_samples, seed)
                grid_nll.append(nll)
            except (RuntimeError, torch.linalg.LinAlgError):  # numerically singular posterior
                grid_nll.append(math.inf)
        best = int(np.argmin(grid_nll))
        la.prior_precision = result_grid[best]
        on_edge = best in (0, n - 1)
        if on_edge:
            warnings.warn(
                f"LLLA prior precision {result_grid[best]:.3g} sits on the grid's edge "
                f"[1e{lo:g}, 1e{hi:g}]; widen the grid",
                stacklevel=2,
            )

    return LaplaceResult(
        la=la,
        hessian_structure=hessian_structure,
        backend=backend,
        prior_method=prior,
        prior_precision=_scalar_prior(la),
        log_marglik=float(la.log_marginal_likelihood().detach()),
        grid=result_grid,
        grid_nll=grid_nll,
        on_grid_edge=on_edge,
        info={"n_train": int(la.n_data), "n_last_layer_params": int(la.n_params), "link": link},
    )


def _unwrap(la: Any) -> Any:
    """Accept a LaplaceResult or a Laplace object."""
    return la.la if isinstance(la, LaplaceResult) else la


def llla_log_predict(
    la: Any,
    x: torch.Tensor,
    *,
    link: str = "probit",
    n_samples: int = 100,
    seed: int,
    batch_size: int = 1000,
) -> np.ndarray:
    """Log class probabilities [N, K] in float64 from the LLLA's GLM predictive (`log_predictive`)."""
    la = _unwrap(la)
    _check_choice("link", link, LINKS)
    if not isinstance(x, torch.Tensor) or x.ndim < 2 or not x.is_floating_point():
        raise ValueError("x must be a float torch.Tensor [N, ...] in model input space")
    if batch_size < 1 or n_samples < 1:
        raise ValueError(f"batch_size and n_samples must be >= 1, got {batch_size}, {n_samples}")
    if getattr(la, "H", None) is None:
        raise ValueError("the Laplace is not fitted; call fit_llla or load_llla first")
    return log_predictive(la, x, link, n_samples, seed, batch_size).numpy()


def _trim_batch(data: Any) -> Any:
    """Keep only the first sample of a stored (X, y) batch."""
    if data is None:
        return None
    if isinstance(data, (list, tuple)):
        return type(data)(d[:1].detach().cpu().clone() if isinstance(d, torch.Tensor) else d for d in data)
    raise ValueError("unexpected non-tuple batch in the Laplace state")


def llla_state(la: Any) -> dict[str, Any]:
    """A torch.save-able dict (laplace-torch's state_dict plus how to rebuild the object)."""
    la = _unwrap(la)
    sd = dict(la.state_dict())
    sd["data"] = _trim_batch(sd.get("data"))
    return {
        "format": STATE_FORMAT,
        "hessian_structure": _structure_name(la),
        "backend": _backend_name(la),
        "prior_precision": _scalar_prior(la),
        "laplace": sd,
    }


def load_llla(model: nn.Module, state: dict[str, Any]) -> Any:
    """Rebuild a fitted last-layer Laplace for `model` (the same weights it was fitted at)."""
    from laplace import Laplace  # lazy: laplace-torch is only needed when an LLLA arm is fitted

    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise ValueError(f"not an LLLA state made by llla_state (format {STATE_FORMAT})")
    _check_choice("hessian_structure", state["hessian_structure"], HESSIAN_STRUCTURES)
    _check_choice("backend", state["backend"], BACKENDS)
    _check_last_linear(model)
    la = Laplace(
        model,
        "classification",
        subset_of_weights="last_layer",
        hessian_structure=state["hessian_structure"],
        backend=_backend_cls(state["backend"]),
    )
    la.model.eval()
    la.load_state_dict(state["laplace"])
    la.model.eval()
    w = parameters_to_vector(la.model.last_layer.parameters()).detach()
    if w.shape != la.mean.shape or not torch.equal(w, la.mean.to(w)):
        raise ValueError("model's last-layer weights differ from those the Laplace state was fitted at")
    return la
