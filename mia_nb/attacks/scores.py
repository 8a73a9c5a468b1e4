"""Prediction scores: softmax, log-softmax, entropy, top-k, loss, and the validated `Outputs` pair.

Everything here is a pure function of arrays. Attacks and metrics take probabilities `[N, K]`
(rows sum to 1) and labels `int64 [N]`, where `-1` means "no true label".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
from scipy.special import entr

if TYPE_CHECKING:
    from mia_nb.store import Store

SUM_TOL = 1e-4  # allowed |row sum - 1| of a probability matrix (float32 softmax is well inside)
_LOG_FLOOR = np.finfo(np.float64).tiny  # p is clipped here before log, so -log p <= ~708


def check_outputs(probs: np.ndarray, labels: np.ndarray | None = None, name: str = "outputs") -> None:
    """Raise a one-line ValueError unless `probs` is a finite [N, K] probability matrix (and labels fit)."""
    p = np.asarray(probs)
    if p.ndim != 2:
        raise ValueError(f"{name}: probs must be 2-D [N, K], got shape {p.shape}")
    if p.shape[0] == 0 or p.shape[1] == 0:
        raise ValueError(f"{name}: probs is empty (shape {p.shape})")
    if not np.issubdtype(p.dtype, np.number) or np.issubdtype(p.dtype, np.complexfloating):
        raise ValueError(f"{name}: probs must be a real numeric array, got dtype {p.dtype}")
    if not np.all(np.isfinite(p)):
        raise ValueError(f"{name}: probs contains NaN or inf ({int(np.sum(~np.isfinite(p)))} entries)")
    if p.min() < -SUM_TOL or p.max() > 1 + SUM_TOL:
        raise ValueError(f"{name}: probs outside [0, 1] (min {p.min():.4g}, max {p.max():.4g}); pass softmax(logits)")
    dev = np.abs(p.sum(axis=1, dtype=np.float64) - 1.0)
    if dev.max() > SUM_TOL:
        raise ValueError(
            f"{name}: {int(np.sum(dev > SUM_TOL))} rows of probs do not sum to 1 (max deviation {dev.max():.3g}); "
            "pass probabilities, e.g. softmax(logits)"
        )
    if labels is None:
        return
    y = np.asarray(labels)
    if y.ndim != 1:
        raise ValueError(f"{name}: labels must be 1-D [N], got shape {y.shape}")
    if len(y) != len(p):
        raise ValueError(f"{name}: mismatched lengths: {len(p)} probs rows but {len(y)} labels")
    if y.dtype.kind not in "iu":
        if y.dtype.kind != "f" or not np.all(np.isfinite(y)) or not np.all(y == np.round(y)):
            raise ValueError(f"{name}: labels must be integers, got dtype {y.dtype}")
    if y.min() < -1 or y.max() >= p.shape[1]:
        raise ValueError(
            f"{name}: labels must lie in [-1, {p.shape[1] - 1}] (-1 = no label), got range [{y.min()}, {y.max()}]"
        )


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Numerically stable softmax of logits `[N, K]` / temperature, as float64 probabilities."""
    z = np.asarray(logits, dtype=np.float64)
    if z.ndim != 2 or z.shape[0] == 0 or z.shape[1] == 0:
        raise ValueError(f"softmax: logits must be a non-empty 2-D [N, K] array, got shape {z.shape}")
    if not np.all(np.isfinite(z)):
        raise ValueError("softmax: logits contain NaN or inf")
    if not (np.isfinite(temperature) and temperature > 0):
        raise ValueError(f"softmax: temperature must be a positive finite number, got {temperature}")
    z = z / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def log_softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """log softmax(logits / temperature) in float64, exact where softmax itself rounds to 1.0 or 0.0."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    top = z.argmax(axis=1)
    z = z - z[np.arange(len(z)), top][:, None]
    e = np.exp(z)
    e[np.arange(len(z)), top] = 0.0
    return z - np.log1p(e.sum(axis=1, keepdims=True))  # log1p keeps what 1 + tiny would round away


def log_rest(logp: np.ndarray) -> np.ndarray:
    """log(1 − max p) per row from log-probabilities: logsumexp over every class but the argmax.

    Well conditioned where the max score is not: a margin of 50 nats gives log(1 − p) ≈ −50, while
    p and log p both round to 1 and 0."""
    logp = np.asarray(logp, dtype=np.float64)
    top = logp.argmax(axis=1)
    rest = logp.copy()
    rest[np.arange(len(rest)), top] = -np.inf
    m = rest.max(axis=1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore"):
        return (m + np.log(np.exp(rest - m).sum(axis=1, keepdims=True)))[:, 0]


def entropy(probs: np.ndarray) -> np.ndarray:
    """Shannon entropy (natural log, 0·log 0 = 0) of each row, float64 [N]."""
    check_outputs(probs, name="entropy")
    p = np.clip(np.asarray(probs, dtype=np.float64), 0.0, None)  # tiny negative rounding noise -> 0
    return entr(p).sum(axis=1)


def topk(probs: np.ndarray, k: int) -> np.ndarray:
    """The k largest scores of each row, sorted descending, float64 [N, k]."""
    check_outputs(probs, name="topk")
    p = np.asarray(probs, dtype=np.float64)
    if not (isinstance(k, (int, np.integer)) and 1 <= k <= p.shape[1]):
        raise ValueError(f"topk: k must be an integer in [1, number of classes = {p.shape[1]}], got {k}")
    part = -np.partition(-p, k - 1, axis=1)[:, :k]  # k largest, unordered
    return -np.sort(-part, axis=1)


def ce_loss_logp(logp: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Cross-entropy with the true label from log-probabilities (predicted class where label == -1)."""
    y = np.asarray(labels).astype(np.int64)
    y = np.where(y == -1, logp.argmax(axis=1), y)
    return -logp[np.arange(len(logp)), y]


def ce_loss(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Cross-entropy -log p[label] per row, float64 [N].

    Where label == -1 (no true label, e.g. noise pools) the predicted class (argmax) is used, so the
    loss there equals -log(max score). Probabilities are floored at the smallest positive float64
    before the log, so the loss is finite (at most ~708).
    """
    check_outputs(probs, labels, name="ce_loss")
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(labels).astype(np.int64)
    y = np.where(y == -1, p.argmax(axis=1), y)
    py = p[np.arange(len(p)), y]
    return -np.log(np.maximum(py, _LOG_FLOOR))


@dataclass(frozen=True, eq=False)
class Outputs:
    """A model's probabilities `[N, K]` on a sample set and the samples' labels `int64 [N]` (-1 = none).

    `logp` (optional) holds the same outputs as log-probabilities computed from logits: a confident
    network's softmax rounds to exactly 1.0 for many samples, its log-softmax does not, so score
    attacks rank by `log_probs` and are not left with ties at 1.0.
    """

    probs: np.ndarray
    labels: np.ndarray
    logp: np.ndarray | None = None

    def __post_init__(self) -> None:
        check_outputs(self.probs, self.labels, name="Outputs")
        object.__setattr__(self, "probs", np.asarray(self.probs))
        object.__setattr__(self, "labels", np.asarray(self.labels).astype(np.int64))
        if self.logp is not None:
            logp = np.asarray(self.logp, dtype=np.float64)
            if logp.shape != self.probs.shape or np.isnan(logp).any() or (logp > 1e-9).any():
                raise ValueError(f"Outputs: logp must be log-probabilities of shape {self.probs.shape}")
            object.__setattr__(self, "logp", logp)

    @property
    def log_probs(self) -> np.ndarray:
        """Log-probabilities: `logp` when given, else log(probs) (floored at the smallest float)."""
        if self.logp is not None:
            return self.logp
        return np.log(np.maximum(self.probs, _LOG_FLOOR))

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def n_classes(self) -> int:
        """Number of classes K."""
        return self.probs.shape[1]

    def subset(self, idx: np.ndarray) -> Outputs:
        """The rows `idx` (integer indices or boolean mask) as a new `Outputs`."""
        idx = np.asarray(idx)
        if idx.dtype == bool and idx.shape != (len(self),):
            raise ValueError(f"Outputs.subset: boolean mask has shape {idx.shape}, expected ({len(self)},)")
        return Outputs(self.probs[idx], self.labels[idx], None if self.logp is None else self.logp[idx])


def cached_logits(store: Store, model_key: str, pool: dict, compute: Callable[[], Any]) -> np.ndarray:
    """Score once: the logits of model `model_key` on the pool described by `pool`, from the store.

    `compute()` (a forward pass) runs only when the store has no entry for (model, pool); every attack,
    metric and plot downstream is a function of these cached arrays.
    """
    def make() -> np.ndarray:
        out = compute()
        out = out.detach().cpu().numpy() if hasattr(out, "detach") else np.asarray(out)
        return out.astype(np.float32)
    return store.get_or_make("logits", {"model": model_key, **pool}, make)
