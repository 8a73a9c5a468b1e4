"""The paper's findings as claims that can fail: paired statistics on per-image arrays, bands, verdicts.

Every claim is a statistic of the per-image arrays that `mia_nb.attacks.evaluation` saved for each seed
(samples/<variant>.npz, read through `mia_nb.attacks.samples`: every attack's score and decision, max
scores, correctness): a level (the held-out FPR), a difference (variant − vanilla, attack − attack) or a
rank correlation (across pools, across variants). Both sides of a difference are measured on the same
images, so one resampling of those images is applied to both sides (paired); pools made from the same
held-out images are resampled jointly with them, and pools that every seed shares (the pool registry,
`mia_nb.data.nonmembers.POOLS`, says which) with one weight matrix for all seeds. Each seed gives a point
and its paired resamples; `mia_nb.claims.paired.combine` combines the seeds into one 95% interval.

The claims come in blocks: "Finding 1" … "Finding 4", the paper's four findings as the paper states them,
and "Extensions", questions beyond the paper that never enter its tally. Every claim names its no-effect
band (params/claims/bands.yaml, `band_file()`): the smallest effect that counts. A claim `x > r` (r = 0 for a
difference, a stated level for a level claim) **holds** when its interval lies above r + band, **does not
hold** when it lies below r − band, shows **no effect** when it lies inside [r − band, r + band] and is
**undetermined** otherwise; `x < r` mirrors it. An equivalence claim (`|x − r|` within the band) holds
inside the band and does not hold wholly outside it. A claim that needs a precondition (a variant that
calibrates) keeps its verdict; the precondition's own verdict is printed beside it (`gate_status`).
Over the paper's blocks a Holm-adjusted column (`holm`) says which "holds" survive the family-wise test.
"""

from __future__ import annotations

import functools
import math
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from mia_nb import REPO_ROOT
from mia_nb.attacks.reference_variants import ARM_FAMILY
from mia_nb.attacks.samples import (HELDOUT_POP, MEMBERS, SampleFile, at_point, conf_key, member_key, read_folder,
                                    score_key, split_key)
from mia_nb.attacks.thresholds import split_threshold
from mia_nb.claims import paired
from mia_nb.config import ConfigError, read_yaml
from mia_nb.data.nonmembers import LABELLED_GROUPS, OOD_GROUPS, POOLS, PoolKind, kind_of  # the pool registry
from mia_nb.layout import REFERENCE_VARIANT

HOLDS, FAILS, NO_EFFECT, UNDETERMINED, NOT_RUN = "holds", "does not hold", "no effect", "undetermined", "not measured"
VERDICTS = (HOLDS, FAILS, NO_EFFECT, UNDETERMINED, NOT_RUN)
HOLM_NOT_SHOWN, OUTSIDE_FAMILY = "not shown", "not in the family"  # the Holm column's other values
HOLM_ALPHA = 0.025  # one-sided, the level of each row's own 95% interval on its claimed side

PAPER_BLOCKS = ("Finding 1", "Finding 2", "Finding 3", "Finding 4")
EXTENSIONS = "Extensions"
BLOCKS = {  # each block's finding in our words, with the paper's numbers (threshold attack unless named)
    "Finding 1": "Score-based MIAs have high false-positive rates, in and out of distribution. Paper: held-out "
                 "FPR 0.448 / 0.464 / 0.390 (ResNet-18 CIFAR-10 / SimpleCNN CIFAR-10 / ResNet-50 Dogs), GAN "
                 "fakes 0.516 / ≥ 0.550 / 0.267, × 255 ≥ 0.998 / ≥ 0.998 / 0.988.",
    "Finding 2": "Overconfidence (high max scores on everything) causes those false positives and so implicitly "
                 "protects the training data; the mean maximum prediction score (MMPS) shows that the attacks "
                 "rely mostly on the max score. Paper: MMPS of TP / FP / FN / TN per attack; Dogs MMPS members "
                 "0.982, held-out 0.852, AFHQ cats 0.757.",
    "Finding 3": "Reducing overconfidence (label smoothing, LLLA) lowers the FPR and makes the attack stronger: "
                 "better-calibrated models leak more. Paper (ResNet-18 CIFAR-10, held-out FPR / AUROC): vanilla "
                 "0.448 / 0.775, label smoothing 0.240 / 0.871, LLLA 0.282 / 0.753; Dogs ECE 0.251 → 0.058 (LS), "
                 "0.056 (LLLA).",
    "Finding 4": "Classic defenses do the opposite of calibration: calibration pulls member and non-member score "
                 "distributions apart, defenses (L2, high softmax temperature) push them together. Paper (Dogs "
                 "MMPS members / held-out): vanilla 0.982 / 0.852, LS 0.901 / 0.594, LLLA 0.890 / 0.653, L2 "
                 "0.701 / 0.598; ResNet-18 L2 AUROC 0.511 vs 0.775.",
    EXTENSIONS: "Beyond the paper, never in its tally: label-free vs loss attack at a matched held-out FPR, TPR "
                "at low FPR, DP-SGD, the dose of label smoothing, LiRA and RMIA, and the calibration / defense "
                "trade-off under LiRA.",
}
BLOCK_ORDER = (*PAPER_BLOCKS, EXTENSIONS)

ALPHA_LOW = 0.01  # the low-FPR operating point of the TPR claims
PAPER_ATTACKS = ("threshold", "entropy", "salem")  # the paper's three score-based attacks
LABEL_FREE = PAPER_ATTACKS  # the attacks that read no label, compared with the label-aware loss attack
CALIBRATION_FAMILIES = ("temperature", "label_smoothing", "llla")  # notebook 06's variants (Finding 3's relation)

# ------------------------------------------------------------------------------------------- bands

BANDS_FILE = REPO_ROOT / "params" / "claims" / "bands.yaml"
BAND_KEYS = ("fpr_high", "confidence_rank", "rank_correlation", "fpr", "ood_fpr", "heldout_fpr", "auroc", "tpr", "ece",
             "fpr_low", "separation", "lira_tpr")
LEVEL_KEYS = ("fpr_high",)
_SECTIONS = ("recorded", "levels", "bands")


@dataclass(frozen=True)
class BandFile:
    """The no-effect bands and levels of the claims, and the file's own record of when they were set."""

    bands: dict[str, float]
    levels: dict[str, float]
    recorded: str
    path: Path


def _number(path: Path, key: str, value: object) -> float:
    """A finite number >= 0, or a one-line ConfigError naming the key."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ConfigError(f"{path}: {key}: need a number >= 0, got {value!r}")
    return float(value)


def _exact_keys(path: Path, prefix: str, given: dict, known: tuple[str, ...]) -> None:
    """One ConfigError naming the first unknown or missing key of a bands-file mapping."""
    for key in given:
        if key not in known:
            raise ConfigError(f"{path}: {prefix}{key}: unknown entry (known: {', '.join(known)})")
    for key in known:
        if key not in given:
            raise ConfigError(f"{path}: {prefix}{key}: missing")


def load_bands(path: str | Path = BANDS_FILE) -> BandFile:
    """Read a bands file (config's bounded YAML reader); a missing, unknown or negative entry is one ConfigError."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: bands file not found (the claims read params/claims/bands.yaml)")
    text = path.read_text(encoding="utf-8")
    if not text.strip():
        raise ConfigError(f"{path}: empty; a bands file needs {', '.join(_SECTIONS)}")
    values = read_yaml(text, str(path))
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: need a mapping with {', '.join(_SECTIONS)}, got {type(values).__name__}")
    _exact_keys(path, "", values, _SECTIONS)
    if not isinstance(values["recorded"], str) or not values["recorded"].strip():
        raise ConfigError(f"{path}: recorded: need a sentence saying when the bands were set")
    sections = {}
    for section, known in (("levels", LEVEL_KEYS), ("bands", BAND_KEYS)):
        given = values[section]
        if not isinstance(given, dict):
            raise ConfigError(f"{path}: {section}: need a mapping of name: number")
        _exact_keys(path, f"{section}.", given, known)
        sections[section] = {k: _number(path, f"{section}.{k}", given[k]) for k in known}
    return BandFile(sections["bands"], sections["levels"], " ".join(values["recorded"].split()), path)


@functools.lru_cache(maxsize=1)
def band_file() -> BandFile:
    """The study's bands file (`BANDS_FILE`), read on first use, not at import: `.bands` maps a band key to the
    smallest effect that counts (in the statistic's units), `.levels` a level key to its level."""
    return load_bands()


# ------------------------------------------------------------------------------------------- seeds

@dataclass(frozen=True)
class Seed:
    """One seed's per-image sample files, one per evaluated variant."""

    seed: int
    variants: dict[str, SampleFile]  # variant name -> its samples/<variant>.npz

    def get(self, variant: str) -> SampleFile:
        """A variant's sample file; KeyError when this seed did not evaluate it."""
        if variant not in self.variants:
            raise KeyError(variant)
        return self.variants[variant]


def load_seed(folder: Path) -> Seed:
    """Read every samples/<variant>.npz of one seed's folder; a one-line error names what to run."""
    folder = Path(folder)
    files = read_folder(folder)
    if not files:
        raise FileNotFoundError(f"{folder}: no per-image samples; run notebooks 04-07 first")
    seeds = {f.seed for f in files.values()}
    if len(seeds) != 1:
        raise ValueError(f"{folder}: samples from several seeds {sorted(seeds)}")
    return Seed(seeds.pop(), files)


# ------------------------------------------------------------------------------------- resampling

def _kind(name: str) -> PoolKind | None:
    """The pool registry's entry for a pool name, or None for a set it does not list (heldout_pop)."""
    try:
        return POOLS[kind_of(name)[0]]
    except ValueError:
        return None


def made_from_heldout(name: str) -> bool:
    """Whether a pool is made from the target's held-out images (the registry says; sample files are not asked)."""
    kind = _kind(name)
    return kind is not None and kind.from_heldout


def same_every_seed(name: str) -> bool:
    """Whether every seed of a run evaluates the same images of this pool (scikit-learn's digits, the GAN fakes)."""
    kind = _kind(name)
    return kind is not None and kind.every_seed


def _salt(key: str) -> int:
    return zlib.crc32(key.encode()) % 1000


@dataclass
class Draws:
    """One seed's resampling weights: members, held-out (shared by the pools made from it), the other pools."""

    seed: Seed
    n_boot: int
    cache: dict
    every_seed: dict = field(default_factory=dict)  # weights of the pools every seed shares: one matrix for all

    def members(self) -> np.ndarray:
        """Weights [B, n] of the target's members."""
        return self._w(MEMBERS, _n(self.seed, MEMBERS))

    def pool(self, name: str) -> np.ndarray:
        """Weights of a pool: the held-out weights (first columns) for a pool made from held-out images, one
        matrix for every seed for a pool that every seed shares, else the pool's own."""
        n = _n(self.seed, name)
        if name != "heldout" and made_from_heldout(name):
            return self._w("heldout", _n(self.seed, "heldout"))[:, :n]
        if same_every_seed(name):
            key = (name, n)
            if key not in self.every_seed:
                self.every_seed[key] = paired.weights(n, self.n_boot, seed=10**6 + _salt(name))
            return self.every_seed[key]
        return self._w(name, n)

    def share(self, flags: np.ndarray, name: str) -> np.ndarray:
        """Per resample, the weighted share of True among a pool's (or the members') flags -> [B]: FPR or TPR."""
        w = self.members() if name == MEMBERS else self.pool(name)
        key = ("total", name)
        if key not in self.cache:
            self.cache[key] = np.asarray(w.sum(axis=1), dtype=np.float64)
        total = self.cache[key]
        hits = paired.wsum(w, np.asarray(flags, dtype=bool).astype(w.dtype))
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(total > 0, hits / np.where(total > 0, total, 1.0), np.nan)

    def decision_share(self, variant: str, attack: str, name: str) -> np.ndarray:
        """`share` of a saved decision array (`<attack>/member/<set>` of a variant's file). On first use for a set,
        every variant's and attack's decisions on it are weighed at once (one product instead of one each)."""
        key = ("decisions", name)
        if key not in self.cache:
            if "decision index" not in self.cache:  # set -> [(variant, attack, decisions)], read once per seed
                index: dict[str, list] = {}
                for v, f in self.seed.variants.items():
                    for k, arr in f.arrays.items():
                        what, set_name = split_key(k)
                        if what.endswith("/member"):
                            index.setdefault(set_name, []).append((v, what.removesuffix("/member"), arr))
                self.cache["decision index"] = index
            found = self.cache["decision index"].get(name, [])
            w = self.members() if name == MEMBERS else self.pool(name)
            flags = np.stack([arr for *_, arr in found], axis=1).astype(w.dtype)
            counts = np.asarray(w @ flags, dtype=np.float64)  # exact: float32 sums of integer counts below 2**24
            total = np.asarray(w.sum(axis=1), dtype=np.float64)[:, None]
            with np.errstate(invalid="ignore", divide="ignore"):
                shares = np.where(total > 0, counts / np.where(total > 0, total, 1.0), np.nan)
            self.cache[key] = {(v, a): shares[:, i] for i, (v, a, _) in enumerate(found)}
        return self.cache[key][(variant, attack)]

    def memo(self, key: tuple, compute: Callable[[], tuple[float, np.ndarray]]) -> tuple[float, np.ndarray]:
        """A statistic computed once per seed (vanilla's AUROC serves every variant − vanilla claim)."""
        if key not in self.cache:
            self.cache[key] = compute()
        return self.cache[key]

    def _w(self, key: str, n: int) -> np.ndarray:
        if key not in self.cache:
            self.cache[key] = paired.weights(n, self.n_boot, seed=self.seed.seed * 1000 + _salt(key))
        return self.cache[key]


@dataclass
class Resampling:
    """The resampling weights and computed statistics of every seed, shared by the claims and headlines of a run."""

    n_boot: int
    per_seed: dict[int, Draws] = field(default_factory=dict)
    every_seed: dict = field(default_factory=dict)

    def of(self, s: Seed) -> Draws:
        """The seed's draws (made on first use)."""
        if s.seed not in self.per_seed:
            self.per_seed[s.seed] = Draws(s, self.n_boot, {}, self.every_seed)
        return self.per_seed[s.seed]


def _n(seed: Seed, name: str) -> int:
    """Images in a set (from whichever variant's file holds it)."""
    return next(f.size(name) for f in seed.variants.values() if f.has(conf_key(name)))


Stat = Callable[[Seed, Draws], tuple[float, np.ndarray]]  # (point, draws [B])


def measure(seeds: list[Seed], stat: Stat, n_boot: int = paired.B_DEFAULT,
            resampling: Resampling | None = None) -> paired.Interval:
    """The statistic per seed (point and paired resamples), combined over seeds (`paired.combine`)."""
    resampling = Resampling(n_boot) if resampling is None else resampling
    points, draws = [], []
    for s in seeds:
        p, d = stat(s, resampling.of(s))
        points.append(p)
        draws.append(d)
    return paired.combine(points, draws, seed=0)


# ------------------------------------------------------------------------- thresholds under resampling

def _rows_per_chunk(n: int) -> int:
    """Resamples per chunk so that a float64 [rows, n] block stays near 8 MB."""
    return max(1, 2**20 // max(1, n))


def _thresholds_full(values: np.ndarray, inverse: np.ndarray, counts: np.ndarray, alpha: np.ndarray,
                     w: np.ndarray) -> np.ndarray:
    """`threshold_draws` over every distinct value (the exact rule, for the resamples the window misses)."""
    order = np.argsort(inverse, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    out = np.empty(w.shape[0])
    step = _rows_per_chunk(inverse.size)
    for i in range(0, w.shape[0], step):
        wu = np.add.reduceat(np.asarray(w[i:i + step], dtype=np.float64)[:, order], starts, axis=1)
        total = wu.sum(axis=1, keepdims=True)
        above = total - np.cumsum(wu, axis=1)  # weight strictly above each distinct value
        allowed = alpha[i:i + wu.shape[0], None] * total * (1 + 1e-12)  # the float guard of allowed_false_positives
        out[i:i + wu.shape[0]] = values[np.minimum((above > allowed).sum(axis=1), values.size - 1)]
    return out


def threshold_draws(scores: np.ndarray, alpha: np.ndarray | float, w: np.ndarray) -> np.ndarray:
    """Per resample b, the smallest observed score t with weighted share(scores > t) <= alpha_b: the rule of
    `mia_nb.attacks.thresholds.threshold_at_fpr` under the weights w[b] (ties never split) -> [B].

    Exact and fast: the weights are summed per distinct value only in a window of values around where the
    thresholds can fall (the weight above the window in one product); a resample whose threshold leaves the
    window is redone over every value."""
    s = np.asarray(scores, dtype=np.float64)
    n_boot = w.shape[0]
    a = np.broadcast_to(np.asarray(alpha, dtype=np.float64), (n_boot,))
    values, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    above_plain = s.size - np.cumsum(counts)  # images above each distinct value, unweighted
    spread = 8 * np.sqrt(s.size * 0.25) + 8
    lo_count, hi_count = a.min() * s.size - spread, a.max() * s.size + spread
    inside = np.flatnonzero((above_plain >= lo_count) & (above_plain <= hi_count))
    if inside.size < 2:
        return _thresholds_full(values, inverse, counts, a, w)
    ja, jb = int(inside[0]), int(inside[-1])  # window of distinct values [ja, jb]
    cols = np.flatnonzero((inverse > ja) & (inverse <= jb))  # images with a value in (values[ja], values[jb]]
    cols = cols[np.argsort(inverse[cols], kind="stable")]
    groups = inverse[cols] - (ja + 1)
    starts = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]]) if cols.size else np.zeros(0, dtype=int)
    base = paired.wsum(w, (inverse > jb).astype(w.dtype))  # weight above the window
    total = np.asarray(w.sum(axis=1), dtype=np.float64)
    out = np.empty(n_boot)
    redo = np.zeros(n_boot, dtype=bool)
    step = _rows_per_chunk(max(1, cols.size))
    for i in range(0, n_boot, step):
        rows = slice(i, min(n_boot, i + step))
        wu = np.zeros((rows.stop - i, jb - ja))
        if cols.size:
            wu[:, groups[starts]] = np.add.reduceat(w[rows][:, cols].astype(np.float64), starts, axis=1)
        # weight above values[ja + k], k = 0 … jb − ja: the window's mass above it plus the mass above the window
        above = base[rows, None] + np.concatenate([np.cumsum(wu[:, ::-1], axis=1)[:, ::-1],
                                                   np.zeros((wu.shape[0], 1))], axis=1)
        allowed = a[rows, None] * total[rows, None] * (1 + 1e-12)
        k = (above > allowed).sum(axis=1)
        out[rows] = values[np.minimum(ja + k, values.size - 1)]
        redo[rows] = (k == 0) | (k == above.shape[1])  # the threshold may lie below or above the window
    if redo.any():
        out[redo] = _thresholds_full(values, inverse, counts, a[redo], w[redo])
    return out


def rate_above_draws(scores: np.ndarray, thresholds: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Per resample b, the weighted share of scores above thresholds[b] -> [B] (a threshold that moves per resample).

    The weight above the highest threshold is one product; only the images between the lowest and the highest
    threshold are summed per resample."""
    s = np.asarray(scores, dtype=np.float64)
    t = np.asarray(thresholds, dtype=np.float64)
    top, bottom = np.max(t), np.min(t)
    base = paired.wsum(w, (s > top).astype(w.dtype))
    cols = np.flatnonzero((s > bottom) & (s <= top))
    cols = cols[np.argsort(s[cols], kind="stable")]
    k = np.searchsorted(s[cols], t, side="right")  # images of the band at or below t_b
    between = np.zeros(w.shape[0])
    step = _rows_per_chunk(max(1, cols.size))
    for i in range(0, w.shape[0], step):
        rows = slice(i, min(w.shape[0], i + step))
        cum = np.concatenate([np.zeros((rows.stop - i, 1)),
                              np.cumsum(w[rows][:, cols].astype(np.float64), axis=1)], axis=1)
        between[rows] = cum[:, -1] - cum[np.arange(rows.stop - i), k[rows]]
    total = np.asarray(w.sum(axis=1), dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, (base + between) / np.where(total > 0, total, 1.0), np.nan)


def spearman_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman rank correlation of x[b] and y[b] for each row b ([B, k] each) -> [B]; NaN for a constant row."""
    rx, ry = rankdata(np.atleast_2d(x), axis=1), rankdata(np.atleast_2d(y), axis=1)
    rx, ry = rx - rx.mean(axis=1, keepdims=True), ry - ry.mean(axis=1, keepdims=True)
    den = np.sqrt((rx ** 2).sum(axis=1) * (ry ** 2).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (rx * ry).sum(axis=1) / np.where(den > 0, den, 1.0), np.nan)


# ------------------------------------------------------------------------------------- statistics

def fpr(variant: str, pools: tuple[str, ...], attack: str = "threshold") -> Stat:
    """Mean over `pools` of the attack's FPR at its learned threshold (or a named operating point)."""
    def compute(s: Seed, d: Draws) -> tuple[float, np.ndarray]:
        flags = [s.get(variant).member(attack, p) for p in pools]
        point = float(np.mean([f.mean() for f in flags]))
        return point, np.mean([d.decision_share(variant, attack, p) for p in pools], axis=0)
    return lambda s, d: d.memo(("fpr", variant, pools, attack), lambda: compute(s, d))


def mmps(variant: str, pool: str) -> Stat:
    """Mean maximum prediction score of the variant's target on a set."""
    def compute(s: Seed, d: Draws) -> tuple[float, np.ndarray]:
        conf = s.get(variant).conf(pool)
        w = d.members() if pool == MEMBERS else d.pool(pool)
        return float(conf.mean()), paired.group_mean(conf, np.ones(conf.size, dtype=bool), w)
    return lambda s, d: d.memo(("mmps", variant, pool), lambda: compute(s, d))


def auroc(variant: str, pool: str = "heldout", attack: str = "threshold") -> Stat:
    """AUROC of an attack, members vs one pool."""
    def compute(s: Seed, d: Draws) -> tuple[float, np.ndarray]:
        pos, neg = s.get(variant).score(attack, MEMBERS), s.get(variant).score(attack, pool)
        return float(paired.auroc(pos, neg)), paired.auroc(pos, neg, d.members(), d.pool(pool))
    return lambda s, d: d.memo(("auroc", variant, pool, attack), lambda: compute(s, d))


def away_from(stat: Stat, x0: float) -> Stat:
    """|statistic − x0| on the same resamples (distance from chance: |AUROC − 0.5|, |TPR − alpha|)."""
    def compute(s: Seed, d: Draws) -> tuple[float, np.ndarray]:
        point, draws = stat(s, d)
        return abs(point - x0), np.abs(draws - x0)
    return compute


def separation(variant: str, pool: str = "heldout") -> Stat:
    """Scale-free distance of member and non-member max scores: Wasserstein-1 after the pooled quantile
    transform (in [0, 0.5]; unlike score units, squeezing every score toward 1/K does not shrink it)."""
    def compute(s: Seed, d: Draws) -> tuple[float, np.ndarray]:
        pos, neg = s.get(variant).conf(MEMBERS), s.get(variant).conf(pool)
        return paired.w1_quantile(pos, neg), paired.w1_quantile_draws(pos, neg, d.members(), d.pool(pool))
    return lambda s, d: d.memo(("separation", variant, pool), lambda: compute(s, d))


def tpr_low(variant: str, attack: str = "threshold", pool: str = "heldout", alpha: float = ALPHA_LOW) -> Stat:
    """TPR at `alpha` FPR, the threshold fixed on a random half of the non-members: each resample refits the
    threshold on its own weights of that half (the threshold's noise enters) and counts resampled members."""
    def compute(s: Seed, d: Draws) -> tuple[float, np.ndarray]:
        pos, neg = s.get(variant).score(attack, MEMBERS), s.get(variant).score(attack, pool)
        t, held = split_threshold(neg, alpha, seed=s.seed)
        fit = ~held
        t_draws = threshold_draws(neg[fit], alpha, d.pool(pool)[:, fit])
        return float((pos > t).mean()), rate_above_draws(pos, t_draws, d.members())
    return lambda s, d: d.memo(("tpr_low", variant, attack, pool, alpha), lambda: compute(s, d))


def fp_tp_rank(variant: str = "vanilla", attack: str = "threshold", pool: str = "heldout") -> Stat:
    """P(a true positive's max score exceeds a false positive's) − 0.5, ties counting half: 0 when false positives
    are as confident as true positives, on a rank scale that the shared threshold does not squeeze."""
    def compute(s: Seed, d: Draws) -> tuple[float, np.ndarray]:
        f = s.get(variant)
        tp, fp = f.member(attack, MEMBERS), f.member(attack, pool)
        if not tp.any() or not fp.any():
            return math.nan, np.full(d.n_boot, np.nan)
        pos, neg = f.conf(MEMBERS)[tp], f.conf(pool)[fp]
        draws = paired.auroc(pos, neg, d.members()[:, tp], d.pool(pool)[:, fp])
        return float(paired.auroc(pos, neg)) - 0.5, draws - 0.5
    return lambda s, d: d.memo(("fp_tp_rank", variant, attack, pool), lambda: compute(s, d))


def mmps_fpr_rank(variant: str, pools: tuple[str, ...], attacks: tuple[str, ...]) -> Stat:
    """Spearman correlation across pools of the target's mean max score and the attacks' mean FPR."""
    def compute(s: Seed, d: Draws) -> tuple[float, np.ndarray]:
        conf = [mmps(variant, p)(s, d) for p in pools]
        rates = [[fpr(variant, (p,), a)(s, d) for a in attacks] for p in pools]
        x_point = np.array([c[0] for c in conf])
        y_point = np.array([np.mean([r[0] for r in row]) for row in rates])
        x_draws = np.stack([c[1] for c in conf], axis=1)
        y_draws = np.stack([np.mean([r[1] for r in row], axis=0) for row in rates], axis=1)
        return float(spearman_rows(x_point, y_point)[0]), spearman_rows(x_draws, y_draws)
    return compute


def fpr_leak_rank(variants: tuple[str, ...], pools: tuple[str, ...]) -> Stat:
    """Spearman correlation across variants of the mean FPR over `pools` and the held-out AUROC (threshold attack);
    the same as that of their changes against vanilla."""
    def compute(s: Seed, d: Draws) -> tuple[float, np.ndarray]:
        rates = [fpr(v, pools)(s, d) for v in variants]
        aucs = [auroc(v)(s, d) for v in variants]
        point = spearman_rows(np.array([r[0] for r in rates]), np.array([a[0] for a in aucs]))[0]
        draws = spearman_rows(np.stack([r[1] for r in rates], axis=1), np.stack([a[1] for a in aucs], axis=1))
        return float(point), draws
    return compute


def matched_fpr_gap(attack: str, pools: tuple[str, ...], reference: str = "loss", variant: str = "vanilla") -> Stat:
    """FPR(attack) − FPR(reference) on `pools` at a matched held-out FPR: the attack keeps its shadow-fitted rule,
    the reference attack's threshold is set on the held-out images to the attack's held-out FPR (refitted in
    every resample, so the matching's noise enters)."""
    def compute(s: Seed, d: Draws) -> tuple[float, np.ndarray]:
        f = s.get(variant)
        flags_h, ref_h = f.member(attack, "heldout"), f.score(reference, "heldout")
        w_h = d.pool("heldout")
        t_point = threshold_draws(ref_h, flags_h.mean(), np.ones((1, ref_h.size)))
        t_draws = threshold_draws(ref_h, d.share(flags_h, "heldout"), w_h)
        own = fpr(variant, pools, attack)(s, d)
        ref_point = np.mean([rate_above_draws(f.score(reference, p), t_point, np.ones((1, _n(s, p))))[0]
                             for p in pools])
        ref_draws = np.mean([rate_above_draws(f.score(reference, p), t_draws, d.pool(p)) for p in pools], axis=0)
        return own[0] - float(ref_point), own[1] - ref_draws
    return lambda s, d: d.memo(("matched", attack, pools, reference, variant), lambda: compute(s, d))


def ece_stat(variant: str, pool: str = "heldout") -> Stat:
    """Expected calibration error (15 bins) of the variant's target on a labelled pool."""
    def compute(s: Seed, d: Draws) -> tuple[float, np.ndarray]:
        conf, ok = s.get(variant).conf(pool), s.get(variant).correct(pool)
        return float(paired.ece_draws(conf, ok)), paired.ece_draws(conf, ok, d.pool(pool))
    return lambda s, d: d.memo(("ece", variant, pool), lambda: compute(s, d))


def minus(a: Stat, b: Stat) -> Stat:
    """a − b on the same resamples (paired)."""
    def stat(s: Seed, d: Draws) -> tuple[float, np.ndarray]:
        pa, da = a(s, d)
        pb, db = b(s, d)
        return pa - pb, da - db
    return stat


# ---------------------------------------------------------------------------------------- verdicts

def verdict(iv: paired.Interval, side: str, band: float, reference: float = 0.0) -> str:
    """holds / does not hold / no effect / undetermined for `x > r` (side '>'), `x < r` ('<'), or `|x − r|`
    within the band ('=': holds inside, does not hold wholly outside, else undetermined)."""
    lo, hi = iv.lo, iv.hi
    if side not in (">", "<", "="):
        raise ValueError(f"side must be '>', '<' or '=', got {side!r}")
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return NOT_RUN
    up, down = reference + band, reference - band
    inside = down <= lo and hi <= up
    if side == "=":
        return HOLDS if inside else FAILS if lo > up or hi < down else UNDETERMINED
    if (side == ">" and lo > up) or (side == "<" and hi < down):
        return HOLDS
    if (side == ">" and hi < down) or (side == "<" and lo > up):
        return FAILS
    return NO_EFFECT if inside else UNDETERMINED


def p_value(iv: paired.Interval, side: str, band: float, reference: float = 0.0) -> float:
    """One-sided p-value that the effect lies beyond the band on the claimed side (for '=': inside the band, the
    larger of the two one-sided tests); from the interval's own reference distribution."""
    if side == ">":
        return iv.p_beyond(reference + band, ">")
    if side == "<":
        return iv.p_beyond(reference - band, "<")
    if side == "=":
        return max(iv.p_beyond(reference - band, ">"), iv.p_beyond(reference + band, "<"))
    raise ValueError(f"side must be '>', '<' or '=', got {side!r}")


@dataclass(frozen=True)
class Claim:
    """A finding as a test: the statistic, the claimed direction, its band, the paper's figure and its block."""

    id: str
    text: str
    compared: str
    side: str
    band: str  # a key of the bands file's `bands`
    paper: str
    stat: Stat
    needs: tuple[str, ...] = ()  # variants that must have been evaluated
    gate: str | None = None  # id of the precondition claim whose verdict is shown beside this one
    partial: bool = False  # measured on the seeds that evaluated `needs` (reference models: some seeds only)
    block: str = EXTENSIONS  # "Finding 1" … "Finding 4" (the paper's) or "Extensions"
    level: str | None = None  # a key of the bands file's `levels`: the claim is `x > level`, not a difference from 0


def _variants(seeds: list[Seed], family: str) -> list[tuple[str, float]]:
    """(name, strength) of the variants of a family evaluated in every seed, by strength (the leaky arm left out)."""
    common = set.intersection(*(set(s.variants) for s in seeds))
    files = seeds[0].variants
    found = {(n, float(files[n].strength or 0.0)) for n in common
             if files[n].family == family and not files[n].leaky}
    return sorted(found, key=lambda x: (x[1], x[0]))


def _pools(seeds: list[Seed], groups: tuple[str, ...]) -> tuple[str, ...]:
    f = seeds[0].variants.get("vanilla")
    return tuple(p for p in f.pools if f.groups.get(p) in groups) if f is not None else ()


def _slug(group: str) -> str:
    return group.replace(" ", "_")


PAPER_FPR = {  # Finding 1's numbers for each of our groups (the paper's own sets that come closest)
    "transform": "× 255 ≥ 0.998 / ≥ 0.998 / 0.988; un-normalised 0.088 / 0.033 / 0.026",
    "corruption": "no corruptions in the paper; its other-distribution sets: GAN fakes 0.516, SVHN 0.063 (ResNet-18)",
    "other content": "SVHN 0.063 / 0.149 / 0.063 (ResNet-18: threshold / Salem / entropy)",
    "generated": "GAN fakes 0.516 / ≥ 0.550 / 0.267 (ResNet-18 / SimpleCNN CIFAR-10 / ResNet-50 Dogs)",
}


def build_claims(seeds: list[Seed], defense_temperature: float = 10.0, bands: BandFile | None = None) -> list[Claim]:
    """The claim set for what these seeds evaluated (a variant or pool that is absent gives no row); `bands`
    (default: the study's file) gives the level the wording quotes."""
    if "vanilla" not in seeds[0].variants:
        return []
    vanilla = seeds[0].variants["vanilla"]
    f1, f2, f3, f4 = PAPER_BLOCKS
    level = (band_file() if bands is None else bands).levels["fpr_high"]
    out = [Claim("fpr_heldout", f"Held-out images are called members at a high rate (FPR above {level:g})",
                 "FPR at the shadow-fitted threshold, threshold attack, held-out images", ">", "fpr_high",
                 "held-out FPR 0.448 / 0.464 / 0.390 (ResNet-18 / SimpleCNN CIFAR-10 / ResNet-50 Dogs)",
                 fpr("vanilla", ("heldout",)), block=f1, level="fpr_high")]
    for group in OOD_GROUPS:
        pools = _pools(seeds, (group,))
        if pools:
            out.append(Claim(f"ood_{_slug(group)}", f"{group.capitalize()} non-members ({', '.join(pools)}) are called "
                             f"members at a high rate (FPR above {level:g})", "FPR at the shadow-fitted threshold, "
                             "threshold attack, mean over the group's pools", ">", "fpr_high", PAPER_FPR.get(group, ""),
                             fpr("vanilla", pools), block=f1, level="fpr_high"))
    out.append(Claim("fp_confidence", "False positives are scored as confidently as true positives",
                     "P(a true positive's max score exceeds a false positive's) − 0.5, threshold attack, members "
                     "vs held-out", "=", "confidence_rank", "MMPS of the attacks' TP and FP samples (Finding 2)",
                     fp_tp_rank(), block=f2))
    every_pool = tuple(vanilla.pools)
    attacks = tuple(a for a in PAPER_ATTACKS if vanilla.has(member_key(a, MEMBERS)))
    if len(every_pool) >= 3 and attacks:
        out.append(Claim("mmps_fpr_rank", "Pools on which the target is more confident are called members more often",
                         f"Spearman across the {len(every_pool)} pools: mean max score vs FPR (mean of "
                         f"{', '.join(attacks)} at their shadow-fitted thresholds)", ">", "rank_correlation",
                         "the attacks rely mostly on the max score (Finding 2, MMPS per set)",
                         mmps_fpr_rank("vanilla", every_pool, attacks), block=f2))
    ood_all = _pools(seeds, OOD_GROUPS)
    ls, llla = _variants(seeds, "label_smoothing"), _variants(seeds, "llla")
    cal = ls + llla
    for name, _ in cal:
        out.append(Claim(f"calibrates_{name}", f"{name} calibrates the target (lower ECE than vanilla)",
                         "ECE(variant) − ECE(vanilla), held-out, 15 bins", "<", "ece",
                         "Dogs ECE 0.251 → 0.058 (LS), 0.056 (LLLA)", minus(ece_stat(name), ece_stat("vanilla")),
                         needs=(name,), block=f3))
        out.append(Claim(f"lowers_heldout_fpr_{name}", f"{name} lowers the held-out FPR",
                         "FPR at the shadow-fitted threshold, held-out images: variant − vanilla, threshold attack",
                         "<", "heldout_fpr", "held-out FPR: LS 0.240, LLLA 0.282 vs 0.448 (ResNet-18 CIFAR-10)",
                         minus(fpr(name, ("heldout",)), fpr("vanilla", ("heldout",))), needs=(name,), block=f3))
        if ood_all:
            out.append(Claim(f"lowers_fpr_{name}", f"{name} lowers the mean out-of-distribution FPR",
                             "mean FPR over every OOD pool (× 255 included): variant − vanilla, threshold attack", "<",
                             "ood_fpr", "held-out / fakes FPR: LS 0.240 / 0.301, LLLA 0.282 / 0.356 vs 0.448 / 0.516",
                             minus(fpr(name, ood_all), fpr("vanilla", ood_all)), needs=(name,), block=f3))
        out.append(Claim(f"leak_auroc_{name}", f"{name} raises leakage: attack AUROC",
                         "AUROC(variant) − AUROC(vanilla), threshold attack, held-out", ">", "auroc",
                         "AUROC: LS 0.871, LLLA 0.753 vs 0.775",
                         minus(auroc(name), auroc("vanilla")), needs=(name,), gate=f"calibrates_{name}", block=f3))
    related = ("vanilla", *(n for fam in CALIBRATION_FAMILIES for n, _ in _variants(seeds, fam)))
    if len(related) >= 3 and ood_all:
        out.append(Claim("fpr_leak_rank", "Across variants, a lower FPR goes with a higher leakage",
                         f"Spearman across {len(related)} variants (vanilla, temperatures, label smoothing, LLLA): "
                         "mean OOD FPR vs held-out AUROC, threshold attack", "<", "rank_correlation",
                         "held-out FPR / AUROC: vanilla 0.448 / 0.775, LS 0.240 / 0.871, T = 10 0.490 / 0.736, "
                         "LLLA 0.282 / 0.753", fpr_leak_rank(related, ood_all), needs=related[1:], block=f3))
    for name, _ in cal:
        out.append(Claim(f"separates_{name}", f"Calibration ({name}) separates member and held-out scores",
                         "W1 of max scores after the pooled quantile transform, members vs held-out: variant − vanilla",
                         ">", "separation", "Dogs MMPS members / held-out: LS 0.901 / 0.594, LLLA 0.890 / 0.653 vs "
                         "0.982 / 0.852",
                         minus(separation(name), separation("vanilla")), needs=(name,), gate=f"calibrates_{name}",
                         block=f4))
    l2 = _variants(seeds, "weight_decay")
    hot = [n for n, t in _variants(seeds, "temperature") if t == defense_temperature]
    for name in [n for n, _ in l2] + hot:
        out.append(Claim(f"aligns_{name}", f"The defense {name} aligns member and held-out scores",
                         "W1 of max scores after the pooled quantile transform, members vs held-out: variant − vanilla",
                         "<", "separation", "Dogs MMPS members / held-out: L2 0.701 / 0.598 vs 0.982 / 0.852",
                         minus(separation(name), separation("vanilla")), needs=(name,), block=f4))
    for name, wd in l2:
        out.append(Claim(f"l2_auroc_{name}", f"L2 (weight decay {wd:g}) moves the attack toward chance: AUROC",
                         "|AUROC − 0.5|: variant − vanilla, threshold attack, held-out", "<", "auroc",
                         "AUROC 0.511 vs 0.775", minus(away_from(auroc(name), 0.5), away_from(auroc("vanilla"), 0.5)),
                         needs=(name,), block=f4))
    out += extension_claims(seeds, cal, l2, ls, defense_temperature)
    return out


def extension_claims(seeds: list[Seed], cal: list[tuple[str, float]], l2: list[tuple[str, float]],
                     ls: list[tuple[str, float]], defense_temperature: float = 10.0) -> list[Claim]:
    """Questions beyond the paper: TPR at low FPR, DP-SGD, the dose of label smoothing, label-free vs loss attack,
    LiRA and RMIA. Never in the paper's tally."""
    out: list[Claim] = []
    ood_all = _pools(seeds, OOD_GROUPS)
    for name, _ in cal:
        out.append(Claim(f"leak_tpr_{name}", f"{name} raises leakage: TPR at 1% FPR", "TPR@1%FPR(variant) − "
                         "TPR@1%FPR(vanilla), thresholds refitted on half the held-out images in every resample", ">",
                         "tpr", "not reported", minus(tpr_low(name), tpr_low("vanilla")), needs=(name,),
                         gate=f"calibrates_{name}"))
    for name, wd in l2:
        out.append(Claim(f"l2_tpr_{name}", f"L2 (weight decay {wd:g}) moves the attack toward chance: TPR at 1% FPR",
                         f"|TPR@1%FPR − {ALPHA_LOW:g}|: variant − vanilla (chance is TPR = FPR)", "<", "tpr",
                         "not reported", minus(away_from(tpr_low(name), ALPHA_LOW),
                                               away_from(tpr_low("vanilla"), ALPHA_LOW)), needs=(name,)))
    for name, _ in _variants(seeds, "dp"):
        out.append(Claim(f"aligns_{name}", f"The defense {name} (DP-SGD) aligns member and held-out scores",
                         "W1 of max scores after the pooled quantile transform, members vs held-out: variant − vanilla",
                         "<", "separation", "not in the paper", minus(separation(name), separation("vanilla")),
                         needs=(name,)))
    if ood_all:
        for (small, e1), (large, e2) in zip(ls, ls[1:]):
            out.append(Claim(f"lowers_fpr_more_{large}", f"Larger label smoothing (ε {e1:g} → {e2:g}) lowers the "
                             "OOD FPR more", "mean OOD FPR: larger ε − smaller ε", "<", "ood_fpr", "one ε per dataset",
                             minus(fpr(large, ood_all), fpr(small, ood_all)), needs=(small, large)))
    vanilla = seeds[0].variants["vanilla"]
    for group in LABELLED_GROUPS:
        pools = _pools(seeds, (group,))
        for attack in LABEL_FREE:
            if pools and vanilla.has(member_key(attack, MEMBERS)) and vanilla.has(score_key("loss", "heldout")):
                out.append(Claim(f"label_free_{attack}_{group}", f"At a matched held-out FPR, the label-free {attack} "
                                 f"attack accepts more {group} images than the label-aware loss attack",
                                 f"FPR({attack}) − FPR(loss) on {', '.join(pools)}; the loss attack's threshold set on "
                                 f"held-out images to the {attack} attack's held-out FPR", ">", "fpr",
                                 "the attacks rely on the max score", matched_fpr_gap(attack, pools)))
    return out + reference_claims(seeds) + reference_variant_claims(seeds, defense_temperature)


REF_ATTACKS = ("lira_online", "lira_offline", "rmia")


def reference_claims(seeds: list[Seed]) -> list[Claim]:
    """Reference-model attacks (notebook 08) against the paper's threshold attack, on the seeds that have them."""
    ref = REFERENCE_VARIANT
    have = [s for s in seeds if ref in s.variants]
    if not have:
        return []
    out = []
    for attack in REF_ATTACKS:
        out.append(Claim(f"ref_tpr_{attack}", f"{attack} beats the global threshold attack at 0.1% FPR",
                         "TPR@0.1%FPR: attack − threshold attack, members vs the population's held-out images "
                         "(thresholds refitted on half of them in every resample)", ">", "tpr",
                         "LiRA 5.9% vs threshold 0.09% (CIFAR-10, 16 models; the LiRA paper)",
                         minus(tpr_low(ref, attack, pool=HELDOUT_POP, alpha=0.001),
                               tpr_low(ref, "threshold", pool=HELDOUT_POP, alpha=0.001)),
                         needs=(ref,), partial=True))
    for attack in REF_ATTACKS:
        for group in OOD_GROUPS:
            pools = _pools(have, (group,))
            if pools:
                out.append(Claim(f"ref_ood_{attack}_{_slug(group)}", f"At matched held-out FPR (1%), "
                                 f"{attack} accepts fewer {group} non-members than the threshold attack",
                                 f"FPR(threshold) − FPR({attack}) on {', '.join(pools)}, thresholds fixed on held-out",
                                 ">", "fpr_low", "not evaluated by the paper or the libraries",
                                 minus(fpr(ref, pools, at_point("threshold", "1pct")),
                                       fpr(ref, pools, at_point(attack, "1pct"))),
                                 needs=(ref,), partial=True))
    return out


LIRA_ARMS = {  # an arm's family -> the claimed side and its words: calibration raises LiRA's TPR, defenses lower it
    "label_smoothing": (">", "label smoothing (ε = {s:g})"),
    "llla": (">", "LLLA ({arm})"),
    "temperature": ("<", "temperature T = {s:g}"),
    "weight_decay": ("<", "L2 (weight decay {s:g})"),
    "dp": ("<", "DP-SGD (ε = {s:g})"),
}


def _arm_files(seeds: list[Seed]) -> dict[str, tuple[str, SampleFile]]:
    """Arm name -> (sample file name, file) of the reference arms (`mia_nb.attacks.reference_variants`), from the
    first seed that has each."""
    out: dict[str, tuple[str, SampleFile]] = {}
    for s in seeds:
        for name, f in sorted(s.variants.items()):
            if f.family == ARM_FAMILY:
                out.setdefault(str(f.extra["arm"]), (name, f))
    return out


def reference_variant_claims(seeds: list[Seed], defense_temperature: float = 10.0) -> list[Claim]:
    """The paper's trade-off under LiRA (notebook 08): each variant, attacked by reference models of its own kind,
    against vanilla attacked by the same number on the same training halves; TPR of LiRA online at 0.1% FPR."""
    arms = _arm_files(seeds)
    if "vanilla" not in arms:
        return []
    base, base_file = arms["vanilla"]
    k = int(base_file.extra["k"])
    out = []
    for arm, (name, f) in arms.items():
        family, strength = f.extra.get("arm_family"), f.strength
        if family not in LIRA_ARMS or int(f.extra["k"]) != k or (family == "temperature" and strength != defense_temperature):
            continue
        side, words = LIRA_ARMS[family]
        what = words.format(s=strength if strength is not None else math.nan, arm=arm.removeprefix("llla_"))
        out.append(Claim(f"lira_tpr_{arm}", f"{what} {'raises' if side == '>' else 'lowers'} LiRA's TPR at 0.1% FPR",
                         f"TPR@0.1%FPR of LiRA online: variant − vanilla, each attacked by {k} reference models of its "
                         "own kind on the same training halves; members vs the population's held-out images "
                         "(thresholds refitted on half of them in every resample)", side, "lira_tpr",
                         "not in the paper: its calibration / defense trade-off (Findings 3, 4) under LiRA",
                         minus(tpr_low(name, "lira_online", pool=HELDOUT_POP, alpha=0.001),
                               tpr_low(base, "lira_online", pool=HELDOUT_POP, alpha=0.001)),
                         needs=(name, base), gate=f"calibrates_{arm}" if side == ">" else None, partial=True))
    return out


def counts_when(side: str, band: float, reference: float = 0.0, level: bool = False) -> str:
    """When a claim holds, in words: '> +0.05', '< −0.01', 'within ±0.05', '> 0.25 (level 0.2 + band 0.05)'."""
    if level:
        edge = reference + band if side == ">" else reference - band
        return f"{side} {edge:g} (level {reference:g} {'+' if side == '>' else '−'} band {band:g})"
    return {">": f"> {reference + band:+g}", "<": f"< {reference - band:+g}".replace("-", "−"),
            "=": f"within {reference:g} ± {band:g}" if reference else f"within ±{band:g}"}[side]


def _gate_phrase(gate: str) -> str:
    """A gate claim's id in words: 'calibrates_ls_0.1' -> 'ls_0.1 lowers ECE'."""
    return f"{gate[len('calibrates_'):]} lowers ECE" if gate.startswith("calibrates_") else gate


def check(seeds: list[Seed], claims: list[Claim] | None = None, n_boot: int = paired.B_DEFAULT,
          bands: BandFile | None = None, resampling: Resampling | None = None) -> pd.DataFrame:
    """One row per claim (sorted by block, then id): block, seeds, measured value with its 95% interval, band,
    verdict, one-sided p-value, Holm verdict over the paper's blocks, gate and gate status, and the row in words."""
    bands = band_file() if bands is None else bands
    claims = build_claims(seeds, bands=bands) if claims is None else claims
    resampling = Resampling(n_boot) if resampling is None else resampling
    rows: list[dict] = []
    for c in claims:
        if c.band not in bands.bands or (c.level is not None and c.level not in bands.levels):
            raise ConfigError(f"{bands.path}: claim {c.id!r} needs the entry {c.level or c.band!r}; add it to the file")
        band, reference = bands.bands[c.band], bands.levels[c.level] if c.level else 0.0
        use = [s for s in seeds if all(v in s.variants for v in c.needs)] if c.partial else seeds
        present = bool(use) and all(all(v in s.variants for s in use) for v in ("vanilla", *c.needs))
        try:
            iv = measure(use, c.stat, n_boot, resampling) if present else None
        except KeyError:
            iv = None
        v = NOT_RUN if iv is None else verdict(iv, c.side, band, reference)
        measured = v != NOT_RUN
        rows.append({"id": c.id, "block": c.block, "claim": c.text, "compared": c.compared,
                     "n_seeds": iv.n_seeds if iv is not None else 0,  # the seeds the interval used
                     "measured": iv.value if measured else np.nan, "ci_lo": iv.lo if measured else np.nan,
                     "ci_hi": iv.hi if measured else np.nan, "side": c.side, "reference": reference, "band": band,
                     "band_key": c.band, "counts_when": counts_when(c.side, band, reference, c.level is not None),
                     "verdict": v, "p_value": p_value(iv, c.side, band, reference) if measured else np.nan,
                     "gate": c.gate or "", "paper": c.paper, "n_boot": n_boot})
    if not rows:
        return pd.DataFrame(columns=COLUMNS)
    table = pd.DataFrame(rows)
    verdict_of = dict(zip(table.id, table.verdict))
    table["gate_status"] = [verdict_of.get(g, NOT_RUN) if g else "" for g in table.gate]
    paper = table.block.isin(PAPER_BLOCKS).to_numpy()
    shown = paired.holm(np.where(paper, table.p_value.to_numpy(dtype=float), np.nan), alpha=HOLM_ALPHA)
    table["holm"] = np.where(~paper, OUTSIDE_FAMILY, np.where(table.verdict == NOT_RUN, NOT_RUN,
                                                               np.where(shown, HOLDS, HOLM_NOT_SHOWN)))
    table["in_words"] = [in_words(r) for r in table.itertuples()]
    return sort_claims(table[COLUMNS])


COLUMNS = ["id", "block", "claim", "compared", "n_seeds", "measured", "ci_lo", "ci_hi", "side", "reference", "band",
           "band_key", "counts_when", "verdict", "p_value", "gate", "paper", "n_boot", "gate_status", "holm",
           "in_words"]


def sort_claims(table: pd.DataFrame) -> pd.DataFrame:
    """Rows by block (Finding 1 … 4, then Extensions, then any other), then claim id: the one order of claims.csv."""
    rank = {b: i for i, b in enumerate(BLOCK_ORDER)}
    key = table.block.map(lambda b: rank.get(b, len(rank)))
    return table.assign(_rank=key).sort_values(["_rank", "block", "id"], kind="stable") \
        .drop(columns="_rank").reset_index(drop=True)


def in_words(row: object) -> str:
    """The row as one plain sentence: '<claim>: holds — gate (ls_0.1 lowers ECE): undetermined'."""
    gate = f" — gate ({_gate_phrase(row.gate)}): {row.gate_status}" if row.gate else ""
    return f"{row.claim}: {row.verdict}{gate}"


def check_only(seeds: list[Seed], prefixes: tuple[str, ...], n_boot: int = paired.B_DEFAULT) -> pd.DataFrame:
    """The claims whose id starts with one of `prefixes` (their gates measured too, for the gate status), without the
    Holm column: a Holm verdict belongs to the whole paper family of notebook 09."""
    everything = build_claims(seeds)
    picked = [c for c in everything if c.id.startswith(prefixes)]
    gates = {c.gate for c in picked if c.gate}
    table = check(seeds, [c for c in everything if c.id in gates and c not in picked] + picked, n_boot)
    return table[table.id.isin([c.id for c in picked])].drop(columns=["holm", "p_value"]).reset_index(drop=True)


def headlines(seeds: list[Seed], n_boot: int = paired.B_DEFAULT, resampling: Resampling | None = None) -> pd.DataFrame:
    """The study's headline numbers (vanilla target, threshold attack) with the claims' intervals, and, as
    description without a verdict, how each OOD group's FPR differs from the held-out FPR."""
    resampling = Resampling(n_boot) if resampling is None else resampling
    stats: list[tuple[str, str, Stat]] = [
        ("fpr_heldout", "held-out images called members (FPR at the shadow-fitted threshold)",
         fpr("vanilla", ("heldout",))),
        ("auroc", "attack AUROC, members vs held-out", auroc("vanilla")),
        ("tpr_1pct", "TPR at 1% FPR (threshold fixed on half the held-out images)", tpr_low("vanilla")),
        ("ece", "held-out ECE of the target (15 bins)", ece_stat("vanilla")),
    ]
    for group in OOD_GROUPS:
        pools = _pools(seeds, (group,))
        if pools:
            stats.append((f"fpr_{_slug(group)}", f"{group} non-members called members ({', '.join(pools)})",
                          fpr("vanilla", pools)))
    for group in OOD_GROUPS:
        pools = _pools(seeds, (group,))
        if pools:
            stats.append((f"fpr_{_slug(group)}_minus_heldout", f"{group} FPR minus held-out FPR (description: how much "
                          "more often, or less, the group is called member than held-out images)",
                          minus(fpr("vanilla", pools), fpr("vanilla", ("heldout",)))))
    rows = []
    for key, text, stat in stats:
        try:
            iv = measure(seeds, stat, n_boot, resampling)
        except KeyError:
            continue
        rows.append({"id": key, "what": text, "value": iv.value, "lo": iv.lo, "hi": iv.hi, "n_seeds": iv.n_seeds})
    return pd.DataFrame(rows)


def sentence(row: pd.Series) -> str:
    """One line: verdict, claim, measured value with its interval, when it counts, seeds, Holm and gate."""
    holm = f"; Holm: {row.holm}" if "holm" in row.index else ""
    gate = f"; gate ({_gate_phrase(row.gate)}): {row.gate_status}" if row.gate else ""
    value = "–" if pd.isna(row.measured) else f"{row.measured:+.3f} [{row.ci_lo:+.3f}, {row.ci_hi:+.3f}]"
    return (f"{row.verdict:>13}: {row.claim} — {row.compared}: {value}, counts when {row.counts_when}; "
            f"{row.n_seeds} seed(s){holm}{gate}")


def tally(df: pd.DataFrame, block: str | None = None) -> dict[str, int]:
    """How many claims (of one block, or all) got each verdict."""
    rows = df if block is None else df[df.block == block]
    return {v: int((rows.verdict == v).sum()) for v in VERDICTS}


def family_sentence(df: pd.DataFrame) -> str:
    """The one sentence that says what the Holm column guarantees for this table."""
    paper = df[df.block.isin(PAPER_BLOCKS) & (df.verdict != NOT_RUN)]
    shown = int((paper.holm == HOLDS).sum()) if "holm" in paper else 0
    return (f"Family-wise: the {len(paper)} measured claims of Findings 1–4 form one family, each tested one-sided at "
            f"the edge of its band, and Holm's step-down at {HOLM_ALPHA:g} keeps the chance that any of the {shown} "
            f"claims marked \"holds\" in the Holm column is false at or below {HOLM_ALPHA:.1%} (if the intervals "
            f"are right); a per-row verdict carries that {HOLM_ALPHA:.1%} for its own row only, so among "
            f"{len(paper)} rows some unadjusted \"holds\" may be chance.")
