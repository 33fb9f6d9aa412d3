"""Time one SNGAN training iteration (n_dis discriminator updates + one generator update).

    python -m gan.bench                                   # SNGAN CIFAR-10 recipe, on cuda if present
    python -m gan.bench --device cpu --paths plain,amp --repeat 5

Rows: no mixup, then discriminator mixup at the eligible sets of the paper's runs, for each path
(``plain``: fp32 eager; ``amp``: bf16 autocast + channels-last; ``fast``: + torch.compile, the
training default on CUDA). The ratio of a mixup row to the no-mixup row of its path is the cost of
the mixup term. Timings: warm-up excluded, device-synchronised median of ``--repeat`` iterations, every
path and variant timed in turns (interleaved), so ratios between them are fair on a machine whose load drifts.
FLOPs are counted once per step kind (torch.utils.flop_counter, on the first path) and shared: the
TFLOP/s column is the achieved rate, on the CPU too.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from manifold_mixup.common.benchmark import (
    add_timing_args,
    check_timing_args,
    machine,
    markdown_table,
    same_draws,
    time_paths,
)
from manifold_mixup.common.cli import ArgumentParser, run_main
from manifold_mixup.common.config import resolve_config
from manifold_mixup.common.device import resolve_device
from manifold_mixup.common.layers import LayerMixup
from manifold_mixup.common.speed import Speed, fused_kwargs, maybe_compile
from manifold_mixup.gan.config import CONFIGS, GANConfig, build_discriminator, build_generator
from manifold_mixup.gan.train import Nets, train_iteration

PATHS = {"plain": Speed(), "amp": Speed(amp=True, channels_last=True), "fast": Speed(True, True, True)}
VARIANTS = {  # name: config overrides
    "no mixup": {"mix": "none"},
    "mixup pixel, rf+ff": {"mix": "pixel", "mix_pairs": "rf,ff"},
    "mixup h1+pixel, rf+ff": {"mix": "h1,pixel", "mix_pairs": "rf,ff"},
    "mixup h1+pixel, rf": {"mix": "h1,pixel", "mix_pairs": "rf"},
}
PAPER_STEPS = 100_000


class RandomImages:
    """Stands in for RealBatches: CIFAR-sized uint8 images resident on the device."""

    def __init__(self, batch: int, device: torch.device, n: int = 5000):
        g = torch.Generator().manual_seed(0)
        self.images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g).to(device)
        self.batch_size, self.n = batch, n

    def batch(self, i: int) -> torch.Tensor:
        idx = torch.randint(0, self.n, (self.batch_size,), device=self.images.device)
        return self.images[idx].float() / 127.5 - 1


def make_iteration(path: str, overrides: dict, device: torch.device, base: dict):
    speed = PATHS[path]
    cfg = resolve_config(GANConfig, CONFIGS / "sngan-cifar10.yaml", {**base, **overrides})
    torch.manual_seed(0)
    G = speed.module(build_generator(cfg, (3, 32, 32)).to(device))
    D = speed.module(build_discriminator(cfg, (3, 32, 32)).to(device))
    G_train, D_train = maybe_compile(G, speed), maybe_compile(D, speed)
    nets = Nets(G, D, G_train, D_train, LayerMixup(D_train, cfg.mix) if cfg.mix else None)
    opt_g = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.0, 0.9), **fused_kwargs(device))
    opt_d = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.0, 0.9), **fused_kwargs(device))
    real = RandomImages(cfg.batch_size, device)
    counter = iter(range(10**9))

    def iteration():
        train_iteration(nets, opt_g, opt_d, real, next(counter), cfg, device, speed)

    return same_draws(iteration), cfg.n_dis * cfg.batch_size  # every variant and path: the same batch, k, λ, noise


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m gan.bench", description=__doc__.split("\n\n")[0])
    add_timing_args(parser, list(PATHS), "plain,amp,fast", "iterations")
    parser.add_argument("--n-dis", type=int, default=5, help="discriminator updates per iteration (default: 5)")
    parser.add_argument("--batch-size", type=int, default=64, help="real images per D update (default: 64)")
    parser.add_argument("--g-channels", type=int, default=256, help="generator channels (default: 256, SNGAN)")
    parser.add_argument("--d-channels", type=int, default=128, help="discriminator channels (default: 128, SNGAN)")
    args = parser.parse_args(argv)
    paths = check_timing_args(args, list(PATHS))
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    base = {  # checked once here, before anything is timed
        "n_dis": str(args.n_dis),
        "batch_size": str(args.batch_size),
        "g_batch_size": str(2 * args.batch_size),
        "g_channels": str(args.g_channels),
        "d_channels": str(args.d_channels),
    }
    resolve_config(GANConfig, CONFIGS / "sngan-cifar10.yaml", base)

    print(
        f"# gan.bench: SNGAN 32x32, n_dis {args.n_dis}, batch {args.batch_size} (G {2 * args.batch_size}), "
        f"{machine(device)}, median of {args.repeat} after {args.warmup} warm-up iterations\n"
    )
    cases = [
        (f"{path}: {name}", *make_iteration(path, overrides, device, base))
        for path in paths
        for name, overrides in VARIANTS.items()
    ]
    rows = time_paths(cases, paths[0], device, args.warmup, args.repeat)  # every path and variant in turns
    print()
    print(markdown_table(rows))
    print()
    by = {r.name: r for r in rows}
    for path in paths:
        plain = by[f"{path}: no mixup"]
        ratios = ", ".join(f"{name} {by[f'{path}: {name}'].ms / plain.ms:.3f}" for name in list(VARIANTS)[1:])
        print(
            f"- {path}: mixup / no mixup = {ratios}; no mixup: {PAPER_STEPS:,} iterations "
            f"≈ {PAPER_STEPS * plain.ms / 3.6e6:.1f} h"
        )
    for path in paths[1:]:
        ratio = by[f"{paths[0]}: no mixup"].ms / by[f"{path}: no mixup"].ms
        print(f"- {path} vs {paths[0]} (no mixup): {ratio:.2f}× faster")
    return 0


if __name__ == "__main__":
    run_main(main, prog="python -m gan.bench")
