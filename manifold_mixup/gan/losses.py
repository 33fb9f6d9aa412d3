"""GAN losses and the discriminator's mixup term (ICML 2019 Appendix E, eqs. 4-7; preprint §4.4).

``real_part(d)`` / ``fake_part(d)`` are the per-example losses of calling logits ``d`` real / fake:

    ns (non-saturating JS):  softplus(−d) / softplus(d)
    hinge:                   relu(1 − d)  / relu(1 + d)

A mix whose *real fraction* is t is trained towards t with t·real_part + (1−t)·fake_part: for
``ns`` this is exactly BCE with the soft target t (ICML eq. 5), for ``hinge`` the λ-weighted sum of
the two hinge terms. The generator's loss sees a mix only with ``--g-mix`` (ICML eq. 6: G maximises the
whole objective, mixup term included; gan/train.py). :func:`gradient_penalty` is D's optional penalty.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from manifold_mixup.common.mixup import mix, permute_batch, sample_lam, sample_perm

Loss = Literal["ns", "hinge"]
PAIRS = ("rf", "fr", "ff")


def real_part(d: Tensor, loss: Loss) -> Tensor:
    return F.softplus(-d) if loss == "ns" else F.relu(1 - d)


def fake_part(d: Tensor, loss: Loss) -> Tensor:
    return F.softplus(d) if loss == "ns" else F.relu(1 + d)


def soft_label_loss(d: Tensor, real_fraction: Tensor | float, loss: Loss) -> Tensor:
    """mean of t·real_part(d) + (1−t)·fake_part(d) for logits d (B,) and real fraction t."""
    return (real_fraction * real_part(d, loss) + (1 - real_fraction) * fake_part(d, loss)).mean()


def d_loss(d_real: Tensor, d_fake: Tensor, loss: Loss) -> Tensor:
    """The ordinary discriminator loss: real batch towards real, fake batch towards fake."""
    return real_part(d_real, loss).mean() + fake_part(d_fake, loss).mean()


def g_loss(d_fake: Tensor, loss: Loss) -> Tensor:
    """The generator's loss: non-saturating −log D(G(z)) for ns, −D(G(z)) for hinge. No mixup term."""
    return F.softplus(-d_fake).mean() if loss == "ns" else -d_fake.mean()


def mix_real_fraction(pair: str, lam: Tensor, labels: Literal["soft", "fake"]) -> tuple[Tensor, Tensor]:
    """(λ used to mix, real fraction of the mix = its label) for one pair type.

    The mix is λ·first + (1−λ)·second with first/second = real/fake (rf), fake/real (fr), fake/fake (ff).
    soft: the label is the real fraction (ICML eq. 5). fake: every mix is labelled 0, and λ is
    folded to min(λ, 1−λ) so that rf and fr mixes are at least half fake (preprint, footnote 3).
    """
    if labels == "fake":
        lam = torch.minimum(lam, 1 - lam)
        if pair == "fr":  # the real batch is second: keep its share ≤ 1/2 as well
            lam = 1 - lam
        return lam, torch.zeros_like(lam)
    real = {"rf": lam, "fr": 1 - lam, "ff": torch.zeros_like(lam)}[pair]
    return lam, real


@dataclass(frozen=True)
class PairMix:
    """The randomness of one pair type's mixes, drawn before D runs: λ, the fake-fake permutation, the label."""

    pair: str  # rf, fr or ff
    lam: Tensor  # () CPU float64, or (B,) on the states' device with per_example
    perm: Tensor | None  # (B,) for ff: fake example i is mixed with fake example perm[i]
    target: Tensor  # the real fraction of the mix: () CPU scalar, or (B,) float32


def sample_mixes(
    pairs: Sequence[str],
    labels: Literal["soft", "fake"],
    lam_dist: Literal["uniform", "beta"],
    alpha: float,
    batch: int,
    per_example: bool = False,
    device: torch.device | str | None = None,
) -> list[PairMix]:
    """λ (once per pair type per step, or once per example with ``per_example``, the original code's choice)
    and the fake-fake permutation of each pair type, drawn outside D so that a compiled D sees no sampling."""
    draws = []
    for pair in pairs:
        lam = sample_lam(alpha, (batch,) if per_example else (), lam_dist)
        lam, target = mix_real_fraction(pair, lam.to(device) if per_example else lam, labels)
        perm = sample_perm(batch, device) if pair == "ff" else None
        target = target.float() if per_example else target  # float32 labels keep the loss float32
        draws.append(PairMix(pair, lam, perm, target))
    return draws


def apply_mixes(h_real: Tensor, h_fake: Tensor, draws: Sequence[PairMix]) -> Tensor:
    """The mixes of hidden states (ICML eq. 4), (P·B, ...) in the order of ``draws``.

    h_real, h_fake: (B, ...) states of D's layers before the mixing point for the real and fake batches.
    """
    mixes = []
    for d in draws:
        if d.pair == "rf":
            mixes.append(mix(h_real, h_fake, d.lam))
        elif d.pair == "fr":
            mixes.append(mix(h_fake, h_real, d.lam))
        else:
            mixes.append(mix(h_fake, permute_batch(h_fake, d.perm), d.lam))
    return torch.cat(mixes)


def mixup_loss(d_mixes: Tensor, targets: Sequence[Tensor], loss: Loss) -> Tensor:
    """The mixup term of D (ICML eq. 6-7): ONE expectation over all P·B mixes of the soft-label loss.

    d_mixes: (P·B,) logits, P equal chunks in the order of ``targets``. Every pair type gets weight
    1/P, so adding fake-fake mixes to real-fake ones does not double the term (the original code
    took one BCE mean over all mixes).
    """
    chunks = d_mixes.chunk(len(targets))
    return torch.stack([soft_label_loss(d, t, loss) for d, t in zip(chunks, targets)]).mean()


def gradient_penalty(out: Tensor, x: Tensor, on: Literal["real", "interp"]) -> Tensor:
    """The gradient penalty without its γ, for D's outputs ``out`` (B,) on inputs ``x`` (B, ...).

    real (R1, Mescheder et al. 2018; the released code's ``--dnorm``): mean over the batch of ‖∇ₓ out‖²;
    interp (WGAN-GP, Gulrajani et al. 2017): mean of (‖∇ₓ out‖ − 1)², for x̂ on real-fake lines.
    ``x`` must require grad; the result keeps the graph (create_graph), so it trains D's weights.
    Each example's output must depend on its own input only (no batch statistics in D).
    """
    (grad,) = torch.autograd.grad(out.float().sum(), x, create_graph=True)
    grad = grad.float().flatten(1)
    if on == "real":
        return grad.pow(2).sum(1).mean()
    return (grad.norm(dim=1) - 1).pow(2).mean()
