"""Attack phase: "score once" vs the paper's recompute-per-attack path (a speed measurement, not a test).

For the default profile's sizes (2,500 target members; 5 non-member pools of 5,000 images; a shadow
with 2,500 members + 2,500 non-members) and the default profile's attack settings, times

  (a) score once: the logits of each model on each set are computed once (kept in the store in the
      study), then `evaluation.fit_attacks` + `evaluation.attack_table` run every attack (threshold,
      entropy, Salem, loss) on every pool from those cached outputs;
  (b) the paper's path: every attack re-runs the model through a DataLoader (batch 64): on the shadow
      sets to fit, on the members and on the pool for every (attack, pool), and once more on each MMPS
      group (TP / FP / FN / TN, 4 extra passes) before the same metric code runs.

Models are SimpleCNNs (target and shadow, random weights) on random 28×28×1 inputs: the timing does
not depend on what the model learned. A warm-up first pays one-time costs (imports on the first Adam
step). Prints both times, the split of (a) into fit and evaluate (and the Salem MLP's training, the same
work in both paths), and the ratio (b) / (a). Goal: (a) at least 100× faster.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/attack_phase.py [--threads 1] [--pools 5] ...

`--tiny` runs both paths on a few dozen images with a short Salem fit, in seconds: it checks that the
script still runs (tests/test_benchmarks.py), it measures nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset, TensorDataset

from mia_nb.attacks import evaluation
from mia_nb.attacks.score_based import balanced_shadow, make_attack
from mia_nb.config import load_profile
from mia_nb.attacks.metrics import attack_metrics
from mia_nb.models.networks import SimpleCNN, forward_logits
from mia_nb.attacks.scores import Outputs, softmax

REPO = Path(__file__).resolve().parents[1]
PAPER_BATCH = 64


def random_set(n: int, seed: int) -> tuple[torch.Tensor, np.ndarray]:
    """n random model-input images [n, 1, 28, 28] and random labels."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 28, 28, generator=g), torch.randint(0, 10, (n,), generator=g).numpy()


def model(seed: int) -> SimpleCNN:
    """A SimpleCNN for Fashion-MNIST shapes with seeded random weights, in eval mode."""
    torch.manual_seed(seed)
    return SimpleCNN(1, 28, 10).eval()


@torch.no_grad()
def loader_logits(net: torch.nn.Module, dataset) -> np.ndarray:
    """Logits through a DataLoader with the paper's batch size (one fresh forward pass)."""
    return torch.cat([net(x) for (x,) in DataLoader(dataset, batch_size=PAPER_BATCH, shuffle=False)]).numpy()


def loader_outputs(net: torch.nn.Module, x: torch.Tensor, y: np.ndarray) -> Outputs:
    """Outputs recomputed through a DataLoader."""
    return Outputs(softmax(loader_logits(net, TensorDataset(x))), y)


def group_mmps(net: torch.nn.Module, x: torch.Tensor, mask: np.ndarray) -> float:
    """Mean max score of the samples in `mask`, recomputed by a forward pass (NaN for an empty group)."""
    idx = np.flatnonzero(mask)
    if len(idx) == 0:
        return float("nan")
    return float(softmax(loader_logits(net, Subset(TensorDataset(x), idx.tolist()))).max(axis=1).mean())


def paper_path(cfg, target, shadow, members, pools, shadow_m, shadow_n, seed: int) -> tuple[float, float]:
    """Seconds for the recompute-per-attack path (every attack runs the models again), and of Salem's fit in it."""
    t0 = time.perf_counter()
    t_salem = 0.0
    kw = {"salem": {"k": cfg.salem_k, "patience": cfg.salem_patience, "max_epochs": cfg.salem_max_epochs,
                    "seed": seed}}
    for name in cfg.names:
        attack = make_attack(name, **kw.get(name, {}))
        fit_m, fit_n = loader_outputs(shadow, *shadow_m), loader_outputs(shadow, *shadow_n)
        t1 = time.perf_counter()
        attack.fit(fit_m, fit_n)
        if name == "salem":
            t_salem = time.perf_counter() - t1
        for x_n, y_n in pools.values():
            out_m, out_n = loader_outputs(target, *members), loader_outputs(target, x_n, y_n)
            row = attack_metrics(attack, out_m, out_n, seed=seed)
            pm, pn = attack.predict(out_m), attack.predict(out_n)
            row.update(mmps_tp=group_mmps(target, members[0], pm), mmps_fn=group_mmps(target, members[0], ~pm),
                       mmps_fp=group_mmps(target, x_n, pn), mmps_tn=group_mmps(target, x_n, ~pn))
        print(f"    {name}: done at {time.perf_counter() - t0:.1f} s", flush=True)
    return time.perf_counter() - t0, t_salem


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--members", type=int, default=2500, help="target members")
    ap.add_argument("--pools", type=int, default=5, help="non-member pools")
    ap.add_argument("--pool-size", type=int, default=5000, help="images per non-member pool")
    ap.add_argument("--shadow", type=int, default=2500, help="shadow members (and as many non-members)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--skip-paper", action="store_true", help="time only the score-once path")
    ap.add_argument("--tiny", action="store_true", help="a seconds-long run on tiny sizes (checks the script runs)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = load_profile(REPO / "params" / "default.yaml").attacks
    if args.tiny:
        args.members, args.pools, args.pool_size, args.shadow = 64, 1, 64, 64
        cfg = dataclasses.replace(cfg, salem_max_epochs=2)
    seed = 42
    target, shadow = model(1), model(2)
    members = random_set(args.members, 10)
    pools = {f"pool_{i}": random_set(args.pool_size, 20 + i) for i in range(args.pools)}
    shadow_m, shadow_n = random_set(args.shadow, 30), random_set(args.shadow, 31)
    n_images = args.members + args.pools * args.pool_size + 2 * args.shadow
    print(f"torch threads {torch.get_num_threads()}; attacks {', '.join(cfg.names)}; "
          f"{args.members:,} members, {args.pools} pools × {args.pool_size:,}, shadow {args.shadow:,} + "
          f"{args.shadow:,}; {n_images:,} distinct images")

    # warm-up: the first Adam step of a process pays one-time imports (~2 s), not part of either path
    make_attack("salem", max_epochs=1).fit(Outputs(softmax(np.eye(10)), np.arange(10)),
                                           Outputs(np.full((10, 10), 0.1), np.arange(10)))
    forward_logits(target, members[0][:64])

    # (a) score once, then every attack and metric from the cached outputs
    t0 = time.perf_counter()
    out_m = Outputs(softmax(forward_logits(target, members[0]).numpy()), members[1])
    out_pools = {k: Outputs(softmax(forward_logits(target, x).numpy()), y) for k, (x, y) in pools.items()}
    out_sm = Outputs(softmax(forward_logits(shadow, shadow_m[0]).numpy()), shadow_m[1])
    out_sn = Outputs(softmax(forward_logits(shadow, shadow_n[0]).numpy()), shadow_n[1])
    t_score = time.perf_counter() - t0
    t0 = time.perf_counter()
    attacks, sizes = evaluation.fit_attacks(cfg, out_sm, out_sn, seed)
    t_fit = time.perf_counter() - t0
    t0 = time.perf_counter()
    table = evaluation.attack_table(attacks, out_m, out_pools, "vanilla", seed=seed)
    t_eval = time.perf_counter() - t0
    t_a = t_fit + t_eval
    salem = attacks.get("salem")
    print(f"(a) score once: forward passes once {t_score:.2f} s (cached in the study's store); "
          f"fit {t_fit:.2f} s (shadow sizes {sizes}), evaluate {t_eval:.2f} s ({len(table)} rows) "
          f"→ attack phase {t_a:.2f} s")
    # the fits of the other attacks, timed one by one (the Salem MLP's training is the same work in both paths)
    t_others = t_eval
    for name, attack in evaluation.make_attacks(cfg, seed).items():
        if name != "salem":
            t0 = time.perf_counter()
            attack.fit(*balanced_shadow(out_sm, out_sn, seed))
            t_others += time.perf_counter() - t0
    if salem is not None:
        print(f"    without the Salem MLP's training ({len(salem.history)} epochs, best {salem.best_epoch}): "
              f"{t_others:.2f} s (the other fits + evaluate); so Salem's fit ≈ {t_a - t_others:.2f} s")
    if args.skip_paper:
        return
    print("(b) recompute per attack, per pool and per MMPS group (DataLoader, batch 64):", flush=True)
    t_b, t_salem_b = paper_path(cfg, target, shadow, members, pools, shadow_m, shadow_n, seed)
    print(f"(b) {t_b:.1f} s, of which the Salem MLP's training {t_salem_b:.2f} s")
    print(f"ratio (b) / (a): {t_b / t_a:.0f}× with cached logits; {t_b / (t_a + t_score):.0f}× counting the "
          f"one-time forward passes of (a)")
    if salem is not None:
        print(f"ratio without the Salem MLP's training (the same work in both paths): "
              f"{(t_b - t_salem_b) / t_others:.0f}×")


if __name__ == "__main__":
    main()
