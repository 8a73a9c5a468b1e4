"""Model variants: a target + shadow pair and how their probabilities are read out.

A variant is the vanilla pair, a post-hoc change of it (temperature, last-layer Laplace) or a retrained
pair (label smoothing, weight decay, DP-SGD). The attacker mirrors the variant on its shadow. Every
output is cached: logits per (model, pool) and Laplace probabilities per (Laplace fit, pool).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, TensorDataset

from . import calibration, trained
from .evaluate import evaluate_attacks, fit_attacks
from .models import last_layer_head
from .metrics import accuracy, ece, mmps, nll, overconfidence_error
from .ood import PoolSpec, part_spec
from .scores import Outputs, cached_logits, log_softmax, softmax
from .store import atomic_write

if TYPE_CHECKING:
    from .study import Study
    from .trained import TrainedModel

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
            return softmax(model_logits(study, tm, spec), self.temperature[role])
        return np.exp(self.log_probs(study, role, spec))

    def log_probs(self, study: Study, role: str, spec: PoolSpec) -> np.ndarray:
        """float64 log-probabilities of the variant's `role` model on a pool (cached)."""
        tm = self.models[role]
        if self.laplace is None:
            return log_softmax(model_logits(study, tm, spec), self.temperature[role])
        n_samples = study.profile.calibration.llla.n_samples
        link = self.info["link"]
        cfg = {"laplace": self.laplace_keys[role], "pool": spec.config, "link": link, "n_samples": n_samples,
               "seed": study.seed}
        return study.store.get_or_make("llla_probs", cfg, lambda: calibration.llla_log_predict(
            self.laplace[role], torch.as_tensor(model_features(study, tm, spec)), link=link,
            n_samples=n_samples, seed=study.seed))

    def outputs(self, study: Study, role: str, spec: PoolSpec) -> Outputs:
        """Probabilities (and exact log-probabilities where logits exist) and labels on a pool."""
        labels = study.store.get_or_make("labels", spec.config, spec.labels)
        if self.laplace is None:
            logits = model_logits(study, self.models[role], spec)
            t = self.temperature[role]
            return Outputs(softmax(logits, t), labels, log_softmax(logits, t))
        logp = self.log_probs(study, role, spec)
        return Outputs(np.exp(logp), labels, logp)


def model_logits(study: Study, tm: TrainedModel, spec: PoolSpec) -> np.ndarray:
    """Logits of one model on a pool: from the store, or one forward pass (then stored)."""
    from .models import forward_logits
    return cached_logits(study.store, tm.key, spec.config,
                         lambda: forward_logits(tm.model, spec.build()[0], device=study.device))


def model_features(study: Study, tm: TrainedModel, spec: PoolSpec) -> np.ndarray:
    """Penultimate features of one model on a pool (the input of its last layer), cached like logits.

    Last-layer Laplace only needs these: it is fitted and evaluated on them through `last_layer_head`,
    so the convolutional part runs once per (model, pool), not once per Laplace prediction.
    """
    from .models import forward_features
    return study.store.get_or_make("features", {"model": tm.key, **spec.config},
                                   lambda: forward_features(tm.model, spec.build()[0], device=study.device).numpy())


# ------------------------------------------------------------------------------------ constructors

def vanilla(study: Study) -> Variant:
    """The profile's target and shadow."""
    return Variant("vanilla", "vanilla", dict(zip(ROLES, trained.ensure(study, pair_requests(study, "vanilla")))))


def with_temperature(study: Study, t: float, name: str | None = None) -> Variant:
    """The vanilla pair read out at a fixed softmax temperature (post-hoc; T = 10 is the paper's defense)."""
    base = vanilla(study)
    return Variant(name or f"temp_{t:g}", "temperature", base.models, {r: float(t) for r in ROLES},
                   info={"strength": float(t)})


def fitted_temperature(study: Study) -> Variant:
    """Temperature scaling fitted by NLL on the `calibration` split, for target and shadow each."""
    base = vanilla(study)
    cal = part_spec(study, "calibration")
    temps = {r: calibration.fit_temperature(model_logits(study, base.models[r], cal), study.labels("calibration"))
             for r in ROLES}
    return Variant("temp_fitted", "temperature", base.models, temps, info={"fitted_on": "calibration"})


@dataclass(frozen=True)
class Retrained:
    """A retrained variant's recipe: its name, family, numeric strength and changed training settings."""

    name: str
    family: str
    strength: float
    train_changes: dict[str, Any] = field(default_factory=dict)
    dp: dict[str, float] | None = None


def label_smoothing_recipe(eps: float) -> Retrained:
    """Retrained with label smoothing ε."""
    return Retrained(f"ls_{eps:g}", "label_smoothing", float(eps), {"label_smoothing": float(eps)})


def weight_decay_recipe(wd: float) -> Retrained:
    """Retrained with L2 regularisation (Adam weight decay)."""
    return Retrained(f"l2_{wd:g}", "weight_decay", float(wd), {"weight_decay": float(wd)})


def dp_recipe(study: Study, epsilon: float | None) -> Retrained:
    """Retrained with DP-SGD (Opacus) at budget (ε, δ = defenses.dp_delta); ε None: the clip-only control
    (same epochs, batch size, Poisson sampling and clipping, no noise), named dp_clip."""
    d = study.profile.defenses
    changes = {"epochs": d.dp_epochs} if d.dp_epochs else {}
    dp = {"delta": d.dp_delta, "max_grad_norm": d.dp_max_grad_norm}
    if d.dp_secure_mode:
        dp["secure_mode"] = True
    if epsilon is None:
        return Retrained("dp_clip", "dp_clip", 0.0, changes, {**dp, "epsilon": None})
    return Retrained(f"dp_{epsilon:g}", "dp", float(epsilon), changes, {**dp, "epsilon": float(epsilon)})


def pair_requests(study: Study, name: str, recipe: Retrained | None = None) -> list[trained.ModelRequest]:
    """The target and shadow model requests of a variant (vanilla when `recipe` is None)."""
    train = dataclasses.replace(study.profile.train, **recipe.train_changes) if recipe else None
    return [trained.ModelRequest(r, name, train, recipe.dp if recipe else None) for r in ROLES]


def retrained(study: Study, recipes: list[Retrained]) -> dict[str, Variant]:
    """Target + shadow pairs of several retrained variants, missing models trained together by the engine."""
    requests = [req for rc in recipes for req in pair_requests(study, rc.name, rc)]
    models = trained.ensure(study, requests)
    out = {}
    for i, rc in enumerate(recipes):
        pair = dict(zip(ROLES, models[2 * i:2 * i + 2]))
        v = Variant(rc.name, rc.family, pair, info={"strength": rc.strength})
        if rc.dp:
            v.info["dp_epsilon_spent"] = {r: pair[r].metrics.get("dp_epsilon") for r in ROLES}
            v.info["dp_noise_multiplier"] = {r: pair[r].metrics.get("dp_noise_multiplier") for r in ROLES}
        out[rc.name] = v
    return out


def label_smoothing(study: Study, eps: float) -> Variant:
    """Retrained with label smoothing ε."""
    return retrained(study, [label_smoothing_recipe(eps)])[f"ls_{eps:g}"]


def profile_recipes(study: Study) -> list[Retrained]:
    """Every retrained variant the profile asks for (notebooks 06 and 07), in notebook order."""
    cal, d = study.profile.calibration, study.profile.defenses
    dp = [dp_recipe(study, e) for e in d.dp_epsilons]
    return ([label_smoothing_recipe(e) for e in cal.label_smoothing] + [weight_decay_recipe(w) for w in d.weight_decay]
            + dp + ([dp_recipe(study, None)] if dp else []))


def all_model_requests(study: Study) -> list[trained.ModelRequest]:
    """Every model one seed of the profile trains: the vanilla pair and every retrained pair."""
    return pair_requests(study, "vanilla") + [r for rc in profile_recipes(study) for r in pair_requests(study, rc.name, rc)]


LLLA_NAMES = {"paper": "llla", "marglik": "llla_marglik", "leaky": "llla_leaky"}
LLLA_TUNED_ON = {"paper": "calibration", "leaky": "{role}_heldout"}  # grid arms: the split the prior is tuned on


def tuning_noise(study: Study) -> PoolSpec:
    """Uniform-noise images drawn only to tune the LLLA prior (labels -1), from a seed no pool uses."""
    from .pools import normalize, uniform_noise
    cfg = study.profile.calibration.llla
    seed = int(np.random.SeedSequence([study.seed, 0x11A]).generate_state(1)[0])
    info = study.info

    def build() -> tuple[torch.Tensor, np.ndarray]:
        raw = uniform_noise(cfg.n_noise, info.channels, info.size, seed)
        return normalize(raw, info.mean, info.std), np.full(cfg.n_noise, -1, np.int64)
    return PoolSpec("llla_tuning_noise", "tuning only", {"pool": "llla_tuning_noise", "n": cfg.n_noise, "seed": seed,
                                                         "size": info.size}, build)


def assert_disjoint_from_pools(tuning: PoolSpec, pools: dict[str, PoolSpec]) -> None:
    """Raise if the tuning noise shares a seed or an image with an evaluated pool."""
    for name, spec in pools.items():
        if spec.config == tuning.config or (spec.config.get("seed") == tuning.config["seed"] and name == "uniform"):
            raise ValueError(f"LLLA tuning noise overlaps the evaluated pool {name!r}")
    if "uniform" in pools:
        x, _ = tuning.build()
        u, _ = pools["uniform"].build()
        same = (x.flatten(1)[:, None, :64] == u.flatten(1)[None, :, :64]).all(-1).any()
        if bool(same):
            raise ValueError("LLLA tuning noise repeats an image of the evaluated 'uniform' pool")


def llla(study: Study, arm: str = "paper") -> Variant:
    """Last-layer Laplace (laplace-torch, on cached penultimate features) on the vanilla pair.

    arm "paper": prior precision on a grid by NLL on the calibration split + ood_weight x the noise
    NLL (the paper's objective, without its leak); "marglik": prior by marginal likelihood, probit;
    "leaky": the paper's exact recipe, the prior tuned on the very non-members the attack is then
    evaluated on (held-out), marked leaky and excluded from verdicts.
    """
    if arm not in LLLA_NAMES:
        raise ValueError(f"llla: unknown arm {arm!r}; use one of {list(LLLA_NAMES)}")
    base = vanilla(study)
    cfg = study.profile.calibration.llla
    prior = "marglik" if arm == "marglik" else "grid"
    link = "probit" if arm == "marglik" else cfg.link
    noise = tuning_noise(study) if prior == "grid" and cfg.ood_weight > 0 else None
    results: dict[str, Any] = {}
    keys: dict[str, str] = {}
    meta: dict[str, dict[str, Any]] = {}
    for role in ROLES:
        tm = base.models[role]
        tuned_on = LLLA_TUNED_ON.get(arm, "").format(role=role) or None
        config = {"model": tm.key, "arm": arm, "hessian_structure": cfg.hessian_structure, "prior": prior,
                  "link": link, "n_samples": cfg.n_samples, "grid": list(cfg.grid), "tuned_on": tuned_on,
                  "noise": noise.config if noise else None, "ood_weight": cfg.ood_weight, "seed": study.seed}
        keys[role] = study.store.path("laplace", config).stem
        head = last_layer_head(tm.model).to(study.device)
        state = study.store.get("laplace", config)
        if state is not None:
            results[role] = calibration.load_llla(head, state["llla"])
            meta[role] = state["meta"]
            continue

        def loader(spec: PoolSpec, tm: TrainedModel = tm) -> DataLoader:
            feats = torch.as_tensor(model_features(study, tm, spec))
            labels = torch.as_tensor(study.store.get_or_make("labels", spec.config, spec.labels))
            return DataLoader(TensorDataset(feats, labels), batch_size=512)
        kw: dict[str, Any] = {}
        if prior == "grid":
            kw = {"grid": tuple(cfg.grid), "calib_loader": loader(part_spec(study, tuned_on)),
                  "ood_loader": loader(noise) if noise else None, "ood_weight": cfg.ood_weight}
        res = calibration.fit_llla(head, loader(part_spec(study, f"{role}_train")), hessian_structure=cfg.hessian_structure,
                                   prior=prior, link=link, n_samples=cfg.n_samples, seed=study.seed, **kw)
        meta[role] = {"arm": arm, "prior_precision": res.prior_precision, "prior_method": res.prior_method,
                      "tuned_on": tuned_on, "link": link, "backend": res.backend, "on_grid_edge": res.on_grid_edge,
                      "grid": res.grid, "grid_nll": res.grid_nll, "log_marglik": res.log_marglik}
        study.store.put("laplace", config, {"llla": calibration.llla_state(res), "meta": meta[role]})
        results[role] = res
    return Variant(LLLA_NAMES[arm], "llla", base.models, laplace=results, laplace_keys=keys,
                   info={"laplace": meta, "link": link, "leaky": arm == "leaky", "arm": arm})


# --------------------------------------------------------------------------------------- evaluation

SAMPLES_DIR = "samples"  # outputs/<profile>[/seed_<s>]/samples/<variant>.npz: per-image arrays for paired statistics


@dataclass
class Evaluation:
    """A variant's attacks evaluated on every pool: the rows of attacks.csv, the fitted attacks and outputs."""

    variant: Variant
    rows: pd.DataFrame
    attacks: dict[str, Any]
    sizes: dict[str, int]
    members: Outputs
    nonmembers: dict[str, Outputs]
    model: dict[str, Any]


def variant_key(variant: Variant) -> dict[str, Any]:
    """What identifies a variant's outputs: its models, temperatures and Laplace fits."""
    return {"name": variant.name, "models": {r: m.key for r, m in variant.models.items()},
            "temperature": variant.temperature, "laplace": variant.laplace_keys}


def per_sample(attacks: dict[str, Any], members: Outputs, nonmembers: dict[str, Outputs]) -> dict[str, np.ndarray]:
    """Per image: every attack's score and decision, the max score and (labelled sets) correctness.

    Keys `<attack>/score/<set>`, `<attack>/member/<set>`, `conf/<set>`, `correct/<set>`; set = `members`
    or a pool name. Image i of a set is the same image for every variant of a seed: that is what makes
    variant − vanilla differences paired.
    """
    out: dict[str, np.ndarray] = {}
    for name, o in {"members": members, **nonmembers}.items():
        out[f"conf/{name}"] = o.probs.max(axis=1).astype(np.float64)
        if (o.labels >= 0).all():
            out[f"correct/{name}"] = o.probs.argmax(axis=1) == o.labels
        for a_name, attack in attacks.items():
            out[f"{a_name}/score/{name}"] = np.asarray(attack.score(o), dtype=np.float64)
            out[f"{a_name}/member/{name}"] = np.asarray(attack.predict(o), dtype=bool)
    return out


def evaluate(study: Study, variant: Variant, pools: dict[str, PoolSpec], save: bool = True) -> Evaluation:
    """The one route from a variant to its results: fit every attack on the variant's balanced shadow,
    evaluate target members vs every pool, keep it in the store (a rerun is free), and with `save`
    upsert the rows into results/attacks.csv, the model row into results/variants.csv and the
    per-image arrays into samples/<variant>.npz."""
    cfg = study.profile.attacks
    members = variant.outputs(study, "target", part_spec(study, "target_train"))
    nonmembers = {name: variant.outputs(study, "target", spec) for name, spec in pools.items()}
    key = {"variant": variant_key(variant), "pools": {n: s.config for n, s in pools.items()},
           "attacks": dataclasses.asdict(cfg), "seed": study.seed}

    def make() -> dict[str, Any]:
        sh_in = variant.outputs(study, "shadow", part_spec(study, "shadow_train"))
        sh_out = variant.outputs(study, "shadow", part_spec(study, "shadow_heldout"))
        attacks, sizes = fit_attacks(cfg, sh_in, sh_out, study.seed)
        rows = evaluate_attacks(attacks, members, nonmembers, variant.name, seed=study.seed)
        return {"rows": rows, "attacks": attacks, "sizes": sizes,
                "samples": per_sample(attacks, members, nonmembers)}
    record = study.store.get_or_make("evaluation", key, make)
    model = model_row(study, variant)
    if save:
        study.save_table(record["rows"], "attacks", keys=["variant", "attack", "nonmember_set"])
        study.save_table(pd.DataFrame([model]), "variants", keys=["variant"])
        save_samples(study, variant, pools, record["samples"])
    return Evaluation(variant, record["rows"], record["attacks"], record["sizes"], members, nonmembers, model)


def save_samples(study: Study, variant: Variant, pools: dict[str, PoolSpec], samples: dict[str, np.ndarray]) -> Path:
    """Write samples/<variant>.npz atomically, with what identifies its sets (pool bases) as JSON metadata."""
    return write_samples(study, pools, samples, variant=variant.name, family=variant.family,
                         strength=variant.info.get("strength"), leaky=bool(variant.info.get("leaky", False)))


def write_samples(study: Study, pools: dict[str, PoolSpec], samples: dict[str, np.ndarray], **meta: Any) -> Path:
    """samples/<meta['variant']>.npz: the per-image arrays and their metadata (seed, pools, pool bases, groups),
    the one format `claims.load_seed` reads."""
    import json
    heldout = study.part_pool("target_heldout")
    meta = {**meta, "seed": study.seed, "pools": list(pools),
            "base": {name: ("heldout" if spec.config.get("from") == heldout or name == "heldout" else name)
                     for name, spec in pools.items()},
            "groups": {name: spec.group for name, spec in pools.items()}}

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, meta=np.array(json.dumps(meta)), **samples)
    return atomic_write(study.folder(SAMPLES_DIR) / f"{meta['variant']}.npz", write)


def model_row(study: Study, variant: Variant) -> dict[str, Any]:
    """Held-out accuracy, NLL, ECE (15 bins), overconfidence error and MMPS of the variant's target."""
    out = variant.outputs(study, "target", part_spec(study, "target_heldout"))
    train = variant.outputs(study, "target", part_spec(study, "target_train"))
    return {"variant": variant.name, "family": variant.family, "strength": variant.info.get("strength", np.nan),
            "heldout_acc": accuracy(out.probs, out.labels),
            "train_acc": accuracy(train.probs, train.labels), "nll": nll(out.probs, out.labels),
            "ece": ece(out.probs, out.labels), "oe": overconfidence_error(out.probs, out.labels),
            "mmps_members": mmps(train.probs), "mmps_heldout": mmps(out.probs),
            "temperature_target": variant.temperature["target"], "temperature_shadow": variant.temperature["shadow"]}


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
