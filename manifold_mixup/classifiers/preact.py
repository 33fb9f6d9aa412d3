"""Pre-activation ResNets (He et al. 2016, "Identity Mappings in Deep Residual Networks") for 32x32 images.

The CIFAR variants of the ICML paper's supervised experiments (Table 1, Appendix C): a 3x3 stem with
64 channels and stride 1, four groups of pre-activation basic blocks with 64, 128, 256, 512 channels
(strides 1, 2, 2, 2), [2, 2, 2, 2] blocks for PreActResNet18 and [3, 4, 6, 3] for PreActResNet34,
then BN-ReLU-global average pool-linear. The blocks are those of :mod:`classifiers.wrn` with ReLU, PyTorch's
default BatchNorm momentum and no dropout. Stages and mixing points::

    stage 1: stem + group 1     pixel -> h1      (B, 64, H, W)
    stage 2: group 2            h1 -> h2         (B, 128, H/2, W/2)
    stage 3: group 3            h2 -> h3         (B, 256, H/4, W/4)
    stage 4: group 4            h3 -> h4         (B, 512, H/8, W/8)
    stage 5: head               h4 -> logits     (B, num_classes)

Eligible layers. Appendix C: "for the PreActResNets architectures, the eligible layers for mixing were:
the input layer, the output from the first resblock, and the output from the second resblock", a
"resblock" being a group (PreActResNet18's first one "has four layers": two blocks of two convolutions).
That is S = {0, 1, 2} of the paper's Table 6 (the best set on CIFAR-10 there, 97.23%; {0, 1, 2, 3} was
best on CIFAR-100, 80.18% against 79.60%), here :data:`PAPER_MIX_POINTS` = pixel, h1, h2.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from manifold_mixup.classifiers.wrn import Block
from manifold_mixup.common.registry import register
from manifold_mixup.common.staged import StagedNet

PAPER_MIX_POINTS = ("pixel", "h1", "h2")
WIDTHS = (64, 128, 256, 512)
ARCH = "preactresnet"  # its name in checkpoints' model_args (common/registry.py), with ``blocks``


@register(ARCH)
class PreActResNet(StagedNet):
    """A pre-activation ResNet of basic blocks, ``blocks[i]`` of them in group i; ``mix_points`` = pixel, h1..h4."""

    def __init__(self, blocks: Sequence[int], num_classes: int = 10, in_channels: int = 3):
        if len(blocks) != len(WIDTHS) or min(blocks) < 1:
            raise ValueError(f"a PreActResNet has {len(WIDTHS)} groups of at least one block, got {list(blocks)}")
        act, norm = nn.ReLU, nn.BatchNorm2d

        def group(c_in: int, c_out: int, n: int, stride: int) -> nn.Sequential:
            first = Block(c_in, c_out, stride, act, norm, 0.0)
            return nn.Sequential(first, *(Block(c_out, c_out, 1, act, norm, 0.0) for _ in range(n - 1)))

        stem = nn.Conv2d(in_channels, WIDTHS[0], 3, 1, 1, bias=False)
        groups = [group(WIDTHS[0], WIDTHS[0], blocks[0], 1)]
        groups += [group(WIDTHS[i - 1], WIDTHS[i], blocks[i], 2) for i in range(1, len(WIDTHS))]
        head = nn.Sequential(
            norm(WIDTHS[-1]), act(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(WIDTHS[-1], num_classes)
        )
        super().__init__([nn.Sequential(stem, groups[0]), *groups[1:], head])
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)


def PreActResNet18(num_classes: int = 10, in_channels: int = 3) -> PreActResNet:
    """[2, 2, 2, 2] basic blocks: about 11.17M parameters for 10 classes."""
    return PreActResNet((2, 2, 2, 2), num_classes, in_channels)


def PreActResNet34(num_classes: int = 10, in_channels: int = 3) -> PreActResNet:
    """[3, 4, 6, 3] basic blocks: about 21.28M parameters for 10 classes."""
    return PreActResNet((3, 4, 6, 3), num_classes, in_channels)
