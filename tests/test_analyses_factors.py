import json

import pytest
import torch
import torch.nn.functional as F

import manifold_mixup.analyses.factors as M
from manifold_mixup.common.mixup import mix, sample_lam


def _factors(angle=0.0, bar=0.0, scale=1.0, dx=0.0, dy=0.0, width=0.8):
    return torch.tensor([[angle, bar, scale, dx, dy, width]])


def test_render_draws_a_one_and_a_seven_and_rotates_them():
    one = M.render(_factors())[0, 0]
    assert one.shape == (M.SIZE, M.SIZE) and one.min() >= 0 and one.max() <= 1
    # a "1" upright in the centre: a vertical stroke on the two middle columns, nothing far left or right
    assert one[3:13, 7:9].min() > 0.7 and one[:, :5].max() == 0 and one[:, 11:].max() == 0
    seven = M.render(_factors(bar=1.0))[0, 0]
    assert seven[2:4, 2:6].max() > 0.7 and one[2:4, 2:6].max() == 0  # the bar goes left from the stem's top
    assert torch.equal(seven[6:, 7:9], one[6:, 7:9])
    quarter = M.render(_factors(angle=90.0))[0, 0]
    assert torch.allclose(quarter, one.T, atol=1e-5)  # 90° turns the vertical stroke horizontal
    shifted = M.render(_factors(dx=1.0))[0, 0]
    assert torch.allclose(shifted[:, 1:], one[:, :-1], atol=1e-5)
    assert torch.equal(M.render(_factors(angle=33.0, bar=0.4)), M.render(_factors(angle=33.0, bar=0.4)))
    assert M.render(_factors(width=1.0)).sum() > M.render(_factors(width=0.6)).sum()


@pytest.mark.parametrize("name", ["A", "B", "C"])
def test_factors_follow_the_appendix_ranges_and_labels(name):
    task = M.TASKS[name]
    for split, ranges in (("train", task.train), ("test", task.test)):
        f, y = M.sample_factors(task, 4000, split, seed=1)
        assert f.shape == (4000, 6) and y.shape == (4000,) and set(y.tolist()) == {0, 1}
        angle, bar = f[:, 0], f[:, 1]
        assert set(bar.tolist()) == {0.0, 1.0}
        if task.label == "glyph":
            assert torch.equal(y, bar.long())
            lo, hi = min(r[0] for r in ranges), max(r[1] for r in ranges)
            assert angle.min() >= lo and angle.max() <= hi
        else:
            for c in (0, 1):
                assert angle[y == c].min() >= ranges[c][0] and angle[y == c].max() <= ranges[c][1]
            # the glyph is a nuisance: independent of the label
            assert abs(bar[y == 0].mean() - bar[y == 1].mean()) < 0.06
    a, _ = M.sample_factors(task, 50, "train", seed=3)
    assert torch.equal(a, M.sample_factors(task, 50, "train", seed=3)[0])
    assert not torch.equal(a, M.sample_factors(task, 50, "train", seed=4)[0])


def test_the_three_training_batches_mix_pixels_or_factors_with_one_lambda():
    f, y = M.sample_factors(M.TASKS["C"], 8, "train", seed=0)
    x, onehot = M.render(f), F.one_hot(y, 2).float()
    xb, tb = M.training_batch("none", f, x, onehot)
    assert xb is x and tb is onehot
    for method in ("input", "factor"):
        torch.manual_seed(5)
        xb, tb = M.training_batch(method, f, x, onehot)
        torch.manual_seed(5)
        lam, perm = sample_lam(M.ALPHA).float(), torch.randperm(8)
        expected = mix(x, x[perm], lam) if method == "input" else M.render(mix(f, f[perm], lam))
        assert torch.allclose(xb, expected) and torch.allclose(tb, mix(onehot, onehot[perm], lam))
    # a factor mix is a rendered glyph (strokes at full intensity), a pixel mix a double exposure
    torch.manual_seed(5)
    assert M.training_batch("factor", f, x, onehot)[0].amax((1, 2, 3)).min() == 1.0
    with pytest.raises(ValueError, match="unknown method"):
        M.training_batch("hidden", f, x, onehot)


def test_factor_mixup_beats_no_mixup_on_task_c():
    none = M.run_one("C", "none", 0, steps=300)
    factor = M.run_one("C", "factor", 0, steps=300)
    assert none["train_acc"] > 0.99 and factor["train_acc"] > 0.99
    assert factor["test_acc"] > 0.95 and factor["test_nll"] < none["test_nll"]


def test_main_writes_the_table_json_and_figure(tmp_path, capsys):
    out = tmp_path / "f.png"
    assert M.main(["--out", str(out), "--seeds", "0,1", "--steps", "5", "--tasks", "B"]) == 0
    result = json.loads(out.with_suffix(".json").read_text())
    assert list(result["summary"]) == ["B"] and list(result["summary"]["B"]) == list(M.METHODS)
    e = result["summary"]["B"]["factor"]
    assert e["seeds"] == 2 and e["paper"] == [84.02, 0.4572] and 0 <= e["test_acc"][0] <= 1
    assert len(result["runs"]) == 6 and "| B | Input Mixup (1.0) |" in capsys.readouterr().out
    assert out.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--tasks", "A,D"], "unknown task 'D'"),
        (["--methods", "manifold"], "unknown method 'manifold'"),
        (["--steps", "0"], "--steps must be >= 1"),
        (["--out", "x.jpg"], "--out must name a .png file"),
        (["--seeds", "0,0"], "--seeds repeats a seed"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(main_in_process, tmp_path, argv, message):
    code, _, err = main_in_process(M.main, *argv)
    assert code == 2 and len(err.strip().splitlines()) == 1 and message in err
