import sys

import pytest
import torch
import torchvision
from torch import nn

from manifold_mixup.common.config import UsageError
from manifold_mixup.common.layers import LayerMixup
from manifold_mixup.common.mixup import sample_mix
from manifold_mixup.common.registry import build, spec


def test_a_torchvision_resnet_gets_the_cifar_stem_for_any_channel_count():
    torch.manual_seed(0)
    model = build(spec("torchvision:resnet18", num_classes=10, in_channels=1))
    assert isinstance(model, torchvision.models.ResNet)
    assert (model.conv1.in_channels, model.conv1.kernel_size, model.conv1.stride) == (1, (3, 3), (1, 1))
    assert isinstance(model.maxpool, nn.Identity) and model.fc.out_features == 10
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, 10)


def test_it_mixes_at_named_layers_and_the_gradient_reaches_the_stem():
    torch.manual_seed(0)
    model = build(spec("torchvision:resnet18", num_classes=10, in_channels=3))
    mixer = LayerMixup(model, "input,layer1,layer2")
    x, y = torch.randn(4, 3, 16, 16), torch.eye(10)[:4]
    for _ in range(3):
        logits, y_mixed = mixer(x, y, sample_mix(4, mixer.points, alpha=2.0))
        (-(y_mixed * logits.log_softmax(1)).sum(1).mean()).backward()
        assert model.conv1.weight.grad.abs().sum() > 0
        model.zero_grad()


def test_other_families_keep_their_stem_and_refuse_other_channel_counts():
    model = build(spec("torchvision:mobilenet_v2", num_classes=5, in_channels=3))
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 5)
    with pytest.raises(UsageError, match=r"takes 3-channel images, these have 1") as e:
        build(spec("torchvision:mobilenet_v2", num_classes=5, in_channels=1))
    assert "\n" not in str(e.value)


def test_an_unknown_torchvision_name_names_the_closest():
    with pytest.raises(UsageError, match=r"no classifier 'resnet181' \(closest: resnet18") as e:
        build(spec("torchvision:resnet181", num_classes=10))
    assert "\n" not in str(e.value)


# --- timm:NAME (the optional extra .[timm]) -----------------------------------------------------------------------


def test_a_timm_model_is_built_without_weights_for_any_channel_count_and_mixes_at_named_layers():
    timm = pytest.importorskip("timm", reason="timm is the optional extra .[timm]")
    torch.manual_seed(0)
    model = build(spec("timm:test_resnet", num_classes=10, in_channels=1))
    assert isinstance(model, timm.models.ResNet) and model.num_classes == 10
    assert model.default_cfg["architecture"] == "test_resnet"
    first = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    assert first.in_channels == 1
    mixer = LayerMixup(model, "input,layer1,layer2")
    x, y = torch.randn(4, 1, 8, 8), torch.eye(10)[:4]
    for point in mixer.points:  # each named layer in turn
        logits, y_mixed = mixer(x, y, sample_mix(4, [point], alpha=2.0))
        (-(y_mixed * logits.log_softmax(1)).sum(1).mean()).backward()
        assert first.weight.grad.abs().sum() > 0
        model.zero_grad()


def test_an_unknown_timm_name_names_the_closest():
    pytest.importorskip("timm", reason="timm is the optional extra .[timm]")
    with pytest.raises(UsageError, match=r"timm has no model 'resnet10x' \(closest: resnet10t") as e:
        build(spec("timm:resnet10x", num_classes=10))
    assert "\n" not in str(e.value)


def test_without_timm_a_timm_name_is_one_line_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # `import timm` raises ImportError, as when it is absent
    with pytest.raises(UsageError, match=r"timm:resnet10t needs timm, an optional extra: pip install -e '.\[timm\]'"):
        build(spec("timm:resnet10t", num_classes=10))
