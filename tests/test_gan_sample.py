import numpy as np
import pytest
import torch
from PIL import Image

import gan.train as T
from common.config import UsageError
from gan.sample import generate, load_generator, write_samples

from conftest import ROOT, run_module

TINY_DIGITS = [
    "--config",
    str(ROOT / "configs" / "gan" / "digits.yaml"),
    "--device",
    "cpu",
    "--steps",
    "2",
    "--n-dis",
    "1",
    "--g-channels",
    "16",
    "--d-channels",
    "16",
    "--batch-size",
    "8",
    "--g-batch-size",
    "8",
    "--g-ema-decay",
    "0.5",
]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    out = tmp_path_factory.mktemp("gan") / "run"
    assert T.main([*TINY_DIGITS, "--out", str(out)]) == 0
    return out / "checkpoint.pt"


def test_load_generator_prefers_the_ema_weights(checkpoint):
    state = torch.load(checkpoint, weights_only=True)
    G, config = load_generator(checkpoint)
    assert config["dataset"] == "digits" and not G.training
    for name, value in G.state_dict().items():
        torch.testing.assert_close(value, state["generator_ema"][name])
    G_raw, _ = load_generator(checkpoint, ema=False)
    assert any(not torch.equal(G_raw.state_dict()[k], v) for k, v in G.state_dict().items())


def test_generate_is_uint8_nhwc_and_deterministic(checkpoint):
    G, _ = load_generator(checkpoint)
    a = generate(G, 7, batch_size=3, seed=1)
    assert a.shape == (7, 8, 8, 1) and a.dtype == np.uint8
    assert np.array_equal(a, generate(G, 7, batch_size=5, seed=1))
    assert not np.array_equal(a, generate(G, 7, seed=2))


def test_sample_command_writes_npz_and_png_folders_and_never_overwrites(checkpoint, tmp_path):
    npz = tmp_path / "s.npz"
    result = run_module("gan.sample", str(checkpoint), "--num", "5", "--out", str(npz), "--device", "cpu")
    assert result.returncode == 0, result.stderr
    with np.load(npz) as f:
        assert f["images"].shape == (5, 8, 8, 1) and f["images"].dtype == np.uint8
    again = run_module("gan.sample", str(checkpoint), "--num", "5", "--out", str(npz), "--device", "cpu")
    assert again.returncode == 2 and "already exists" in again.stderr
    folder = tmp_path / "pngs"
    assert (
        run_module("gan.sample", str(checkpoint), "--num", "3", "--out", str(folder), "--device", "cpu").returncode == 0
    )
    assert sorted(p.name for p in folder.iterdir()) == ["000000.png", "000001.png", "000002.png"]
    assert np.asarray(Image.open(folder / "000000.png")).shape == (8, 8)


def test_not_a_checkpoint_is_a_usage_error(tmp_path):
    torch.save({"model": {}}, tmp_path / "x.pt")
    with pytest.raises(UsageError, match="not a gan.train checkpoint"):
        load_generator(tmp_path / "x.pt")


def test_write_samples_rgb(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (2, 4, 4, 3), dtype=np.uint8)
    write_samples(images, tmp_path / "rgb")
    assert np.array_equal(np.asarray(Image.open(tmp_path / "rgb" / "000001.png")), images[1])
