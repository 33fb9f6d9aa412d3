import torch

from manifold_mixup.gan.toy import MLPDiscriminator, mode_metrics, ring_modes, sample_ring


def test_real_ring_covers_all_modes_with_high_quality():
    torch.manual_seed(0)
    m = mode_metrics(sample_ring(2500, 0.02), 0.02)
    assert m["modes_covered"] == 8 and m["high_quality"] > 0.98


def test_collapsed_and_diffuse_generators_score_badly():
    torch.manual_seed(0)
    collapsed = ring_modes()[3] + 0.02 * torch.randn(2500, 2)
    assert mode_metrics(collapsed, 0.02)["modes_covered"] == 1
    diffuse = 4 * torch.rand(2500, 2) - 2
    assert mode_metrics(diffuse, 0.02)["high_quality"] < 0.05


def test_mlp_discriminator_has_mixing_points():
    D = MLPDiscriminator(hidden=16, layers=3)
    assert D.mix_points == ("pixel", "h1", "h2", "h3")
    assert D(torch.randn(5, 2)).shape == (5,)
