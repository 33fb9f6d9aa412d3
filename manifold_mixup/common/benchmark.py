"""Timing helpers shared by ``ssl.bench`` and ``gan.bench``: warm-up excluded, device-synchronised,
median of many, and a markdown table."""

from __future__ import annotations

import argparse
import itertools
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from manifold_mixup.common.config import UsageError


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class Timing:
    name: str
    ms: float  # median milliseconds per step
    images: int  # images processed per step
    peak_mib: float | None  # peak device memory (CUDA only)
    flops: float | None = None  # floating-point operations per step (counted once)

    @property
    def images_per_s(self) -> float:
        return self.images / (self.ms / 1000)


def time_steps(
    cases: Sequence[tuple[str, Callable[[], object], int]],
    device: torch.device,
    warmup: int,
    repeat: int,
) -> list[Timing]:
    """Median wall time per call of each ``(name, step, images)`` case.

    Every case first runs ``warmup`` untimed calls (compilation, allocator); then the cases are timed
    in turns, one call each per round for ``repeat`` rounds, so slow drifts of the machine (clock,
    other load) spread over all cases instead of biasing the ones measured last. Each call is
    followed by a device synchronisation.
    """
    for _, step, _ in cases:
        for _ in range(warmup):
            step()
    synchronize(device)
    times: dict[str, list[float]] = {name: [] for name, _, _ in cases}
    peaks: dict[str, float] = {name: 0.0 for name, _, _ in cases}
    for _ in range(repeat):
        for name, step, _ in cases:
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            start = time.perf_counter()
            step()
            synchronize(device)
            times[name].append(time.perf_counter() - start)
            if device.type == "cuda":
                peaks[name] = max(peaks[name], torch.cuda.max_memory_allocated(device) / 2**20)
    timings = []
    for name, _, images in cases:
        peak = peaks[name] if device.type == "cuda" else None
        timings.append(Timing(name, 1000 * statistics.median(times[name]), images, peak))
    return timings


def count_flops(step: Callable[[], object]) -> float:
    """Floating-point operations of one call of ``step`` (torch.utils.flop_counter)."""
    with FlopCounterMode(display=False) as counter:
        step()
    return float(counter.get_total_flops())


def time_paths(
    cases: Sequence[tuple[str, Callable[[], object], int]],
    first_path: str,
    device: torch.device,
    warmup: int,
    repeat: int,
) -> list[Timing]:
    """:func:`time_steps` over every ``"path: kind"`` case in turns, with FLOPs counted once, on the cases of
    ``first_path`` (one extra call each), and shared with the other paths' cases of the same kind."""
    rows = time_steps(cases, device, warmup, repeat)
    for row, (name, step, _) in zip(rows, cases):
        if name.startswith(f"{first_path}: "):
            row.flops = count_flops(step)
    share_flops(rows)
    return rows


def same_draws(step: Callable[[], object]) -> Callable[[], None]:
    """``step`` whose n-th call draws from seed n (its batch, mixing point, λ, permutations, noise): cases made
    with it see the same random sequence, so their medians differ only by what they compute (a step mixed at
    one layer can cost 20% more than at another, so unequal draws would bias a comparison)."""
    calls = itertools.count()

    def seeded() -> None:
        torch.manual_seed(next(calls))
        step()

    return seeded


def share_flops(rows: Sequence[Timing]) -> None:
    """Give every row the FLOP count of the first row of the same step kind ("path: kind" names): the
    arithmetic of a step does not depend on the path (bf16, layout, compile), so it is counted once."""
    counted: dict[str, float] = {}
    for r in rows:
        kind = r.name.split(": ", 1)[-1]
        if r.flops is not None:
            counted.setdefault(kind, r.flops)
        elif kind in counted:
            r.flops = counted[kind]


def markdown_table(rows: Sequence[Timing], baseline: Timing | None = None) -> str:
    lines = ["| step | ms/step | images/s | vs. first row | peak MiB | TFLOP/s |", "|---|---:|---:|---:|---:|---:|"]
    base = baseline or rows[0]
    for r in rows:
        tflops = f"{r.flops / (r.ms / 1000) / 1e12:.2f}" if r.flops else "—"
        peak = f"{r.peak_mib:.0f}" if r.peak_mib is not None else "—"
        lines.append(f"| {r.name} | {r.ms:.1f} | {r.images_per_s:.0f} | {r.ms / base.ms:.3f}× | {peak} | {tflops} |")
    return "\n".join(lines)


def machine(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}"
    cpu = platform.processor() or platform.machine()
    return f"CPU ({cpu}, {torch.get_num_threads()} threads), torch {torch.__version__}"


def add_timing_args(parser: argparse.ArgumentParser, paths: Sequence[str], default_paths: str, unit: str) -> None:
    """The arguments both bench commands share: device, paths, warm-up, repeats, threads."""
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda[:N] or mps (default: auto)")
    parser.add_argument("--paths", default=default_paths, help=f"comma-separated: {', '.join(paths)}")
    parser.add_argument("--warmup", type=int, default=3, help=f"untimed {unit} first, compile included (default: 3)")
    parser.add_argument("--repeat", type=int, default=20, help=f"timed {unit} (default: 20)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")


def check_timing_args(args: argparse.Namespace, paths: Sequence[str]) -> list[str]:
    """Validate the shared arguments; return the chosen paths (``"plain,amp"`` -> ``["plain", "amp"]``)."""
    if args.warmup < 0 or args.repeat < 1:
        raise UsageError("--warmup must be >= 0 and --repeat >= 1")
    if args.threads is not None and args.threads < 1:
        raise UsageError("--threads must be >= 1")
    chosen = args.paths.split(",")
    if unknown := [p for p in chosen if p not in paths]:
        raise UsageError(f"unknown path {unknown[0]!r} (valid: {', '.join(paths)})")
    return chosen
