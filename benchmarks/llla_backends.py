"""Time last-layer KFAC Laplace per laplace-torch curvature backend on CPU (a script, not a test).

For a SimpleCNN-sized model (random weights) and random 28x28 inputs: fit on 2,500 inputs,
marglik prior optimisation, probit predictions on 5,000 inputs. Prints a table and the fastest
backend by fit time (prediction runs the same laplace-torch code, last-layer Jacobians from the
features, whatever the backend, so its spread is timing noise). `mia_nb.models.calibration.DEFAULT_BACKEND`
is set from it: the fastest exact-GGN backend, since EF is a different curvature, not just a
different implementation.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/llla_backends.py [--repeats 2]

With `--profile params/default.yaml` it times instead what notebook 06 runs for one seed: every LLLA arm
of the profile (grid prior on calibration + noise, marglik, the leaky arm) fitted on the stored vanilla
target AND shadow, and their log-probabilities on every set the attacks read (the target's members and
every pool of `ood.pool_specs`, the shadow's members and held-out images). Laplace fits and predictions
are recomputed on every pass; models, logits and penultimate features come from the store (features
are cached first and timed apart). Issue 12's goal: all arms within 60 s on 2 cores.

    .venv/bin/python benchmarks/llla_backends.py --profile params/default.yaml --outputs outputs [--seed 42]

`--tiny` times every backend on a few dozen inputs, once, in seconds: it checks that the script still runs
(tests/test_benchmarks.py), it measures nothing; a backend that fails then fails the run instead of being
reported. (The `--profile` mode is checked on a tiny profile the test trains.)
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from mia_nb.models.calibration import BACKENDS, fit_llla, llla_log_predict


class TinyCNN(nn.Module):
    """Salem's SimpleCNN for 1x28x28 inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(1568, 128), nn.ReLU(), nn.Linear(128, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def run_one(backend: str, model: nn.Module, loader: DataLoader, x_test: torch.Tensor) -> dict:
    """Seconds for fit+marglik and for probit predictions with one backend."""
    t0 = time.perf_counter()
    res = fit_llla(model, loader, backend=backend, prior="marglik", seed=0)
    t1 = time.perf_counter()
    probs = np.exp(llla_log_predict(res, x_test, link="probit", seed=0, batch_size=1000))
    t2 = time.perf_counter()
    return {"fit": t1 - t0, "predict": t2 - t1, "prior": res.prior_precision, "probs": probs}


class _Fresh:
    """A study store that forgets Laplace fits and Laplace predictions (every other kind as stored), so each
    timed pass fits and predicts from scratch while models, logits and features load."""

    FORGET = ("laplace", "llla_probs", "evaluation")

    def __init__(self, store) -> None:
        self.inner = store

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def has(self, kind, config):
        return kind not in self.FORGET and self.inner.has(kind, config)

    def get(self, kind, config):
        return None if kind in self.FORGET else self.inner.get(kind, config)

    def put(self, kind, config, payload):
        return None if kind in self.FORGET else self.inner.put(kind, config, payload)

    def get_or_make(self, kind, config, make):
        return make() if kind in self.FORGET else self.inner.get_or_make(kind, config, make)


def run_profile(args: argparse.Namespace) -> None:
    """Time notebook 06's LLLA arms on a profile's stored vanilla pair: fit + prior for target and shadow,
    then log-probabilities on every set the attacks read (target: members and every pool; shadow: its
    members and held-out images). Features are cached first and timed apart (they are shared with no
    other arm: the convolutional part runs once per model and pool)."""
    from mia_nb.data import nonmembers
    from mia_nb.models import variants
    from mia_nb.data.nonmembers import part_spec
    from mia_nb.study import open_study

    study = open_study(args.profile, args.outputs, args.seed)
    cfg = study.profile.calibration.llla
    vanilla = variants.vanilla(study)
    pools = {}
    for name, spec in nonmembers.pool_specs(study).items():
        try:
            spec.build()
            pools[name] = spec
        except FileNotFoundError:
            print(f"  (skipping pool {name}: run notebook 05 first to make its images)")
    sets = {"target": {"members": part_spec(study, "target_train"), **pools},
            "shadow": {"members": part_spec(study, "shadow_train"), "heldout": part_spec(study, "shadow_heldout")}}
    t0 = time.perf_counter()
    for role, specs in sets.items():
        for spec in [*specs.values(), part_spec(study, "calibration"), part_spec(study, f"{role}_heldout")]:
            variants.model_features(study, vanilla.models[role], spec)
    feats = time.perf_counter() - t0
    n = {role: sum(len(s.labels()) for s in specs.values()) for role, specs in sets.items()}
    print(f"profile {study.profile.name}, seed {study.seed}: arms {list(cfg.arms)}, link {cfg.link} "
          f"({cfg.n_samples} samples), grid {list(cfg.grid)}; torch threads {torch.get_num_threads()}")
    print(f"predictions on {n['target']:,} target + {n['shadow']:,} shadow images; features cached in {feats:.1f} s")
    study.store = _Fresh(study.store)
    rows = []
    for arm in cfg.arms:
        best = None
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            v = variants.llla(study, arm)
            t1 = time.perf_counter()
            for role, specs in sets.items():
                for spec in specs.values():
                    v.log_probs(study, role, spec)
            t2 = time.perf_counter()
            best = (t1 - t0, t2 - t1) if best is None or t2 - t0 < sum(best) else best
        rows.append((variants.LLLA_NAMES[arm], *best, v.laplace_meta["target"].prior_precision))
    print(f"\n{'variant':<14}{'fit+prior s':>12}{'predict s':>11}{'total s':>9}{'prior (target)':>16}   "
          f"(target + shadow, best of {args.repeats})")
    for name, fit, pred, prior in rows:
        print(f"{name:<14}{fit:>12.2f}{pred:>11.2f}{fit + pred:>9.2f}{prior:>16.4g}")
    total = sum(r[1] + r[2] for r in rows)
    print(f"all arms: {total:.1f} s (+ {feats:.1f} s of features, computed once per model and pool); goal: 60 s")


def main() -> None:
    """Run every backend, print a table, name the fastest."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=2, help="timed repeats per backend (best kept)")
    ap.add_argument("--profile", default=None, help="time notebook 06's LLLA on this profile's trained models")
    ap.add_argument("--outputs", default=None, help="outputs root holding the profile's models (with --profile)")
    ap.add_argument("--seed", type=int, default=None, help="the profile's seed to time (with --profile)")
    ap.add_argument("--tiny", action="store_true", help="a seconds-long run on tiny sizes (checks the script runs)")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    if args.profile:
        args.repeats = max(1, args.repeats)
        run_profile(args)
        return
    torch.manual_seed(0)
    model = TinyCNN().eval()
    g = torch.Generator().manual_seed(1)
    n_train, n_test = (50, 20) if args.tiny else (2500, 5000)
    if args.tiny:
        args.repeats = 1
    x_train = torch.randn(n_train, 1, 28, 28, generator=g)
    with torch.no_grad():  # labels the model itself likes, so the MAP is not absurd
        y_train = model(x_train).argmax(1)
    x_test = torch.randn(n_test, 1, 28, 28, generator=g)
    loader = DataLoader(TensorDataset(x_train, y_train), batch_size=250)

    rows, ref = [], None
    for name in BACKENDS:
        try:
            run_one(name, model, DataLoader(TensorDataset(x_train[:250], y_train[:250]), batch_size=250), x_test[:10])
            best = None
            for _ in range(args.repeats):
                r = run_one(name, model, loader, x_test)
                best = r if best is None or r["fit"] + r["predict"] < best["fit"] + best["predict"] else best
        except Exception as err:  # noqa: BLE001 - report and keep benchmarking the others
            if args.tiny:
                raise
            rows.append((name, None, None, None, None, f"{type(err).__name__}: {str(err)[:60]}"))
            continue
        if ref is None and name.endswith("ggn"):
            ref = best["probs"]
        diff = float(np.abs(best["probs"] - ref).max()) if ref is not None else float("nan")
        rows.append((name, best["fit"], best["predict"], best["prior"], diff, ""))

    print(f"{'backend':<16}{'fit+marglik s':>14}{'predict s':>11}{'total s':>9}{'prior prec':>12}{'max|dp| vs 1st GGN':>20}")
    for name, fit, pred, prior, diff, err in rows:
        if fit is None:
            print(f"{name:<16}  failed: {err}")
        else:
            print(f"{name:<16}{fit:>14.2f}{pred:>11.2f}{fit + pred:>9.2f}{prior:>12.4g}{diff:>20.2e}")
    ok = [r for r in rows if r[1] is not None]
    fastest = min(ok, key=lambda r: r[1])
    fastest_ggn = min((r for r in ok if r[0].endswith("ggn")), key=lambda r: r[1])
    print(f"fastest fit: {fastest[0]}; fastest exact-GGN fit (use as default): {fastest_ggn[0]}")


if __name__ == "__main__":
    main()
