"""The mixing core of Manifold Mixup (Verma et al. 2019, §2 eq. 1; preprint Algorithm 2).

One training step draws a mixing point k uniformly from the eligible set S (k = 0 is the input),
a weight λ ~ Beta(α, α) and a permutation of the batch, then

    h = g_k(x);   h̃ = λ·h + (1−λ)·h[perm];   ỹ = λ·y + (1−λ)·y[perm];   loss = ℓ(f_k(h̃), ỹ)

where g_k runs the network up to point k and f_k from there. Gradients flow through g_k too.
S = {0} is Input Mixup (Zhang et al. 2018). This module draws (k, λ, permutation) and mixes tensors;
:class:`common.layers.LayerMixup` runs the mixed forward of any network at its named layers, and the
GAN uses :func:`mix` to mix a real batch with a fake one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

LamDist = Literal["beta", "uniform"]


@dataclass(frozen=True)
class Mix:
    """One draw of the mixing randomness for a batch of B examples."""

    point: int  # k: an index into the eligible layers (LayerMixup.names; 0 is often the input)
    lam: Tensor  # λ, shape () for one per batch or (B,) for one per example; float64
    perm: Tensor  # (B,) int64: example i is mixed with example perm[i]


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


class _PermuteBatch(torch.autograd.Function):
    """h[perm] whose backward gathers by the inverse permutation (grad[inv]) instead of autograd's
    accumulating scatter (index_put_ with accumulate): the same numbers, since each row of the gradient
    receives exactly one row; on the CPU 0.40-0.64x the time in bf16 channels-last, about 0.4 ms slower on small
    fp32 states (experiments/permute_bench.py, BENCHMARKS.md)."""

    @staticmethod
    def forward(ctx, h: Tensor, perm: Tensor, inverse: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(inverse)
        return h[perm]

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None]:  # type: ignore[override]
        (inverse,) = ctx.saved_tensors
        return grad[inverse], None, None


def permute_batch(h: Tensor, perm: Tensor) -> Tensor:
    """h[perm] for h of shape (B, ...) and perm a permutation of range(B) (:func:`sample_perm`), with a
    backward that gathers instead of scattering. A perm that is not a permutation raises ValueError."""
    if perm.shape != (h.shape[0],):
        raise ValueError(f"perm must have shape ({h.shape[0]},) for a batch of {h.shape[0]}, got {tuple(perm.shape)}")
    perm = perm.long()
    inverse = torch.zeros_like(perm).scatter_(0, perm, torch.arange(len(perm), device=perm.device))
    checkable = perm.device.type == "cpu" and not torch.compiler.is_compiling()  # no sync, no graph break
    if checkable and not torch.equal(perm[inverse], torch.arange(len(perm))):
        raise ValueError("perm must be a permutation of range(B): each index exactly once")
    if not h.requires_grad:
        return h[perm]
    return _PermuteBatch.apply(h, perm, inverse)


def mix(a: Tensor, b: Tensor, lam: Tensor) -> Tensor:
    """λ·a + (1−λ)·b for batches a, b of shape (B, ...); λ of shape () or (B,)."""
    if lam.dim() == 1:
        lam = lam.view(-1, *([1] * (a.dim() - 1))).to(a.dtype)
    return a * lam + b * (1 - lam)


def soft_cross_entropy(logits: Tensor, targets: Tensor) -> Tensor:
    """ℓ of eq. 1 for mixed targets: −Σ_c ỹ_c log softmax(logits)_c, averaged over the batch; logits and
    targets (B, C), each target row summing to 1. In float32 under autocast too (CPU autocast would run
    log_softmax in bf16)."""
    return -(targets * F.log_softmax(logits.float(), dim=1)).sum(1).mean()
