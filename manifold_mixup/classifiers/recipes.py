"""The classifier recipes of the papers, registered in common/registry.py (constructor arguments and
eligible mixing points); ``wrn`` (WRN-depth-width of the flags) is registered by :mod:`classifiers.wrn` itself.

- ``preactresnet18`` / ``preactresnet34``: the ICML paper's supervised networks (Table 1), :mod:`classifiers.preact`.
- ``wrn28_10``: WRN-28-10 of the supervised experiments. Appendix C gives only the optimiser, so the
  block follows the released supervised code: ReLU (``leaky_slope=0``), PyTorch's BatchNorm momentum 0.1
  (that code set 0.9 on the last BN only, the slip :mod:`classifiers.wrn` mentions) and no dropout. Eligible
  layers: "the input layer and the output from the first resblock" (Appendix C), i.e. pixel, h1; the
  released code drew from the first three points (pixel, h1, h2) instead.
- ``wrn28_2``: the SSL network of Oliver et al. with :class:`classifiers.wrn.WideResNet`'s defaults (LeakyReLU
  0.1, momentum 0.001); mixing at pixel, h1, h2 (preprint Appendix C).
- ``torchvision:NAME``, ``timm:NAME``: any torchvision classifier or timm model (:mod:`common.zoo`); it has no
  recipe, so Manifold Mixup needs its layers named (``--mix-points input,layer1,layer2``).
"""

from __future__ import annotations

from manifold_mixup.classifiers.preact import ARCH as PREACT
from manifold_mixup.classifiers.preact import PAPER_MIX_POINTS
from manifold_mixup.classifiers.wrn import ARCH as WRN
from manifold_mixup.common.registry import build, recipe_spec, register_recipe
from manifold_mixup.common.staged import StagedNet

register_recipe("preactresnet18", PREACT, {"blocks": (2, 2, 2, 2)}, PAPER_MIX_POINTS)
register_recipe("preactresnet34", PREACT, {"blocks": (3, 4, 6, 3)}, PAPER_MIX_POINTS)
register_recipe(
    "wrn28_10",
    WRN,
    {"depth": 28, "width": 10, "leaky_slope": 0.0, "bn_momentum": 0.1, "dropout": 0.0},
    ("pixel", "h1"),
)
register_recipe("wrn28_2", WRN, {"depth": 28, "width": 2}, ("pixel", "h1", "h2"))


def build_classifier(name: str, num_classes: int, in_channels: int) -> StagedNet:
    """A freshly initialised network ``name`` for (B, in_channels, H, W) images and ``num_classes`` classes."""
    return build(recipe_spec(name, num_classes=num_classes, in_channels=in_channels))
