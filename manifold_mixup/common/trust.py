"""What a file from elsewhere (a downloaded checkpoint, weights) may not do: build a network of absurd size
before anything checks it, or get a message that advises turning a safety off."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from manifold_mixup.common.config import UsageError

MAX_INT_ARG = 1 << 16  # no width, depth, channel or class count of a network of this package comes near
MAX_PARAMETERS = 2_000_000_000  # 8 GB of float32 weights: far beyond any network of the papers
_PLAIN = (bool, int, float, str, type(None))


def _plain(value: Any) -> bool:
    if isinstance(value, (list, tuple)):
        return len(value) <= 64 and all(isinstance(v, _PLAIN) for v in value)
    return isinstance(value, _PLAIN)


def check_model_args(arch: str, constructor: Callable[..., nn.Module], args: Mapping[str, Any]) -> None:
    """Refuse, before building anything, stored constructor arguments that do not fit ``constructor``'s
    signature, are not plain values, hold an integer outside [-1, 65536], or describe a network of more than
    two billion parameters (counted on the meta device, which allocates nothing)."""
    where = f"the stored arguments of {arch!r}"
    try:
        inspect.signature(constructor).bind(**args)
    except TypeError as e:
        raise UsageError(f"{where} do not fit its constructor ({e}); the checkpoint is damaged or not ours") from None
    for name, value in args.items():
        if not _plain(value):
            raise UsageError(f"{where}: {name} is a {type(value).__name__}, not a plain value")
        for v in value if isinstance(value, (list, tuple)) else (value,):
            if isinstance(v, int) and not isinstance(v, bool) and not -1 <= v <= MAX_INT_ARG:
                raise UsageError(f"{where}: {name} = {v} is outside the sane range -1..{MAX_INT_ARG}")
    try:
        with torch.device("meta"):
            params = sum(p.numel() for p in constructor(**args).parameters())
    except UsageError:
        raise
    except Exception:  # a constructor that cannot run on the meta device: the bounds above still hold
        return
    if params > MAX_PARAMETERS:
        raise UsageError(f"{where} describe a network of {params:,} parameters, beyond {MAX_PARAMETERS:,}; refused")


def safe_reason(e: BaseException) -> str:
    """The first line of an error, for a one-line message; a refused unsafe pickle is described without
    torch's advice on loading it anyway (never turn ``weights_only`` off)."""
    text = str(e).strip()
    if "weights_only" in text or "Weights only load failed" in text:
        return "it holds objects other than tensors, which a safe load (weights_only=True) refuses"
    return (text.splitlines() or [type(e).__name__])[0][:200]
