"""Wide ResNet (Zagoruyko & Komodakis 2016) as a sequence of mixable stages.

WRN-28-2 is the network of Oliver et al. 2018 that the paper's SSL experiments use (preprint §4.2):
a 3x3 stem with 16 channels, three groups of (depth−4)/6 pre-activation blocks with 16w, 32w,
64w channels (strides 1, 2, 2), then BN-LeakyReLU-global average pool-linear.

Stages and mixing points (preprint Appendix C mixes at the input and after groups 1 and 2)::

    stage 1: stem + group 1     pixel -> h1      (B, 16w, H, W)
    stage 2: group 2            h1 -> h2         (B, 32w, H/2, W/2)
    stage 3: group 3            h2 -> h3         (B, 64w, H/4, W/4)
    stage 4: head               h3 -> logits     (B, num_classes)

Defaults follow Oliver et al. and the later SSL literature (FixMatch, USB): LeakyReLU slope 0.1,
BatchNorm momentum 0.001 (TensorFlow's decay 0.999), no dropout, convolutions without bias.
The original Manifold Mixup code used slope 0.01 and dropout 0.3 (and momentum 0.9 on the last BN
only, a porting slip); those are reachable through the constructor arguments.
"""

from __future__ import annotations

from functools import partial

from torch import Tensor, nn

from manifold_mixup.common.registry import register
from manifold_mixup.common.staged import StagedNet


class Block(nn.Module):
    """Pre-activation residual block: BN-act-conv3x3-BN-act-(dropout)-conv3x3 plus a shortcut.

    When the shape changes, the shortcut is a strided 1x1 convolution of the activated input.
    (B, c_in, H, W) -> (B, c_out, H/stride, W/stride).
    """

    def __init__(self, c_in: int, c_out: int, stride: int, act: type[nn.Module], norm: type[nn.Module], dropout: float):
        super().__init__()
        self.bn1, self.act1 = norm(c_in), act()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn2, self.act2 = norm(c_out), act()
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.shortcut = None if c_in == c_out and stride == 1 else nn.Conv2d(c_in, c_out, 1, stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        o = self.act1(self.bn1(x))
        y = self.conv2(self.drop(self.act2(self.bn2(self.conv1(o)))))
        return y + (x if self.shortcut is None else self.shortcut(o))


ARCH = "wrn"  # its name in checkpoints' model_args (common/registry.py)
# ssl.train --arch wrn: WRN-depth-width of the flags, whose defaults (Oliver et al.'s WRN-28-2) are these; mixing
# at the input and after groups 1 and 2 (preprint Appendix C)
RECIPE = {"depth": 28, "width": 2, "leaky_slope": 0.1, "bn_momentum": 0.001, "dropout": 0.0}


@register(ARCH, kwargs=RECIPE, mix_points=("pixel", "h1", "h2"), classifier=True)
class WideResNet(StagedNet):
    """WRN-depth-width for (B, in_channels, H, W) images; ``mix_points`` = pixel, h1, h2, h3."""

    def __init__(
        self,
        num_classes: int = 10,
        depth: int = 28,
        width: int = 2,
        in_channels: int = 3,
        leaky_slope: float = 0.1,
        bn_momentum: float = 0.001,
        dropout: float = 0.0,
    ):
        if (depth - 4) % 6 or depth < 10:
            raise ValueError(f"WRN depth must be 6n+4 with n >= 1 (10, 16, 22, 28, ...), got {depth}")
        n = (depth - 4) // 6
        act = partial(nn.LeakyReLU, leaky_slope, inplace=True)
        norm = partial(nn.BatchNorm2d, momentum=bn_momentum)
        widths = [16, 16 * width, 32 * width, 64 * width]

        def group(c_in: int, c_out: int, stride: int) -> nn.Sequential:
            blocks = [Block(c_in, c_out, stride, act, norm, dropout)]
            blocks += [Block(c_out, c_out, 1, act, norm, dropout) for _ in range(n - 1)]
            return nn.Sequential(*blocks)

        stem = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        head = nn.Sequential(
            norm(widths[3]), act(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(widths[3], num_classes)
        )
        super().__init__(
            [
                nn.Sequential(stem, group(widths[0], widths[1], 1)),
                group(widths[1], widths[2], 2),
                group(widths[2], widths[3], 2),
                head,
            ]
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, a=leaky_slope, mode="fan_out", nonlinearity="leaky_relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.xavier_normal_(m.weight)
                nn.init.zeros_(m.bias)
