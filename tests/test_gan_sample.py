import numpy as np
import pytest
import torch
from PIL import Image

import manifold_mixup.gan.train as T
from manifold_mixup.common.config import UsageError
from manifold_mixup.gan.sample import generate, load_generator, write_samples
from manifold_mixup.gan.sample import main as sample_main

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
    "--score-samples",
    "0",  # these tests read the checkpoint; scoring at the end would train digits-cnn first
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


def test_sample_command_writes_npz_and_png_folders_and_never_overwrites(checkpoint, tmp_path, main_in_process):
    npz = tmp_path / "s.npz"
    result = run_module("gan.sample", str(checkpoint), "--num", "5", "--out", str(npz), "--device", "cpu")
    assert result.returncode == 0, result.stderr
    with np.load(npz) as f:
        assert f["images"].shape == (5, 8, 8, 1) and f["images"].dtype == np.uint8
    before = npz.read_bytes()
    code, _, err = main_in_process(sample_main, checkpoint, "--num", "5", "--out", npz, "--device", "cpu")
    assert code == 2 and "already exists" in err and npz.read_bytes() == before
    folder = tmp_path / "pngs"
    assert main_in_process(sample_main, checkpoint, "--num", "3", "--out", folder, "--device", "cpu")[0] == 0
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


def no_generating(*args, **kwargs):
    raise AssertionError("generated samples before checking the output")


@pytest.fixture
def generation_forbidden(monkeypatch):
    import manifold_mixup.gan.sample

    monkeypatch.setattr(manifold_mixup.gan.sample, "generate", no_generating)
    monkeypatch.setattr(manifold_mixup.gan.sample, "generate_batches", no_generating, raising=False)


def assert_one_line_exit_2(result, expect):
    code, _, err = result
    assert code == 2 and len(err.strip().splitlines()) == 1 and expect in err, err


def test_unknown_output_kind_is_refused(checkpoint, tmp_path, main_in_process, generation_forbidden):
    import manifold_mixup.gan.sample

    result = main_in_process(
        manifold_mixup.gan.sample.main, checkpoint, "--num", "3", "--out", tmp_path / "x.txt", "--device", "cpu"
    )
    assert_one_line_exit_2(result, "unknown output kind '.txt'; write FILE.npz, or a folder of PNGs")
    assert list(tmp_path.iterdir()) == []


def test_outputs_under_a_file_are_refused(checkpoint, tmp_path, main_in_process, generation_forbidden):
    import manifold_mixup.gan.sample

    (tmp_path / "file").write_text("keep")
    for out in ("x.npz", "pngs", "deeper/pngs/"):
        argv = [checkpoint, "--num", "3", "--out", f"{tmp_path / 'file'}/{out}", "--device", "cpu"]
        assert_one_line_exit_2(main_in_process(manifold_mixup.gan.sample.main, *argv), "file is a file, not a folder")
    assert [p.name for p in tmp_path.iterdir()] == ["file"] and (tmp_path / "file").read_text() == "keep"


def test_sizes_that_cannot_fit_are_refused_before_generating(
    checkpoint, tmp_path, main_in_process, generation_forbidden, monkeypatch
):
    import manifold_mixup.gan.sample

    huge = "1000000000"
    argv = [checkpoint, "--out", tmp_path / "s.npz", "--device", "cpu"]
    assert_one_line_exit_2(
        main_in_process(manifold_mixup.gan.sample.main, *argv, "--num", huge, "--batch-size", huge), "GiB"
    )
    monkeypatch.setattr(manifold_mixup.gan.sample, "free_bytes", lambda path: 10_000)  # a nearly full disk
    result = main_in_process(manifold_mixup.gan.sample.main, *argv, "--num", "1000")
    assert_one_line_exit_2(result, "--num 1000 samples of 8x8x1 need about")
    assert list(tmp_path.iterdir()) == []


def test_samples_are_written_in_chunks_never_all_in_memory(checkpoint, tmp_path, main_in_process, monkeypatch):
    import manifold_mixup.gan.sample

    expected = generate(load_generator(checkpoint)[0], 7, batch_size=3, seed=4)
    monkeypatch.setattr(manifold_mixup.gan.sample, "generate", no_generating)  # the all-in-memory path
    for out in ("s.npz", "pngs/"):
        argv = [checkpoint, "--num", "7", "--batch-size", "3", "--seed", "4", "--device", "cpu"]
        assert main_in_process(manifold_mixup.gan.sample.main, *argv, "--out", tmp_path / out)[0] == 0
    with np.load(tmp_path / "s.npz") as f:
        assert np.array_equal(f["images"], expected)
    pngs = [np.asarray(Image.open(p)) for p in sorted((tmp_path / "pngs").iterdir())]
    assert np.array_equal(np.stack(pngs)[..., None], expected)


def test_an_interrupted_write_leaves_nothing(tmp_path):
    def chunks():
        yield np.zeros((2, 4, 4, 3), np.uint8)
        raise KeyboardInterrupt

    for out in ("s.npz", "pngs"):
        with pytest.raises(KeyboardInterrupt):
            write_samples(chunks(), tmp_path / out, 4)
    assert list(tmp_path.iterdir()) == []


def test_a_checkpoint_without_model_args_is_rebuilt_from_its_config_or_refused_in_one_line(tmp_path):
    from manifold_mixup.common.config import resolve_config, to_dict
    from manifold_mixup.gan.config import CONFIGS, GANConfig, build_generator

    cfg = resolve_config(GANConfig, CONFIGS / "ring.yaml", {"mlp_hidden": 8})
    G = build_generator(cfg, (2,))
    old = {"generator": G.state_dict(), "config": to_dict(cfg), "sample_shape": [2]}  # written before model_args
    torch.save(old, tmp_path / "old.pt")
    loaded, _ = load_generator(tmp_path / "old.pt")
    for name, value in G.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[name], value)
    torch.save(old | {"config": to_dict(cfg) | {"renamed": 1}}, tmp_path / "renamed.pt")
    with pytest.raises(UsageError, match="unknown key 'renamed'") as e:
        load_generator(tmp_path / "renamed.pt")
    assert "\n" not in str(e.value)
