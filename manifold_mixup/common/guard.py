"""What the trainers check before and during a run: an up-front memory estimate, finite weights and losses.

The memory estimate is deliberately simple: every network is built on the ``meta`` device (shapes only,
nothing allocated), its parameters are counted, and a forward pass counts the values every layer outputs
per example (about what autograd keeps for the backward pass). A trainer adds these up, in float32 bytes,
for its batch sizes and compares the total with the device's whole memory (GPU memory, or the machine's
physical RAM for the CPU). Only a run that cannot fit even then is refused: the estimate catches sizes that
are off by orders of magnitude (a batch of 10^9, a noise dimension of 10^9), not a run that is 20% too big.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Callable, Mapping, Sequence

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from manifold_mixup.common.config import UsageError

FLOAT_BYTES = 4  # the estimate counts float32 values, also under bfloat16 autocast (an overestimate there)


def total_memory(device: torch.device) -> int | None:
    """All memory of ``device`` in bytes: the GPU's, or the machine's physical RAM; None when unknown."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


class _SkipInit(TorchFunctionMode):
    """Random initialisation is meaningless on the meta device (and slow there): skip it."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if getattr(func, "__name__", "").endswith(("normal_", "uniform_")):
            return args[0] if args else kwargs["tensor"]
        return func(*args, **kwargs)


def footprint(build: Callable[[], nn.Module], example: Sequence[int]) -> tuple[int, int]:
    """(parameters, values per example) of the network ``build()`` makes for inputs of shape ``example``.

    Values per example are the input's plus every leaf module's output, for one example. Measured on the
    meta device: no memory is allocated, so this is safe for any size. (Build spectrally normalised
    networks without the norm here: the parameter count is the same.)
    """
    with torch.device("meta"), _SkipInit():
        net = build()
    params = sum(p.numel() for p in net.parameters())
    count = [0]

    def hook(module: nn.Module, inputs: tuple, output: object) -> None:
        if isinstance(output, Tensor):
            count[0] += output.numel()

    leaves = [m for m in net.modules() if next(m.children(), None) is None]
    handles = [m.register_forward_hook(hook) for m in leaves]
    try:
        x = torch.empty(2, *example, device="meta")  # 2: BatchNorm refuses a training batch of one
        with torch.no_grad():
            net(x)
    finally:
        for h in handles:
            h.remove()
    return params, (count[0] + x.numel()) // 2


def check_memory(need_bytes: float, device: torch.device, what: str, hint: str) -> None:
    """UsageError when ``need_bytes`` exceeds all of ``device``'s memory (see the module docstring)."""
    have = total_memory(device)
    if have is not None and need_bytes > have:
        raise UsageError(
            f"{what} needs about {_gib(need_bytes)} of memory by a rough estimate, more than the "
            f"{_gib(have)} that {device} has in all; {hint}"
        )


def _gib(n: float) -> str:
    return f"{n / 2**30:,.1f} GiB" if n < 2**60 else f"{n / 2**30:.1e} GiB"


@torch.no_grad()
def weights_finite(*modules: nn.Module | None) -> bool:
    """True when every floating-point parameter and buffer of ``modules`` is finite (one host-device sync:
    call it where the trainer syncs anyway, e.g. before writing a checkpoint)."""
    tensors = [
        t
        for m in modules
        if m is not None
        for t in itertools.chain(m.parameters(), m.buffers())
        if t.is_floating_point() and t.numel()
    ]
    if not tensors:
        return True
    return bool(torch.stack([torch.isfinite(t).all() for t in tensors]).all())


def non_finite(values: Mapping[str, float]) -> list[str]:
    """The names of the logged numbers that are nan or inf (already on the host: costs no sync)."""
    return [k for k, v in values.items() if isinstance(v, float) and not math.isfinite(v)]
