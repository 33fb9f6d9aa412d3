"""Evaluation images/s of a tier's network by evaluation batch size and memory layout, interleaved.

    python experiments/eval_batch_bench.py [--config configs/ssl/cifar10-4k-laptop.yaml] [--sizes 32,128,1000]

The network of the config (random weights: the speed of a forward pass does not depend on them), eval mode,
bf16 autocast, one thread, 2,000 random CIFAR-shaped images per measurement; every (layout, size) case once per
round, the first round dropped (oneDNN's kernel selection). Why the tier configs evaluate in batches of 128:
BENCHMARKS.md, evaluation cost.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the package, also where it was not pip-installed

from manifold_mixup.common.cli import ArgumentParser, run_main  # noqa: E402
from manifold_mixup.common.config import UsageError, resolve_config  # noqa: E402
from manifold_mixup.common.registry import build  # noqa: E402
from manifold_mixup.common.speed import Speed  # noqa: E402
from manifold_mixup.ssl.config import SSLConfig, network_args  # noqa: E402


def images_per_s(net: torch.nn.Module, x: torch.Tensor, batch: int, speed: Speed) -> float:
    t0 = time.perf_counter()
    with torch.no_grad(), speed.autocast(torch.device("cpu")):
        for i in range(0, len(x), batch):
            net(speed.images(x[i : i + batch]))
    return len(x) / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    p = ArgumentParser(prog="python experiments/eval_batch_bench.py", description=__doc__.splitlines()[0])
    p.add_argument("--config", default="configs/ssl/cifar10-4k-laptop.yaml")
    p.add_argument("--sizes", default="32,64,128,500,1000", help="comma-separated evaluation batch sizes")
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args(argv)
    sizes = [int(v) for v in args.sizes.split(",") if v.strip().isdigit() and int(v) > 0]
    if len(sizes) != len(args.sizes.split(",")) or args.rounds < 1:
        raise UsageError(f"--sizes must be positive integers and --rounds >= 1, got {args.sizes!r} and {args.rounds}")
    torch.set_num_threads(1)
    cfg = resolve_config(SSLConfig, str(ROOT / args.config), {})
    x = torch.randn(2000, 3, 32, 32)
    rates: dict[tuple[bool, int], list[float]] = {}
    for r in range(args.rounds + 1):
        for channels_last in (False, True):
            speed = Speed(amp=True, channels_last=channels_last)
            net = speed.module(build(network_args(cfg, 10, 3))).eval()
            for size in sizes:
                rate = images_per_s(net, x, size, speed)
                if r:
                    rates.setdefault((channels_last, size), []).append(rate)
    print("| layout | " + " | ".join(f"batch {s}" for s in sizes) + " |\n|---|" + "---:|" * len(sizes))
    for channels_last in (False, True):
        cells = [f"{statistics.median(rates[(channels_last, s)]):.0f}" for s in sizes]
        print(f"| {'channels-last' if channels_last else 'NCHW'} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    run_main(main, prog="python experiments/eval_batch_bench.py")
