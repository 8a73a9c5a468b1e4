"""Reference models for LiRA and RMIA, and their attacks on every pool at matched operating points.

The population is the target's members plus as many of its held-out images (the first ones), so each
random half has the target's training-set size. K reference models train with the target's recipe on
halves in complementary pairs: every population candidate is IN for exactly K/2 of them.

Honest IN masks, by source image. Every scored image carries the population index of the image it is made
from, and its mask is that source's mask: member j is candidate j; held-out image j, and image j of every
pool made from held-out images (`PoolKind.from_heldout`: transforms and corruptions keep the held-out order,
pool image j is made from held-out image j), is candidate n_train + j while j < n_train. Every other image
(held-out images past the population, other content, generated images, other datasets, the population z)
was in no reference model's training set: OUT for every model. So a near-copy of a candidate is IN for the
models that trained on its clean source, never "OUT" for them.

One fit per attack (`fit`): LiRA's spreads and IN−OUT shift and RMIA's `a` and population ratios come
once from the reference models on the population; every set (members, held-out, each pool) is scored with
that fit, each image from its own reference values (`score_set`), so no score depends on the set it is in
or sees the label it is judged by. One operating point per attack (`operating_points`): thresholds at 1% and
0.1% FPR fixed on half A of the population's held-out images, with the very attack whose TPR is reported,
then applied to every pool; half B checks them. Every attack is a function of cached logits
(`mia_nb.attacks.lira_rmia`); this module gathers them and writes the per-image arrays notebook 09 tests.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from mia_nb.attacks import lira_rmia, thresholds
from mia_nb.attacks.evaluation import save_samples
from mia_nb.attacks.metrics import LOW_FPRS
from mia_nb.attacks.samples import HELDOUT_POP, MEMBERS, at_point, conf_key, key, member_key, score_key, split_key
from mia_nb.attacks.score_based import LossAttack, ThresholdAttack
from mia_nb.claims import paired
from mia_nb.config import LIRA_CENTERS, LIRA_OFFLINE_SIDES, LIRA_SPREADS, TTA_AGGREGATES, ReferenceConfig
from mia_nb.data.nonmembers import POOLS, PoolSpec, kind_of, part_spec
from mia_nb.layout import REFERENCE_VARIANT
from mia_nb.models import jobs, variants
from mia_nb.models.variants import model_logits

if TYPE_CHECKING:
    from mia_nb.models.variants import Variant
    from mia_nb.study import Study

REF_ATTACKS = ("lira_online", "lira_offline", "rmia")  # the attacks fitted on the reference models
ATTACKS = (*REF_ATTACKS, "threshold", "loss")
HELDOUT = "heldout"  # the held-out pool: its first n_train images are the population's non-members
POPULATION_Z = "population_z"  # RMIA's population z: the calibration split, OUT for every model


def enabled(study: Study) -> bool:
    """Whether this seed gets reference models (`reference_models.k` > 0 and the seed is listed)."""
    r = study.profile.reference_models
    seeds = r.seeds or ((study.profile.seeds or (study.profile.seed,))[0],)
    return r.k > 0 and study.seed in seeds


def population(study: Study) -> np.ndarray:
    """Pool indices of the candidates: the target's members, then the first n_train held-out images."""
    members = study.splits["target_train"]
    heldout = study.splits["target_heldout"]
    if len(heldout) < len(members):
        raise ValueError(f"reference_models: need at least {len(members)} held-out images for the population, "
                         f"have {len(heldout)} (raise splits.target_heldout)")
    return np.concatenate([members, heldout[:len(members)]])


def in_mask(study: Study) -> np.ndarray:
    """[K, |population|]: complementary random halves, seeded by the study seed."""
    return lira_rmia.complementary_splits(population(study), study.profile.reference_models.k, seed=study.seed)


def requests(study: Study) -> list[jobs.ModelRequest]:
    """The K reference models of this seed (none when the seed has no reference models), each with the sets
    `gather` reads its logits on (members, every pool, the population z; and their mirrors with `tta_flip`), which
    the runner's training phase computes in the model's training job (`variants.training_jobs`)."""
    if not enabled(study):
        return []
    pop, mask = population(study), in_mask(study)
    sets = (part_spec(study, "target_train"), *variants.read_pools(study), part_spec(study, "calibration"))
    views = tuple(v for s in sets for v in ((s, flipped(s)) if study.profile.reference_models.tta_flip else (s,)))
    return [variants.ReadRequest(f"ref_{k}", "vanilla", indices=np.sort(pop[mask[k]]), logits_on=views)
            for k in range(len(mask))]


# ---------------------------------------------------------------- the images and their honest masks


@dataclass
class Candidates:
    """One set of images: the target's and every reference model's logits per view, labels, honest IN mask."""

    target: np.ndarray  # [V, N, C] logits per test-time view (V = 2 with tta_flip: the image, its mirror)
    refs: np.ndarray  # [K, V, N, C]
    labels: np.ndarray  # [N]; −1 where an image has no label: each model is read at its own predicted class
    mask: np.ndarray  # [K, N]: True where reference model k trained on this image's source
    cache: dict[tuple[str, ...], tuple[np.ndarray, np.ndarray]] = field(default_factory=dict, repr=False,
                                                                      compare=False)  # statistics already computed

    @property
    def n(self) -> int:
        """Number of images."""
        return len(self.labels)

    def take(self, idx: np.ndarray) -> Candidates:
        """The images `idx` (indices or a boolean mask), in that order."""
        return Candidates(self.target[:, idx], self.refs[:, :, idx], self.labels[idx], self.mask[:, idx])


def join(parts: list[Candidates]) -> Candidates:
    """The images of several sets, one after the other (same reference models and views)."""
    return Candidates(np.concatenate([c.target for c in parts], axis=1),
                      np.concatenate([c.refs for c in parts], axis=2),
                      np.concatenate([c.labels for c in parts]), np.concatenate([c.mask for c in parts], axis=1))


def source_index(name: str, n: int, n_train: int) -> np.ndarray:
    """Population index of each of a set's n images' source image, −1 where it has none (OUT for every model).

    Members: j. The held-out pool and every pool made from held-out images (`from_heldout`, same order):
    n_train + j for j < n_train. Everything else (RMIA's population z included): −1.
    """
    if name == MEMBERS:
        if n != n_train:
            raise ValueError(f"{MEMBERS}: need {n_train} images (the target's training set), got {n}")
        return np.arange(n)
    if name == POPULATION_Z or not POOLS[kind_of(name)[0]].from_heldout:
        return np.full(n, -1)
    j = np.arange(n)
    return np.where(j < n_train, n_train + j, -1)


def set_mask(name: str, n: int, pop_mask: np.ndarray) -> np.ndarray:
    """The honest IN mask [K, n] of a set: its images' sources' columns of the population mask, False elsewhere."""
    src = source_index(name, n, pop_mask.shape[1] // 2)
    return np.where(src >= 0, pop_mask[:, np.maximum(src, 0)], False)


def flipped(spec: PoolSpec) -> PoolSpec:
    """The pool mirrored left-right (LiRA's test-time augmentation by flipping)."""
    def build() -> tuple[Any, np.ndarray]:
        x, y = spec.build()
        return x.flip(-1), y
    return PoolSpec(f"{spec.name}~flip", spec.group, {**spec.config, "flip": True}, build)


def gather(study: Study, vanilla: Variant, refs: list[jobs.TrainedModel],
           pools: dict[str, PoolSpec]) -> dict[str, Candidates]:
    """Logits of the target and the references on members, every pool (held-out included) and the population z."""
    if HELDOUT not in pools:
        raise ValueError(f"pools: need {HELDOUT!r} (its first n_train images are the population's non-members)")
    mask = in_mask(study)
    if len(refs) != len(mask):
        raise ValueError(f"refs: need the {len(mask)} reference models of requests(study), got {len(refs)}")
    specs = {MEMBERS: part_spec(study, "target_train"), **pools, POPULATION_Z: part_spec(study, "calibration")}
    out = {}
    for name, spec in specs.items():
        views = [spec, flipped(spec)] if study.profile.reference_models.tta_flip else [spec]
        t = np.stack([model_logits(study, vanilla.target, v) for v in views])
        r = np.stack([np.stack([model_logits(study, m, v) for v in views]) for m in refs])
        labels = np.asarray(study.store.get_or_make("labels", spec.config, spec.labels), dtype=np.int64)
        out[name] = Candidates(t, r, labels, set_mask(name, len(labels), mask))
    return out


# ---------------------------------------------------------------- one fit, every set scored with it


@dataclass(frozen=True)
class Fitted:
    """Every shared parameter of the reference attacks, fitted once on the population with k reference models."""

    lira: lira_rmia.LiraFit
    rmia: lira_rmia.RmiaFit
    per_example: bool  # LiRA estimates each image's own spread (k >= lira_rmia.PER_EXAMPLE_FROM)
    k: int


def population_candidates(data: dict[str, Candidates]) -> Candidates:
    """The population: the members, then the first n_train held-out images (IN for half the models each)."""
    n = data[MEMBERS].n
    if data[HELDOUT].n < n:
        raise ValueError(f"{HELDOUT}: need at least {n} images (the population's non-members), got {data[HELDOUT].n}")
    return join([data[MEMBERS], data[HELDOUT].take(np.arange(n))])


def lira_stats(c: Candidates, tta_aggregate: str) -> tuple[np.ndarray, np.ndarray]:
    """LiRA's statistic of the target [V, N] and of the references [K, V, N]: per view ("scores", as the
    reference code) or of the view-averaged logits ("logits", V = 1). Computed once per set (`c.cache`)."""
    if tta_aggregate not in TTA_AGGREGATES:
        raise ValueError(f"tta_aggregate: unknown value {tta_aggregate!r} (choose one of: {', '.join(TTA_AGGREGATES)})")
    if ("lira", tta_aggregate) not in c.cache:
        t, r = (c.target, c.refs) if tta_aggregate == "scores" else (c.target.mean(0)[None], c.refs.mean(1)[:, None])
        c.cache["lira", tta_aggregate] = (lira_rmia.logit_scaled_confidence(t, lira_rmia.own_labels(t, c.labels)),
                                          lira_rmia.logit_scaled_confidence(r, lira_rmia.own_labels(r, c.labels)))
    return c.cache["lira", tta_aggregate]


def rmia_probs(c: Candidates) -> tuple[np.ndarray, np.ndarray]:
    """RMIA's input p_y of the target [N] and the references [K, N], from the view-averaged logits (cached)."""
    if ("rmia",) not in c.cache:
        t, r = c.target.mean(0), c.refs.mean(1)
        c.cache["rmia",] = (lira_rmia.true_class_prob(t, lira_rmia.own_labels(t, c.labels)),
                            lira_rmia.true_class_prob(r, lira_rmia.own_labels(r, c.labels)))
    return c.cache["rmia",]


def fit(data: dict[str, Candidates], cfg: ReferenceConfig, k: int | None = None) -> Fitted:
    """LiRA's and RMIA's shared parameters from the first k reference models (all for None) on the population
    and, for RMIA, the population z; `a` is cfg.rmia_a or chosen on the reference models (never the target)."""
    pop, z = population_candidates(data), data[POPULATION_Z]
    k = len(pop.refs) if k is None else k
    if not 2 <= k <= len(pop.refs) or k % 2:
        raise ValueError(f"k: need an even number of reference models from 2 to {len(pop.refs)} (whole "
                         f"complementary pairs), got {k}")
    mask, z_mask = pop.mask[:k], z.mask[:k]
    lira = lira_rmia.fit_lira(lira_stats(pop, cfg.tta_aggregate)[1][:k], mask, cfg.lira_center, cfg.lira_spread)
    z_t, z_r = rmia_probs(z)
    a = cfg.rmia_a
    if a is None:
        a = lira_rmia.choose_rmia_a(rmia_probs(pop)[1][:k], mask, z_r[:k], gamma=cfg.rmia_gamma, pop_in_mask=z_mask)
    rmia = lira_rmia.fit_rmia(z_t, z_r[:k], cfg.rmia_gamma, a, offline=True, pop_in_mask=z_mask)
    return Fitted(lira, rmia, len(mask) >= lira_rmia.PER_EXAMPLE_FROM, len(mask))


def score_set(c: Candidates, fitted: Fitted, cfg: ReferenceConfig,
              attacks: tuple[str, ...] = REF_ATTACKS) -> dict[str, np.ndarray]:
    """The reference attacks' scores [N] on one set (higher = member): each image from its own reference values
    (the fit's first k models) and the fitted shared parameters only."""
    k, mask = fitted.k, c.mask[:fitted.k]
    out = {}
    if "lira_online" in attacks or "lira_offline" in attacks:
        ts, rs = lira_stats(c, cfg.tta_aggregate)
        out["lira_online"] = lira_rmia.lira_online(fitted.lira, ts, rs[:k], mask, fitted.per_example)
        out["lira_offline"] = lira_rmia.lira_offline(fitted.lira, ts, rs[:k], mask, fitted.per_example,
                                                     cfg.lira_offline)
    if "rmia" in attacks:
        p_t, p_r = rmia_probs(c)
        out["rmia"] = lira_rmia.rmia_score(fitted.rmia, p_t, p_r[:k], mask)
    return {a: out[a] for a in attacks}


def scores(data: dict[str, Candidates], cfg: ReferenceConfig, k: int | None = None,
           sets: tuple[str, ...] | None = None,
           attacks: tuple[str, ...] = REF_ATTACKS) -> tuple[dict[str, dict[str, np.ndarray]], Fitted]:
    """One fit with the first k reference models, then every set (all but the population z, or `sets`) scored."""
    unknown = set(attacks) - set(REF_ATTACKS)
    if unknown:
        raise ValueError(f"attacks: unknown {sorted(unknown)} (choose from {', '.join(REF_ATTACKS)})")
    fitted = fit(data, cfg, k)
    names = [n for n in data if n != POPULATION_Z] if sets is None else list(sets)
    return {name: score_set(data[name], fitted, cfg, attacks) for name in names}, fitted


# ---------------------------------------------------------------- operating points and tables


def operating_points(pop_heldout_scores: np.ndarray, seed: int) -> tuple[dict[str, float], np.ndarray]:
    """Thresholds at 1% and 0.1% FPR fixed on half A of the population's held-out images (the split of
    `thresholds.split_threshold`, as `tpr_at_fpr` and the claims use), and the mask of half B that checks them."""
    points, held = {}, None
    for suffix, alpha in LOW_FPRS.items():
        points[suffix], held = thresholds.split_threshold(pop_heldout_scores, alpha, seed)
    return points, held


def rates(pos: np.ndarray, neg: np.ndarray, seed: int) -> dict[str, float]:
    """AUROC and TPR at each low FPR with Clopper–Pearson intervals, members vs the population's held-out images."""
    row = {"auroc": float(paired.auroc(pos, neg))}
    for suffix, alpha in LOW_FPRS.items():
        t = thresholds.tpr_at_fpr(pos, neg, alpha, seed)
        row.update({f"tpr_at_{suffix}_fpr": t["tpr"], f"tpr_at_{suffix}_fpr_lo": t["tpr_lo"],
                    f"tpr_at_{suffix}_fpr_hi": t["tpr_hi"]})
    return row


@dataclass(frozen=True)
class ReferenceAttacks:
    """What `run_attacks` returns: its table, the logits it gathered, every score per set, and the fit."""

    table: pd.DataFrame  # one row per (attack, pool, operating point)
    data: dict[str, Candidates]  # set -> logits, labels, honest IN mask (members, every pool, population_z)
    scores: dict[str, dict[str, np.ndarray]]  # set -> attack -> per-image score (higher = member)
    fitted: Fitted  # the one fit every set was scored with

    @property
    def rmia_a(self) -> float:
        """RMIA's offline constant, chosen on the reference models only (or the profile's)."""
        return self.fitted.rmia.a

    def score(self, attack: str, on: str) -> np.ndarray:
        """Per-image scores of `attack` on the set `on` (members, or a pool's name)."""
        if on not in self.scores or attack not in self.scores[on]:
            raise ValueError(f"score: no {attack!r} scores on {on!r}; sets {list(self.scores)}, "
                             f"attacks {list(ATTACKS)}")
        return self.scores[on][attack]


def run_attacks(study: Study, vanilla: Variant, refs: list[jobs.TrainedModel],
                pools: dict[str, PoolSpec]) -> ReferenceAttacks:
    """Reference attacks and the paper's threshold / loss attacks on members vs every pool.

    Rows: AUROC and TPR at 1% / 0.1% FPR with Clopper–Pearson intervals (members vs the population's held-out
    images), and each pool's FPR at the operating points: on the held-out pool, its check half B of the
    population's held-out images; on any other pool, all its images (`n_images`). Writes samples/vanilla_ref.npz.
    """
    cfg = study.profile.reference_models
    data = gather(study, vanilla, refs, pools)
    ref_scores, fitted = scores(data, cfg)
    n_train = data[MEMBERS].n
    arrays: dict[str, np.ndarray] = {}
    rows = []
    sets = [MEMBERS, *pools]
    for name in sets:
        o = vanilla.outputs(study, "target", part_spec(study, "target_train") if name == MEMBERS else pools[name])
        ref_scores[name]["threshold"] = ThresholdAttack().score(o)
        ref_scores[name]["loss"] = LossAttack().score(o)
        arrays[conf_key(name)] = o.probs.max(1).astype(np.float64)
    for attack in ATTACKS:
        pos, neg = ref_scores[MEMBERS][attack], ref_scores[HELDOUT][attack][:n_train]
        points, check = operating_points(neg, study.seed)
        row = {"attack": attack, "k": len(refs), **rates(pos, neg, study.seed)}
        for name in sets:
            s = np.asarray(ref_scores[name][attack], dtype=np.float64)
            arrays[score_key(attack, name)] = s
            for suffix, thr in points.items():
                flags = s > thr
                arrays[member_key(at_point(attack, suffix), name)] = flags
                if name != MEMBERS:
                    measured = flags[:n_train][check] if name == HELDOUT else flags
                    rows.append({**row, "set": name, "operating_point": suffix, "fpr": float(measured.mean()),
                                 "n_images": int(measured.size)})
    for what, set_name in [split_key(k) for k in arrays]:
        if set_name == HELDOUT:  # the population's non-members
            arrays[key(what, HELDOUT_POP)] = arrays[key(what, set_name)][:n_train]
    save_samples(study, pools, arrays, variant=REFERENCE_VARIANT, family="reference", strength=len(refs),
                 leaky=False, rmia_a=fitted.rmia.a)
    return ReferenceAttacks(pd.DataFrame(rows), data, ref_scores, fitted)


def _population_rows(data: dict[str, Candidates], cfg: ReferenceConfig, seed: int, k: int | None = None,
                     attacks: tuple[str, ...] = REF_ATTACKS, pools: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """One row per attack: AUROC and low-FPR TPRs, members vs the population's held-out images, one fit (k models);
    with `pools`, also their mean FPR at the 1% operating point (`pool_fpr_at_1pct_fpr`)."""
    s, _ = scores(data, cfg, k=k, sets=(MEMBERS, HELDOUT, *pools), attacks=attacks)
    n = data[MEMBERS].n
    rows = []
    for a in attacks:
        row = {"attack": a, **rates(s[MEMBERS][a], s[HELDOUT][a][:n], seed)}
        if pools:
            thr = operating_points(s[HELDOUT][a][:n], seed)[0]["1pct"]
            row["pool_fpr_at_1pct_fpr"] = float(np.mean([(s[p][a] > thr).mean() for p in pools]))
        rows.append(row)
    return rows


def k_curve(study: Study, data: dict[str, Candidates]) -> pd.DataFrame:
    """TPR at 0.1% and 1% FPR and AUROC of LiRA (online, offline) and RMIA with the first k reference models,
    every parameter refitted once per k on the population (RMIA's `a` too, unless the profile fixes it)."""
    cfg = study.profile.reference_models
    return pd.DataFrame([{"k": k, **r} for k in cfg.k_curve if k <= cfg.k
                         for r in _population_rows(data, cfg, study.seed, k=k)])


OPTIONS: dict[str, tuple[Any, ...]] = {  # the reference code's choices (ReferenceConfig keys) and their settings
    "lira_center": LIRA_CENTERS, "lira_spread": LIRA_SPREADS, "lira_offline": LIRA_OFFLINE_SIDES,
    "tta_aggregate": TTA_AGGREGATES, "rmia_gamma": (1.0, 2.0)}
OPTION_ATTACKS = {"lira_center": ("lira_online", "lira_offline"), "lira_spread": ("lira_online", "lira_offline"),
                  "lira_offline": ("lira_offline",), "tta_aggregate": ("lira_online", "lira_offline"),
                  "rmia_gamma": ("rmia",)}


def option_table(data: dict[str, Candidates], cfg: ReferenceConfig, seed: int) -> pd.DataFrame:
    """AUROC and TPR at 1% / 0.1% FPR of the attacks each option touches, under each of its settings with the
    profile's other settings (one fit each, all K models), and the mean FPR over every pool but the held-out one at
    that setting's 1% operating point; `profile` marks the profile's own setting. The test-time aggregation is
    compared only when the logits have two views (tta_flip)."""
    pools = tuple(n for n in data if n not in (MEMBERS, HELDOUT, POPULATION_Z))
    a = fit(data, cfg).rmia.a  # RMIA's a depends on gamma only: chosen once for the other options
    rows = []
    for option, settings in OPTIONS.items():
        if option == "tta_aggregate" and data[MEMBERS].target.shape[0] < 2:
            continue
        mine = getattr(cfg, option)
        for setting in settings if mine in settings else (*settings, mine):  # the profile's own setting always
            changed = dataclasses.replace(cfg, **{option: setting})
            changed = changed if option == "rmia_gamma" else dataclasses.replace(changed, rmia_a=a)
            for r in _population_rows(data, changed, seed, attacks=OPTION_ATTACKS[option], pools=pools):
                rows.append({"option": option, "setting": str(setting), "profile": setting == getattr(cfg, option),
                             **r})
    return pd.DataFrame(rows)


def example(c: Candidates, i: int) -> tuple[float, np.ndarray, np.ndarray]:
    """Image i's LiRA statistic (its first view) under the target, and under its OUT and IN reference models."""
    one = c.take(np.array([i]))  # this image only
    t = lira_rmia.logit_scaled_confidence(one.target[0], lira_rmia.own_labels(one.target[0], one.labels))[0]
    r = lira_rmia.logit_scaled_confidence(one.refs[:, 0], lira_rmia.own_labels(one.refs[:, 0], one.labels))[:, 0]
    return float(t), r[~c.mask[:, i]], r[c.mask[:, i]]
