"""The one evaluation route: from a model variant to its results.

`evaluate` fits every attack on the variant's balanced shadow, scores the target's members against every
non-member pool, keeps the record in the store (a rerun is free) and writes the results: the rows of
results/attacks.csv (`attack_table`), the variant's row of results/variants.csv (`model_row`) and its
per-image arrays in samples/<variant>.npz (`save_samples`, in the format of `mia_nb.attacks.samples`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from mia_nb.attacks.metrics import (ATTACK_METRIC_KEYS, LOW_FPRS, accuracy, attack_metrics, ece, mmps, nll,
                                    overconfidence_error)
from mia_nb.attacks.samples import MEMBERS, SampleFile, conf_key, correct_key, member_key, score_key, write_samples
from mia_nb.attacks.score_based import Attack, attack_state, balanced_shadow, make_attack, restore_attack
from mia_nb.attacks.scores import Outputs
from mia_nb.attacks.thresholds import allowed_false_positives, fit_size
from mia_nb.config import AttacksConfig
from mia_nb.data.nonmembers import PoolSpec, part_spec
from mia_nb.layout import ATTACKS_TABLE, VARIANTS_TABLE
from mia_nb.models.variants import Variant, variant_key

if TYPE_CHECKING:
    from mia_nb.study import Study


def make_attacks(cfg: AttacksConfig, seed: int) -> dict[str, Attack]:
    """Fresh, unfitted attacks named in the profile."""
    kw = {"salem": {"k": cfg.salem_k, "patience": cfg.salem_patience, "max_epochs": cfg.salem_max_epochs,
                    "seed": seed}}
    return {name: make_attack(name, **kw.get(name, {})) for name in cfg.names}


@dataclass(frozen=True)
class ShadowSizes:
    """How many shadow members and shadow non-members the attacks were fitted on (balanced: equal)."""

    shadow_members: int
    shadow_nonmembers: int


def fit_attacks(cfg: AttacksConfig, shadow_members: Outputs, shadow_nonmembers: Outputs,
                seed: int) -> tuple[dict[str, Attack], ShadowSizes]:
    """Fit every attack on balanced shadow sets; return the attacks and the sizes used."""
    members, nonmembers = balanced_shadow(shadow_members, shadow_nonmembers, seed)
    attacks = make_attacks(cfg, seed)
    for attack in tqdm(attacks.values(), desc="fitting attacks on the shadow", unit="attack", leave=False):
        attack.fit(members, nonmembers)
    return attacks, ShadowSizes(len(members), len(nonmembers))


def attack_table(attacks: dict[str, Attack], members: Outputs, pools: dict[str, Outputs], variant: str,
                 seed: int = 0) -> pd.DataFrame:
    """One row per (attack, non-member set): the columns of results/attacks.csv."""
    rows = []
    for pool_name, nonmembers in tqdm(pools.items(), desc=f"evaluating {variant}", unit="pool", leave=False):
        for name, attack in attacks.items():
            m = attack_metrics(attack, members, nonmembers, seed=seed)
            rows.append({"variant": variant, "attack": name, "nonmember_set": pool_name, **m})
    return pd.DataFrame(rows, columns=["variant", "attack", "nonmember_set", *ATTACK_METRIC_KEYS])


def decisions(attacks: dict[str, Attack], outputs: Outputs) -> pd.DataFrame:
    """Boolean member decision of every attack on the same samples (columns: attack names)."""
    return pd.DataFrame({name: np.asarray(a.predict(outputs), bool) for name, a in attacks.items()})


def readable_table(df: pd.DataFrame) -> pd.DataFrame:
    """attacks.csv rows for reading: rounded rates, TPR at 1% / 0.1% FPR with its 95% CI and FP budget."""
    out = pd.DataFrame({
        "attack": df["attack"], "non-members": df["nonmember_set"], "threshold": df["threshold"].round(6),
        "TPR (recall)": df["recall"].round(3), "FPR": df["fpr"].round(3), "precision": df["precision"].round(3),
        "accuracy": df["accuracy"].round(3), "AUROC": df["auroc"].round(3), "AUPR": df["aupr"].round(3),
        "FPR @ 95% TPR": df["fpr_at_95tpr"].round(3), "best balanced acc.": df["balanced_accuracy"].round(3),
    })
    for suffix, alpha in LOW_FPRS.items():
        col = f"tpr_at_{suffix}_fpr"
        out[f"TPR @ {alpha:.1%} FPR [95% CI]"] = [
            f"{v:.3f} [{lo:.3f}, {hi:.3f}]" for v, lo, hi in zip(df[col], df[f"{col}_lo"], df[f"{col}_hi"])]
        out[f"false positives allowed @ {alpha:.1%}"] = [
            f"{allowed_false_positives(fit_size(int(n)), alpha):,} of {fit_size(int(n)):,}"
            for n in df["n_nonmembers"]]  # the half of the non-members that fixes the threshold
    return out.reset_index(drop=True)


def agreement_rows(attacks: dict[str, Attack], members: Outputs, nonmembers: dict[str, Outputs],
                   variant: str) -> pd.DataFrame:
    """Per non-member set: the fraction of (members + that set) on which 'threshold' and 'entropy' decide alike."""
    missing = [a for a in ("threshold", "entropy") if a not in attacks]
    if missing:
        raise ValueError(f"agreement_rows: attacks lack {missing}; add them to the profile's attacks.names")
    pair = {name: attacks[name] for name in ("threshold", "entropy")}
    on_members = decisions(pair, members)
    rows = []
    for name, out in nonmembers.items():
        d = pd.concat([on_members, decisions(pair, out)], ignore_index=True)
        rows.append({"variant": variant, "nonmember_set": name, "n_samples": len(d),
                     "agreement": float((d["threshold"] == d["entropy"]).mean())})
    return pd.DataFrame(rows, columns=["variant", "nonmember_set", "n_samples", "agreement"])


# ------------------------------------------------------------------------------ the route

@dataclass
class Evaluation:
    """A variant's attacks evaluated on every pool: the rows of attacks.csv, the fitted attacks and outputs."""

    variant: Variant
    rows: pd.DataFrame
    attacks: dict[str, Any]
    sizes: ShadowSizes
    members: Outputs
    nonmembers: dict[str, Outputs]
    model: dict[str, Any]


def per_sample(attacks: dict[str, Attack], members: Outputs, nonmembers: dict[str, Outputs]) -> dict[str, np.ndarray]:
    """Per image of the members and of every pool: max score, correctness (labelled sets), every attack's
    score and decision, keyed as `mia_nb.attacks.samples` describes."""
    out: dict[str, np.ndarray] = {}
    for name, o in {MEMBERS: members, **nonmembers}.items():
        out[conf_key(name)] = o.probs.max(axis=1).astype(np.float64)
        if (o.labels >= 0).all():
            out[correct_key(name)] = o.probs.argmax(axis=1) == o.labels
        for a_name, attack in attacks.items():
            out[score_key(a_name, name)] = np.asarray(attack.score(o), dtype=np.float64)
            out[member_key(a_name, name)] = np.asarray(attack.predict(o), dtype=bool)
    return out


def evaluate(study: Study, variant: Variant, pools: dict[str, PoolSpec], save: bool = True) -> Evaluation:
    """Fit every attack on the variant's balanced shadow, evaluate target members vs every pool, keep it in
    the store (a rerun is free), and with `save` upsert the rows into results/attacks.csv, the model row
    into results/variants.csv and write the per-image arrays to samples/<variant>.npz."""
    cfg = study.profile.attacks
    members = variant.outputs(study, "target", part_spec(study, "target_train"))
    nonmembers = {name: variant.outputs(study, "target", spec) for name, spec in pools.items()}
    key = {"variant": variant_key(variant), "pools": {n: s.config for n, s in pools.items()},
           "attacks": dataclasses.asdict(cfg), "seed": study.seed}

    def make() -> dict[str, Any]:
        sh_in = variant.outputs(study, "shadow", part_spec(study, "shadow_train"))
        sh_out = variant.outputs(study, "shadow", part_spec(study, "shadow_heldout"))
        attacks, sizes = fit_attacks(cfg, sh_in, sh_out, study.seed)
        rows = attack_table(attacks, members, nonmembers, variant.name, seed=study.seed)
        return {"rows": rows, "attacks": {name: attack_state(a) for name, a in attacks.items()},
                "sizes": dataclasses.asdict(sizes), "samples": per_sample(attacks, members, nonmembers)}
    record = study.store.get_or_make("evaluation", key, make)  # plain data: the attacks as their fitted state
    model = model_row(study, variant)
    if save:
        study.save_table(record["rows"], ATTACKS_TABLE)
        study.save_table(pd.DataFrame([model]), VARIANTS_TABLE)
        save_samples(study, pools, record["samples"], variant=variant.name, family=variant.family,
                     strength=variant.strength, leaky=variant.leaky)
    attacks = {name: restore_attack(state) for name, state in record["attacks"].items()}
    return Evaluation(variant, record["rows"], attacks, ShadowSizes(**record["sizes"]), members, nonmembers, model)


def save_samples(study: Study, pools: dict[str, PoolSpec], arrays: dict[str, np.ndarray], *, variant: str,
                 family: str, strength: float | None, leaky: bool, **extra: Any) -> Path:
    """samples/<variant>.npz of this seed: the per-image arrays, with the pools' bases and groups."""
    heldout = study.part_pool("target_heldout")
    base = {name: ("heldout" if spec.config.get("from") == heldout or name == "heldout" else name)
            for name, spec in pools.items()}
    samples = SampleFile(variant, family, strength, leaky, study.seed, tuple(pools), base,
                         {name: spec.group for name, spec in pools.items()}, arrays, extra)
    return write_samples(study.samples_dir, samples)


def model_row(study: Study, variant: Variant) -> dict[str, Any]:
    """Held-out accuracy, NLL, ECE (15 bins), overconfidence error and MMPS of the variant's target."""
    out = variant.outputs(study, "target", part_spec(study, "target_heldout"))
    train = variant.outputs(study, "target", part_spec(study, "target_train"))
    strength = np.nan if variant.strength is None else variant.strength
    return {"variant": variant.name, "family": variant.family, "strength": strength,
            "heldout_acc": accuracy(out.probs, out.labels),
            "train_acc": accuracy(train.probs, train.labels), "nll": nll(out.probs, out.labels),
            "ece": ece(out.probs, out.labels), "oe": overconfidence_error(out.probs, out.labels),
            "mmps_members": mmps(train.probs), "mmps_heldout": mmps(out.probs),
            "temperature_target": variant.temperature["target"], "temperature_shadow": variant.temperature["shadow"]}
