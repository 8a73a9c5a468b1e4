"""Score-based membership inference attacks: fit on shadow outputs, then score / predict any outputs.

One interface for every attack:
    attack.fit(member: Outputs, nonmember: Outputs) -> attack
    attack.score(out) -> float64 [N], continuous, higher = more member-like
    attack.predict(out) -> bool [N], True = member
    attack.name, attack.threshold (float in the attack's own statistic; NaN for Salem)

Members are the positive class. `fit` uses the sets as given; the study fits every attack on balanced
shadow sets, made with `balanced_shadow` by the caller (fit does not rebalance).

Threshold attacks decide "member iff score > cut" where `cut` lies strictly between two consecutive
distinct shadow scores (their midpoint), so the shadow decisions are exactly those of the chosen
ROC point / shadow-accuracy optimum, whatever the ties.
"""

from __future__ import annotations

import warnings
from typing import Any, Callable

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import roc_curve
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import LabelBinarizer

from mia_nb.attacks.scores import Outputs, ce_loss_logp, entropy, log_rest, topk
from mia_nb.config import ATTACK_NAMES


def _check_pair(member: Outputs, nonmember: Outputs, who: str) -> None:
    """Raise unless both are non-empty `Outputs` with the same number of classes."""
    for nm, o in (("member", member), ("nonmember", nonmember)):
        if not isinstance(o, Outputs):
            raise ValueError(f"{who}.fit: {nm} must be an Outputs, got {type(o).__name__}")
    if member.n_classes != nonmember.n_classes:
        raise ValueError(
            f"{who}.fit: member and nonmember outputs have {member.n_classes} vs {nonmember.n_classes} classes"
        )


def _cut_between(lo: float, hi: float) -> float:
    """A cut c with lo <= c < hi (midpoint where representable), for the rule "member iff score > c".

    `hi` is the lowest shadow score called member (+inf: none), `lo` the highest called non-member
    (-inf: none).
    """
    if np.isposinf(hi):
        return float(lo)
    if np.isneginf(lo):
        return float(np.nextafter(hi, -np.inf))
    mid = lo / 2 + hi / 2
    return float(mid if lo <= mid < hi else lo)


def youden_cut(s_member: np.ndarray, s_nonmember: np.ndarray) -> float:
    """Cut for "member iff score > cut" at the shadow ROC point maximising TPR − FPR.

    roc_curve's point i means "score >= thresholds[i]"; the cut is placed between thresholds[i] and
    the next lower distinct shadow score, so both rules give identical shadow decisions. Ties in
    TPR − FPR go to the highest threshold (fewest members called).
    """
    y = np.r_[np.ones(len(s_member)), np.zeros(len(s_nonmember))]
    fpr, tpr, thr = roc_curve(y, np.r_[s_member, s_nonmember], drop_intermediate=False)
    i = int(np.argmax(tpr - fpr))
    hi = thr[i]
    lo = thr[i + 1] if i + 1 < len(thr) else -np.inf
    return _cut_between(lo, hi)


def most_correct_cut(s_member: np.ndarray, s_nonmember: np.ndarray) -> float:
    """Cut for "member iff score > cut" with the most correct shadow decisions, exact (no grid).

    Candidates: call the j highest distinct shadow scores members, j = 0..m (cumulative counts over
    the sorted distinct values, so tied scores always fall on the same side). Ties in accuracy go to
    the smallest j (fewest members called).
    """
    s = np.r_[s_member, s_nonmember]
    is_m = np.r_[np.ones(len(s_member), bool), np.zeros(len(s_nonmember), bool)]
    uniq, inv = np.unique(s, return_inverse=True)  # ascending
    m_cnt = np.bincount(inv, weights=is_m, minlength=len(uniq))[::-1]  # descending order of score
    n_cnt = np.bincount(inv, weights=~is_m, minlength=len(uniq))[::-1]
    tp = np.r_[0.0, np.cumsum(m_cnt)]  # j = 0..m highest distinct values called member
    fp = np.r_[0.0, np.cumsum(n_cnt)]
    correct = tp + (len(s_nonmember) - fp)
    j = int(np.argmax(correct))
    desc = uniq[::-1]
    hi = desc[j - 1] if j > 0 else np.inf
    lo = desc[j] if j < len(desc) else -np.inf
    return _cut_between(lo, hi)


class Attack:
    """Base class: subclasses set `name` and implement `fit` and `score` (and `predict` if not a cut)."""

    name: str = "attack"

    def __init__(self) -> None:
        self._cut = np.nan
        self._fitted = False

    @property
    def threshold(self) -> float:
        """Decision threshold in the attack's own statistic (see the class docstring)."""
        return float(self._cut)

    def _require_fitted(self) -> None:
        if not self._fitted:
            raise ValueError(f"{self.name} attack is not fitted; call fit(member, nonmember) first")

    def fit(self, member: Outputs, nonmember: Outputs) -> Attack:  # pragma: no cover - interface
        raise NotImplementedError

    def score(self, out: Outputs) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    def predict(self, out: Outputs) -> np.ndarray:
        """True = member: score > the fitted cut."""
        self._require_fitted()
        return self.score(out) > self._cut

    def __repr__(self) -> str:
        return f"{type(self).__name__}(threshold={self.threshold:.6g})" if self._fitted else f"{type(self).__name__}()"


class CutAttack(Attack):
    """An attack that is one cut on its score, placed by `cut_rule` on the shadow scores (member iff score > cut)."""

    cut_rule: Callable[[np.ndarray, np.ndarray], float] = staticmethod(youden_cut)

    def fit(self, member: Outputs, nonmember: Outputs) -> CutAttack:
        """Place the cut on shadow member / non-member scores."""
        _check_pair(member, nonmember, type(self).__name__)
        self._cut = type(self).cut_rule(self.score(member), self.score(nonmember))
        self._fitted = True
        return self


class ThresholdAttack(CutAttack):
    """Max softmax score; threshold at the shadow ROC point maximising TPR − FPR; member iff max score > t.

    Ranks by −log(1 − max score), computed from the log-probabilities of the other classes
    (`scores.log_rest`): the same order and decisions as the max score, but without the ties a float
    softmax makes at exactly 1.0, nor those log(max score) makes near 0 once the margin exceeds ~36
    nats. `threshold` is in max-score units.
    """

    name = "threshold"

    @property
    def threshold(self) -> float:
        """Max-score threshold: member iff max softmax score > threshold."""
        return float(-np.expm1(-self._cut))

    def score(self, out: Outputs) -> np.ndarray:
        """−log(1 − max softmax score) (monotone in the max score)."""
        return -log_rest(out.log_probs)


class LossAttack(CutAttack):
    """Yeom et al.: score = −CE loss with the true label (predicted label where label == -1).

    Fitted like ThresholdAttack (max TPR − FPR on the shadow ROC of −loss). `threshold` is in loss
    units: member iff loss < threshold.
    """

    name = "loss"

    def score(self, out: Outputs) -> np.ndarray:
        """Minus the cross-entropy loss (from log-probabilities, so saturated softmax leaves no ties)."""
        return -ce_loss_logp(out.log_probs, out.labels)

    @property
    def threshold(self) -> float:
        """Loss threshold: member iff loss < threshold."""
        return float(-self._cut)


class EntropyAttack(CutAttack):
    """Shannon entropy; threshold with the most correct shadow decisions; member iff entropy < t.

    The threshold is exact: every cut between consecutive distinct shadow entropies is evaluated
    with cumulative sums (tied entropies always land on the same side).
    """

    name = "entropy"
    cut_rule = staticmethod(most_correct_cut)

    def score(self, out: Outputs) -> np.ndarray:
        """Minus the entropy (confident = high score = member-like)."""
        return -entropy(out.probs)

    @property
    def threshold(self) -> float:
        """Entropy threshold: member iff entropy < threshold."""
        return float(-self._cut)


class SalemAttack(Attack):
    """Salem et al. (ML-Leaks) top-k: sorted top-k softmax → MLP k→64→ReLU→1, member iff sigmoid ≥ 0.5.

    scikit-learn's MLPClassifier: logistic output with log-loss (= BCE), Adam (lr), batch size
    `batch_size`, seeded shuffling and initialisation (`random_state=seed`), no L2 penalty. Training
    stops when the epoch training loss has not improved by more than `min_delta` for more than
    `patience` epochs (scikit-learn's n_iter_no_change rule), or after `max_epochs` (the paper's rule: stop when the training loss stops improving).
    `threshold` is NaN (the decision is the MLP's).
    """

    name = "salem"

    def __init__(
        self,
        k: int = 3,
        hidden: int = 64,
        lr: float = 0.01,
        batch_size: int = 16,
        patience: int = 5,
        max_epochs: int = 100,
        min_delta: float = 5e-4,  # the paper code's minimum change of the training loss
        seed: int = 0,
    ) -> None:
        super().__init__()
        for nm, v in (("k", k), ("hidden", hidden), ("batch_size", batch_size), ("patience", patience),
                      ("max_epochs", max_epochs)):
            if not (isinstance(v, (int, np.integer)) and v >= 1):
                raise ValueError(f"SalemAttack: {nm} must be a positive integer, got {v!r}")
        if not (np.isfinite(lr) and lr > 0):
            raise ValueError(f"SalemAttack: lr must be a positive number, got {lr!r}")
        self.k, self.hidden, self.lr, self.batch_size = int(k), int(hidden), float(lr), int(batch_size)
        self.patience, self.max_epochs, self.min_delta, self.seed = int(patience), int(max_epochs), min_delta, seed
        self.model: MLPClassifier | None = None
        self.history: list[float] = []  # epoch-mean training loss
        self.best_epoch: int = -1

    @property
    def threshold(self) -> float:
        """NaN: the MLP decides."""
        return float("nan")

    def _features(self, out: Outputs, who: str) -> np.ndarray:
        if self.k > out.n_classes:
            raise ValueError(f"SalemAttack.{who}: k={self.k} exceeds the number of classes ({out.n_classes})")
        return topk(out.probs, self.k)

    def fit(self, member: Outputs, nonmember: Outputs) -> SalemAttack:
        """Train the attack MLP on shadow member (1) / non-member (0) top-k features."""
        _check_pair(member, nonmember, type(self).__name__)
        x = np.concatenate([self._features(member, "fit"), self._features(nonmember, "fit")])
        y = np.concatenate([np.ones(len(member), int), np.zeros(len(nonmember), int)])
        model = MLPClassifier(hidden_layer_sizes=(self.hidden,), activation="relu", solver="adam",
                              learning_rate_init=self.lr, batch_size=self.batch_size, max_iter=self.max_epochs,
                              n_iter_no_change=self.patience, tol=self.min_delta, alpha=0.0, shuffle=True,
                              random_state=self.seed)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=ConvergenceWarning)
            model.fit(x, y)
        self.history = [float(v) for v in model.loss_curve_]
        self.best_epoch = int(np.argmin(self.history))
        self.model = model
        self._fitted = True
        return self

    def score(self, out: Outputs) -> np.ndarray:
        """Sigmoid output of the attack MLP (probability of 'member'), float64 [N]."""
        self._require_fitted()
        return self.model.predict_proba(self._features(out, "score"))[:, 1].astype(np.float64)

    def predict(self, out: Outputs) -> np.ndarray:
        """True = member: sigmoid ≥ 0.5."""
        return self.score(out) >= 0.5


ATTACKS: dict[str, type[Attack]] = {
    "threshold": ThresholdAttack,
    "entropy": EntropyAttack,
    "salem": SalemAttack,
    "loss": LossAttack,
}
if set(ATTACKS) != set(ATTACK_NAMES):  # the profile schema offers the names, this table the classes
    raise RuntimeError(f"ATTACKS has {sorted(ATTACKS)}, mia_nb.config.ATTACK_NAMES {sorted(ATTACK_NAMES)}: "
                       f"name each attack in both")


def make_attack(name: str, **kw) -> Attack:
    """A new, unfitted attack by registry name (keyword arguments go to its constructor)."""
    if name not in ATTACKS:
        raise ValueError(f"unknown attack {name!r}; known: {', '.join(sorted(ATTACKS))}")
    return ATTACKS[name](**kw)


def attack_state(attack: Attack) -> dict[str, Any]:
    """A fitted attack as plain data (numbers, lists, arrays) that the store keeps without pickle.

    Salem's MLP is kept as its constructor parameters and its fitted attributes (scikit-learn's trailing-
    underscore convention: weights, classes, loss curve), which are all `predict_proba` needs.
    """
    state = dict(vars(attack))
    if isinstance(attack, SalemAttack) and attack.model is not None:
        mlp = attack.model
        state["model"] = {"params": mlp.get_params(),
                          "fitted": {k: v for k, v in vars(mlp).items() if k.endswith("_") and not k.startswith("_")}}
    return {"name": attack.name, "state": state}


def restore_attack(record: dict[str, Any]) -> Attack:
    """The fitted attack that `attack_state` describes (Salem's MLP rebuilt from its weights)."""
    cls = ATTACKS[record["name"]]
    attack = cls.__new__(cls)
    state = dict(record["state"])
    mlp = state.get("model")
    if isinstance(mlp, dict):
        model = MLPClassifier(**mlp["params"])
        vars(model).update(mlp["fitted"])
        model._label_binarizer = LabelBinarizer().fit(model.classes_)  # what MLPClassifier.predict maps back with
        state["model"] = model
    vars(attack).update(state)
    return attack


def balanced_shadow(member: Outputs, nonmember: Outputs, seed: int) -> tuple[Outputs, Outputs]:
    """Subsample the larger set (without replacement, seeded, order kept) to min(n_member, n_nonmember)."""
    n = min(len(member), len(nonmember))
    rng = np.random.default_rng(seed)

    def _take(o: Outputs) -> Outputs:
        return o if len(o) == n else o.subset(np.sort(rng.choice(len(o), size=n, replace=False)))

    return _take(member), _take(nonmember)
