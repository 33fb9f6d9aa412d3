"""Time the SSL training step: what manifold mixup costs, and what the fast path buys.

    python -m ssl.bench                                    # WRN-28-2, batch 100 + 100, on cuda if present
    python -m ssl.bench --device cpu --paths straightforward,plain,amp --repeat 5

Paths: ``straightforward`` keeps the dataset on the CPU, preprocesses there and copies each batch to
the device (the usual DataLoader recipe), fp32 eager; ``plain`` keeps uint8 data on the device and
augments there, fp32 eager; ``channels_last`` and ``bf16`` (autocast) add one switch each; ``amp`` adds
both; ``fast`` adds torch.compile (the training default on CUDA). Step kinds: a supervised step without
and with manifold mixup (the paper's "no significant additional computation" claim is their ratio), and
the full SSL step of Algorithm 1 without and with its two mixes, and with the mixes made by the earlier
releases' staged calls instead of the layer hooks (``--kinds ssl`` times the SSL steps only).
Timings: warm-up excluded, device-synchronised median; every path and kind is timed in turns
(interleaved), so the ratios between paths are fair on a machine whose load drifts. FLOPs are counted
once per step kind (torch.utils.flop_counter, on the first path) and shared: the TFLOP/s column is the
achieved rate, on the CPU too.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from manifold_mixup.classifiers.wrn import WideResNet
from manifold_mixup.common.augment import ZCA, Preprocess
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
from manifold_mixup.common.data import DATASETS
from manifold_mixup.common.device import resolve_device
from manifold_mixup.common.layers import LayerMixup
from manifold_mixup.common.mixup import mix, sample_mix, soft_cross_entropy
from manifold_mixup.common.speed import Speed, fused_kwargs, maybe_compile
from manifold_mixup.ssl.config import SSLConfig
from manifold_mixup.ssl.train import train_step

PATHS = {
    "straightforward": Speed(),
    "plain": Speed(),
    "channels_last": Speed(channels_last=True),
    "bf16": Speed(amp=True),
    "amp": Speed(amp=True, channels_last=True),
    "fast": Speed(amp=True, channels_last=True, compile=True),
}
PAPER_UPDATES = 450_000  # CIFAR-10: 1000 epochs x 450 updates


class StagedCalls:
    """The mixer of the earlier releases, for comparison: ``net(x, 0, k)``, mix, ``net(h, k)`` (two calls of a
    :class:`~common.staged.StagedNet`) instead of one forward whose hook mixes at layer k."""

    def __init__(self, model, points: Sequence[int]):
        self.model, self.points = model, tuple(points)

    def __call__(self, x: torch.Tensor, y: torch.Tensor, m) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.model(x, 0, m.point) if m.point else x
        return self.model(mix(h, h[m.perm], m.lam), m.point), mix(y, y[m.perm], m.lam)


def make_steps(path: str, device: torch.device, cfg: SSLConfig, batch: int, n_images: int = 5000, zca: bool = True):
    """Step functions {kind: (callable, images per step)} for one path, on random CIFAR-shaped data, with
    (the SSL recipe) or without (the supervised recipe) a ZCA matmul in the preprocessing."""
    speed = PATHS[path]
    info = DATASETS["cifar10"]
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n_images, 3, 32, 32), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 10, (n_images,), generator=g)
    on_device = path != "straightforward"
    data_device = device if on_device else torch.device("cpu")
    images, labels = images.to(data_device), labels.to(data_device)
    whiten = ZCA(torch.zeros(3 * 32 * 32), torch.eye(3 * 32 * 32)).to(data_device) if zca else None  # one matmul
    preprocess = Preprocess(info.mean, info.std, zca=whiten, translate=2, flip=True)

    torch.manual_seed(0)
    net = speed.module(WideResNet(10, cfg.depth, cfg.width).to(device))
    model = maybe_compile(net, speed)
    mixer = LayerMixup(model, ("pixel", "h1", "h2"))
    opt = torch.optim.SGD(
        net.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4, **fused_kwargs(device)
    )

    def batch_of(n: int):
        idx = torch.randint(0, n_images, (n,), device=data_device)
        with speed.autocast(device):  # as the trainer: under amp the ZCA matmul runs in bf16
            x = preprocess(images[idx], train=True).to(device, non_blocking=True)
        return speed.images(x), labels[idx].to(device, non_blocking=True)

    def update(loss: torch.Tensor) -> None:
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def supervised():
        x, y = batch_of(batch)
        with speed.autocast(device):
            loss = F.cross_entropy(model(x), y)
        update(loss)

    def supervised_mixup():
        x, y = batch_of(batch)
        with speed.autocast(device):
            logits, y_mix = mixer(x, F.one_hot(y, 10).float(), sample_mix(batch, mixer.points, 0.1, device=device))
            loss = soft_cross_entropy(logits, y_mix)
        update(loss)

    def ssl_no_mix():  # Algorithm 1's three passes with the mixing left out
        (x, y), (u, _) = batch_of(batch), batch_of(batch)
        with speed.autocast(device):
            loss_s = F.cross_entropy(model(x), y)
            with torch.no_grad():
                target = model(u).float().softmax(1)
            loss = loss_s + F.mse_loss(model(u).float().softmax(1), target)
        update(loss)

    def ssl_manifold(mixer=mixer):
        (x, y), (u, _) = batch_of(batch), batch_of(batch)
        with speed.autocast(device):
            loss, _ = train_step(mixer, model, x, y, u, 1.0, cfg, 10)
        update(loss)

    def ssl_manifold_staged():
        ssl_manifold(StagedCalls(model, (0, 1, 2)))

    steps = {
        "supervised, no mixup": (supervised, batch),
        "supervised, manifold mixup": (supervised_mixup, batch),
        "SSL step, mixing off": (ssl_no_mix, 2 * batch),
        "SSL step, Algorithm 1": (ssl_manifold, 2 * batch),
        "SSL step, Algorithm 1, staged calls": (ssl_manifold_staged, 2 * batch),
    }
    return {kind: (same_draws(step), n) for kind, (step, n) in steps.items()}


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m ssl.bench", description=__doc__.split("\n\n")[0])
    add_timing_args(parser, list(PATHS), "straightforward,plain,amp,fast", "steps")
    parser.add_argument("--batch-size", type=int, default=100, help="labelled (and unlabelled) batch (default: 100)")
    parser.add_argument("--depth", type=int, default=28, help="WRN depth (default: 28)")
    parser.add_argument("--width", type=int, default=2, help="WRN width (default: 2)")
    parser.add_argument("--kinds", choices=("all", "ssl"), default="all", help="all step kinds, or the SSL steps")
    args = parser.parse_args(argv)
    paths = check_timing_args(args, list(PATHS))
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    sizes = {"depth": str(args.depth), "width": str(args.width), "batch_size": str(args.batch_size)}
    cfg = resolve_config(SSLConfig, None, sizes)

    print(
        f"# ssl.bench: WRN-{args.depth}-{args.width}, batch {args.batch_size} (+{args.batch_size} unlabelled), "
        f"{machine(device)}, median of {args.repeat} after {args.warmup} warm-up steps\n"
    )
    cases = [
        (f"{path}: {kind}", step, n)
        for path in paths
        for kind, (step, n) in make_steps(path, device, cfg, args.batch_size).items()
        if args.kinds == "all" or kind.startswith("SSL")
    ]
    rows = time_paths(cases, paths[0], device, args.warmup, args.repeat)  # every path and kind in turns
    print()
    print(markdown_table(rows))
    print()
    by = {r.name: r for r in rows}
    for path in paths:
        off, alg1 = by[f"{path}: SSL step, mixing off"], by[f"{path}: SSL step, Algorithm 1"]
        supervised = ""
        if args.kinds == "all":
            sup, mix = by[f"{path}: supervised, no mixup"], by[f"{path}: supervised, manifold mixup"]
            supervised = f"{mix.ms / sup.ms:.3f} (supervised step), "
        print(
            f"- {path}: manifold mixup / no mixup = {supervised}{alg1.ms / off.ms:.3f} (SSL step); Algorithm 1: "
            f"{1000 / alg1.ms:.1f} updates/s, full CIFAR-10 schedule ({PAPER_UPDATES:,} updates) ≈ "
            f"{PAPER_UPDATES * alg1.ms / 3.6e6:.1f} h; hooks (one forward) / staged calls (earlier releases) = "
            f"{alg1.ms / by[f'{path}: SSL step, Algorithm 1, staged calls'].ms:.3f}"
        )
    for base_path in ("straightforward", "plain"):
        base = by.get(f"{base_path}: SSL step, Algorithm 1")
        for path in paths:
            if base and path not in ("straightforward", base_path):
                ratio = base.ms / by[f"{path}: SSL step, Algorithm 1"].ms
                print(f"- {path} vs {base_path} (Algorithm 1): {ratio:.2f}× faster")
    return 0


if __name__ == "__main__":
    run_main(main, prog="python -m ssl.bench")
