"""Model variants: a target + shadow pair and how their probabilities are read out.

A variant is the vanilla pair, a post-hoc change of it (temperature, last-layer Laplace) or a retrained
pair (label smoothing, weight decay, DP-SGD). The attacker mirrors the variant on its shadow. Every
output is cached: logits per (model, pool) and Laplace probabilities per (Laplace fit, pool).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from torch.utils.data import DataLoader, TensorDataset

from . import calibration
from .evaluate import evaluate_attacks, fit_attacks
from .metrics import accuracy, ece, mmps, nll, overconfidence_error
from .ood import PoolSpec, part_spec
from .scores import Outputs, log_softmax, softmax
from .store import config_key

if TYPE_CHECKING:
    from .study import Study, TrainedModel

ROLES = ("target", "shadow")


@dataclass
class Variant:
    """A target + shadow pair and the read-out of their probabilities."""

    name: str
    family: str  # vanilla | temperature | label_smoothing | llla | weight_decay | dp
    models: dict[str, TrainedModel]
    temperature: dict[str, float] = field(default_factory=lambda: {"target": 1.0, "shadow": 1.0})
    laplace: dict[str, Any] | None = None  # role -> fitted laplace-torch Laplace (or LaplaceResult)
    laplace_keys: dict[str, str] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    def probs(self, study: Study, role: str, spec: PoolSpec) -> np.ndarray:
        """Probabilities of the variant's `role` model on a pool (cached)."""
        tm = self.models[role]
        if self.laplace is None:
            logits = study.logits(tm, spec.config, lambda: spec.build()[0])
            return softmax(logits, self.temperature[role])
        llla = study.profile.calibration.llla
        cfg = {"laplace": self.laplace_keys[role], "pool": spec.config, "link": llla.link,
               "n_samples": llla.n_samples, "seed": study.seed}
        return study.store.get_or_make("llla_probs", cfg, lambda: calibration.llla_predict(
            self.laplace[role], spec.build()[0].to(study.device), link=llla.link, n_samples=llla.n_samples,
            seed=study.seed))

    def outputs(self, study: Study, role: str, spec: PoolSpec) -> Outputs:
        """Probabilities (and exact log-probabilities where logits exist) and labels on a pool."""
        labels = study.store.get_or_make("labels", spec.config, spec.labels)
        if self.laplace is None:
            logits = study.logits(self.models[role], spec.config, lambda: spec.build()[0])
            t = self.temperature[role]
            return Outputs(softmax(logits, t), labels, log_softmax(logits, t))
        return Outputs(self.probs(study, role, spec), labels)


# ------------------------------------------------------------------------------------ constructors

def vanilla(study: Study) -> Variant:
    """The profile's target and shadow."""
    return Variant("vanilla", "vanilla", {r: study.trained(r) for r in ROLES})


def with_temperature(study: Study, t: float, name: str | None = None) -> Variant:
    """The vanilla pair read out at a fixed softmax temperature (post-hoc; T = 10 is the paper's defense)."""
    base = vanilla(study)
    return Variant(name or f"temp_{t:g}", "temperature", base.models, {r: float(t) for r in ROLES})


def fitted_temperature(study: Study) -> Variant:
    """Temperature scaling fitted by NLL on the `calibration` split, for target and shadow each."""
    base = vanilla(study)
    cal = part_spec(study, "calibration")
    temps = {r: calibration.fit_temperature(study.logits(base.models[r], cal.config, lambda: cal.build()[0]),
                                            study.splits_labels("calibration")) for r in ROLES}
    return Variant("temp_fitted", "temperature", base.models, temps, info={"fitted_on": "calibration"})


def retrained(study: Study, name: str, family: str, dp: dict[str, float] | None = None,
              **train_changes: Any) -> Variant:
    """A target + shadow pair retrained with changed training settings (label smoothing, L2) or DP-SGD."""
    train = dataclasses.replace(study.profile.train, **train_changes)
    models = {r: study.trained(r, name, train, dp=dp) for r in ROLES}
    return Variant(name, family, models)


def label_smoothing(study: Study, eps: float) -> Variant:
    """Retrained with label smoothing ε."""
    return retrained(study, f"ls_{eps:g}", "label_smoothing", label_smoothing=eps)


def weight_decay(study: Study, wd: float) -> Variant:
    """Retrained with L2 regularisation (Adam weight decay)."""
    return retrained(study, f"l2_{wd:g}", "weight_decay", weight_decay=wd)


def dp_sgd(study: Study, epsilon: float) -> Variant:
    """Retrained with DP-SGD (Opacus) at budget (ε, δ = 1/n_train)."""
    d = study.profile.defenses
    n = len(study.splits["target_train"])
    train_changes = {"epochs": d.dp_epochs} if d.dp_epochs else {}
    v = retrained(study, f"dp_{epsilon:g}", "dp", dp={"epsilon": float(epsilon), "delta": 1.0 / n,
                                                      "max_grad_norm": d.dp_max_grad_norm}, **train_changes)
    v.info["dp_epsilon_spent"] = {r: v.models[r].metrics.get("dp_epsilon") for r in ROLES}
    return v


def llla(study: Study) -> Variant:
    """Last-layer Laplace (KFAC, laplace-torch) on the vanilla pair; prior by marglik or calibration grid."""
    base = vanilla(study)
    cfg = study.profile.calibration.llla
    results: dict[str, Any] = {}
    keys: dict[str, str] = {}
    meta: dict[str, dict[str, Any]] = {}
    for role in ROLES:
        tm = base.models[role]
        config = {"model": tm.key, **dataclasses.asdict(cfg), "seed": study.seed}
        keys[role] = config_key("laplace", config)
        model = tm.model.to(study.device)
        state = study.store.get("laplace", config)
        if state is not None:
            results[role] = calibration.load_llla(model, state["llla"])
            meta[role] = state["meta"]
            continue
        x, y = study.inputs(f"{role}_train")
        train_loader = DataLoader(TensorDataset(x, y), batch_size=256)
        calib = None
        if cfg.prior == "grid":
            xc, yc = study.inputs("calibration")
            calib = DataLoader(TensorDataset(xc, yc), batch_size=256)
        res = calibration.fit_llla(model, train_loader, hessian_structure=cfg.hessian_structure,
                                   prior=cfg.prior, calib_loader=calib, link=cfg.link,
                                   n_samples=cfg.n_samples, seed=study.seed,
                                   **({"grid": tuple(cfg.grid)} if cfg.prior == "grid" else {}))
        meta[role] = {"prior_precision": res.prior_precision, "prior_method": res.prior_method,
                      "backend": res.backend, "on_grid_edge": res.on_grid_edge, "grid": res.grid,
                      "grid_nll": res.grid_nll, "log_marglik": res.log_marglik}
        study.store.put("laplace", config, {"llla": calibration.llla_state(res), "meta": meta[role]})
        results[role] = res
    return Variant("llla", "llla", base.models, laplace=results, laplace_keys=keys, info={"laplace": meta})


# --------------------------------------------------------------------------------------- evaluation

def attack_rows(study: Study, variant: Variant, pools: dict[str, PoolSpec]) -> tuple[pd.DataFrame, dict]:
    """Fit every attack on the variant's balanced shadow, evaluate on target members vs each pool."""
    cfg = study.profile.attacks
    sh_in = variant.outputs(study, "shadow", part_spec(study, "shadow_train"))
    sh_out = variant.outputs(study, "shadow", part_spec(study, "shadow_heldout"))
    attacks, sizes = fit_attacks(cfg, sh_in, sh_out, study.seed)
    members = variant.outputs(study, "target", part_spec(study, "target_train"))
    nonmembers = {name: variant.outputs(study, "target", spec) for name, spec in pools.items()}
    rows = evaluate_attacks(attacks, members, nonmembers, variant.name, n_boot=cfg.n_boot, seed=study.seed)
    return rows, {"attacks": attacks, "sizes": sizes, "members": members, "nonmembers": nonmembers}


def variant_key(variant: Variant) -> dict[str, Any]:
    """What identifies a variant's outputs: its models, temperatures and Laplace fits."""
    return {"name": variant.name, "models": {r: m.key for r, m in variant.models.items()},
            "temperature": variant.temperature, "laplace": variant.laplace_keys}


def cached_attack_rows(study: Study, variant: Variant, pools: dict[str, PoolSpec]) -> pd.DataFrame:
    """`attack_rows` kept in the store: a rerun with the same variant, pools and attack settings is free."""
    cfg = {"variant": variant_key(variant), "pools": {n: s.config for n, s in pools.items()},
           "attacks": dataclasses.asdict(study.profile.attacks), "seed": study.seed}
    return study.store.get_or_make("attack_rows", cfg, lambda: attack_rows(study, variant, pools)[0])


def model_row(study: Study, variant: Variant) -> dict[str, Any]:
    """Held-out accuracy, NLL, ECE (15 bins), overconfidence error and MMPS of the variant's target."""
    out = variant.outputs(study, "target", part_spec(study, "target_heldout"))
    train = variant.outputs(study, "target", part_spec(study, "target_train"))
    return {"variant": variant.name, "family": variant.family, "heldout_acc": accuracy(out.probs, out.labels),
            "train_acc": accuracy(train.probs, train.labels), "nll": nll(out.probs, out.labels),
            "ece": ece(out.probs, out.labels), "oe": overconfidence_error(out.probs, out.labels),
            "mmps_members": mmps(train.probs), "mmps_heldout": mmps(out.probs),
            "temperature_target": variant.temperature["target"], "temperature_shadow": variant.temperature["shadow"]}


def save_variant_results(study: Study, rows: pd.DataFrame, model: dict[str, Any]) -> None:
    """Upsert attack rows into results/attacks.csv and the variant's row into results/variants.csv."""
    study.save_table(rows, "attacks", keys=["variant", "attack", "nonmember_set"])
    study.save_table(pd.DataFrame([model]), "variants", keys=["variant"])


# ------------------------------------------------------------- separate vs align (notebook 07)

SEPARATION_KIND = {"vanilla": "baseline", "label_smoothing": "calibration", "llla": "calibration",
                   "weight_decay": "defense", "temperature": "defense", "dp": "defense"}
SEPARATION_SAMPLES = ("members", "heldout", "ood")


def max_score_samples(study: Study, variant: Variant, pools: dict[str, PoolSpec], ood: str) -> dict[str, np.ndarray]:
    """Max score of the variant's target on its members, held-out non-members and the pool `ood` (cached)."""
    for name in ("heldout", ood):
        if name not in pools:
            raise ValueError(f"max_score_samples: no pool {name!r}; have {sorted(pools)}")
    specs = {"members": part_spec(study, "target_train"), "heldout": pools["heldout"], "ood": pools[ood]}
    return {k: variant.probs(study, "target", spec).max(axis=1) for k, spec in specs.items()}


def separation_table(samples: dict[str, dict[str, np.ndarray]], families: dict[str, str] | None = None,
                     ood: str = "ood", n_boot: int = 200, seed: int = 0) -> pd.DataFrame:
    """Per variant: mean max score of members / held-out / OOD and Wasserstein-1 member↔held-out, member↔OOD,
    each distance with a 95% bootstrap interval (`<column>_lo`, `<column>_hi`)."""
    from .metrics import wasserstein, wasserstein_interval
    families = families or {}
    rows = []
    for name, s in samples.items():
        missing = [k for k in SEPARATION_SAMPLES if k not in s]
        if missing:
            raise ValueError(f"separation_table: variant {name!r} lacks samples {missing}")
        fam = families.get(name, "")
        m, h, o = (np.asarray(s[k], dtype=np.float64) for k in SEPARATION_SAMPLES)
        rows.append({"variant": name, "family": fam, "kind": SEPARATION_KIND.get(fam, ""), "ood_pool": ood,
                     "n_members": len(m), "n_heldout": len(h), "n_ood": len(o),
                     "mmps_members": float(m.mean()), "mmps_heldout": float(h.mean()), "mmps_ood": float(o.mean()),
                     "w1_member_heldout": wasserstein(m, h), "w1_member_ood": wasserstein(m, o)})
        for col, other in (("w1_member_heldout", h), ("w1_member_ood", o)):
            rows[-1][f"{col}_lo"], rows[-1][f"{col}_hi"] = wasserstein_interval(m, other, n_boot, seed)
    return pd.DataFrame(rows)


def separation_verdict(table: pd.DataFrame, baseline: str = "vanilla") -> tuple[pd.DataFrame, list[str]]:
    """Change of both Wasserstein gaps against `baseline` per calibration / defense variant, and sentences.

    The paper's finding 4: calibration (label smoothing, LLLA) widens the member↔non-member gaps,
    defenses (L2, high temperature; here also DP-SGD) narrow them. A kind "holds" when most of its
    variants moved both gaps in its direction.
    """
    if baseline not in set(table["variant"]):
        raise ValueError(f"separation_verdict: no row for baseline {baseline!r}")
    t = table.set_index("variant")
    b = t.loc[baseline]
    ood = str(b["ood_pool"])
    rest = t[t["kind"].isin(["calibration", "defense"]) & (t.index != baseline)]
    d = pd.DataFrame({"kind": rest["kind"],
                      "d_w1_member_heldout": rest["w1_member_heldout"] - b["w1_member_heldout"],
                      "d_w1_member_ood": rest["w1_member_ood"] - b["w1_member_ood"]})
    d["expected"] = np.where(d["kind"] == "calibration", "wider", "narrower")
    for gap in ("heldout", "ood"):
        delta = d[f"d_w1_member_{gap}"]
        d[f"{gap}_gap"] = np.where(delta > 0, "wider", np.where(delta < 0, "narrower", "unchanged"))
    lines = [f"{baseline}: Wasserstein-1 member↔held-out {b['w1_member_heldout']:.3f}, "
             f"member↔{ood} {b['w1_member_ood']:.3f}."]
    holds: dict[str, list[bool]] = {}
    said = {"calibration": ("Calibration", "widened"), "defense": ("Defenses", "narrowed")}
    for kind in said:
        k = d[d["kind"] == kind]
        if k.empty:
            lines.append(f"No {kind} variant in the table.")
            continue
        parts, ok = [], []
        for gap, label in (("heldout", "held-out"), ("ood", ood)):
            good = k[k[f"{gap}_gap"] == k["expected"]]
            each = ", ".join(f"{v} {x:+.3f}" for v, x in k[f"d_w1_member_{gap}"].items())
            parts.append(f"the member↔{label} gap for {len(good)} of {len(k)} ({each})")
            ok.append(len(good) > len(k) / 2)
        holds[kind] = ok
        name, verb = said[kind]
        lines.append(f"{name} ({', '.join(k.index)}) {verb} " + " and ".join(parts) + ".")
    if len(holds) == 2:
        which = {(True, True): "both gaps", (True, False): "only the member↔held-out gap",
                 (False, True): f"only the member↔{ood} gap", (False, False): "neither gap"}
        n_ok = sum(sum(v) for v in holds.values())
        what = {4: "holds", 0: "does not hold"}.get(n_ok, "holds only in part")
        detail = " and ".join(f"{said[kind][0].lower()} {said[kind][1]} {which[tuple(v)]}" for kind, v in holds.items())
        lines.append(f"So in this run, for most of their variants, {detail}: "
                     f"the paper's 'calibration separates, defenses align' {what}.")
    return d, lines
