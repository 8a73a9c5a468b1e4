"""Model variants: what a target + shadow pair is and how its probabilities are read out.

A variant is the vanilla pair, a post-hoc change of it (temperature, last-layer Laplace in three arms)
or a retrained pair (label smoothing, weight decay, DP-SGD; `Retrained` recipes). The attacker mirrors
the variant on its shadow. Every output is cached: logits per (model, pool) and Laplace probabilities
per (Laplace fit, pool). A variant's results come from `mia_nb.attacks.evaluation.evaluate`.

Forward passes happen where models are trained: a `ReadRequest` names the pools the notebooks read a model on
(its logits, and the penultimate features last-layer Laplace needs), and the runner's training phase
(`training_jobs`) runs them in the model's training job, in the worker, storing them under the keys
`model_logits` and `model_features` read. A model trained elsewhere (a notebook run by hand) gets them on first
read, as before.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from mia_nb.attacks.scores import Outputs, cached_logits, log_softmax, softmax
from mia_nb.data.nonmembers import PoolSpec, part_spec, pool_specs
from mia_nb.data.transforms import normalize, uniform_noise
from mia_nb.models import calibration, jobs, networks

if TYPE_CHECKING:
    from mia_nb.study import Study
    from mia_nb.models.jobs import TrainedModel

ROLES = ("target", "shadow")


@dataclass(frozen=True)
class LaplaceMeta:
    """How one model's last-layer Laplace was fitted: its arm and how the prior precision was chosen."""

    arm: str
    prior_precision: float
    prior_method: str  # grid | marglik
    tuned_on: str | None  # the split the grid arms tune the prior on
    link: str
    backend: str
    on_grid_edge: bool
    grid: list[float] | None
    grid_nll: list[float] | None
    log_marglik: float


@dataclass
class Variant:
    """A target + shadow pair and the read-out of their probabilities."""

    name: str
    family: str  # vanilla | temperature | label_smoothing | llla | weight_decay | dp
    models: dict[str, TrainedModel]  # role -> model; also `target` and `shadow`
    temperature: dict[str, float] = field(default_factory=lambda: {"target": 1.0, "shadow": 1.0})
    laplace: dict[str, Any] | None = None  # role -> fitted laplace-torch Laplace (or LaplaceResult)
    laplace_keys: dict[str, str] = field(default_factory=dict)
    strength: float | None = None  # the numeric strength of a defense (temperature, epsilon, ...)
    leaky: bool = False  # True: tuned on the very non-members it is evaluated on (excluded from verdicts)
    link: str | None = None  # Laplace variants: the predictive's link
    laplace_meta: dict[str, LaplaceMeta] = field(default_factory=dict)  # role -> how its Laplace was fitted

    @property
    def target(self) -> TrainedModel:
        """The target model."""
        return self.models["target"]

    @property
    def shadow(self) -> TrainedModel:
        """The attacker's shadow model."""
        return self.models["shadow"]

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
        link = self.link
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


def variant_key(variant: Variant) -> dict[str, Any]:
    """What identifies a variant's outputs: its models, temperatures and Laplace fits."""
    return {"name": variant.name, "models": {r: m.key for r, m in variant.models.items()},
            "temperature": variant.temperature, "laplace": variant.laplace_keys}


def model_logits(study: Study, tm: TrainedModel, spec: PoolSpec) -> np.ndarray:
    """Logits of one model on a pool: from the store, or one forward pass (then stored)."""
    return cached_logits(study.store, tm.key, spec.config,
                         lambda: networks.forward_logits(tm.model, spec.build()[0], device=study.device))


def model_features(study: Study, tm: TrainedModel, spec: PoolSpec) -> np.ndarray:
    """Penultimate features of one model on a pool (the input of its last layer), cached like logits.

    Last-layer Laplace only needs these: it is fitted and evaluated on them through `last_layer_head`,
    so the convolutional part runs once per (model, pool), not once per Laplace prediction.
    """
    def forward() -> np.ndarray:
        return networks.forward_features(tm.model, spec.build()[0], device=study.device).numpy()
    return study.store.get_or_make("features", {"model": tm.key, **spec.config}, forward)


# ------------------------------------------------------------------ forward passes in the training jobs

@dataclass
class ReadRequest(jobs.ModelRequest):
    """A model request with the pools the notebooks read the model on: its logits (`model_logits`) and its
    penultimate features (`model_features`, for last-layer Laplace). They change no model key."""

    logits_on: tuple[PoolSpec, ...] = ()
    features_on: tuple[PoolSpec, ...] = ()


def read_pools(study: Study) -> tuple[PoolSpec, ...]:
    """Every non-member pool of the profile, as `evaluate` and notebook 08 read the target on them."""
    return tuple(pool_specs(study).values())


def pair_reads(study: Study, role: str, vanilla: bool) -> dict[str, tuple[PoolSpec, ...]]:
    """What notebooks 04–08 read of a target or shadow model besides its train / held-out logits (`jobs.measure`):
    a target's logits on every pool (`evaluate`); the vanilla pair's logits on the calibration split (the fitted
    temperature, notebook 08's population z) and features wherever last-layer Laplace fits or predicts (`llla`:
    the role's own parts, the calibration split, the tuning noise; `evaluate`: the target on every pool)."""
    pools = read_pools(study) if role == "target" else ()
    if not vanilla:
        return {"logits_on": pools}
    cal = part_spec(study, "calibration")
    noise = (tuning_noise(study),) if study.profile.calibration.llla.ood_weight > 0 else ()
    own = tuple(part_spec(study, f"{role}_{p}") for p in ("train", "heldout"))
    return {"logits_on": (*pools, cal), "features_on": (*own, cal, *noise, *pools)}


@dataclass
class ReadingJob:
    """A model's training job and its reads: the worker trains the model, then runs its forward passes on the
    pools, given in model input (float32 numpy [N, C, H, W], one array per pool shared by the jobs of a seed;
    joblib hands a worker large arrays as read-only memory maps, not copies)."""

    job: jobs.TrainJob
    logits_on: list[np.ndarray]
    features_on: list[np.ndarray]

    @property
    def name(self) -> str:
        """The training job's name (the engine names a failed job by it)."""
        return self.job.name

    @property
    def config(self) -> dict[str, Any]:
        """The model's config (its store key)."""
        return self.job.config

    def __call__(self) -> dict[str, Any]:
        result = self.job()
        model = jobs.load_model(self.job.config, self.job.info, result["state_dict"], self.job.device)
        device = torch.device(self.job.device)
        # one pool's images copied into memory at a time
        result["pool_logits"] = [networks.forward_logits(model, torch.from_numpy(np.array(x)), device=device).numpy()
                                 for x in self.logits_on]
        result["pool_features"] = [networks.forward_features(model, torch.from_numpy(np.array(x)), device=device)
                                   .numpy() for x in self.features_on]
        return result


def _pool_id(spec: PoolSpec) -> str:
    """A pool's description as the store sees it: one text per pool, whatever its name."""
    return json.dumps(spec.config, sort_keys=True, default=str)


@dataclass
class Reads:
    """The pools one model is read on, each once (by `_pool_id`)."""

    logits_on: dict[str, PoolSpec] = field(default_factory=dict)
    features_on: dict[str, PoolSpec] = field(default_factory=dict)


def reads_by_model(study: Study, requests: list[jobs.ModelRequest]) -> dict[str, Reads]:
    """Model key -> what its requests read (`ReadRequest`; a plain request reads nothing)."""
    out: dict[str, Reads] = {}
    for req in requests:
        reads = out.setdefault(study.store.key("model", jobs.request_config(study, req)), Reads())
        reads.logits_on.update({_pool_id(s): s for s in getattr(req, "logits_on", ())})
        reads.features_on.update({_pool_id(s): s for s in getattr(req, "features_on", ())})
    return out


POOL_INPUT_BUDGET = 1 << 30  # bytes of pool images one seed's training jobs may hold (the runner keeps them)


class PoolInputs:
    """The model input of each pool the jobs of one study read, built once and shared by those jobs; its labels
    go to the store, where `Variant.outputs` reads them. A pool whose images do not exist yet (the GAN's fakes,
    which notebook 05 writes after the training phase), or that would take the seed's pools past `budget` bytes
    (large images: the 224-pixel profiles), is left to the notebooks, which read one pool at a time."""

    def __init__(self, study: Study, budget: int = POOL_INPUT_BUDGET):
        self.study = study
        self.budget = budget
        self.built: dict[str, np.ndarray | None] = {}  # `_pool_id` -> model input

    def of(self, spec: PoolSpec) -> np.ndarray | None:
        """A pool's model input (built on first use), None when its images do not exist yet or are over budget."""
        pid = _pool_id(spec)
        if pid not in self.built:
            try:
                x, y = spec.build()
            except FileNotFoundError:
                self.built[pid] = None
                return None
            self.study.store.get_or_make("labels", spec.config, lambda: y)
            held = sum(a.nbytes for a in self.built.values() if a is not None)
            size = x.numel() * 4  # float32
            self.built[pid] = (np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)
                               if held + size <= self.budget else None)
        return self.built[pid]


def training_jobs(study: Study, requests: list[jobs.ModelRequest]) -> list[tuple[Any, Callable[[Any], None]]]:
    """The training jobs of the requested models the store lacks (`jobs.missing`), each with the forward passes
    its requests read and the store lacks (`ReadingJob`), and the callback that stores those under the keys
    `model_logits` / `model_features` read, then the model (its record last, as `jobs.missing`'s callback does)."""
    reads, inputs = reads_by_model(study, requests), PoolInputs(study)
    out: list[tuple[Any, Callable[[Any], None]]] = []
    for job, store_model in jobs.missing(study, requests):
        key = study.store.key("model", job.config)
        wanted = reads.get(key, Reads())
        measured = {_pool_id(part_spec(study, part)) for part in job.measure}  # their logits come with the model
        logits = [s for pid, s in wanted.logits_on.items() if pid not in measured
                  and not study.store.path("logits", {"model": key, **s.config}).is_file() and inputs.of(s) is not None]
        features = [s for s in wanted.features_on.values()
                    if not study.store.path("features", {"model": key, **s.config}).is_file() and inputs.of(s) is not None]
        if not logits and not features:
            out.append((job, store_model))
            continue

        def store(result: dict[str, Any], key: str = key, logits: list[PoolSpec] = logits,
                  features: list[PoolSpec] = features, store_model: Callable[[Any], None] = store_model) -> None:
            for spec, array in zip(logits, result["pool_logits"]):
                study.store.put("logits", {"model": key, **spec.config}, array.astype(np.float32))
            for spec, array in zip(features, result["pool_features"]):
                study.store.put("features", {"model": key, **spec.config}, array)
            store_model(result)
        out.append((ReadingJob(job, [inputs.of(s) for s in logits], [inputs.of(s) for s in features]), store))
    return out


# ------------------------------------------------------------------------------------ constructors

def vanilla(study: Study) -> Variant:
    """The profile's target and shadow."""
    return Variant("vanilla", "vanilla", dict(zip(ROLES, jobs.ensure(study, pair_requests(study, "vanilla")))))


def with_temperature(study: Study, t: float, name: str | None = None) -> Variant:
    """The vanilla pair read out at a fixed softmax temperature (post-hoc; T = 10 is the paper's defense)."""
    base = vanilla(study)
    return Variant(name or f"temp_{t:g}", "temperature", base.models, {r: float(t) for r in ROLES},
                   strength=float(t))


def fitted_temperature(study: Study) -> Variant:
    """Temperature scaling fitted by NLL on the `calibration` split, for target and shadow each."""
    base = vanilla(study)
    cal = part_spec(study, "calibration")
    temps = {r: calibration.fit_temperature(model_logits(study, base.models[r], cal), study.labels("calibration"))
             for r in ROLES}
    return Variant("temp_fitted", "temperature", base.models, temps)


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


def pair_requests(study: Study, name: str, recipe: Retrained | None = None) -> list[jobs.ModelRequest]:
    """The target and shadow model requests of a variant (vanilla when `recipe` is None), with what the notebooks
    read of each (`pair_reads`)."""
    train = dataclasses.replace(study.profile.train, **recipe.train_changes) if recipe else None
    return [ReadRequest(r, name, train, recipe.dp if recipe else None, **pair_reads(study, r, recipe is None))
            for r in ROLES]


def retrained(study: Study, recipes: list[Retrained]) -> dict[str, Variant]:
    """Target + shadow pairs of several retrained variants, missing models trained together by the engine."""
    requests = [req for rc in recipes for req in pair_requests(study, rc.name, rc)]
    models = jobs.ensure(study, requests)
    out = {}
    for i, rc in enumerate(recipes):
        pair = dict(zip(ROLES, models[2 * i:2 * i + 2]))
        out[rc.name] = Variant(rc.name, rc.family, pair, strength=rc.strength)
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


def all_model_requests(study: Study) -> list[jobs.ModelRequest]:
    """Every model one seed of the profile trains: the vanilla pair and every retrained pair."""
    return pair_requests(study, "vanilla") + [r for rc in profile_recipes(study) for r in pair_requests(study, rc.name, rc)]


LLLA_NAMES = {"paper": "llla", "marglik": "llla_marglik", "leaky": "llla_leaky"}
LLLA_TUNED_ON = {"paper": "calibration", "leaky": "{role}_heldout"}  # grid arms: the split the prior is tuned on


def tuning_noise(study: Study) -> PoolSpec:
    """Uniform-noise images drawn only to tune the LLLA prior (labels -1), from a seed no pool uses."""
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
    meta: dict[str, LaplaceMeta] = {}
    for role in ROLES:
        tm = base.models[role]
        tuned_on = LLLA_TUNED_ON.get(arm, "").format(role=role) or None
        config = {"model": tm.key, "arm": arm, "hessian_structure": cfg.hessian_structure, "prior": prior,
                  "link": link, "n_samples": cfg.n_samples, "grid": list(cfg.grid), "tuned_on": tuned_on,
                  "noise": noise.config if noise else None, "ood_weight": cfg.ood_weight, "seed": study.seed}
        keys[role] = study.store.key("laplace", config)
        head = networks.last_layer_head(tm.model).to(study.device)
        state = study.store.get("laplace", config)
        if state is not None:
            results[role] = calibration.load_llla(head, state["llla"])
            meta[role] = LaplaceMeta(**state["meta"])  # stored as a plain dict
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
        meta[role] = LaplaceMeta(arm, res.prior_precision, res.prior_method, tuned_on, link, res.backend,
                                 res.on_grid_edge, res.grid, res.grid_nll, res.log_marglik)
        state = {"llla": calibration.llla_state(res), "meta": dataclasses.asdict(meta[role])}  # meta: a plain dict
        study.store.put("laplace", config, state)
        results[role] = res
    return Variant(LLLA_NAMES[arm], "llla", base.models, laplace=results, laplace_keys=keys, leaky=arm == "leaky",
                   link=link, laplace_meta=meta)
