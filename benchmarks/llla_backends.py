"""Time last-layer KFAC Laplace per laplace-torch curvature backend on CPU (a script, not a test).

For a SimpleCNN-sized model (random weights) and random 28x28 inputs: fit on 2,500 inputs,
marglik prior optimisation, probit predictions on 5,000 inputs. Prints a table and the fastest
backend by fit time (prediction runs the same laplace-torch code, last-layer Jacobians from the
features, whatever the backend, so its spread is timing noise). `mia_nb.calibration.DEFAULT_BACKEND`
is set from it: the fastest exact-GGN backend, since EF is a different curvature, not just a
different implementation.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/llla_backends.py [--repeats 2]
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from mia_nb.calibration import BACKENDS, fit_llla, llla_predict


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


def main() -> None:
    """Run every backend, print a table, name the fastest."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=2, help="timed repeats per backend (best kept)")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
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
