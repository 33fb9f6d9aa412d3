import pytest
import torch

from manifold_mixup.classifiers.wrn import WideResNet


def test_wrn_28_2_has_the_size_of_oliver_et_al():
    model = WideResNet(num_classes=10, depth=28, width=2)
    assert 1.45e6 < sum(p.numel() for p in model.parameters()) < 1.5e6  # "WRN-28-2, 1.5M parameters"
    assert model.mix_points == ("pixel", "h1", "h2", "h3")


def test_stage_shapes_on_cifar_sized_input():
    model = WideResNet(depth=10, width=2).eval()
    x = torch.randn(2, 3, 32, 32)
    assert model(x, 0, 1).shape == (2, 32, 32, 32)
    assert model(x, 0, 2).shape == (2, 64, 16, 16)
    assert model(x, 0, 3).shape == (2, 128, 8, 8)
    assert model(x).shape == (2, 10)
    torch.testing.assert_close(model(model(x, 0, 2), 2), model(x))


def test_small_grayscale_images_work():
    model = WideResNet(num_classes=10, depth=10, width=1, in_channels=1)
    assert model(torch.randn(3, 1, 8, 8)).shape == (3, 10)


def test_options_reach_the_layers():
    model = WideResNet(depth=10, width=1, leaky_slope=0.01, bn_momentum=0.9, dropout=0.3)
    acts = [m for m in model.modules() if isinstance(m, torch.nn.LeakyReLU)]
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert acts and all(a.negative_slope == 0.01 for a in acts)
    assert bns and all(b.momentum == 0.9 for b in bns)
    assert any(isinstance(m, torch.nn.Dropout) and m.p == 0.3 for m in model.modules())
    assert all(m.bias is None for m in model.modules() if isinstance(m, torch.nn.Conv2d))


@pytest.mark.parametrize("depth", [8, 27, 4])
def test_invalid_depth_is_rejected(depth):
    with pytest.raises(ValueError, match="6n\\+4"):
        WideResNet(depth=depth)
