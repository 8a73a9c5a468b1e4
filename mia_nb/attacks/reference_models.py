"""Reference models for LiRA and RMIA, and their attacks on every pool at matched operating points.

The population is the target's members plus as many of its held-out images (the first ones), so each
random half has the target's training-set size. K reference models train with the target's recipe on
halves in complementary pairs (every candidate IN for exactly K/2 models); the remaining held-out
images are OUT for every model, and half of them fix the operating points (1% and 0.1% FPR) that the
other half and every OOD pool are measured at. Every attack is a function of cached logits
(`mia_nb.attacks.lira_rmia`); this module gathers them and writes the per-image arrays notebook 09 tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from mia_nb.attacks import thresholds
from mia_nb.claims import paired
from mia_nb.attacks import lira_rmia
from mia_nb.attacks.evaluation import save_samples
from mia_nb.attacks.samples import HELDOUT_POP, MEMBERS, at_point, conf_key, key, member_key, score_key, split_key
from mia_nb.attacks.score_based import LossAttack, ThresholdAttack
from mia_nb.layout import REFERENCE_VARIANT
from mia_nb.models import jobs
from mia_nb.models.variants import model_logits
from mia_nb.attacks.metrics import LOW_FPRS
from mia_nb.data.nonmembers import PoolSpec, part_spec

if TYPE_CHECKING:
    from mia_nb.study import Study
    from mia_nb.models.variants import Variant

ATTACKS = ("lira_online", "lira_offline", "rmia", "threshold", "loss")


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
    """The K reference models of this seed (none when the seed has no reference models)."""
    if not enabled(study):
        return []
    pop, mask = population(study), in_mask(study)
    return [jobs.ModelRequest(f"ref_{k}", "vanilla", indices=np.sort(pop[mask[k]])) for k in range(len(mask))]


@dataclass
class Candidates:
    """One set of images: the target's and every reference model's logits, labels, IN mask."""

    target: np.ndarray  # [N, C]
    refs: np.ndarray  # [K, N, C]
    labels: np.ndarray  # [N], -1 resolved to the target's prediction
    mask: np.ndarray  # [K, N]


def flipped(spec: PoolSpec) -> PoolSpec:
    """The pool mirrored left-right (test-time augmentation: logits are averaged over the two views)."""
    def build() -> tuple[Any, np.ndarray]:
        x, y = spec.build()
        return x.flip(-1), y
    return PoolSpec(f"{spec.name}~flip", spec.group, {**spec.config, "flip": True}, build)


def gather(study: Study, vanilla: Variant, refs: list[jobs.TrainedModel],
           pools: dict[str, PoolSpec]) -> dict[str, Candidates]:
    """Logits of the target and the references on members, held-out, the population z (calibration) and pools."""
    n_train, mask = len(study.splits["target_train"]), in_mask(study)
    specs = {MEMBERS: part_spec(study, "target_train"), **pools, "population_z": part_spec(study, "calibration")}
    flip = study.profile.reference_models.tta_flip
    out = {}
    for name, spec in specs.items():
        views = [spec, flipped(spec)] if flip else [spec]
        t = np.mean([model_logits(study, vanilla.target, v) for v in views], axis=0)
        r = np.stack([np.mean([model_logits(study, m, v) for v in views], axis=0) for m in refs])
        labels = lira_rmia.resolve_labels(t, study.store.get_or_make("labels", spec.config, spec.labels))
        m = np.zeros((len(refs), len(t)), dtype=bool)
        if name == MEMBERS:
            m = mask[:, :n_train]
        elif name == "heldout":
            m[:, :n_train] = mask[:, n_train:]
        out[name] = Candidates(t, r, labels, m)
    return out


def scores(data: dict[str, Candidates], k: int | None = None, gamma: float = 2.0,
           a: float | None = None) -> tuple[dict[str, dict[str, np.ndarray]], float]:
    """Every reference attack's score per set (higher = member), using the first k references; and RMIA's a."""
    def sub(c: Candidates) -> Candidates:
        return c if k is None else Candidates(c.target, c.refs[:k], c.labels, c.mask[:k])
    data = {n: sub(c) for n, c in data.items()}
    cand, z = data[MEMBERS], data["population_z"]
    if a is None:  # chosen on the reference models only: candidates = members + held-out in the population
        h = data["heldout"]
        n_pop = cand.mask.shape[1] + h.mask[:, h.mask.any(0)].shape[1]
        refs_p = np.concatenate([lira_rmia.true_class_prob(cand.refs, cand.labels),
                                 lira_rmia.true_class_prob(h.refs, h.labels)[:, :n_pop - cand.mask.shape[1]]], axis=1)
        mask_p = np.concatenate([cand.mask, h.mask[:, :n_pop - cand.mask.shape[1]]], axis=1)
        a = lira_rmia.choose_rmia_a(refs_p, mask_p, lira_rmia.true_class_prob(z.refs, z.labels), gamma=gamma)
    fixed = len(cand.refs) < 64
    shift = lira_rmia.global_in_shift(lira_rmia.logit_scaled_confidence(cand.refs, cand.labels), cand.mask)
    pz_t, pz_r = lira_rmia.true_class_prob(z.target, z.labels), lira_rmia.true_class_prob(z.refs, z.labels)
    out: dict[str, dict[str, np.ndarray]] = {}
    for name, c in data.items():
        if name == "population_z":
            continue
        ts, rs = lira_rmia.logit_scaled_confidence(c.target, c.labels), lira_rmia.logit_scaled_confidence(c.refs, c.labels)
        out[name] = {
            "lira_online": lira_rmia.lira_online(ts, rs, c.mask, fixed_variance=fixed, in_shift=shift),
            "lira_offline": lira_rmia.lira_offline(ts, rs, c.mask, fixed_variance=fixed),
            "rmia": lira_rmia.rmia_scores(lira_rmia.true_class_prob(c.target, c.labels),
                                          lira_rmia.true_class_prob(c.refs, c.labels), c.mask, pz_t, pz_r,
                                          gamma=gamma, a=a, offline=True),
        }
    return out, float(a)


def operating_points(heldout_scores: np.ndarray, n_train: int, seed: int) -> tuple[dict[str, float], np.ndarray]:
    """Thresholds at 1% and 0.1% FPR fixed on half A of the held-out images that are OUT for every model;
    returns them and the mask (over all held-out images) of half B, where they are checked."""
    out_all = np.arange(n_train, len(heldout_scores))
    _, held_b = thresholds.split_threshold(heldout_scores[out_all], 0.01, seed)
    fit = out_all[~held_b]
    points = {suffix: thresholds.threshold_at_fpr(heldout_scores[fit], alpha) for suffix, alpha in LOW_FPRS.items()}
    check = np.zeros(len(heldout_scores), dtype=bool)
    check[out_all[held_b]] = True
    return points, check


@dataclass(frozen=True)
class ReferenceAttacks:
    """What `run_attacks` returns: its table, the logits it gathered, every score per set, and RMIA's a."""

    table: pd.DataFrame  # one row per (attack, pool, operating point)
    data: dict[str, Candidates]  # set -> logits, labels, IN mask (members, every pool, population_z)
    scores: dict[str, dict[str, np.ndarray]]  # set -> attack -> per-image score (higher = member)
    rmia_a: float  # RMIA's offline constant, chosen on the reference models only

    def score(self, attack: str, on: str) -> np.ndarray:
        """Per-image scores of `attack` on the set `on` (members, or a pool's name)."""
        if on not in self.scores or attack not in self.scores[on]:
            raise ValueError(f"score: no {attack!r} scores on {on!r}; sets {list(self.scores)}, "
                             f"attacks {list(ATTACKS)}")
        return self.scores[on][attack]


def run_attacks(study: Study, vanilla: Variant, refs: list[jobs.TrainedModel],
                pools: dict[str, PoolSpec]) -> ReferenceAttacks:
    """Reference attacks and the paper's threshold / loss attacks on members vs every pool.

    Rows: AUROC (members vs held-out), TPR at 1% / 0.1% FPR with Clopper–Pearson intervals, and each pool's
    FPR at the operating points fixed on held-out data. Writes samples/vanilla_ref.npz for notebook 09.
    """
    cfg = study.profile.reference_models
    data = gather(study, vanilla, refs, pools)
    ref_scores, a = scores(data, gamma=cfg.rmia_gamma, a=cfg.rmia_a)
    n_train = len(study.splits["target_train"])
    arrays: dict[str, np.ndarray] = {}
    rows = []
    sets = [MEMBERS, *pools]
    for name in sets:
        o = vanilla.outputs(study, "target", part_spec(study, "target_train") if name == MEMBERS else pools[name])
        ref_scores[name]["threshold"] = ThresholdAttack().score(o)
        ref_scores[name]["loss"] = LossAttack().score(o)
        arrays[conf_key(name)] = o.probs.max(1).astype(np.float64)
    for attack in ATTACKS:
        points, check = operating_points(ref_scores["heldout"][attack], n_train, study.seed)
        # members vs the held-out candidates of the population: both have IN and OUT reference models
        pos, neg = ref_scores[MEMBERS][attack], ref_scores["heldout"][attack][:n_train]
        row = {"attack": attack, "k": len(refs), "auroc": float(paired.auroc(pos, neg))}
        for suffix, alpha in LOW_FPRS.items():
            t = thresholds.tpr_at_fpr(pos, neg, alpha, study.seed)
            row.update({f"tpr_at_{suffix}_fpr": t["tpr"], f"tpr_at_{suffix}_fpr_lo": t["tpr_lo"],
                        f"tpr_at_{suffix}_fpr_hi": t["tpr_hi"]})
        for name in sets:
            s = ref_scores[name][attack]
            arrays[score_key(attack, name)] = np.asarray(s, dtype=np.float64)
            for suffix, thr in points.items():
                flags = s > thr
                arrays[member_key(at_point(attack, suffix), name)] = flags
                if name != MEMBERS:
                    rows.append({**row, "set": name, "operating_point": suffix,
                                 "fpr": float((flags[check] if name == "heldout" else flags).mean())})
    for what, set_name in [split_key(k) for k in arrays]:
        if set_name == "heldout":  # the population's non-members
            arrays[key(what, HELDOUT_POP)] = arrays[key(what, set_name)][:n_train]
    table = pd.DataFrame(rows)
    save_samples(study, pools, arrays, variant=REFERENCE_VARIANT, family="reference", strength=len(refs),
                 leaky=False, rmia_a=a)
    return ReferenceAttacks(table, data, ref_scores, a)


def k_curve(study: Study, data: dict[str, Candidates], a: float) -> pd.DataFrame:
    """TPR at 0.1% and 1% FPR and AUROC of LiRA (online, offline) and RMIA with the first k reference models."""
    cfg = study.profile.reference_models
    n_train = len(study.splits["target_train"])
    rows = []
    for k in [k for k in cfg.k_curve if k <= cfg.k]:
        s, _ = scores(data, k=k, gamma=cfg.rmia_gamma, a=a)
        for attack in ("lira_online", "lira_offline", "rmia"):
            pos, neg = s[MEMBERS][attack], s["heldout"][attack][:n_train]  # population candidates only
            r = {"k": k, "attack": attack, "auroc": float(paired.auroc(pos, neg))}
            for suffix, alpha in LOW_FPRS.items():
                t = thresholds.tpr_at_fpr(pos, neg, alpha, study.seed)
                r.update({f"tpr_at_{suffix}_fpr": t["tpr"], f"tpr_at_{suffix}_fpr_lo": t["tpr_lo"],
                          f"tpr_at_{suffix}_fpr_hi": t["tpr_hi"]})
            rows.append(r)
    return pd.DataFrame(rows)


def example(c: Candidates, k: int) -> tuple[float, np.ndarray, np.ndarray]:
    """One image's LiRA statistic under the target, and under its OUT and IN reference models."""
    t = lira_rmia.logit_scaled_confidence(c.target, c.labels)[k]
    r = lira_rmia.logit_scaled_confidence(c.refs, c.labels)[:, k]
    return float(t), r[~c.mask[:, k]], r[c.mask[:, k]]
