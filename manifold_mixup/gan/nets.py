"""SNGAN ResNet generator and discriminator for small images (Miyato et al. 2018, Appendix B.4).

For 32x32 CIFAR-10 (the defaults)::

    G: z (128) -> linear -> 4x4x256 -> 3 x [upsampling residual block, 256 ch, BN-ReLU]
       -> BN-ReLU-conv3x3-tanh -> (B, 3, 32, 32)
    D: stage 1  optimized block 3 -> 128, downsample     pixel -> h1   (B, 128, 16, 16)
       stage 2  residual block, downsample               h1 -> h2      (B, 128, 8, 8)
       stage 3  residual block                           h2 -> h3      (B, 128, 8, 8)
       stage 4  residual block                           h3 -> h4      (B, 128, 8, 8)
       stage 5  ReLU, global sum pooling, linear         h4 -> logit   (B,)

Every layer of D is spectrally normalised with torch's parametrization. D is a
:class:`~common.staged.StagedNet`, so Manifold Mixup can mix at any of its points. With ``stem`` channels
D first runs a 3x3 convolution (the released code's "preproc" D of the preprint's FID 20.7 result), whose
output is the mixing point ``conv1`` (B, stem, H, W); ``h1``, ``h2`` .. stay the outputs of blocks 1, 2 ..
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import _SpectralNorm

from manifold_mixup.common.config import UsageError
from manifold_mixup.common.registry import register, spec
from manifold_mixup.common.staged import StagedNet


class FP32SpectralNorm(_SpectralNorm):
    """torch's spectral-norm parametrization with σ always in float32.

    Under autocast the parametrization runs inside the layer's forward, and CUDA's autocast runs the power
    iteration's ``torch.mv`` in bfloat16, which makes σ (and so every weight of D) noisy. Autocast is off
    here whatever the device; the normalised weight is cast by autocast at the layer as usual. The module
    keeps torch's buffers (``_u``, ``_v``) and state-dict keys, so checkpoints are unchanged.
    """

    def forward(self, weight: Tensor) -> Tensor:
        if weight.device.type == "meta":  # a size check builds on the meta device, where autocast does not exist
            return super().forward(weight.float())
        with torch.autocast(weight.device.type, enabled=False):
            return super().forward(weight.float())


def spectral_norm(module: nn.Module) -> nn.Module:
    """``torch.nn.utils.parametrizations.spectral_norm(module)`` (one power iteration) computed in float32."""
    parametrize.register_parametrization(module, "weight", FP32SpectralNorm(module.weight, 1, dim=0, eps=1e-12))
    return module


def maybe_spectral_norm(module: nn.Module, enabled: bool) -> nn.Module:
    return spectral_norm(module) if enabled else module


RESIDUAL_GAIN = 2**0.5


def init_sngan(net: nn.Module) -> None:
    """The SNGAN reference initialisation: Xavier-uniform weights, zero biases, with gain √2 for the
    3x3 convolutions on a residual branch (they follow a ReLU) and gain 1 for shortcuts, linear
    layers and the generator's output convolution. Spectral-normalised layers initialise the
    unnormalised weight."""
    residual = {id(m) for block in net.modules() if hasattr(block, "residual") for m in block.residual.modules()}
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            weight = m.parametrizations.weight.original if hasattr(m, "parametrizations") else m.weight
            nn.init.xavier_uniform_(weight, gain=RESIDUAL_GAIN if id(m) in residual else 1.0)
            nn.init.zeros_(m.bias)


class GBlock(nn.Module):
    """BN-ReLU-up-conv3x3-BN-ReLU-conv3x3 plus an upsampled 1x1 shortcut. (B, c_in, H, W) -> (B, c_out, 2H, 2W)."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.residual = nn.Sequential(
            nn.BatchNorm2d(c_in),
            nn.ReLU(),
            nn.Upsample(scale_factor=2),
            nn.Conv2d(c_in, c_out, 3, 1, 1),
            nn.BatchNorm2d(c_out),
            nn.ReLU(),
            nn.Conv2d(c_out, c_out, 3, 1, 1),
        )
        self.shortcut = nn.Sequential(nn.Upsample(scale_factor=2), nn.Conv2d(c_in, c_out, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.residual(x) + self.shortcut(x)


@register("sngan_generator")
class Generator(nn.Module):
    """z (B, z_dim) -> images (B, out_channels, bottom·2^blocks, ...) in [-1, 1]."""

    def __init__(self, z_dim: int = 128, channels: int = 256, bottom: int = 4, blocks: int = 3, out_channels: int = 3):
        super().__init__()
        self.z_dim, self.channels, self.bottom = z_dim, channels, bottom
        self.linear = nn.Linear(z_dim, channels * bottom * bottom)
        self.blocks = nn.Sequential(*[GBlock(channels, channels) for _ in range(blocks)])
        self.out = nn.Sequential(
            nn.BatchNorm2d(channels), nn.ReLU(), nn.Conv2d(channels, out_channels, 3, 1, 1), nn.Tanh()
        )
        init_sngan(self)

    def forward(self, z: Tensor) -> Tensor:
        h = self.linear(z).view(len(z), self.channels, self.bottom, self.bottom)
        return self.out(self.blocks(h))


class DBlock(nn.Module):
    """ReLU-conv3x3-ReLU-conv3x3 (-avgpool) plus a 1x1 (-avgpool) shortcut when the shape changes."""

    def __init__(self, c_in: int, c_out: int, down: bool, sn: bool = True):
        super().__init__()
        layers = [
            nn.ReLU(),
            maybe_spectral_norm(nn.Conv2d(c_in, c_out, 3, 1, 1), sn),
            nn.ReLU(),
            maybe_spectral_norm(nn.Conv2d(c_out, c_out, 3, 1, 1), sn),
        ]
        self.residual = nn.Sequential(*layers, *([nn.AvgPool2d(2)] if down else []))
        self.shortcut = nn.Identity()
        if down or c_in != c_out:
            self.shortcut = nn.Sequential(
                maybe_spectral_norm(nn.Conv2d(c_in, c_out, 1), sn), *([nn.AvgPool2d(2)] if down else [])
            )

    def forward(self, x: Tensor) -> Tensor:
        return self.residual(x) + self.shortcut(x)


class OptimizedDBlock(nn.Module):
    """The first D block: conv3x3-ReLU-conv3x3-avgpool plus avgpool-conv1x1 (no ReLU on the image)."""

    def __init__(self, c_in: int, c_out: int, sn: bool = True):
        super().__init__()
        self.residual = nn.Sequential(
            maybe_spectral_norm(nn.Conv2d(c_in, c_out, 3, 1, 1), sn),
            nn.ReLU(),
            maybe_spectral_norm(nn.Conv2d(c_out, c_out, 3, 1, 1), sn),
            nn.AvgPool2d(2),
        )
        self.shortcut = nn.Sequential(nn.AvgPool2d(2), maybe_spectral_norm(nn.Conv2d(c_in, c_out, 1), sn))

    def forward(self, x: Tensor) -> Tensor:
        return self.residual(x) + self.shortcut(x)


class SumPoolHead(nn.Module):
    """ReLU, global sum pooling, linear: (B, C, H, W) -> (B,) logits."""

    def __init__(self, channels: int, sn: bool = True):
        super().__init__()
        self.linear = maybe_spectral_norm(nn.Linear(channels, 1), sn)

    def forward(self, h: Tensor) -> Tensor:
        return self.linear(h.relu().sum(dim=(2, 3))).squeeze(1)


@register("sngan_discriminator")
class Discriminator(StagedNet):
    """Images (B, in_channels, H, W) -> logits (B,); one stage per block plus the head.

    ``down`` blocks halve the resolution (the first is the optimized block), ``plain`` blocks keep it.
    """

    def __init__(
        self, in_channels: int = 3, channels: int = 128, down: int = 2, plain: int = 2, sn: bool = True, stem: int = 0
    ):
        if down < 1:
            raise ValueError("the discriminator needs at least one downsampling block")
        first: list[nn.Module] = [maybe_spectral_norm(nn.Conv2d(in_channels, stem, 3, 1, 1), sn)] if stem else []
        blocks: list[nn.Module] = [*first, OptimizedDBlock(stem or in_channels, channels, sn)]
        blocks += [DBlock(channels, channels, down=True, sn=sn) for _ in range(down - 1)]
        blocks += [DBlock(channels, channels, down=False, sn=sn) for _ in range(plain)]
        super().__init__([*blocks, SumPoolHead(channels, sn)])
        self.stem = stem
        init_sngan(self)

    @property
    def mix_points(self) -> tuple[str, ...]:
        """("pixel", "h1", ..), with "conv1" after "pixel" when D has a first convolution."""
        return tuple(self.mix_point_layers)

    @property
    def mix_point_layers(self) -> dict[str, str]:
        """pixel -> input, conv1 -> stages.0 (with a stem), hk -> the output of block k."""
        if not self.stem:
            return super().mix_point_layers
        blocks = {f"h{i}": f"stages.{i}" for i in range(1, len(self.stages) - 1)}
        return {"pixel": "input", "conv1": "stages.0", **blocks}


def image_network_args(cfg: Any, shape: Sequence[int]) -> dict[str, dict[str, Any]]:
    """model_args of the SNGAN generator and discriminator for a GANConfig and images of ``shape`` (C, H, W)."""
    size = cfg.g_bottom * 2**cfg.g_blocks
    if size != shape[1]:
        raise UsageError(
            f"the generator makes {size}x{size} images (g_bottom·2^g_blocks) but the data is "
            f"{shape[1]}x{shape[2]}; adjust --g-bottom / --g-blocks"
        )
    return {
        "generator": spec(
            "sngan_generator",
            z_dim=cfg.z_dim,
            channels=cfg.g_channels,
            bottom=cfg.g_bottom,
            blocks=cfg.g_blocks,
            out_channels=shape[0],
        ),
        "discriminator": spec(
            "sngan_discriminator",
            in_channels=shape[0],
            channels=cfg.d_channels,
            down=cfg.d_down,
            plain=cfg.d_plain,
            sn=cfg.spectral_norm,
            **({"stem": cfg.d_stem} if cfg.d_stem else {}),  # old checkpoints' model_args have no stem
        ),
    }


@torch.no_grad()
def sample(G: nn.Module, z: Tensor) -> Tensor:
    """G(z) in eval mode (BatchNorm running statistics), then G's mode restored."""
    was_training = G.training
    G.eval()
    out = G(z)
    G.train(was_training)
    return out
