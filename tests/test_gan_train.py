import json
import signal

import pytest
import torch

import gan.train as T
from common.config import UsageError, resolve_config

from conftest import ROOT, metrics_without_time, run_module, signal_after

RING = [
    "--config",
    str(ROOT / "configs" / "gan" / "ring.yaml"),
    "--device",
    "cpu",
    "--log-every",
    "50",
    "--sample-every",
    "100",
    "--checkpoint-every",
    "100",
    "--eval-every",
    "100",
    "--eval-samples",
    "500",
]
# A tiny SNGAN on the digits: the image path end to end in seconds.
TINY_DIGITS = [
    "--config",
    str(ROOT / "configs" / "gan" / "digits.yaml"),
    "--device",
    "cpu",
    "--steps",
    "6",
    "--n-dis",
    "2",
    "--g-channels",
    "16",
    "--d-channels",
    "16",
    "--batch-size",
    "16",
    "--g-batch-size",
    "16",
    "--log-every",
    "3",
    "--sample-every",
    "3",
    "--checkpoint-every",
    "3",
]


def ring_cfg(**overrides):
    return resolve_config(T.GANConfig, ROOT / "configs" / "gan" / "ring.yaml", overrides)


def nets(cfg):
    torch.manual_seed(0)
    return T.build_generator(cfg, (2,)), T.build_discriminator(cfg, (2,))


def test_discriminator_updates_per_generator_update():
    cfg = ring_cfg(n_dis="3", batch_size="32", g_batch_size="32")
    G, D = nets(cfg)
    opt_g, opt_d = torch.optim.Adam(G.parameters()), torch.optim.Adam(D.parameters())
    calls = []
    opt_g.register_step_post_hook(lambda *a: calls.append("G"))
    opt_d.register_step_post_hook(lambda *a: calls.append("D"))
    real = T.RealBatches(cfg, torch.device("cpu"))
    for step in range(2):
        T.train_iteration(T.Nets.plain(G, D), opt_g, opt_d, real, step, cfg, (0, 1), torch.device("cpu"))
    assert calls == ["D", "D", "D", "G"] * 2


def test_generator_loss_has_no_mixup_term():
    base, mixed = ring_cfg(), ring_cfg(mix="h1,pixel", mix_pairs="rf,fr,ff")
    G, D = nets(base)
    z = torch.randn(16, G.z_dim)
    grads = []
    for cfg in (base, mixed):
        G.zero_grad()
        loss, parts = T.g_step(G, D, z, cfg)
        loss.backward()
        grads.append([p.grad.clone() for p in G.parameters()])
        assert set(parts) == {"g_loss"}
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_hidden_states_are_computed_once_per_discriminator_update():
    cfg = ring_cfg(mix="h2", mix_pairs="rf,fr,ff")
    G, D = nets(cfg)
    before, after = [], []
    D.stages[0].register_forward_hook(lambda m, i, o: before.append(len(i[0])))
    D.stages[2].register_forward_hook(lambda m, i, o: after.append(len(i[0])))
    loss, parts = T.d_step(G, D, torch.randn(8, 2), torch.randn(8, G.z_dim), cfg, (2,))
    assert before == [16]  # real and fake together, once
    assert after == [16 + 3 * 8]  # then real, fake and the three mixes together, from h2
    assert "d_mix" in parts and torch.isfinite(loss)


def test_no_mix_means_no_mixup_term():
    cfg = ring_cfg()
    assert cfg.mix == ()
    G, D = nets(cfg)
    assert T.mixing_points(cfg, D) == ()
    _, parts = T.d_step(G, D, torch.randn(8, 2), torch.randn(8, G.z_dim), cfg, ())
    assert "d_mix" not in parts


def test_interrupted_and_resumed_run_matches_an_uninterrupted_one(tmp_path, monkeypatch):
    argv = [*RING, "--steps", "300", "--mix", "h1,pixel", "--mix-pairs", "rf,fr,ff", "--g-ema-decay", "0.9"]
    assert T.main([*argv, "--out", str(tmp_path / "full")]) == 0

    stop = signal_after(T.StopSignal, 130, signal.SIGTERM)  # SIGTERM during update 130 (between checkpoints)
    monkeypatch.setattr(T, "StopSignal", stop)
    assert T.main([*argv, "--out", str(tmp_path / "cut")]) == 128 + signal.SIGTERM
    monkeypatch.undo()
    assert T.main(["--out", str(tmp_path / "cut"), "--resume", "--device", "cpu"]) == 0
    assert metrics_without_time(tmp_path / "cut") == metrics_without_time(tmp_path / "full")
    full = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=True)
    cut = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)
    for key in ("generator", "discriminator", "generator_ema"):
        for name, value in full[key].items():
            torch.testing.assert_close(cut[key][name], value, rtol=0, atol=0)


def test_ring_demo_covers_several_modes_after_a_short_run(tmp_path):
    assert T.main([*RING, "--steps", "3000", "--eval-every", "1000", "--out", str(tmp_path / "run")]) == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["modes_covered"] > 1
    assert (tmp_path / "run" / "samples" / "step0003000.png").is_file()


@pytest.mark.parametrize("mix", ["none", "h1,pixel"])
def test_tiny_image_gan_completes_on_cpu(tmp_path, mix):
    out = tmp_path / "run"
    assert T.main([*TINY_DIGITS, "--mix", mix, "--out", str(out)]) == 0
    assert (out / "samples" / "step0000006.png").is_file()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 6 and summary["mixing_points"] == ("none" if mix == "none" else "h1, pixel")
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert {"config", "generator", "discriminator", "opt_g", "opt_d", "rng", "step"} <= set(state)
    logged = [m for m in metrics_without_time(out) if "d_loss" in m]
    assert logged and all(("d_mix" in m) == (mix != "none") for m in logged)


def test_bad_mix_names_are_one_line_errors(tmp_path):
    result = run_module("gan.train", *TINY_DIGITS, "--mix", "h1,h9", "--out", str(tmp_path / "run"))
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "unknown mixing point 'h9'" in result.stderr and "pixel, h1, h2, h3" in result.stderr
    result = run_module("gan.train", *TINY_DIGITS, "--mix-pairs", "rr", "--out", str(tmp_path / "run2"))
    assert result.returncode == 2 and "--mix-pairs" in result.stderr


def test_generator_size_must_match_the_data(tmp_path):
    result = run_module("gan.train", *TINY_DIGITS, "--g-blocks", "3", "--out", str(tmp_path / "run"))
    assert result.returncode == 2 and "adjust --g-bottom / --g-blocks" in result.stderr


@pytest.mark.parametrize("flag", ["--d-down", "--g-channels", "--mlp-layers"])
def test_impossible_network_sizes_are_usage_errors(tmp_path, flag):
    with pytest.raises(UsageError, match=f"{flag}.*must be >= 1"):
        T.main([*RING, flag, "0", "--out", str(tmp_path / "run")])
    assert not (tmp_path / "run").exists()
