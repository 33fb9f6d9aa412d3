import pytest
import torch

from manifold_mixup.classifiers.preact import PAPER_MIX_POINTS, PreActResNet, PreActResNet18, PreActResNet34
from manifold_mixup.classifiers.recipes import build_classifier
from manifold_mixup.classifiers.wrn import WideResNet
from manifold_mixup.common.config import UsageError
from manifold_mixup.common.layers import LayerMixup, check_layers
from manifold_mixup.common.mixup import sample_mix
from manifold_mixup.common.registry import ARCHS, classifiers


def num_params(model):
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    ("make", "expected"),
    # The published sizes of the CIFAR variants (10 classes): 11.17M and 21.28M parameters.
    [(PreActResNet18, 11.17e6), (PreActResNet34, 21.28e6)],
)
def test_parameter_counts_match_the_cifar_variants(make, expected):
    assert abs(num_params(make(10)) - expected) / expected < 0.01


def test_wrn_28_10_has_the_size_of_zagoruyko_and_komodakis():
    model = build_classifier("wrn28_10", 10, 3)
    assert isinstance(model, WideResNet)
    assert abs(num_params(model) - 36.5e6) / 36.5e6 < 0.01  # "WRN-28-10, 36.5M parameters"


def test_stage_shapes_on_32x32_input():
    model = PreActResNet18(num_classes=100).eval()
    x = torch.randn(2, 3, 32, 32)
    assert model.mix_points == ("pixel", "h1", "h2", "h3", "h4")
    shapes = [tuple(model(x, 0, k).shape) for k in range(1, 5)]
    assert shapes == [(2, 64, 32, 32), (2, 128, 16, 16), (2, 256, 8, 8), (2, 512, 4, 4)]
    assert model(x).shape == (2, 100)
    torch.testing.assert_close(model(model(x, 0, 2), 2), model(x))
    assert PreActResNet34(in_channels=1).eval()(torch.randn(2, 1, 32, 32)).shape == (2, 10)


def test_blocks_are_pre_activation_with_relu_and_no_dropout():
    model = PreActResNet18()
    assert not any(isinstance(m, (torch.nn.LeakyReLU, torch.nn.Dropout)) for m in model.modules())
    assert sum(isinstance(m, torch.nn.ReLU) for m in model.modules()) == 2 * 8 + 1  # two per block, one in the head
    assert all(m.bias is None for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert isinstance(model.stages[-1][0], torch.nn.BatchNorm2d)  # BN-ReLU before pooling


@pytest.mark.parametrize("point", ["pixel", "h1", "h2", "h3", "h4"])
def test_mixing_at_every_point_trains_the_stem(point):
    torch.manual_seed(0)
    model = PreActResNet((1, 1, 1, 1), num_classes=5)
    x, y = torch.randn(2, 3, 32, 32), torch.eye(5)[[1, 3]]
    mixer = LayerMixup(model, point)
    logits, targets = mixer(x, y, sample_mix(2, mixer.points, alpha=2.0))
    assert logits.shape == (2, 5) and torch.allclose(targets.sum(1), torch.ones(2, dtype=targets.dtype))
    torch.sum(-targets * logits.log_softmax(1)).backward()
    stem = model.stages[0][0].weight
    assert stem.grad is not None and stem.grad.abs().sum() > 0


def test_registry_names_its_networks_and_their_paper_mixing_points():
    assert classifiers() == ["wrn", "preactresnet18", "preactresnet34", "wrn28_10", "wrn28_2"]
    assert ARCHS["wrn"].paper_mix_points == ("pixel", "h1", "h2") and ARCHS["wrn"].kwargs["leaky_slope"] == 0.1
    assert ARCHS["preactresnet18"].paper_mix_points == PAPER_MIX_POINTS == ("pixel", "h1", "h2")
    assert ARCHS["wrn28_10"].paper_mix_points == ("pixel", "h1")
    model = build_classifier("preactresnet34", 100, 1)
    assert model.stages[0][0].in_channels == 1 and model.stages[-1][-1].out_features == 100
    assert check_layers(model, ARCHS["preactresnet34"].paper_mix_points) == ("input", "stages.0", "stages.1")


def test_wrn_28_10_follows_the_supervised_recipe():
    small = ARCHS["wrn28_10"].build(num_classes=10, depth=10, width=1)
    acts = [m for m in small.modules() if isinstance(m, torch.nn.LeakyReLU)]
    bns = [m for m in small.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert acts and all(a.negative_slope == 0.0 for a in acts)  # ReLU
    assert bns and all(b.momentum == 0.1 for b in bns)
    assert not any(isinstance(m, torch.nn.Dropout) for m in small.modules())


def test_unknown_architecture_is_one_line_listing_the_valid_names():
    with pytest.raises(UsageError) as e:
        build_classifier("resnet18", 10, 3)
    message = str(e.value)
    assert "\n" not in message and "'resnet18'" in message
    assert all(name in message for name in classifiers())
