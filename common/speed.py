"""The fast path: bfloat16 autocast, channels-last tensors, torch.compile, fused optimizers.

Each switch is a config field whose default (None) means "on for CUDA, off on the CPU", so the
fast path is the default on a GPU and the plain fp32 eager path everywhere else. BENCHMARKS.md
measures what each buys.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class Speed:
    amp: bool = False  # bfloat16 autocast for forward passes
    channels_last: bool = False  # NHWC memory format for images and convolution weights
    compile: bool = False  # torch.compile the network (eager fallback if compilation fails)

    @classmethod
    def resolve(cls, amp: bool | None, channels_last: bool | None, compile: bool | None, device: torch.device) -> Speed:
        """None means: on for CUDA devices, off elsewhere."""
        cuda = device.type == "cuda"
        return cls(*(cuda if v is None else v for v in (amp, channels_last, compile)))

    def autocast(self, device: torch.device) -> contextlib.AbstractContextManager:
        if not self.amp:
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=torch.bfloat16)

    def images(self, x: Tensor) -> Tensor:
        """(B, C, H, W) in the chosen memory format."""
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last and x.dim() == 4 else x

    def module(self, m: nn.Module) -> nn.Module:
        return m.to(memory_format=torch.channels_last) if self.channels_last else m

    def describe(self) -> str:
        on = [name for name in ("amp", "channels_last", "compile") if getattr(self, name)]
        return "fast path: " + (", ".join(on) if on else "off (fp32 eager)")


PLAIN = Speed()


class Compiled:
    """``torch.compile(module)`` that falls back to eager, once and for good, if compiling fails.

    Dynamo specialises on the integer stage bounds of ``net(x, start, stop)``, so a staged network
    compiles one graph per (start, stop) pair in use: a handful.
    """

    def __init__(self, module: nn.Module):
        self.eager = module
        self.compiled: Callable | None = torch.compile(module)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.compiled is not None:
            try:
                return self.compiled(*args, **kwargs)
            except Exception as e:  # a backend or graph problem: train on rather than stop
                print(
                    f"torch.compile failed ({type(e).__name__}: {str(e).splitlines()[0][:200]}); "
                    "continuing in eager mode",
                    file=sys.stderr,
                )
                self.compiled = None
        return self.eager(*args, **kwargs)


def maybe_compile(module: nn.Module, speed: Speed) -> Callable:
    return Compiled(module) if speed.compile else module


def fused_kwargs(device: torch.device) -> dict[str, bool]:
    """``fused=True`` for torch optimizers on CUDA (one kernel for the whole update)."""
    return {"fused": True} if device.type == "cuda" else {}
