"""Other libraries' classifiers by name, for :func:`common.registry.build`: ``torchvision:NAME``, ``timm:NAME``.

    python -m ssl.train --arch torchvision:resnet18 --mix-points input,layer1,layer2
    python -m ssl.train --arch timm:resnet10t --mix-points input,layer1,layer2    # pip install -e ".[timm]"

torchvision's classifiers are built for 224-pixel ImageNet images. On this package's 8- to 32-pixel images
a ResNet gets the CIFAR stem (a 3×3 stride-1 first convolution taking ``in_channels``, no max pool; the
variant of the mixup papers); other families keep their stem and need 3-channel images. No weights are
downloaded: every network starts from torchvision's initialisation.

timm (an optional extra) builds its models with ``pretrained=False``, ``num_classes`` and ``in_chans``
and keeps their stems as timm defines them: ResNets and most CNNs run on 8-pixel images (their features
shrink to 1×1), while models with a fixed patch grid (ViTs) or large downsampling kernels need larger images.
"""

from __future__ import annotations

import difflib

from torch import nn

from manifold_mixup.common.config import UsageError
from manifold_mixup.common.registry import Constructor, register_prefix


def torchvision_classifier(name: str) -> Constructor:
    """The constructor of torchvision's classifier ``name``; an unknown name is a UsageError naming the closest."""
    import torchvision

    names = torchvision.models.list_models(module=torchvision.models)
    if name not in names:
        close = difflib.get_close_matches(name, names, n=4, cutoff=0.5)
        hint = f"closest: {', '.join(close)}" if close else f"for example {', '.join(names[:4])}"
        raise UsageError(f"torchvision has no classifier {name!r} ({hint}; torchvision.models.list_models() lists all)")

    def build(num_classes: int, in_channels: int = 3) -> nn.Module:
        model = torchvision.models.get_model(name, weights=None, num_classes=num_classes)
        if isinstance(model, torchvision.models.ResNet):
            width = model.conv1.out_channels
            model.conv1 = nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)  # the CIFAR stem
            model.maxpool = nn.Identity()
        elif in_channels != 3:
            raise UsageError(
                f"torchvision:{name} takes 3-channel images, these have {in_channels}: use a torchvision ResNet "
                "(its stem is rebuilt for any channel count) or a 3-channel dataset"
            )
        return model

    return build


def timm_classifier(name: str) -> Constructor:
    """The constructor of timm's model ``name`` (no weights); a missing timm or an unknown name is a UsageError."""
    try:
        import timm
    except ImportError:
        raise UsageError(
            f"timm:{name} needs timm, an optional extra: pip install -e '.[timm]' (or pip install timm)"
        ) from None
    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=4, cutoff=0.5)
        hint = f"closest: {', '.join(close)}" if close else "for example resnet10t, test_resnet"
        raise UsageError(f"timm has no model {name!r} ({hint}; timm.list_models() lists all)")

    def build(num_classes: int, in_channels: int = 3) -> nn.Module:
        return timm.create_model(name, pretrained=False, num_classes=num_classes, in_chans=in_channels)

    return build


register_prefix("torchvision", torchvision_classifier)
register_prefix("timm", timm_classifier)
