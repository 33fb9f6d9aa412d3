"""Timing helpers shared by ``ssl.bench`` and ``gan.bench``: warm-up excluded, device-synchronised,
median of many, and a markdown table."""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode


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


def time_step(
    name: str,
    step: Callable[[], object],
    images: int,
    device: torch.device,
    warmup: int,
    repeat: int,
    count_flops: bool = False,
) -> Timing:
    """Median wall time of ``step()`` over ``repeat`` calls after ``warmup`` calls, synchronising each."""
    for _ in range(warmup):
        step()
    synchronize(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        step()
        synchronize(device)
        times.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    flops = None
    if count_flops:
        with FlopCounterMode(display=False) as counter:
            step()
        flops = float(counter.get_total_flops())
    return Timing(name, 1000 * statistics.median(times), images, peak, flops)


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
