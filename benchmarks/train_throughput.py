"""Training throughput of the default profile's model (not a test).

Prints images/s of a training step of SimpleCNN on 28×28×1 inputs, the step's FLOPs (counted by
torch.utils.flop_counter), the achieved FLOP/s, and that as a fraction of a large float32 matmul
timed in the same run. Goal: at least 40 % of the matmul rate.

    .venv/bin/python benchmarks/train_throughput.py [--batch-size 64] [--threads N] [--bf16]

`--bf16` adds a channels-last row under bfloat16 autocast (what a lower-precision opt-in would gain; the study
trains in float32). Its rate counts the same FLOPs against the float32 matmul, so it can pass 100%.

`--tiny` takes a few steps of one small batch against a small matmul, in seconds: it checks that the script
still runs (tests/test_benchmarks.py), it measures nothing.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from mia_nb.models.networks import SimpleCNN


def matmul_flops_per_s(n: int = 2048, repeats: int = 10) -> float:
    """float32 FLOP/s of an n×n matmul (best of `repeats`)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n ** 3 / best


def train_step_flops(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> int:
    """FLOPs of one forward + backward pass."""
    with FlopCounterMode(display=False) as counter:
        nn.functional.cross_entropy(model(x), y).backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def images_per_s(model: nn.Module, batch_size: int, steps: int, channels_last: bool,
                 bf16: bool = False) -> tuple[float, int]:
    """Measured training images/s and FLOPs per step (`bf16`: the forward pass and loss under bfloat16 autocast)."""
    x = torch.randn(batch_size, 1, 28, 28)
    y = torch.randint(0, 10, (batch_size,))
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    flops = train_step_flops(model, x, y)
    for i in range(steps + 5):
        if i == 5:
            t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
    return steps * batch_size / (time.perf_counter() - t0), flops


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch-size", type=int, nargs="+", default=[64, 128, 256])
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    ap.add_argument("--bf16", action="store_true", help="also a channels-last row under bfloat16 autocast")
    ap.add_argument("--tiny", action="store_true", help="a seconds-long run on tiny sizes (checks the script runs)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    n = 2048
    if args.tiny:
        args.batch_size, args.steps, n = [16], 2, 256
    torch.manual_seed(0)
    peak = matmul_flops_per_s(n)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"float32 {n}² matmul: {peak / 1e9:.1f} GFLOP/s")
    print(f"{'batch':>6} {'layout':>14} {'precision':>10} {'img/s':>9} {'GFLOP/s':>9} {'of matmul':>10}")
    rows = [(False, False), (True, False)] + ([(True, True)] if args.bf16 else [])
    for bs in args.batch_size:
        for cl, bf16 in rows:
            ips, flops = images_per_s(SimpleCNN(1, 28, 10), bs, args.steps, cl, bf16)
            rate = ips / bs * flops
            print(f"{bs:>6} {'channels_last' if cl else 'contiguous':>14} {'bf16' if bf16 else 'float32':>10} "
                  f"{ips:>9.0f} {rate / 1e9:>9.1f} {rate / peak:>10.1%}")


if __name__ == "__main__":
    main()
