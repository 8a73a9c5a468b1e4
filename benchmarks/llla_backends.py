"""Time last-layer KFAC Laplace per laplace-torch curvature backend on CPU (a script, not a test).

For a SimpleCNN-sized model (random weights) and random 28x28 inputs: fit on 2,500 inputs,
marglik prior optimisation, probit predictions on 5,000 inputs. Prints a table and the fastest
backend by fit time (prediction runs the same laplace-torch code, last-layer Jacobians from the
features, whatever the backend, so its spread is timing noise). `mia_nb.calibration.DEFAULT_BACKEND`
is set from it: the fastest exact-GGN backend, since EF is a different curvature, not just a
different implementation.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/llla_backends.py [--repeats 2]

With `--profile params/default.yaml` it times instead what notebook 06 runs, on the profile's real sizes:
for the trained SimpleCNN target AND shadow of that profile (loaded from `--outputs`, trained there if
missing), the fit on each model's own training images, the prior optimisation the profile asks for
(marglik, or the grid on the `calibration` split), and predictions with the profile's link on every
input that `variants.attack_rows` scores: the shadow's members and held-out images, the target's members
and every non-member pool of `ood.pool_specs` (the GAN pool only if notebook 05 made its images).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/llla_backends.py --profile params/default.yaml \
        --outputs outputs [--backends asdl_ggn backpack_ggn curvlinops_ggn]
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from mia_nb.calibration import BACKENDS, DEFAULT_BACKEND, fit_llla, llla_predict


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
    probs = llla_predict(res, x_test, link="probit", seed=0, batch_size=1000)
    t2 = time.perf_counter()
    return {"fit": t1 - t0, "predict": t2 - t1, "prior": res.prior_precision, "probs": probs}


def profile_inputs(study, role: str) -> tuple[DataLoader, DataLoader | None, dict[str, torch.Tensor]]:
    """Training loader, calibration loader (grid prior only) and the inputs notebook 06 predicts on, for a role."""
    from mia_nb import ood

    x, y = study.inputs(f"{role}_train")
    train = DataLoader(TensorDataset(x, y), batch_size=256)
    calib = None
    if study.profile.calibration.llla.prior == "grid":
        calib = DataLoader(TensorDataset(*study.inputs("calibration")), batch_size=256)
    if role == "shadow":
        return train, calib, {"shadow_train": x, "shadow_heldout": study.inputs("shadow_heldout")[0]}
    preds = {"target_train": x}
    for name, spec in ood.pool_specs(study).items():
        try:
            preds[name] = spec.build()[0]
        except FileNotFoundError:
            print(f"  (skipping pool {name}: run notebook 05 first to make its images)")
    return train, calib, preds


def run_profile(args: argparse.Namespace) -> None:
    """Time fit + prior + predictions of the LLLA for target and shadow of a profile, per backend."""
    from mia_nb.study import open_study

    study = open_study(args.profile, args.outputs)
    cfg = study.profile.calibration.llla
    data = {}
    for role in ("target", "shadow"):
        tm = study.trained(role)
        data[role] = (tm.model.cpu().eval(), *profile_inputs(study, role))
        n_pred = sum(len(v) for v in data[role][3].values())
        print(f"{role}: {tm.config['arch']} ({'loaded' if tm.loaded else 'trained now'}), fit on "
              f"{len(data[role][1].dataset):,} images, predictions on {len(data[role][3])} sets = {n_pred:,} images")
    print(f"LLLA: {cfg.hessian_structure}, prior by {cfg.prior}, link {cfg.link}; torch threads {torch.get_num_threads()}")
    grid = {"grid": tuple(cfg.grid)} if cfg.prior == "grid" else {}
    rows, ref = [], {}
    for name in args.backends:
        t = {"fit": 0.0, "predict": 0.0}
        priors, diff = {}, 0.0
        try:
            warm = data["target"]  # untimed warm-up: imports, first-call overheads
            small = DataLoader(torch.utils.data.Subset(warm[1].dataset, range(256)), batch_size=256)
            llla_predict(fit_llla(warm[0], small, backend=name, seed=0), warm[3]["target_train"][:10], seed=0)
            for role, (model, train, calib, preds) in data.items():
                best = None
                for _ in range(args.repeats):
                    t0 = time.perf_counter()
                    res = fit_llla(model, train, hessian_structure=cfg.hessian_structure, backend=name,
                                   prior=cfg.prior, calib_loader=calib, link=cfg.link, n_samples=cfg.n_samples,
                                   seed=study.seed, **grid)
                    t1 = time.perf_counter()
                    probs = {k: llla_predict(res, x, link=cfg.link, n_samples=cfg.n_samples, seed=study.seed)
                             for k, x in preds.items()}
                    t2 = time.perf_counter()
                    if best is None or (t1 - t0) + (t2 - t1) < best[0] + best[1]:
                        best = (t1 - t0, t2 - t1)
                t["fit"] += best[0]
                t["predict"] += best[1]
                priors[role] = res.prior_precision
                if role not in ref:
                    ref[role] = probs
                diff = max(diff, max(float(np.abs(probs[k] - ref[role][k]).max()) for k in probs))
        except Exception as err:  # noqa: BLE001 - report and keep benchmarking the others
            rows.append((name, None, None, None, f"{type(err).__name__}: {str(err)[:80]}"))
            continue
        rows.append((name, t["fit"], t["predict"], priors, diff))

    print(f"\n{'backend':<16}{'fit+prior s':>12}{'predict s':>11}{'total s':>9}{'prior target':>14}"
          f"{'prior shadow':>14}{'max|dp| vs 1st':>16}   (target + shadow, best of {args.repeats})")
    for name, fit, pred, priors, extra in rows:
        if fit is None:
            print(f"{name:<16}  failed: {extra}")
        else:
            print(f"{name:<16}{fit:>12.2f}{pred:>11.2f}{fit + pred:>9.2f}{priors['target']:>14.4g}"
                  f"{priors['shadow']:>14.4g}{extra:>16.2e}")
    ok = [r for r in rows if r[1] is not None]
    if ok:
        fastest = min(ok, key=lambda r: r[1])
        print(f"fastest fit + prior: {fastest[0]} (predictions run the same laplace-torch code, the base class's "
              f"last_layer_jacobians, whatever the backend: their spread is timing noise); "
              f"mia_nb.calibration.DEFAULT_BACKEND = {DEFAULT_BACKEND}")


def main() -> None:
    """Run every backend, print a table, name the fastest."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=2, help="timed repeats per backend (best kept)")
    ap.add_argument("--profile", default=None, help="time notebook 06's LLLA on this profile's trained models")
    ap.add_argument("--outputs", default=None, help="outputs root holding the profile's models (with --profile)")
    ap.add_argument("--backends", nargs="+", default=["asdl_ggn", "backpack_ggn", "curvlinops_ggn"],
                    choices=BACKENDS, help="backends to time (with --profile)")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    if args.profile:
        args.repeats = max(1, args.repeats)
        run_profile(args)
        return
    torch.manual_seed(0)
    model = TinyCNN().eval()
    g = torch.Generator().manual_seed(1)
    x_train = torch.randn(2500, 1, 28, 28, generator=g)
    with torch.no_grad():  # labels the model itself likes, so the MAP is not absurd
        y_train = model(x_train).argmax(1)
    x_test = torch.randn(5000, 1, 28, 28, generator=g)
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
