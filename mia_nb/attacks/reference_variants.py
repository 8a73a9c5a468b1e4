"""The paper's question under LiRA: does each variant leak more or less when its attacker has reference models?

Every variant named in `reference_models.variants` is attacked by reference models of its own kind. A retrained
variant (label smoothing, L2, DP-SGD) gets `variant_k` reference models retrained with its recipe, through the
engine, on the very training halves of the first `variant_k` vanilla reference models (complementary pairs), so
variant − vanilla is paired by design. A post-hoc variant is the vanilla reference models read out the same way:
temperature divides their logits by T; LLLA (marglik) fits a last-layer Laplace on each reference model with its
own training images, as the study's LLLA variant does on the target's. The variant's target is the study's
variant (`mia_nb.models.variants`). Vanilla is attacked by the same first `variant_k` reference models.

Per variant ("arm") and attack (the paper's max-score threshold attack on the arm's target, LiRA online and
offline): AUROC and TPR at 1% / 0.1% FPR with Clopper–Pearson intervals, members vs the population's held-out
candidates (both IN for half of the reference models), as notebook 08 measures the vanilla attacks. Each arm's
per-image scores go to samples/<arm>_ref<K>.npz (family `ARM_FAMILY`), where `mia_nb.claims.findings` reads them.
LiRA is fitted once per arm on its population (`lira_rmia.fit_lira`, the profile's `lira_center`, `lira_spread`
and `lira_offline` options, per-image spreads from `lira_rmia.PER_EXAMPLE_FROM` models on, as notebook 08) and
scores the same candidates. No test-time augmentation here (`tta_flip` is notebook 08's vanilla attack only): every
arm is read out under one rule.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, TensorDataset

from mia_nb.attacks import lira_rmia, reference_models
from mia_nb.attacks.evaluation import save_samples
from mia_nb.attacks.metrics import LOW_FPRS
from mia_nb.attacks.samples import HELDOUT_POP, MEMBERS, conf_key, score_key
from mia_nb.attacks.score_based import ThresholdAttack
from mia_nb.attacks.scores import Outputs, log_softmax
from mia_nb.config import ReferenceConfig
from mia_nb.data.nonmembers import PoolSpec, part_spec
from mia_nb.data.splits import indices_sha
from mia_nb.models import calibration, jobs, networks, variants
from mia_nb.models.variants import model_features, model_logits

if TYPE_CHECKING:
    from mia_nb.study import Study

ARM_FAMILY = "reference_arm"  # the family of the arms' sample files (no study variant's family)
ATTACKS = ("threshold", "lira_online", "lira_offline")
_LOG_FLOOR = float(np.log(np.finfo(np.float64).tiny))  # log-probabilities are floored here before LiRA's statistic
COLUMNS = ["variant", "family", "strength", "k", "attack", "auroc"] + [
    f"tpr_at_{s}_fpr{e}" for s in LOW_FPRS for e in ("", "_lo", "_hi")]


@dataclass(frozen=True)
class Arm:
    """One attacked variant and how its reference models are made."""

    name: str  # the study's variant name: vanilla, ls_0.1, llla_marglik, temp_10, l2_0.001, dp_8
    family: str  # the study's variant family
    strength: float | None
    recipe: variants.Retrained | None = None  # retrained: its reference models train with this recipe
    temperature: float | None = None  # post-hoc: the vanilla reference models' logits / T
    llla_arm: str | None = None  # post-hoc: a last-layer Laplace of this arm on each vanilla reference model


VANILLA = Arm("vanilla", "vanilla", None)


def sample_variant(arm: str, k: int) -> str:
    """The sample file name (samples/<name>.npz) of an arm attacked by k reference models: ls_0.1_ref8."""
    return f"{arm}_ref{k}"


def enabled(study: Study) -> bool:
    """Whether this seed has reference models and the profile names variants to attack with them."""
    return reference_models.enabled(study) and bool(study.profile.reference_models.variants)


def offered(study: Study) -> dict[str, Arm]:
    """Every arm the profile can make, by name (the names `config.validate` accepts)."""
    p = study.profile
    out = {rc.name: Arm(rc.name, rc.family, rc.strength, recipe=rc)
           for rc in variants.profile_recipes(study) if rc.family != "dp_clip"}
    for t in (*p.calibration.temperatures, p.defenses.temperature):
        out[f"temp_{t:g}"] = Arm(f"temp_{t:g}", "temperature", float(t), temperature=float(t))
    if "marglik" in p.calibration.llla.arms:
        name = variants.LLLA_NAMES["marglik"]
        out[name] = Arm(name, "llla", None, llla_arm="marglik")
    return out


def arms(study: Study) -> list[Arm]:
    """Vanilla, then the profile's `reference_models.variants` in order; one-line error naming an unknown one."""
    made = offered(study)
    out = [VANILLA]
    for i, name in enumerate(study.profile.reference_models.variants):
        if name not in made:
            raise ValueError(f"reference_models.variants[{i}]: {name!r} is not a variant of this profile "
                             f"(one of {', '.join(made)})")
        out.append(made[name])
    return out


def training_halves(study: Study) -> list[np.ndarray]:
    """The pool indices the first `variant_k` vanilla reference models train on (taken from their requests)."""
    k = study.profile.reference_models.variant_k
    halves = [np.asarray(r.indices) for r in reference_models.requests(study)[:k]]
    if len(halves) < k:
        raise ValueError(f"reference_models.variant_k: {k} is more than the {len(halves)} reference models of seed "
                         f"{study.seed} (raise reference_models.k)")
    return halves


def population_specs(study: Study) -> tuple[PoolSpec, PoolSpec]:
    """The two sets the population's candidates come from: the members and the held-out part (its first n)."""
    return part_spec(study, "target_train"), part_spec(study, "target_heldout")


def retrained_requests(study: Study) -> list[variants.ReadRequest]:
    """The retrained arms' reference models of this seed: `ref_<j>` of variant <arm> on vanilla's j-th training
    half, each with its logits on the population's sets read in its training job."""
    if not enabled(study):
        return []
    halves = training_halves(study)
    out = []
    for arm in arms(study):
        if arm.recipe is None:
            continue
        train = dataclasses.replace(study.profile.train, **arm.recipe.train_changes)
        out += [variants.ReadRequest(f"ref_{j}", arm.name, train, arm.recipe.dp, indices=idx,
                                     logits_on=population_specs(study)) for j, idx in enumerate(halves)]
    return out


def requests(study: Study) -> list[jobs.ModelRequest]:
    """What the runner's training phase trains and reads for the arms: the retrained arms' reference models, and
    for an LLLA arm the first `variant_k` vanilla reference models again (the same model keys), now with their
    penultimate features on the population's sets (last-layer Laplace's input)."""
    if not enabled(study):
        return []
    out: list[jobs.ModelRequest] = list(retrained_requests(study))
    if any(a.llla_arm for a in arms(study)):
        out += [variants.ReadRequest(f"ref_{j}", "vanilla", indices=idx, features_on=population_specs(study))
                for j, idx in enumerate(training_halves(study))]
    return out


# ---------------------------------------------------------------------------------- log-probabilities

@dataclass(frozen=True)
class Population:
    """One arm's log-probabilities on the population: the members, then as many held-out candidates."""

    target: np.ndarray  # [2n, C] the arm's target
    refs: np.ndarray  # [K, 2n, C] the arm's reference models
    labels: np.ndarray  # [2n]
    mask: np.ndarray  # [K, 2n] True where the candidate was in that reference model's training half

    @property
    def n_members(self) -> int:
        """Members (the first half of the candidates)."""
        return self.mask.shape[1] // 2


def _on_population(study: Study, read: Callable[[PoolSpec], np.ndarray]) -> np.ndarray:
    """`read` on the members and on the held-out part, cut to the population (members, first n held-out images)."""
    n = len(study.splits["target_train"])
    members, heldout = (read(spec) for spec in population_specs(study))
    if len(heldout) < n:
        raise ValueError(f"reference_variants: need {n} held-out images, have {len(heldout)} (raise splits.target_heldout)")
    return np.concatenate([members, heldout[:n]])


def population_labels(study: Study) -> np.ndarray:
    """Labels of the population's candidates (all true labels)."""
    return _on_population(study, lambda spec: study.store.get_or_make("labels", spec.config, spec.labels))


def reference_llla(study: Study, tm: jobs.TrainedModel, in_half: np.ndarray) -> np.ndarray:
    """[2n, C] log-probabilities of a marglik last-layer Laplace (probit) fitted on one reference model's own
    training images (the candidates `in_half` marks), as `variants.llla` fits the target's; cached."""
    cfg = study.profile.calibration.llla
    members, heldout = population_specs(study)
    config = {"model": tm.key, "arm": "marglik", "hessian_structure": cfg.hessian_structure, "prior": "marglik",
              "link": "probit", "n_samples": cfg.n_samples, "seed": study.seed, "members": members.config,
              "heldout": heldout.config, "n": len(study.splits["target_train"]),
              "in_sha": indices_sha(np.flatnonzero(in_half))}

    def make() -> np.ndarray:
        feats = _on_population(study, lambda spec: model_features(study, tm, spec))
        labels = population_labels(study)
        head = networks.last_layer_head(tm.model).to(study.device)
        train = DataLoader(TensorDataset(torch.as_tensor(feats[in_half]), torch.as_tensor(labels[in_half])),
                           batch_size=512)
        res = calibration.fit_llla(head, train, hessian_structure=cfg.hessian_structure, prior="marglik",
                                   link="probit", n_samples=cfg.n_samples, seed=study.seed)
        return calibration.llla_log_predict(res, torch.as_tensor(feats), link="probit", n_samples=cfg.n_samples,
                                            seed=study.seed)
    return study.store.get_or_make("ref_llla_probs", config, make)


def target_variant(study: Study, arm: Arm) -> variants.Variant:
    """The study's variant of an arm (its target is what the arm attacks)."""
    if arm.recipe is not None:
        return variants.retrained(study, [arm.recipe])[arm.name]
    if arm.temperature is not None:
        return variants.with_temperature(study, arm.temperature, arm.name)
    if arm.llla_arm is not None:
        return variants.llla(study, arm.llla_arm)
    return variants.vanilla(study)


def gather(study: Study, arm: Arm, refs: list[jobs.TrainedModel]) -> Population:
    """The arm's target and reference log-probabilities on the population; `refs`: the arm's reference models
    (retrained arms) or the first `variant_k` vanilla ones (post-hoc arms and vanilla)."""
    k = study.profile.reference_models.variant_k
    if len(refs) != k:
        raise ValueError(f"gather: {arm.name} needs {k} reference models (reference_models.variant_k), got {len(refs)}")
    mask = reference_models.in_mask(study)[:k]
    target = target_variant(study, arm)
    t = _on_population(study, lambda spec: target.log_probs(study, "target", spec))
    if arm.llla_arm is not None:
        r = np.stack([reference_llla(study, m, mask[j]) for j, m in enumerate(refs)])
    else:
        temp = arm.temperature or 1.0
        r = np.stack([_on_population(study, lambda spec, m=m: log_softmax(model_logits(study, m, spec), temp))
                      for m in refs])
    return Population(t, r, population_labels(study), mask)


# ---------------------------------------------------------------------------------------- scores

def lira_stat(logp: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """LiRA's statistic log p_y − log(1 − p_y) from log-probabilities [..., N, C] (logits or LLLA's predictive):
    log p_y − logsumexp_{k≠y} log p_k, stable where p_y rounds to 1."""
    return lira_rmia.logit_scaled_confidence(np.maximum(np.asarray(logp, dtype=np.float64), _LOG_FLOOR), labels)


def lira_scores(target_stat: np.ndarray, ref_stat: np.ndarray, in_mask: np.ndarray,
                cfg: ReferenceConfig) -> dict[str, np.ndarray]:
    """LiRA online and offline scores [N] of the population's candidates (higher = member): one fit on the
    reference statistics of these candidates (each IN for half of the models), the same candidates scored."""
    fit = lira_rmia.fit_lira(ref_stat, in_mask, cfg.lira_center, cfg.lira_spread)
    per_example = np.shape(ref_stat)[0] >= lira_rmia.PER_EXAMPLE_FROM
    return {"lira_online": lira_rmia.lira_online(fit, target_stat, ref_stat, in_mask, per_example),
            "lira_offline": lira_rmia.lira_offline(fit, target_stat, ref_stat, in_mask, per_example, cfg.lira_offline)}


def arm_scores(pop: Population, cfg: ReferenceConfig) -> dict[str, np.ndarray]:
    """Every attack's score on the population (`ATTACKS`): the max-score threshold attack on the arm's target
    and LiRA with the arm's reference models (the profile's LiRA options, `cfg`)."""
    out = {"threshold": ThresholdAttack().score(Outputs(np.exp(pop.target), pop.labels, np.minimum(pop.target, 0.0)))}
    out.update(lira_scores(lira_stat(pop.target, pop.labels), lira_stat(pop.refs, pop.labels), pop.mask, cfg))
    return out


def rows(arm: Arm, scores: dict[str, np.ndarray], n: int, k: int, seed: int) -> list[dict]:
    """Table rows of one arm: per attack, AUROC and TPR at 1% / 0.1% FPR (Clopper–Pearson), members vs the
    population's held-out candidates (thresholds fixed on half of them, as notebook 08)."""
    out = []
    for attack in ATTACKS:
        out.append({"variant": arm.name, "family": arm.family, "strength": arm.strength, "k": k, "attack": attack,
                    **reference_models.rates(scores[attack][:n], scores[attack][n:], seed)})
    return out


def save(study: Study, arm: Arm, pop: Population, scores: dict[str, np.ndarray]) -> Path:
    """samples/<arm>_ref<K>.npz: the target's max score and every attack's score on members and `heldout_pop`."""
    n, k = pop.n_members, len(pop.refs)
    conf = np.exp(pop.target.max(axis=1))
    arrays = {conf_key(MEMBERS): conf[:n], conf_key(HELDOUT_POP): conf[n:]}
    for attack in ATTACKS:
        arrays[score_key(attack, MEMBERS)] = np.asarray(scores[attack][:n], dtype=np.float64)
        arrays[score_key(attack, HELDOUT_POP)] = np.asarray(scores[attack][n:], dtype=np.float64)
    return save_samples(study, {}, arrays, variant=sample_variant(arm.name, k), family=ARM_FAMILY,
                        strength=arm.strength, leaky=False, arm=arm.name, arm_family=arm.family, k=k)


def run(study: Study) -> pd.DataFrame:
    """Every arm of this seed (vanilla first): gather, score, write its sample file; one row per arm and attack.
    Missing reference models (the retrained arms') are trained through the engine in one call."""
    if not enabled(study):
        return pd.DataFrame(columns=COLUMNS)
    k = study.profile.reference_models.variant_k
    todo = arms(study)  # a bad name stops here, before any model is loaded
    vanilla_refs = jobs.ensure(study, reference_models.requests(study)[:k])
    reqs = retrained_requests(study)
    retrained = jobs.ensure(study, reqs) if reqs else []
    own: dict[str, list[jobs.TrainedModel]] = {}
    for req, tm in zip(reqs, retrained):
        own.setdefault(req.variant, []).append(tm)
    n = len(study.splits["target_train"])
    out = []
    for arm in todo:
        pop = gather(study, arm, own.get(arm.name, vanilla_refs))
        scores = arm_scores(pop, study.profile.reference_models)
        save(study, arm, pop, scores)
        out += rows(arm, scores, n, k, study.seed)
    return pd.DataFrame(out, columns=COLUMNS)
