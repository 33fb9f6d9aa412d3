"""Where a CPU training step's time goes: torch.profiler's self time of every operator, grouped by kind.

    python experiments/profile_step.py                  # WRN-10-2, batch 128, bf16 + channels-last, 1 thread
    python experiments/profile_step.py --path plain --steps 20 --json profile.json

Step kinds (ssl.bench's, on random CIFAR-shaped data): the supervised step of the low-label tier without and
with Manifold Mixup, and the SSL step of Algorithm 1. The table gives each operator kind's share of the
step (self CPU time, so nothing is counted twice); a second table times each step against its own
convolutions alone (the same calls, shapes, layout and autocast, replayed without the rest of the step, in
turns with the step) and gives the step's counted GFLOP/s against the rate of those convolutions. Profiles are
taken after warm-up steps, every kind in turns.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere: the repository's packages (ssl/ too) first
    sys.path.insert(0, str(ROOT))

import json  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections import defaultdict  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402

import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from manifold_mixup.common.cli import ArgumentParser, run_main  # noqa: E402
from manifold_mixup.common.config import UsageError, resolve_config  # noqa: E402
from manifold_mixup.ssl.bench import PATHS, make_steps  # noqa: E402
from manifold_mixup.ssl.config import SSLConfig  # noqa: E402

KINDS = {  # first match wins, on the lower-cased operator name
    "convolution": ("conv",),
    "batch norm": ("batch_norm",),
    "activation": ("relu", "threshold_backward", "leaky"),
    "optimizer": ("sgd", "_foreach"),
    "copy / cast / layout": ("copy", "_to_copy", "contiguous", "clone", "to_dense", "empty_like", "reorder"),
    "indexing (batch draw, permutation)": ("index", "gather", "scatter", "take"),
    "linear, pooling, loss": ("addmm", "mm", "pool", "softmax", "nll", "mse", "cross_entropy", "mean", "sum"),
    "elementwise": ("add", "mul", "sub", "div", "where", "fill", "zero", "lerp", "neg", "pow", "sqrt", "rsub"),
}
STEP_KINDS = ("supervised, no mixup", "supervised, manifold mixup", "SSL step, Algorithm 1")


def kind_of(name: str) -> str:
    lowered = name.lower()
    for kind, keys in KINDS.items():
        if any(k in lowered for k in keys):
            return kind
    return "other"


def profile_step(step, steps: int) -> tuple[dict[str, float], dict[str, float]]:
    """(ms per step by operator kind, ms per step by operator name) over ``steps`` profiled calls."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    by_kind: dict[str, float] = defaultdict(float)
    by_name: dict[str, float] = defaultdict(float)
    for event in prof.key_averages():
        if event.key.startswith(("autograd::engine", "ProfilerStep", "Optimizer.step")):
            continue  # wrappers: their self time is bookkeeping, their children are the work
        ms = event.self_cpu_time_total / 1000 / steps
        by_kind[kind_of(event.key)] += ms
        by_name[event.key] += ms
    return dict(by_kind), dict(by_name)


def conv_replay(step: Callable[[], None], autocast: Callable) -> Callable[[], None]:
    """The step's own convolutions alone: every ``nn.Conv2d`` call of one ``step()`` is recorded (input shape,
    dtype, memory format, whether it needed gradients) and the returned function runs each again, forward and,
    where the step backpropagated through it, backward, under the step's autocast, on random inputs."""
    calls = []

    def record(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        if isinstance(module, nn.Conv2d):
            x = inputs[0]
            channels_last = x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last)
            calls.append((module, x.shape, x.dtype, channels_last, x.requires_grad, output.requires_grad))

    handle = nn.modules.module.register_module_forward_hook(record)
    try:
        step()
    finally:
        handle.remove()
    inputs = []
    for _module, shape, dtype, channels_last, needs_grad, _ in calls:
        x = torch.randn(shape, dtype=dtype)
        x = x.contiguous(memory_format=torch.channels_last) if channels_last else x
        inputs.append(x.requires_grad_(needs_grad))

    def replay() -> None:
        for (module, *_, backward), x in zip(calls, inputs):
            with torch.set_grad_enabled(backward), autocast():
                out = module(x)
            if backward:
                out.backward(torch.ones_like(out))

    return replay


def seconds(fn: Callable[[], None]) -> float:
    """Wall seconds of one call."""
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def roofline(steps: dict[str, Callable[[], None]], autocast: Callable, repeats: int) -> dict[str, dict]:
    """Per step kind: ms of the whole step and of its convolutions alone (timed in turns, medians), the counted
    FLOPs (convolutions and matmuls, forward + backward) and the rates they give."""
    replays = {k: conv_replay(step, autocast) for k, step in steps.items()}
    flops = {}
    for k, step in steps.items():
        counter = FlopCounterMode(display=False)
        with counter:
            step()
        conv = sum(v for op, v in counter.get_flop_counts()["Global"].items() if "convolution" in str(op))
        flops[k] = (counter.get_total_flops(), conv)
        replays[k]()  # warm the replay's kernels
    timed: dict[str, dict[str, list[float]]] = {k: {"step": [], "convs": []} for k in steps}
    for _ in range(repeats):  # in turns, so that a drifting load hits every case alike
        for k, step in steps.items():
            timed[k]["step"].append(seconds(step))
            timed[k]["convs"].append(seconds(replays[k]))
    out = {}
    for k in steps:
        step_s, conv_s = statistics.median(timed[k]["step"]), statistics.median(timed[k]["convs"])
        total, conv = flops[k]
        out[k] = {
            "step_ms": 1000 * step_s,
            "convs_alone_ms": 1000 * conv_s,
            "gflop": total / 1e9,
            "conv_gflop": conv / 1e9,
            "step_gflops": total / step_s / 1e9,
            "convs_alone_gflops": conv / conv_s / 1e9,
            "convs_share": conv_s / step_s,
        }
    return out


def print_tables(a: dict, results: dict[str, dict], rates: dict[str, dict]) -> None:
    """The operator table and the roofline table of one profile (``a``: its arguments, as --json records them)."""
    print(
        f"# profile: WRN-{a['depth']}-{a['width']}, batch {a['batch_size']}, path {a['path']}, "
        f"{a['threads']} thread(s), {'ZCA' if a['zca'] else 'no ZCA'}, {a['steps']} profiled steps per kind after "
        f"{a['warmup']} warm-up rounds\n"
    )
    kinds = [*KINDS, "other"]
    print("| operator kind | " + " | ".join(STEP_KINDS) + " |")
    print("|---|" + "---:|" * len(STEP_KINDS))
    for kind in kinds:
        cells = []
        for k in STEP_KINDS:
            ms, total = results[k]["by_kind_ms"].get(kind, 0.0), results[k]["ms_per_step"]
            cells.append(f"{ms:.1f} ms ({100 * ms / total:.0f} %)")
        print(f"| {kind} | " + " | ".join(cells) + " |")
    print("| **step (profiled)** | " + " | ".join(f"{results[k]['ms_per_step']:.1f} ms" for k in STEP_KINDS) + " |")
    base = results["supervised, no mixup"]["ms_per_step"]
    mixed = results["supervised, manifold mixup"]["ms_per_step"]
    print(f"\n- manifold mixup / no mixup (supervised step, profiled): {mixed / base:.3f}")
    for k in STEP_KINDS:
        conv = results[k]["by_kind_ms"].get("convolution", 0.0)
        top = ", ".join(f"{name} {ms:.1f}" for name, ms in results[k]["top_ops_ms"].items())
        print(f"- {k}: convolutions {100 * conv / results[k]['ms_per_step']:.0f} % of the step; top ops (ms): {top}")
    print(
        "\n| step | step ms | its convolutions alone, ms | convolutions' share | GFLOP per step "
        "(conv + matmul) | step GFLOP/s | convolutions alone, GFLOP/s |\n|---|---:|---:|---:|---:|---:|---:|"
    )
    for k, r in rates.items():
        print(
            f"| {k} | {r['step_ms']:.0f} | {r['convs_alone_ms']:.0f} | {100 * r['convs_share']:.0f} % | "
            f"{r['gflop']:.1f} | {r['step_gflops']:.0f} | {r['convs_alone_gflops']:.0f} |"
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog="python experiments/profile_step.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--path", default="amp", choices=list(PATHS), help="ssl.bench path (default: amp)")
    parser.add_argument("--depth", type=int, default=10, help="WRN depth (default: 10)")
    parser.add_argument("--width", type=int, default=2, help="WRN width (default: 2)")
    parser.add_argument("--batch-size", type=int, default=128, help="images per batch (default: 128)")
    parser.add_argument("--steps", type=int, default=10, help="profiled steps per kind (default: 10)")
    parser.add_argument("--warmup", type=int, default=3, help="unprofiled steps first (default: 3)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (default: 1)")
    parser.add_argument("--zca", action="store_true", help="preprocess with a ZCA matmul (the SSL recipe)")
    parser.add_argument("--json", default=None, help="also write the numbers to this file (must not exist)")
    parser.add_argument("--show", default=None, help="print the tables of a profile saved with --json, run nothing")
    args = parser.parse_args(argv)
    if args.show:
        try:
            saved = json.loads(Path(args.show).read_text())
            print_tables(saved["args"], saved["results"], saved["roofline"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise UsageError(f"--show {args.show}: not a profile saved with --json ({type(e).__name__}: {e})") from None
        return 0
    if min(args.steps, args.batch_size, args.threads) < 1 or args.warmup < 0:
        raise UsageError("--steps, --batch-size and --threads must be >= 1, --warmup >= 0")
    if args.json and Path(args.json).exists():
        raise UsageError(f"--json {args.json} exists; choose another file")
    torch.set_num_threads(args.threads)
    cfg = resolve_config(SSLConfig, None, {"depth": str(args.depth), "width": str(args.width)})
    steps = make_steps(args.path, torch.device("cpu"), cfg, args.batch_size, zca=args.zca)
    chosen = {k: steps[k][0] for k in STEP_KINDS}
    for _ in range(args.warmup):
        for step in chosen.values():
            step()
    rates = roofline(chosen, lambda: PATHS[args.path].autocast(torch.device("cpu")), args.steps)
    results = {}
    for kind, step in chosen.items():
        by_kind, by_name = profile_step(step, args.steps)
        total = sum(by_kind.values())
        top = sorted(by_name.items(), key=lambda kv: -kv[1])[:8]
        results[kind] = {"ms_per_step": total, "by_kind_ms": by_kind, "top_ops_ms": dict(top)}
    print_tables(vars(args), results, rates)
    if args.json:
        payload = {"args": vars(args), "results": results, "roofline": rates}
        Path(args.json).write_text(json.dumps(payload, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    run_main(main, prog="python experiments/profile_step.py")
