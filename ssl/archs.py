"""Classifier networks by name, with the constructor arguments and eligible mixing points of their recipe.

- ``preactresnet18`` / ``preactresnet34``: the ICML paper's supervised networks (Table 1), :mod:`ssl.preact`.
- ``wrn28_10``: WRN-28-10 of the supervised experiments. Appendix C gives only the optimiser, so the
  block follows the released supervised code: ReLU (``leaky_slope=0``), PyTorch's BatchNorm momentum 0.1
  (that code set 0.9 on the last BN only, the slip :mod:`ssl.wrn` mentions) and no dropout. Eligible
  layers: "the input layer and the output from the first resblock" (Appendix C), i.e. pixel, h1; the
  released code drew from the first three points (pixel, h1, h2) instead.
- ``wrn28_2``: the SSL network of Oliver et al. with :class:`ssl.wrn.WideResNet`'s defaults (LeakyReLU
  0.1, momentum 0.001); mixing at pixel, h1, h2 (preprint Appendix C).
- ``torchvision:NAME``, ``timm:NAME``: any torchvision classifier or timm model (:mod:`common.zoo`); it has no
  recipe, so Manifold Mixup needs its layers named (``--mix-points input,layer1,layer2``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from common.config import UsageError
from common.registry import Constructor, build, constructor, spec
from common.staged import StagedNet
from ssl.preact import ARCH as PREACT
from ssl.preact import PAPER_MIX_POINTS
from ssl.wrn import ARCH as WRN


@dataclass(frozen=True)
class Arch:
    model: str  # the constructor's name in common/registry.py, as checkpoints' model_args store it
    kwargs: Mapping[str, object] = field(default_factory=dict)  # besides num_classes and in_channels
    paper_mix_points: tuple[str, ...] = ()  # the paper's eligible set S for Manifold Mixup

    @property
    def build(self) -> Constructor:
        """The registered constructor, called as build(num_classes=..., in_channels=..., **kwargs)."""
        return constructor(self.model)


ARCHS: Mapping[str, Arch] = MappingProxyType(
    {
        "preactresnet18": Arch(PREACT, MappingProxyType({"blocks": (2, 2, 2, 2)}), PAPER_MIX_POINTS),
        "preactresnet34": Arch(PREACT, MappingProxyType({"blocks": (3, 4, 6, 3)}), PAPER_MIX_POINTS),
        "wrn28_10": Arch(
            WRN,
            MappingProxyType({"depth": 28, "width": 10, "leaky_slope": 0.0, "bn_momentum": 0.1, "dropout": 0.0}),
            ("pixel", "h1"),
        ),
        "wrn28_2": Arch(WRN, MappingProxyType({"depth": 28, "width": 2}), ("pixel", "h1", "h2")),
    }
)


def get_arch(name: str) -> Arch:
    """The registry entry of ``name``; an unknown name is a UsageError listing the valid ones."""
    if name not in ARCHS:
        raise UsageError(f"unknown architecture {name!r} (valid: {', '.join(ARCHS)})")
    return ARCHS[name]


def arch_model_args(name: str, num_classes: int, in_channels: int) -> dict[str, Any]:
    """The checkpoint's model_args of network ``name`` (common/registry.py), e.g. for ``build``."""
    arch = get_arch(name)
    return spec(arch.model, num_classes=num_classes, in_channels=in_channels, **arch.kwargs)


def build_classifier(name: str, num_classes: int, in_channels: int) -> StagedNet:
    """A freshly initialised network ``name`` for (B, in_channels, H, W) images and ``num_classes`` classes."""
    return build(arch_model_args(name, num_classes, in_channels))
