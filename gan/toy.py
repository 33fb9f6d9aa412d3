"""The 2-D ring of 8 Gaussians, the standard mode-collapse benchmark (Metz et al. 2017; VEEGAN).

Real points are drawn from 8 Gaussians with standard deviation σ on a circle of radius 2. A
generated point is *high quality* when it lies within 3σ of its nearest mode; a mode is *covered*
when at least 2% of the generated points are high-quality points of that mode (a uniform
generator would put 12.5% in each).
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import Tensor, nn

from common.staged import StagedNet
from gan.nets import maybe_spectral_norm

NUM_MODES = 8
RADIUS = 2.0


def ring_modes(device: torch.device | str = "cpu") -> Tensor:
    """(8, 2) centres of the mixture."""
    angles = torch.arange(NUM_MODES, device=device) * (2 * math.pi / NUM_MODES)
    return RADIUS * torch.stack([angles.cos(), angles.sin()], 1)


def sample_ring(n: int, sigma: float, device: torch.device | str = "cpu") -> Tensor:
    """(n, 2) points of the mixture, modes chosen uniformly."""
    modes = ring_modes(device)[torch.randint(NUM_MODES, (n,), device=device)]
    return modes + sigma * torch.randn(n, 2, device=device)


def mode_metrics(points: Tensor, sigma: float, min_fraction: float = 0.02) -> dict[str, float]:
    """Modes covered (out of 8) and the fraction of high-quality points, for points (N, 2)."""
    distances = torch.cdist(points.float(), ring_modes(points.device))
    nearest = distances.min(1)
    good = nearest.values <= 3 * sigma
    per_mode = torch.bincount(nearest.indices[good], minlength=NUM_MODES)
    return {
        "modes_covered": int((per_mode >= min_fraction * len(points)).sum()),
        "high_quality": float(good.float().mean()),
    }


class MLPGenerator(nn.Module):
    """z (B, z_dim) -> points (B, 2)."""

    def __init__(self, z_dim: int = 8, hidden: int = 128, layers: int = 3):
        super().__init__()
        self.z_dim = z_dim
        dims = [z_dim] + [hidden] * layers
        body = [m for a, b in itertools.pairwise(dims) for m in (nn.Linear(a, b), nn.ReLU())]
        self.net = nn.Sequential(*body, nn.Linear(hidden, 2))

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)


class MLPDiscriminator(StagedNet):
    """points (B, 2) -> logits (B,); each hidden layer is a stage, so ``h1``, ``h2``... are mixing points."""

    def __init__(self, hidden: int = 128, layers: int = 3, sn: bool = False):
        dims = [2] + [hidden] * layers
        stages: list[nn.Module] = [
            nn.Sequential(maybe_spectral_norm(nn.Linear(a, b), sn), nn.ReLU()) for a, b in itertools.pairwise(dims)
        ]
        stages.append(nn.Sequential(maybe_spectral_norm(nn.Linear(hidden, 1), sn), nn.Flatten(0)))
        super().__init__(stages)
