import json

import pytest
import torch

from manifold_mixup.analyses.spiral import BOTTLENECK, METHODS, hidden_box, main, make_spirals, spiral_net
from manifold_mixup.common.config import UsageError
from manifold_mixup.common.layers import check_layers


def test_spirals_have_the_right_shapes_and_balanced_labels():
    x, y = make_spirals(37, seed=3)
    assert x.shape == (74, 2) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert torch.bincount(y).tolist() == [37, 37]
    radius = x.norm(dim=1)
    assert 0.05 < radius.mean() < 1.0 and radius.max() < 1.4


def test_spirals_are_deterministic_given_the_seed_and_leave_the_global_generator_alone():
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    a, ya = make_spirals(20, seed=5)
    assert torch.equal(torch.rand(3), expected_next)
    b, yb = make_spirals(20, seed=5)
    assert torch.equal(a, b) and torch.equal(ya, yb)
    assert not torch.equal(a, make_spirals(20, seed=6)[0])


def test_the_two_classes_are_interleaved_spirals():
    x, y = make_spirals(200, noise=0.0, seed=0)
    # without noise every point lies on r = t, angle 3πt + cπ: class 1 is class 0 turned by π
    angle = torch.atan2(x[:, 1], x[:, 0]) - 2 * torch.pi * 1.5 * x.norm(dim=1) - torch.pi * y
    assert torch.allclose(torch.cos(angle), torch.ones_like(angle), atol=1e-4)


def test_the_net_has_a_2d_bottleneck_and_manifold_mixes_up_to_it():
    net = spiral_net(width=8)
    x = torch.rand(4, 2)
    assert net(x, 0, BOTTLENECK).shape == (4, 2) and net(x).shape == (4, 2)
    assert check_layers(net, METHODS["manifold"][0]) == ("input", "stages.0", "stages.1", f"stages.{BOTTLENECK - 1}")
    assert check_layers(net, METHODS["input"][0]) == ("input",)


def test_hidden_box_widens_the_bounding_box():
    lo, hi = hidden_box(torch.tensor([[0.0, 0.0], [4.0, 2.0]]), margin=0.25)
    assert lo.tolist() == [-1.0, -0.5] and hi.tolist() == [5.0, 2.5]


def test_command_writes_the_figure_and_the_numbers(tmp_path, capsys):
    out = tmp_path / "docs" / "spiral.png"
    assert main(["--out", str(out), "--steps", "2", "--seed", "1"]) == 0
    assert out.read_bytes()[:4] == b"\x89PNG" and out.stat().st_size < 300_000
    result = json.loads(out.with_suffix(".json").read_text())
    assert list(result["results"]) == ["none", "input", "manifold"]
    for numbers in result["results"].values():
        for key in ("test_acc", "uniform_mean_confidence", "hidden_plane_confident_fraction"):
            assert 0 <= numbers[key] <= 1
        assert numbers["uniform_mean_confidence"] >= 0.5
    assert "--steps 2" in result["protocol"]["command"] and "| `manifold` |" in capsys.readouterr().out


def test_zero_steps_is_one_line_exit_2_and_touches_nothing(tmp_path, in_process):
    existing = tmp_path / "spiral.png"
    existing.write_bytes(b"old figure")
    bad = in_process("analyses.spiral", "--out", str(existing), "--steps", "0")
    assert bad.returncode == 2 and "--steps must be >= 1" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1 and "Traceback" not in bad.stderr
    assert existing.read_bytes() == b"old figure" and [p.name for p in tmp_path.iterdir()] == ["spiral.png"]


def test_an_out_that_is_not_a_png_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="must name a .png"):
        main(["--out", str(tmp_path / "spiral.jpg"), "--steps", "1"])
    assert list(tmp_path.iterdir()) == []
