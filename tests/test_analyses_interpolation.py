import json
import shutil

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import manifold_mixup.analyses.interpolation as M
from manifold_mixup.common.layers import LayerMixup
from manifold_mixup.common.staged import StagedNet

from conftest import ROOT, run_module

DIGITS = str(ROOT / "configs" / "ssl" / "digits.yaml")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A 5-update supervised digits run of the real trainer (WRN-10-1: points pixel, h1, h2, h3)."""
    out = tmp_path_factory.mktemp("interp") / "run"
    result = run_module(
        "ssl.train",
        *("--config", DIGITS, "--labels", "all", "--method", "input", "--alpha-sup", "1.0", "--epochs", "1"),
        *("--iterations-per-epoch", "5", "--depth", "10", "--width", "1", "--device", "cpu", "--out", str(out)),
    )
    assert result.returncode == 0, result.stderr
    return out


def _net(affine: bool) -> StagedNet:
    torch.manual_seed(0)
    act = nn.Identity() if affine else nn.ReLU()
    return StagedNet([nn.Sequential(nn.Linear(4, 6), act), nn.Sequential(nn.Linear(6, 6), act), nn.Linear(6, 3)])


def test_interpolation_nll_by_hand_and_at_the_ends():
    net = _net(affine=False).eval()
    mixer = LayerMixup(net, ["pixel", "h1", "h2"])
    xa, xb = torch.randn(5, 4), torch.randn(5, 4)
    ya, yb = torch.tensor([0, 1, 2, 0, 1]), torch.tensor([1, 1, 0, 2, 2])
    lams = torch.tensor([0.0, 0.3, 1.0], dtype=torch.float64)
    nll = M.interpolation_nll(mixer, xa, xb, ya, yb, 3, lams)
    assert nll.shape == (3, 3)
    # λ = 1 is image a unmixed, λ = 0 image b: the same at every point
    assert torch.allclose(nll[:, 2], torch.full((3,), F.cross_entropy(net(xa), ya).item()), atol=1e-5)
    assert torch.allclose(nll[:, 0], torch.full((3,), F.cross_entropy(net(xb), yb).item()), atol=1e-5)
    # λ = 0.3 at h1 by hand
    h = 0.3 * net(xa, 0, 1) + 0.7 * net(xb, 0, 1)
    target = 0.3 * F.one_hot(ya, 3) + 0.7 * F.one_hot(yb, 3)
    expected = -(target * F.log_softmax(net(h, 1), 1)).sum(1).mean()
    assert nll[1, 1].item() == pytest.approx(expected.item(), rel=1e-5)
    assert nll[0, 1].item() != pytest.approx(nll[1, 1].item(), rel=1e-3)  # ReLU: input and hidden mixes differ

    affine = _net(affine=True).eval()  # an affine network: mixing at any point is the same
    curves = M.interpolation_nll(LayerMixup(affine, ["pixel", "h1", "h2"]), xa, xb, ya, yb, 3, lams)
    assert torch.allclose(curves[0], curves[1], atol=1e-5) and torch.allclose(curves[0], curves[2], atol=1e-5)


def test_pairs_are_distinct_and_deterministic():
    a, b = M.pairs(7, 500, seed=2)
    assert (a != b).all() and a.max() < 7 and b.max() < 7 and b.min() >= 0
    a2, b2 = M.pairs(7, 500, seed=2)
    assert torch.equal(a, a2) and torch.equal(b, b2) and not torch.equal(a, M.pairs(7, 500, seed=3)[0])


def test_end_to_end_on_run_directories_and_on_a_train_folder(tiny_run, tmp_path, capsys):
    out = tmp_path / "i.png"
    argv = ["--pairs", "30", "--grid", "5", "--device", "cpu", "--batch-size", "7"]
    assert M.main([str(tiny_run), str(tiny_run / "checkpoint.pt"), *argv, "--out", str(out)]) == 0
    result = json.loads(out.with_suffix(".json").read_text())
    r0, r1 = result["results"]
    assert r0["points"] == ["pixel", "h1", "h2", "h3"] and r0["lams"] == [0, 0.25, 0.5, 0.75, 1]
    assert r0["method"] == "input" and r0["nll"] == r1["nll"]
    ends = {p: (c[0], c[-1]) for p, c in r0["nll"].items()}
    for p in ("h1", "h2", "h3"):  # unmixed ends: the same at every point (batches of 7 add rounding only)
        assert ends[p] == pytest.approx(ends["pixel"], rel=1e-4)
    assert r0["mean_inner_nll"]["pixel"] == pytest.approx(sum(r0["nll"]["pixel"][1:4]) / 3)
    assert "| input mixup |" in capsys.readouterr().out and out.read_bytes()[:4] == b"\x89PNG"

    # --train reuses runs that already have a checkpoint (the trainer itself is tested in test_ssl_train)
    folder = tmp_path / "models"
    for name in M.DIGITS_METHODS:
        shutil.copytree(tiny_run, folder / name)
    out2 = tmp_path / "t.png"
    assert M.main(["--train", str(folder), *argv, "--out", str(out2)]) == 0
    runs = [r["run"] for r in json.loads(out2.with_suffix(".json").read_text())["results"]]
    assert runs == [str(folder / n) for n in M.DIGITS_METHODS]


@pytest.mark.parametrize(
    "argv, message",
    [
        ([], "give either run directories"),
        (["RUN", "--train", "x"], "give either run directories"),
        (["RUN", "--grid", "1"], "--grid must be >= 2"),
        (["RUN", "--pairs", "0"], "--pairs: expected a positive integer"),
        (["RUN", "--out", "x.pdf"], "--out must name a .png file"),
        (["RUN", "--seed", "s"], "--seed: expected an integer"),
        (["NOTHING"], "does not exist"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(main_in_process, tiny_run, tmp_path, argv, message):
    argv = [str(tiny_run) if a == "RUN" else str(tmp_path / "nothing") if a == "NOTHING" else a for a in argv]
    code, _, err = main_in_process(M.main, "--device", "cpu", "--out", str(tmp_path / "o.png"), *argv)
    assert code == 2 and len(err.strip().splitlines()) == 1 and message in err
    assert list(tmp_path.iterdir()) == []
