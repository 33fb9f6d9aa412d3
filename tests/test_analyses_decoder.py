import json

import pytest
import torch

import manifold_mixup.analyses.decoder as M

from conftest import ROOT, run_module

DIGITS = str(ROOT / "configs" / "ssl" / "digits.yaml")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A 5-update supervised digits run of the real trainer (WRN-10-1: h2 is (32, 4, 4))."""
    out = tmp_path_factory.mktemp("dec") / "run"
    result = run_module(
        "ssl.train",
        *("--config", DIGITS, "--labels", "all", "--method", "supervised", "--epochs", "1"),
        *("--iterations-per-epoch", "5", "--depth", "10", "--width", "1", "--device", "cpu", "--out", str(out)),
    )
    assert result.returncode == 0, result.stderr
    return out


@pytest.mark.parametrize(
    "feature, image",
    [((32, 4, 4), (1, 8, 8)), ((64, 8, 8), (3, 32, 32)), ((16, 3, 3), (1, 8, 8)), ((8, 8, 8), (1, 8, 8))],
)
def test_the_decoder_maps_hidden_states_to_images_in_0_1(feature, image):
    dec = M.decoder_for(feature, image)
    y = dec(torch.randn(5, *feature) * 10)
    assert y.shape == (5, *image) and y.min() >= 0 and y.max() <= 1


def test_fit_decoder_learns_an_invertible_code():
    torch.manual_seed(1)
    code = torch.rand(256, 1, 4, 4)
    x = torch.nn.functional.interpolate(code, scale_factor=2)  # 8x8 images of 2x2 blocks: the code is the image
    h = code.repeat(1, 4, 1, 1) + 0.01 * torch.randn(256, 4, 4, 4)
    dec, losses = M.fit_decoder(h, x, steps=300, lr=3e-3)
    assert sum(losses[-20:]) / 20 < 0.3 * sum(losses[:20]) / 20
    assert not dec.training


def test_mixes_are_the_pair_at_the_ends_and_pick_pairs_crosses_classes():
    dec = M.decoder_for((4, 2, 2), (1, 4, 4))
    ha, hb, xa, xb = torch.randn(3, 4, 2, 2), torch.randn(3, 4, 2, 2), torch.rand(3, 1, 4, 4), torch.rand(3, 1, 4, 4)
    pixel, decoded = M.mixes(dec, ha, hb, xa, xb, torch.tensor([1.0, 0.25, 0.0]))
    assert pixel.shape == decoded.shape == (3, 3, 1, 4, 4)
    assert torch.allclose(pixel[:, 0], xa) and torch.allclose(pixel[:, 2], xb)
    assert torch.allclose(pixel[:, 1], 0.25 * xa + 0.75 * xb)
    with torch.no_grad():
        assert torch.allclose(decoded[:, 0], dec(ha)) and torch.allclose(decoded[:, 1], dec(0.25 * ha + 0.75 * hb))
    labels = torch.tensor([0, 0, 0, 1, 2, 2])
    a, b = M.pick_pairs(labels, 20, seed=0)
    assert len(a) == 20 and (labels[a] != labels[b]).all()
    d = M.nearest_distance(torch.zeros(2, 1, 2, 2), torch.stack([torch.ones(1, 2, 2), torch.full((1, 2, 2), 0.5)]))
    assert torch.allclose(d, torch.tensor([0.5, 0.5]))


def test_end_to_end_on_a_run(tiny_run, tmp_path, capsys):
    out = tmp_path / "d.png"
    argv = [str(tiny_run), "--steps", "20", "--pairs", "2", "--columns", "3", "--device", "cpu", "--out", str(out)]
    assert M.main(argv) == 0
    result = json.loads(out.with_suffix(".json").read_text())
    assert result["protocol"]["feature_shape"] == [32, 4, 4] and result["lams"] == [1.0, 0.5, 0.0]
    assert len(result["nearest_distance_pixel_blend"]) == 3 and result["test_reconstruction_mse"] > 0
    assert result["protocol"]["training_images"] == 1097
    assert "test reconstruction MSE" in capsys.readouterr().out and out.read_bytes()[:4] == b"\x89PNG"
    assert M.main([*argv, "--point", "h1"]) == 0
    assert json.loads(out.with_suffix(".json").read_text())["protocol"]["feature_shape"] == [16, 8, 8]


@pytest.mark.parametrize(
    "argv, message",
    [
        ([], "give either a run directory"),
        (["RUN", "--train", "x"], "give either a run directory"),
        (["RUN", "--point", "pixel"], "--point 'pixel': not a hidden mixing point of this network (valid: h1, h2, h3)"),
        (["RUN", "--point", "h4"], "--point 'h4': not a hidden mixing point"),
        (["RUN", "--columns", "1"], "--columns must be >= 2"),
        (["RUN", "--steps", "x"], "--steps: expected a positive integer"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(main_in_process, tiny_run, tmp_path, argv, message):
    argv = [str(tiny_run) if a == "RUN" else a for a in argv]
    code, _, err = main_in_process(M.main, "--device", "cpu", "--out", str(tmp_path / "o.png"), *argv)
    assert code == 2 and len(err.strip().splitlines()) == 1 and message in err, err
    assert list(tmp_path.iterdir()) == []
