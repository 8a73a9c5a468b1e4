"""Metrics on model outputs and attack decisions: calibration (ECE, OE), ROC metrics, MMPS."""

from __future__ import annotations

import numpy as np
from scipy.stats import wasserstein_distance
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from mia_nb.attacks.thresholds import tpr_at_fpr
from mia_nb.attacks.scores import Outputs, ce_loss, check_outputs


def reliability_bins(probs: np.ndarray, labels: np.ndarray,
                     n_bins: int = 15) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per equal-width confidence bin on [0, 1]: weight (fraction of samples), mean confidence, accuracy.

    The bins of a reliability diagram and of ECE / OE; empty bins have weight 0 (their mean
    confidence and accuracy are 0 and mean nothing).
    """
    _check_calib(probs, labels, n_bins, "reliability_bins")
    probs, labels = np.asarray(probs), np.asarray(labels)
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(float)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    idx = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, n_bins - 1)
    counts = np.bincount(idx, minlength=n_bins).astype(float)
    safe = np.maximum(counts, 1.0)
    mean_conf = np.bincount(idx, weights=conf, minlength=n_bins) / safe
    acc = np.bincount(idx, weights=correct, minlength=n_bins) / safe
    return counts / len(conf), mean_conf, acc


def _check_labelled(probs: np.ndarray, labels: np.ndarray, name: str) -> None:
    """Valid probabilities with true labels (no -1), or a one-line ValueError."""
    check_outputs(probs, labels, name=name)
    if np.any(np.asarray(labels) == -1):
        raise ValueError(f"{name}: labels contain -1 (no true label); pass a labelled set")


def _check_calib(probs: np.ndarray, labels: np.ndarray, n_bins: int, name: str) -> None:
    """Labelled probabilities and a positive integer bin count, or a one-line ValueError."""
    _check_labelled(probs, labels, name)
    if not (isinstance(n_bins, (int, np.integer)) and n_bins >= 1):
        raise ValueError(f"{name}: n_bins must be a positive integer, got {n_bins!r}")


def ece(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> float:
    """Expected calibration error with `n_bins` equal-width confidence bins."""
    _check_calib(probs, labels, n_bins, "ece")
    w, conf, acc = reliability_bins(probs, labels, n_bins)
    return float(np.sum(w * np.abs(conf - acc)))


def overconfidence_error(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> float:
    """OE = sum_b |B_b|/n * conf_b * max(conf_b - acc_b, 0)."""
    _check_calib(probs, labels, n_bins, "overconfidence_error")
    w, conf, acc = reliability_bins(probs, labels, n_bins)
    return float(np.sum(w * conf * np.maximum(conf - acc, 0.0)))


# --- ROC / attack metrics -------------------------------------------------------------------------

LOW_FPRS = {"1pct": 0.01, "01pct": 0.001}  # column suffix -> alpha, for tpr_at_<suffix>_fpr

ATTACK_METRIC_KEYS = (
    "n_members", "n_nonmembers", "threshold", "precision", "recall", "fpr", "accuracy", "auroc", "aupr",
    "fpr_at_95tpr", "balanced_accuracy",
    "tpr_at_1pct_fpr", "tpr_at_1pct_fpr_lo", "tpr_at_1pct_fpr_hi", "fpr_check_1pct",
    "tpr_at_01pct_fpr", "tpr_at_01pct_fpr_lo", "tpr_at_01pct_fpr_hi", "fpr_check_01pct",
    "mmps_tp", "mmps_fp", "mmps_fn", "mmps_tn",
)


def _check_scores(s: np.ndarray, name: str) -> np.ndarray:
    """A finite, non-empty 1-D float64 array, or a one-line ValueError naming `name`."""
    s = np.asarray(s, dtype=np.float64)
    if s.ndim != 1 or len(s) == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array, got shape {s.shape}")
    if not np.all(np.isfinite(s)):
        raise ValueError(f"{name} contains NaN or inf")
    return s


def roc_points(
    scores_members: np.ndarray, scores_nonmembers: np.ndarray, drop_intermediate: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds) of sklearn's roc_curve, members positive; point i means score >= thresholds[i]."""
    sm = _check_scores(scores_members, "scores_members")
    sn = _check_scores(scores_nonmembers, "scores_nonmembers")
    y = np.r_[np.ones(len(sm)), np.zeros(len(sn))]
    return roc_curve(y, np.r_[sm, sn], drop_intermediate=drop_intermediate)


def _group_mmps(conf: np.ndarray, mask: np.ndarray) -> float:
    """Mean of conf[mask]; NaN for an empty group."""
    return float(conf[mask].mean()) if mask.any() else float("nan")


def attack_metrics(attack, members: Outputs, nonmembers: Outputs, seed: int = 0) -> dict:
    """All per-(attack, non-member set) metrics, keyed as the columns of results/attacks.csv.

    Members are positive. Decision metrics (precision, recall, fpr, accuracy, mmps_*) use the
    attack's own `predict`; precision is NaN when nothing is called member, an empty MMPS group is NaN.
    ROC metrics use `attack.score`: auroc / aupr (sklearn roc_auc_score / average_precision_score),
    balanced_accuracy = max over ROC points of (TPR + 1 − FPR)/2, fpr_at_95tpr = smallest FPR with
    TPR >= 0.95, read off the full ROC without interpolation.

    TPR at a low FPR a (1% and 0.1%) must not be tuned on the images that measure it, and a percentile
    bootstrap is unreliable with a handful of allowed false positives. So the threshold is fixed on a
    seeded random half of the non-members (`thresholds.tpr_at_fpr`): tpr_at_<a>_fpr is the share of members
    above it with its Clopper–Pearson 95% interval (*_lo / *_hi), and fpr_check_<a> the FPR that
    threshold gives on the other half (close to a when the operating point transfers).
    """
    if not isinstance(members, Outputs) or not isinstance(nonmembers, Outputs):
        raise ValueError("attack_metrics: members and nonmembers must be Outputs")
    n_m, n_n = len(members), len(nonmembers)
    pm = np.asarray(attack.predict(members), dtype=bool)
    pn = np.asarray(attack.predict(nonmembers), dtype=bool)
    if pm.shape != (n_m,) or pn.shape != (n_n,):
        raise ValueError(f"attack_metrics: {attack.name}.predict returned shapes {pm.shape}, {pn.shape}")
    sm = _check_scores(attack.score(members), f"{attack.name} scores on members")
    sn = _check_scores(attack.score(nonmembers), f"{attack.name} scores on nonmembers")
    tp, fp = int(pm.sum()), int(pn.sum())
    tn = n_n - fp

    y = np.r_[np.ones(n_m), np.zeros(n_n)]
    s = np.r_[sm, sn]
    fpr_c, tpr_c, _ = roc_curve(y, s, drop_intermediate=False)
    conf_m = members.probs.max(axis=1).astype(np.float64)
    conf_n = nonmembers.probs.max(axis=1).astype(np.float64)

    res = {
        "n_members": n_m,
        "n_nonmembers": n_n,
        "threshold": float(attack.threshold),
        "precision": tp / (tp + fp) if tp + fp > 0 else float("nan"),
        "recall": tp / n_m,
        "fpr": fp / n_n,
        "accuracy": (tp + tn) / (n_m + n_n),
        "auroc": float(roc_auc_score(y, s)),
        "aupr": float(average_precision_score(y, s)),
        "fpr_at_95tpr": float(np.min(fpr_c[tpr_c >= 0.95])),
        "balanced_accuracy": float(np.max((tpr_c + 1.0 - fpr_c) / 2.0)),
    }
    for suffix, a in LOW_FPRS.items():
        t = tpr_at_fpr(sm, sn, a, seed)
        res[f"tpr_at_{suffix}_fpr"] = t["tpr"]
        res[f"tpr_at_{suffix}_fpr_lo"] = t["tpr_lo"]
        res[f"tpr_at_{suffix}_fpr_hi"] = t["tpr_hi"]
        res[f"fpr_check_{suffix}"] = t["fpr"]
    res["mmps_tp"] = _group_mmps(conf_m, pm)
    res["mmps_fp"] = _group_mmps(conf_n, pn)
    res["mmps_fn"] = _group_mmps(conf_m, ~pm)
    res["mmps_tn"] = _group_mmps(conf_n, ~pn)
    return {k: res[k] for k in ATTACK_METRIC_KEYS}


# --- distributions and model quality --------------------------------------------------------------

def wasserstein(a: np.ndarray, b: np.ndarray) -> float:
    """Wasserstein-1 distance between two 1-D samples (e.g. max scores), scipy.stats.wasserstein_distance."""
    return float(wasserstein_distance(_check_scores(a, "wasserstein: a"), _check_scores(b, "wasserstein: b")))


def mmps(probs: np.ndarray) -> float:
    """Mean maximum prediction score."""
    check_outputs(probs, name="mmps")
    return float(np.asarray(probs, dtype=np.float64).max(axis=1).mean())


def nll(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean negative log-likelihood of the true labels (no -1 labels allowed)."""
    _check_labelled(probs, labels, "nll")
    return float(ce_loss(probs, labels).mean())


def accuracy(probs: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy (no -1 labels allowed)."""
    _check_labelled(probs, labels, "accuracy")
    return float(np.mean(np.asarray(probs).argmax(axis=1) == np.asarray(labels)))


def wasserstein_interval(a: np.ndarray, b: np.ndarray, n_boot: int = 200, seed: int = 0) -> tuple[float, float]:
    """95% percentile-bootstrap interval of the Wasserstein-1 distance (both samples resampled, seeded)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    rng = np.random.default_rng(seed)
    draws = [wasserstein_distance(rng.choice(a, len(a)), rng.choice(b, len(b))) for _ in range(n_boot)]
    lo, hi = np.percentile(draws, [2.5, 97.5])
    return float(lo), float(hi)
