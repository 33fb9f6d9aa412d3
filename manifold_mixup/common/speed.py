"""The fast path: mixed-precision autocast, channels-last tensors, torch.compile, fused optimizers.

Each switch is a config field whose default (None) means: on for CUDA; on the CPU, bf16 autocast and
channels-last when the CPU computes in bf16 natively (AVX-512 BF16 or AMX on x86, BF16 on Arm: 2.2× the
fp32 step of WRN-28-2 on such a CPU, BENCHMARKS.md) and plain fp32 otherwise; compile stays off on the
CPU (slower there). BENCHMARKS.md measures what each buys.

Autocast runs in bfloat16 where the device computes in it natively (Ampere and later GPUs, such CPUs) and
in float16 elsewhere (T4, V100, P100), where the loss is scaled by a ``torch.amp.GradScaler`` so that small
gradients do not flush to zero (:func:`backward_step`); ``--amp-dtype`` forces either.
"""

from __future__ import annotations

import contextlib
import functools
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

AMP_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}


@functools.cache
def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bf16 natively (Linux: ``avx512_bf16``/``amx_bf16`` or Arm ``bf16`` in
    /proc/cpuinfo). Elsewhere False: without native support oneDNN emulates bf16, slower than fp32."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = {word for line in f if line.lower().startswith(("flags", "features")) for word in line.split()}
    except OSError:
        return False
    return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes in bf16 natively: a CUDA GPU of compute capability 8.0 or later, or a CPU
    with bf16 instructions (:func:`cpu_has_native_bf16`)."""
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
    return cpu_has_native_bf16()


@dataclass(frozen=True)
class Speed:
    amp: bool = False  # autocast for forward passes
    channels_last: bool = False  # NHWC memory format for images and convolution weights
    compile: bool = False  # torch.compile the network (eager fallback if compilation fails)
    amp_dtype: str | None = None  # autocast's dtype (None: bfloat16); float16 trains with a gradient scaler
    note: str = field(default="", compare=False)  # why the defaults chose this path (for the log)

    @classmethod
    def resolve(
        cls,
        amp: bool | None,
        channels_last: bool | None,
        compile: bool | None,
        device: torch.device,
        amp_dtype: str | None = None,
    ) -> Speed:
        """None means: on for CUDA; on the CPU, amp and channels_last iff it has native bf16, compile off.
        Autocast's dtype: ``amp_dtype`` when given (which turns amp on), else bfloat16 where the device has
        native bf16 and float16 (with a gradient scaler) where it has not."""
        if amp_dtype is not None:
            amp = True
        dtype = amp_dtype or ("bfloat16" if native_bf16(device) else "float16")
        if device.type == "cuda":
            on = [True if v is None else v for v in (amp, channels_last, compile)]
            return cls(*on, amp_dtype=dtype if on[0] else None)
        bf16 = cpu_has_native_bf16()
        note = "CPU default: native bf16" if bf16 else "CPU default: fp32, no native bf16"
        chosen = (bf16 if amp is None else amp, bf16 if channels_last is None else channels_last, bool(compile))
        return cls(*chosen, amp_dtype=dtype if chosen[0] else None, note=note if None in (amp, channels_last) else "")

    @property
    def dtype(self) -> str:
        """Autocast's dtype, by name."""
        return self.amp_dtype or "bfloat16"

    @property
    def scaled(self) -> bool:
        """float16 autocast: the loss is scaled for the backward pass (:func:`backward_step`)."""
        return self.amp and self.dtype == "float16"

    def grad_scaler(self, device: torch.device) -> torch.amp.GradScaler | None:
        """A fresh gradient scaler under float16 autocast (one per optimizer), else None."""
        return torch.amp.GradScaler(device.type) if self.scaled else None

    def autocast(self, device: torch.device) -> contextlib.AbstractContextManager:
        if not self.amp:
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=AMP_DTYPES[self.dtype])

    def images(self, x: Tensor) -> Tensor:
        """(B, C, H, W) in the chosen memory format."""
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last and x.dim() == 4 else x

    def module(self, m: nn.Module) -> nn.Module:
        return m.to(memory_format=torch.channels_last) if self.channels_last else m

    def describe(self, *nets: Callable) -> str:
        """The switches that are on; with the trained ``nets``, whether compile really ran (or why not)."""
        on = [name for name in ("amp", "channels_last", "compile") if getattr(self, name)]
        if self.amp and self.amp_dtype is not None:
            on[0] = "amp float16 with a gradient scaler" if self.scaled else "amp bfloat16"
        if self.compile and nets and (status := compile_status(*nets)) != "compiled":
            on[-1] = f"compile requested, ran {status}"
        path = "fast path: " + (", ".join(on) if on else "off (fp32 eager)")
        return f"{path} ({self.note})" if self.note else path


PLAIN = Speed()


def graph_budget(points: int) -> int:
    """The most graphs dynamo may compile for one network with ``points`` mixing points: its recompile
    limit while the network runs.

    Each point's mixed forward (its hook active) and the unmixed forward are separate graphs, each
    captured in at most four variants (with and without grad × train and eval BatchNorm), and a first
    change of batch size recompiles a graph once with a dynamic batch: 8 per forward. A realistic run uses
    far fewer (tests/test_common_speed.py counts them: WRN's SSL step with every mixing point, teacher and
    evaluation compiles 6, the GAN's D and G steps a handful); the budget only keeps dynamo's default
    limit of 8 per function from sending the network back to eager.
    """
    return 8 * (points + 1)


class Compiled:
    """``torch.compile(module)`` that falls back to eager, once and for good, if compiling fails.

    A network that names its mixing points (``mix_points``, e.g. a :class:`~common.staged.StagedNet`)
    compiles one graph per point in use; while it runs, and only then, dynamo's recompile limit is raised
    to :func:`graph_budget` (``torch._dynamo.config.patch``), so the rest of the process keeps its own.

    ``fallback`` is None while compiled, else why it runs eager. A compile error raised inside
    ``loss.backward()`` (the backward graph) is outside this fallback and stops the run.
    """

    def __init__(self, module: nn.Module, backend: str | Callable | None = None):
        self.eager = module
        self.fallback: str | None = None
        points = getattr(getattr(module, "module", module), "mix_points", None)  # the network itself or in DDP
        limit = torch._dynamo.config.recompile_limit
        self.recompile_limit = max(limit, graph_budget(len(points))) if points else limit
        self.compiled: Callable | None = torch.compile(module, **({"backend": backend} if backend else {}))

    @property
    def _orig_mod(self) -> nn.Module:
        """The wrapped module, under the name torch.compile's wrapper uses, so :func:`common.layers.unwrap`
        finds the layers of a ``Compiled`` network as it does those of a ``torch.compile``'d one."""
        return self.eager

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.compiled is not None:
            try:
                with torch._dynamo.config.patch(recompile_limit=self.recompile_limit):
                    return self.compiled(*args, **kwargs)
            except Exception as e:  # a backend or graph problem: train on rather than stop
                self.fallback = f"torch.compile failed ({type(e).__name__}: {str(e).splitlines()[0][:200]})"
                print(f"{self.fallback}; continuing in eager mode", file=sys.stderr)
                self.compiled = None
        return self.eager(*args, **kwargs)


def compile_status(*nets: Callable) -> str:
    """What ran for the compiled networks among ``nets``: "compiled", or "eager (why)".

    Dynamo's silent fallbacks (a recompile limit hit, a skipped frame after an error) show up in its
    ``unimplemented`` counters, not as exceptions; they are reported too.
    """
    from torch._dynamo.utils import counters

    reasons = [n.fallback for n in nets if isinstance(n, Compiled) and n.fallback]
    limits = [k for k in counters["unimplemented"] if "recompile limit" in k.lower()]
    if limits:
        reasons.append("dynamo hit its recompile limit; some frames ran eager")
    return "eager: " + "; ".join(reasons) if reasons else "compiled"


def backward_step(loss: Tensor, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None) -> None:
    """``loss.backward()`` and ``optimizer.step()``; with a gradient scaler (float16 autocast), the backward of
    the scaled loss, a step on the unscaled gradients that is skipped when they overflowed, and the scale's
    update (halved after an overflow, doubled after 2,000 clean steps)."""
    if scaler is None:
        loss.backward()
        optimizer.step()
        return
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()


def maybe_compile(module: nn.Module, speed: Speed) -> Callable:
    return Compiled(module) if speed.compile else module


def fused_kwargs(device: torch.device) -> dict[str, bool]:
    """``fused=True`` for torch optimizers on CUDA (one kernel for the whole update)."""
    return {"fused": True} if device.type == "cuda" else {}


def configure(device: torch.device) -> None:
    """Process-wide settings for training on ``device``: cuDNN autotuning on CUDA (fixed shapes, so the
    fastest convolution algorithm is found once per shape)."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True


@contextlib.contextmanager
def no_tf32() -> Iterator[None]:
    """Full fp32 matmuls and convolutions inside (no TF32 on Ampere and later), restored on exit.

    Scoring uses it: FID/IS follow the TensorFlow protocol, whose Inception runs in fp32.
    """
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
