import torch
from torch import nn

from manifold_mixup.common.staged import StagedNet


def test_mix_points_name_the_input_and_every_stage_output_but_the_last():
    net = StagedNet([nn.Identity(), nn.Identity(), nn.Identity()])
    assert net.mix_points == ("pixel", "h1", "h2")


def test_forward_runs_the_requested_stage_range():
    net = StagedNet([nn.Linear(2, 2) for _ in range(3)])
    x = torch.randn(4, 2)
    full = net(x)
    torch.testing.assert_close(net(net(x, 0, 1), 1), full)
    torch.testing.assert_close(net(net(x, 0, 2), 2, 3), full)
    torch.testing.assert_close(net(x, 0, 0), x)
    torch.testing.assert_close(net.stages[2](net.stages[1](net.stages[0](x))), full)
