"""experiments/profile_step.py: the convolution replay runs exactly the step's convolutions, and the roofline
table's FLOPs are the convolutions' own."""

import importlib.util
import json
import sys

import pytest
import torch
from torch import nn

from conftest import ROOT

spec = importlib.util.spec_from_file_location("profile_step", ROOT / "experiments" / "profile_step.py")
P = importlib.util.module_from_spec(spec)
sys.modules["profile_step"] = P
spec.loader.exec_module(P)


def tiny_step():
    """A two-convolution network and one SGD step of it (channels-last), plus one no-grad convolution call."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 4, 3, stride=2, padding=1))
    net = net.to(memory_format=torch.channels_last)
    teacher = nn.Conv2d(3, 2, 1)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    x = torch.randn(5, 3, 8, 8).contiguous(memory_format=torch.channels_last)

    def step():
        with torch.no_grad():
            teacher(x)
        opt.zero_grad()
        net(x).square().mean().backward()
        opt.step()

    return net, teacher, step


def test_replay_runs_the_steps_convolutions_with_their_shapes_layout_and_gradients():
    net, teacher, step = tiny_step()
    replay = P.conv_replay(step, lambda: torch.autocast("cpu", enabled=False))
    seen = []

    def record(m, inputs, out):
        if isinstance(m, nn.Conv2d):
            x = inputs[0]
            seen.append((m, tuple(x.shape), x.is_contiguous(memory_format=torch.channels_last), out.requires_grad))

    handle = nn.modules.module.register_module_forward_hook(record)
    for m in net.parameters():
        m.grad = None
    try:
        replay()
    finally:
        handle.remove()
    assert [s[0] for s in seen] == [teacher, net[0], net[2]]
    assert [s[1] for s in seen] == [(5, 3, 8, 8), (5, 3, 8, 8), (5, 8, 8, 8)]
    assert all(s[2] for s in seen)  # the step's channels-last layout, kept
    assert [s[3] for s in seen] == [False, True, True]  # the teacher's call stays without gradients
    assert all(p.grad is not None for p in net.parameters())  # backward ran through the step's convolutions


def test_roofline_counts_the_convolutions_flops():
    _, _, step = tiny_step()
    rates = P.roofline({"tiny": step}, lambda: torch.autocast("cpu", enabled=False), repeats=3)["tiny"]
    # forward: 2 * output elements * (in_channels * kernel area); backward of a conv needing its input's
    # gradient: twice the forward, else once (the weight gradient only); the no-grad teacher: forward only
    first = 2 * 5 * 8 * 8 * 8 * (3 * 9)
    second = 2 * 5 * 4 * 4 * 4 * (8 * 9)
    teacher = 2 * 5 * 2 * 8 * 8 * 3
    expected = teacher + 2 * first + 3 * second
    assert rates["conv_gflop"] * 1e9 == pytest.approx(expected)
    assert rates["gflop"] >= rates["conv_gflop"]
    assert rates["step_ms"] > 0 and rates["convs_alone_ms"] > 0 and rates["convs_share"] > 0


def test_show_prints_a_saved_profiles_tables_and_refuses_another_file(tmp_path, capsys):
    results = {
        k: {"ms_per_step": 10.0, "by_kind_ms": {"convolution": 7.0, "batch norm": 3.0}, "top_ops_ms": {"aten::x": 7.0}}
        for k in P.STEP_KINDS
    }
    rates = {
        k: {
            "step_ms": 10,
            "convs_alone_ms": 7,
            "convs_share": 0.7,
            "gflop": 1,
            "step_gflops": 100,
            "convs_alone_gflops": 143,
        }
        for k in P.STEP_KINDS
    }
    args = {
        "depth": 10,
        "width": 2,
        "batch_size": 8,
        "path": "amp",
        "threads": 1,
        "zca": False,
        "steps": 2,
        "warmup": 1,
    }
    saved = tmp_path / "profile.json"
    saved.write_text(json.dumps({"args": args, "results": results, "roofline": rates}))
    assert P.main(["--show", str(saved)]) == 0
    out = capsys.readouterr().out
    assert "| convolution | 7.0 ms (70 %) |" in out and "| 10 | 7 | 70 % | 1.0 | 100 | 143 |" in out
    (tmp_path / "other.json").write_text('{"rows": []}')
    with pytest.raises(P.UsageError, match="not a profile saved with --json"):
        P.main(["--show", str(tmp_path / "other.json")])
