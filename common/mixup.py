"""The mixing core of Manifold Mixup (Verma et al. 2019, §2 eq. 1; preprint Algorithm 2).

One training step draws a mixing point k uniformly from the eligible set S (k = 0 is the input),
a weight λ ~ Beta(α, α) and a permutation of the batch, then

    h = g_k(x);   h̃ = λ·h + (1−λ)·h[perm];   ỹ = λ·y + (1−λ)·y[perm];   loss = ℓ(f_k(h̃), ỹ)

where g_k runs the network up to point k and f_k from there. Gradients flow through g_k too.
S = {0} is Input Mixup (Zhang et al. 2018). Networks only need ``forward(x, start, stop)``
(see :mod:`common.staged`); nothing here knows about a particular network, and the GAN uses
:func:`mix` to mix a real batch with a fake one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import torch
from torch import Tensor

from common.config import UsageError

LamDist = Literal["beta", "uniform"]
ALIASES = {"input": "pixel"}


class Staged(Protocol):
    mix_points: tuple[str, ...]

    def __call__(self, x: Tensor, start: int = 0, stop: int | None = None) -> Tensor: ...


@dataclass(frozen=True)
class Mix:
    """One draw of the mixing randomness for a batch of B examples."""

    point: int  # k: the input of stage k is mixed (0 = the network input)
    lam: Tensor  # λ, shape () for one per batch or (B,) for one per example; float64
    perm: Tensor  # (B,) int64: example i is mixed with example perm[i]


def resolve_points(names: str | Sequence[str], mix_points: Sequence[str]) -> tuple[int, ...]:
    """Turn ``"h1,pixel"`` into point indices of a network with ``mix_points``, in the given order.

    ``input`` is accepted for ``pixel``. Unknown or missing names are a UsageError listing the valid ones.
    """
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",")]
    valid = ", ".join(mix_points)
    indices: list[int] = []
    for name in names:
        canonical = ALIASES.get(name, name)
        if canonical not in mix_points:
            raise UsageError(f"unknown mixing point {name!r} (valid: {valid}; 'input' = 'pixel')")
        if mix_points.index(canonical) not in indices:
            indices.append(mix_points.index(canonical))
    if not indices:
        raise UsageError(f"no mixing point given (valid: {valid})")
    return tuple(indices)


def sample_lam(alpha: float, shape: tuple[int, ...] = (), dist: LamDist = "beta") -> Tensor:
    """λ ~ Beta(α, α) (the paper) or λ ~ Uniform(0, α) (the GAN variant, ICML Appendix E eq. 4).

    Drawn on the CPU from torch's global generator (no device synchronisation) in float64:
    Beta(0.1, 0.1) puts about 10% of its mass within float32's spacing of 1, which float32 would
    round to exactly 1. :func:`mix` casts per-example λ to the batch's dtype.
    """
    if alpha <= 0:
        raise ValueError(f"alpha must be positive, got {alpha}")
    if dist == "beta":
        a = torch.tensor(float(alpha), dtype=torch.float64)
        return torch.distributions.Beta(a, a).sample(shape)
    if dist == "uniform":
        if alpha > 1:
            raise ValueError(f"uniform λ needs alpha <= 1, got {alpha}")
        return torch.rand(shape, dtype=torch.float64) * alpha
    raise ValueError(f"unknown λ distribution {dist!r} (use beta or uniform)")


def sample_mix(
    batch_size: int,
    points: Sequence[int],
    alpha: float,
    *,
    per_example: bool = False,
    dist: LamDist = "beta",
    device: torch.device | str | None = None,
) -> Mix:
    """Draw k uniformly from ``points``, λ (one, or one per example), and a batch permutation."""
    k = sample_point(points)
    lam = sample_lam(alpha, (batch_size,) if per_example else (), dist)
    if per_example:
        lam = lam.to(device)
    return Mix(point=k, lam=lam, perm=sample_perm(batch_size, device))


def sample_point(points: Sequence[int]) -> int:
    """A mixing point k drawn uniformly from the eligible set (torch's global CPU generator)."""
    return points[int(torch.randint(len(points), ()))]


def sample_perm(batch_size: int, device: torch.device | str | None = None) -> Tensor:
    """The permutation that pairs example i with example perm[i]."""
    return torch.randperm(batch_size, device=device)


def mix(a: Tensor, b: Tensor, lam: Tensor) -> Tensor:
    """λ·a + (1−λ)·b for batches a, b of shape (B, ...); λ of shape () or (B,)."""
    if lam.dim() == 1:
        lam = lam.view(-1, *([1] * (a.dim() - 1))).to(a.dtype)
    return a * lam + b * (1 - lam)


def mixup_forward(net: Staged, x: Tensor, y: Tensor, m: Mix) -> tuple[Tensor, Tensor]:
    """Algorithm 2: run to point k, mix hidden states and targets with the same λ, run the rest.

    x: (B, ...) inputs; y: (B, C) soft targets (one-hot labels or probabilities).
    Returns (logits of the mixed batch (B, C), mixed targets (B, C)).

    At k = 0 the input is mixed directly: the network is never called on the empty stage range
    (0, 0), which a compiled network cannot capture (dynamo would skip its forward for good).
    """
    h = net(x, 0, m.point) if m.point else x
    logits = net(mix(h, h[m.perm], m.lam), m.point)
    return logits, mix(y, y[m.perm], m.lam)
