"""The backward of h[perm]: autograd's accumulating scatter against permute_batch's gather, interleaved.

    python experiments/permute_bench.py [--depth 10 --width 2 --batch 64] [--repeat 20] [--json FILE]

Two measurements, each case timed in turns with the other (common.benchmark.time_steps, same random draws):
  - the op alone: ``mix(h, h[perm], λ)`` forward + backward on the hidden-state shapes of the network's mixing
    points (pixel, h1, h2), fp32 NCHW and bf16 channels-last;
  - whole training steps of ``ssl.bench`` (WRN, random CIFAR-shaped data, the "amp" path: bf16 autocast +
    channels-last): the supervised Manifold Mixup step and the SSL step of Algorithm 1, once with the mixer's
    ``permute_batch`` (the package) and once with plain indexing (the releases before it).
Printed: ms per call and the ratio gather / index per case. Both give the same numbers bit for bit
(tests/test_common_mixup.py); only the time differs. One thread unless --threads says otherwise.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the package, also where it was not pip-installed

from manifold_mixup.classifiers.wrn import WideResNet  # noqa: E402
from manifold_mixup.common import layers  # noqa: E402
from manifold_mixup.common.benchmark import machine, same_draws, time_steps  # noqa: E402
from manifold_mixup.common.cli import ArgumentParser, output_path, positive_int, run_main, write_json_beside  # noqa: E402
from manifold_mixup.common.mixup import mix, permute_batch  # noqa: E402
from manifold_mixup.ssl.bench import make_steps  # noqa: E402
from manifold_mixup.ssl.config import SSLConfig  # noqa: E402

STEPS = ("supervised, manifold mixup", "SSL step, Algorithm 1")


@contextmanager
def plain_indexing():
    """The mixer as before permute_batch: h[perm], whose backward autograd does with an accumulating scatter."""
    saved = layers.permute_batch
    layers.permute_batch = lambda h, perm: h[perm]
    try:
        yield
    finally:
        layers.permute_batch = saved


def mixing_point_shapes(depth: int, width: int, batch: int) -> dict[str, tuple[int, ...]]:
    """{point: shape of the hidden state a mixer mixes there} for the WRN's pixel, h1, h2."""
    net = WideResNet(10, depth, width).eval()
    shapes: dict[str, tuple[int, ...]] = {}
    mixer = layers.LayerMixup(net, ("pixel", "h1", "h2"))
    for k, name in enumerate(mixer.names):
        seen = []
        with torch.no_grad():
            mixer.forward_with(torch.zeros(batch, 3, 32, 32), k, lambda h, seen=seen: seen.append(h.shape) or h)
        shapes[name] = tuple(seen[0])
    return shapes


def op_case(shape: tuple[int, ...], bf16_channels_last: bool, gather: bool) -> Callable[[], None]:
    h0 = torch.randn(shape, dtype=torch.bfloat16 if bf16_channels_last else torch.float32)
    if bf16_channels_last and len(shape) == 4:
        h0 = h0.contiguous(memory_format=torch.channels_last)
    lam = torch.tensor(0.3, dtype=torch.float64)
    grad = torch.ones_like(h0)

    def step() -> None:
        h = h0.detach().requires_grad_()
        perm = torch.randperm(shape[0])
        out = mix(h, permute_batch(h, perm) if gather else h[perm], lam)
        out.backward(grad)

    return step


def with_indexing(step: Callable[[], None]) -> Callable[[], None]:
    def indexed() -> None:
        with plain_indexing():
            step()

    return indexed


def main(argv: list[str] | None = None) -> int:
    p = ArgumentParser(prog="python experiments/permute_bench.py", description=__doc__.splitlines()[0])
    p.add_argument("--depth", default="10", help="WRN depth (default: 10)")
    p.add_argument("--width", default="2", help="WRN width (default: 2)")
    p.add_argument("--batch", default="64", help="batch size (default: 64, the laptop tiers')")
    p.add_argument("--repeat", default="20", help="timed rounds (default: 20)")
    p.add_argument("--threads", default="1", help="CPU threads (default: 1, as the tier scripts run)")
    p.add_argument("--json", default=None, help="also write the rows to this .json file")
    args = p.parse_args(argv)
    depth, width, batch = (
        positive_int(v, f, None) for v, f in [(args.depth, "--depth"), (args.width, "--width"), (args.batch, "--batch")]
    )
    repeat, threads = positive_int(args.repeat, "--repeat", None), positive_int(args.threads, "--threads", None)
    out = output_path(args.json, ".json", "--json") if args.json else None
    torch.set_num_threads(threads)
    device = torch.device("cpu")

    cases = []
    for name, shape in mixing_point_shapes(depth, width, batch).items():
        for layout in (False, True):
            label = f"op at {name} {'x'.join(map(str, shape))}, {'bf16 channels-last' if layout else 'fp32'}"
            cases += [(f"{label}: gather", op_case(shape, layout, True), shape[0])]
            cases += [(f"{label}: index", op_case(shape, layout, False), shape[0])]
    steps = make_steps("amp", device, SSLConfig(depth=depth, width=width), batch, zca=False)
    for kind in STEPS:
        step, images = steps[kind]
        cases += [
            (f"{kind}: gather", same_draws(step), images),
            (f"{kind}: index", with_indexing(same_draws(step)), images),
        ]
    rows = time_steps(cases, device, warmup=3, repeat=repeat)

    print(f"# permute_bench: WRN-{depth}-{width}, batch {batch}, {machine(device)}, median of {repeat} in turns\n")
    print("| case | gather (ms) | index (ms) | gather / index |\n|---|---:|---:|---:|")
    results = []
    for gather, index in zip(rows[::2], rows[1::2]):
        case = gather.name.rsplit(": ", 1)[0]
        results.append({"case": case, "gather_ms": gather.ms, "index_ms": index.ms, "ratio": gather.ms / index.ms})
        print(f"| {case} | {gather.ms:.2f} | {index.ms:.2f} | {gather.ms / index.ms:.3f}× |")
    if out:
        write_json_beside(
            out, {"machine": machine(device), "depth": depth, "width": width, "batch": batch, "rows": results}
        )
    return 0


if __name__ == "__main__":
    run_main(main)
