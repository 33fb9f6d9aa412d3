"""The 2-D ring of 8 Gaussians, the standard mode-collapse benchmark (Metz et al. 2017; VEEGAN).

Real points are drawn from 8 Gaussians with standard deviation σ on a circle of radius 2. A
generated point is *high quality* when it lies within 3σ of its nearest mode; a mode is *covered*
when at least 2% of the generated points are high-quality points of that mode (a uniform
generator would put 12.5% in each).

Everything the GAN trainer does differently for the ring sits here, behind :class:`RingTask`: its
networks (MLPs), its data (fresh points every batch), its metrics and its scatter plot.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from manifold_mixup.common.dist import NO_DIST, Dist, shard
from manifold_mixup.common.registry import register, spec
from manifold_mixup.common.staged import StagedNet
from manifold_mixup.gan.nets import maybe_spectral_norm, sample

NUM_MODES = 8
RADIUS = 2.0
EVAL_SAMPLES = 2500  # generated points per evaluation when --eval-samples is not given


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


@register("ring_mlp_generator")
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


@register("ring_mlp_discriminator")
class MLPDiscriminator(StagedNet):
    """points (B, 2) -> logits (B,); each hidden layer is a stage, so ``h1``, ``h2``... are mixing points."""

    def __init__(self, hidden: int = 128, layers: int = 3, sn: bool = False):
        dims = [2] + [hidden] * layers
        stages: list[nn.Module] = [
            nn.Sequential(maybe_spectral_norm(nn.Linear(a, b), sn), nn.ReLU()) for a, b in itertools.pairwise(dims)
        ]
        stages.append(nn.Sequential(maybe_spectral_norm(nn.Linear(hidden, 1), sn), nn.Flatten(0)))
        super().__init__(stages)


def ring_network_args(cfg: Any, shape: Sequence[int] = (2,)) -> dict[str, dict[str, Any]]:
    """model_args of the ring's MLP generator and discriminator for a GANConfig."""
    return {
        "generator": spec("ring_mlp_generator", z_dim=cfg.z_dim, hidden=cfg.mlp_hidden, layers=cfg.mlp_layers),
        "discriminator": spec(
            "ring_mlp_discriminator", hidden=cfg.mlp_hidden, layers=cfg.mlp_layers, sn=cfg.spectral_norm
        ),
    }


class RingTask:
    """The ring for gan.train: real points drawn afresh, mode metrics, a scatter plot over the modes."""

    visual_noise = 1000  # points in each scatter plot
    num_images: int | None = None  # no finite training set
    shape: tuple[int, ...] = (2,)

    def __init__(self, cfg: Any, device: torch.device, dist: Dist = NO_DIST, say: Callable = print):
        self.cfg, self.device, self.dist = cfg, device, dist
        self.eval_every = cfg.eval_every  # updates between evaluations (0 = only at the end)
        # generated at once by an evaluation (and the memory estimate)
        self.eval_samples = EVAL_SAMPLES if cfg.eval_samples is None else cfg.eval_samples
        self.resident_bytes = 0

    def batch(self, i: int) -> Tensor:
        """This rank's part of a real batch: drawn for the global batch on every rank, then sharded."""
        return shard(sample_ring(self.cfg.batch_size, self.cfg.ring_sigma, self.device), self.dist)

    def start_evaluation(self) -> str | None:
        """Nothing to prepare; never skipped."""
        return None

    def evaluate(self, G: nn.Module) -> dict[str, float]:
        """Modes covered and high-quality fraction, on noise of its own generator: how often we evaluate
        must not change training."""
        g = torch.Generator().manual_seed(self.cfg.seed)
        z = torch.randn(self.eval_samples, G.z_dim, generator=g).to(self.device)
        return mode_metrics(sample(G, z), self.cfg.ring_sigma)

    def save_visual(self, G: nn.Module, z: Tensor, path: Path) -> None:
        """A scatter plot of G(z) over the ring's modes."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        x = sample(G, z).float().cpu()
        fig, ax = plt.subplots(figsize=(4, 4))
        ax.scatter(x[:, 0], x[:, 1], s=2, alpha=0.4, label="generated")
        modes = ring_modes()
        ax.scatter(modes[:, 0], modes[:, 1], s=30, c="red", marker="x", label="modes")
        ax.set_xlim(-3, 3)
        ax.set_ylim(-3, 3)
        ax.set_aspect("equal")
        ax.set_title(path.stem)
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
