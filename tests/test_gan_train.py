import json
import re
import signal

import pytest
import torch

import manifold_mixup.gan.train as T
from manifold_mixup.common.config import UsageError, cli_overrides, resolve_config
from manifold_mixup.common.loop import NON_FINITE_EXIT
from manifold_mixup.gan.tasks import make_task

from conftest import ROOT, metrics_without_time, signal_after

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
    real = make_task(cfg, torch.device("cpu"))
    for step in range(2):
        T.train_iteration(T.Nets.plain(G, D, ("pixel", "h1")), opt_g, opt_d, real, step, cfg, torch.device("cpu"))
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
    loss, parts = T.d_step(G, D, torch.randn(8, 2), torch.randn(8, G.z_dim), cfg, T.LayerMixup(D, cfg.mix))
    assert before == [16]  # real and fake together, once
    assert after == [16 + 3 * 8]  # then real, fake and the three mixes together, from h2
    assert "d_mix" in parts and torch.isfinite(loss)


def test_no_mix_means_no_mixup_term():
    cfg = ring_cfg()
    assert cfg.mix == ()
    G, D = nets(cfg)
    assert T.Nets.plain(G, D, cfg.mix).D_mix is None
    _, parts = T.d_step(G, D, torch.randn(8, 2), torch.randn(8, G.z_dim), cfg)
    assert "d_mix" not in parts


@pytest.mark.slow
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


@pytest.mark.slow
def test_float16_run_with_its_gradient_scalers_resumes_exactly(tmp_path, monkeypatch):
    """--amp-dtype float16 on the CPU: D's and G's gradient scalers are saved and restored with the run."""
    steps = ["--steps", "20", "--log-every", "5", "--checkpoint-every", "10", "--sample-every", "10"]
    argv = [*RING, *steps, "--eval-every", "10", "--mix", "pixel", "--amp-dtype", "float16"]
    assert T.main([*argv, "--out", str(tmp_path / "full")]) == 0
    stop = signal_after(T.StopSignal, 13, signal.SIGTERM)  # during update 13 (between checkpoints)
    monkeypatch.setattr(T, "StopSignal", stop)
    assert T.main([*argv, "--out", str(tmp_path / "cut")]) == 128 + signal.SIGTERM
    monkeypatch.undo()
    assert T.main(["--out", str(tmp_path / "cut"), "--resume", "--device", "cpu"]) == 0
    assert metrics_without_time(tmp_path / "cut") == metrics_without_time(tmp_path / "full")
    full = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=True)
    cut = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)
    assert full["scaler_d"]["_growth_tracker"] > 0 and full["scaler_g"]["_growth_tracker"] > 0
    assert (cut["scaler_d"], cut["scaler_g"]) == (full["scaler_d"], full["scaler_g"])
    for key in ("generator", "discriminator"):
        for name, value in full[key].items():
            torch.testing.assert_close(cut[key][name], value, rtol=0, atol=0)


@pytest.mark.slow
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


def test_bad_mix_names_are_one_line_errors(tmp_path, in_process):
    result = in_process("gan.train", *TINY_DIGITS, "--mix", "h1,h9", "--out", str(tmp_path / "run"))
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "unknown layer 'h9'" in result.stderr and "pixel, h1, h2, h3" in result.stderr
    result = in_process("gan.train", *TINY_DIGITS, "--mix-pairs", "rr", "--out", str(tmp_path / "run2"))
    assert result.returncode == 2 and "--mix-pairs" in result.stderr


def test_generator_size_must_match_the_data(tmp_path, in_process):
    result = in_process("gan.train", *TINY_DIGITS, "--g-blocks", "3", "--out", str(tmp_path / "run"))
    assert result.returncode == 2 and "adjust --g-bottom / --g-blocks" in result.stderr


@pytest.mark.parametrize("flag", ["--d-down", "--g-channels", "--mlp-layers"])
def test_impossible_network_sizes_are_usage_errors(tmp_path, flag):
    with pytest.raises(UsageError, match=f"{flag}.*must be >= 1"):
        T.main([*RING, flag, "0", "--out", str(tmp_path / "run")])
    assert not (tmp_path / "run").exists()


# --- every number validated up front; impossible sizes refused; non-finite runs stopped -------------------


@pytest.mark.parametrize(
    "field, value",
    [
        ("lr_d", "nan"),
        ("lr_d", "-1"),
        ("lr_g", "inf"),
        ("lr_g", "0"),
        ("beta1", "1.5"),
        ("beta1", "nan"),
        ("beta2", "1"),
        ("beta2", "-0.1"),
        ("ring_sigma", "inf"),
        ("ring_sigma", "nan"),
        ("eval_samples", "0"),
        ("eval_every", "-1"),
        ("mix_weight", "nan"),
        ("mix_weight", "-1"),
        ("g_blocks", "1000000000"),
        ("mlp_layers", "1000000"),
        ("seed", "-1"),
    ],
)
def test_every_bad_number_is_refused_naming_its_flag(field, value):
    flag = "--" + field.replace("_", "-")
    with pytest.raises(UsageError, match=re.escape(flag)) as e:
        ring_cfg(**{field: value})
    assert "\n" not in str(e.value)


def test_mixup_alpha_must_be_finite():
    with pytest.raises(UsageError, match="--mix-alpha must be a finite number"):
        T.GANConfig(dataset="ring", mix=("pixel",), mix_lam="beta", mix_alpha=float("inf"))


def test_bad_number_on_the_command_line_is_one_line_exit_2_and_writes_nothing(tmp_path, in_process):
    (tmp_path / "keep.txt").write_text("untouched")
    result = in_process("gan.train", *RING, "--lr-d", "nan", "--out", str(tmp_path / "run"))
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert "--lr-d" in result.stderr and result.stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]
    assert (tmp_path / "keep.txt").read_text() == "untouched"


@pytest.mark.parametrize(
    "base, flag, value, message",
    [
        ("ring", "--batch-size", "1000000000", "GiB"),  # the ring has no finite set: the memory estimate
        ("ring", "--z-dim", "1000000000", "outside the sane range"),  # bounded before the memory estimate
        ("ring", "--eval-samples", "1000000000000", "GiB"),
        ("digits", "--batch-size", "1000000000", "larger than the 1297 training images"),
        ("digits", "--d-down", "4", "--d-down 4: D cannot halve 8-pixel images that often; use at most 3"),
    ],
)
def test_impossible_sizes_are_refused_before_the_run_folder_exists(tmp_path, base, flag, value, message):
    with pytest.raises(UsageError, match=re.escape(message)):
        T.main([*(RING if base == "ring" else TINY_DIGITS), flag, value, "--out", str(tmp_path / "run")])
    assert not (tmp_path / "run").exists()


def test_an_explicit_score_reference_that_does_not_exist_stops_the_start(tmp_path):
    with pytest.raises(UsageError, match="--score-ref nonsense: nonsense does not exist"):
        T.main([*TINY_DIGITS, "--score-ref", "nonsense", "--out", str(tmp_path / "run")])
    assert not (tmp_path / "run").exists()


def poison_generator(monkeypatch, first_bad_call):
    """From the ``first_bad_call``-th generator update on, G's weights are nan after the update."""
    real, calls = T.train_iteration, [0]

    def poisoned(nets, *args, **kwargs):
        parts = real(nets, *args, **kwargs)
        calls[0] += 1
        if calls[0] >= first_bad_call:
            with torch.no_grad():
                for p in nets.G.parameters():
                    p.fill_(float("nan"))
        return parts

    monkeypatch.setattr(T, "train_iteration", poisoned)


@pytest.mark.parametrize(
    "options, first_bad, stop_step, last_good, what",
    [
        ([], 110, 150, 100, "g_loss nan"),  # caught at the log line of update 150
        (["--log-every", "200", "--checkpoint-every", "50"], 60, 100, 50, "weights are not finite"),
    ],
)
def test_a_non_finite_run_stops_and_keeps_the_last_good_checkpoint(
    tmp_path, monkeypatch, capsys, options, first_bad, stop_step, last_good, what
):
    out = tmp_path / "run"
    poison_generator(monkeypatch, first_bad)
    assert T.main([*RING, "--steps", "200", *options, "--out", str(out)]) == NON_FINITE_EXIT
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and what in err[0] and f"at update {stop_step}" in err[0]
    assert f"update {last_good}'s" in err[0] and "--lr-d/--lr-g" in err[0]
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["step"] == last_good
    for key in ("generator", "discriminator"):
        assert all(torch.isfinite(v).all() for v in state[key].values() if v.is_floating_point())
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "failed" and summary["last_good_checkpoint_update"] == last_good
    assert "modes_covered" not in summary


def test_log_line_shows_every_term_of_both_losses():
    cfg = ring_cfg(mix="pixel", mix_weight="0.5")
    losses = {"d_loss": 1.2, "d_mix": 0.6, "d_real": 0.1, "d_fake": -0.2, "g_loss": 0.7}
    line = T.log_line(50, cfg, losses, 1000.0)
    assert "D loss 1.5000 (gan 1.2000, mix 0.6000 × 0.5 = 0.3000)" in line and "G loss 0.7000" in line
    line = T.log_line(50, ring_cfg(), {k: v for k, v in losses.items() if k != "d_mix"}, 1000.0)
    assert "D loss 1.2000 |" in line and "mix" not in line


def test_summary_names_the_run_directory_and_wall_time():
    summary = {"modes_covered": 8, "steps": 10, "status": "completed", "run_dir": "runs/g", "wall_time_s": 62}
    line = T.summary_line(summary)
    assert "modes_covered 8" in line and "wall time 0:01:02" in line and "run directory runs/g" in line


# --- one evaluation cadence: eval_every/eval_samples for the ring and for images; the old names still read -----


def old_style(config: dict, **old) -> dict:
    """A config as gan.train saved it before score_every/score_samples became eval_every/eval_samples: both
    pairs present (the ring read eval_*, images score_*)."""
    return {**config, "eval_every": 0, "eval_samples": 2500, "score_every": 0, "score_samples": 5000, **old}


def test_an_old_ring_run_saved_with_score_every_resumes_and_evaluates_as_before(tmp_path, monkeypatch, capsys):
    import yaml

    argv = [*RING, "--steps", "40", "--eval-every", "10", "--checkpoint-every", "20"]
    assert T.main([*argv, "--out", str(tmp_path / "full")]) == 0
    monkeypatch.setattr(T, "StopSignal", signal_after(T.StopSignal, 25, signal.SIGTERM))
    assert T.main([*argv, "--out", str(tmp_path / "cut")]) == 128 + signal.SIGTERM
    monkeypatch.undo()
    saved = tmp_path / "cut" / "config.yaml"
    config = yaml.safe_load(saved.read_text())
    saved.write_text(yaml.safe_dump(old_style(config, eval_every=10, eval_samples=500)))
    capsys.readouterr()
    assert T.main(["--out", str(tmp_path / "cut"), "--resume", "--device", "cpu"]) == 0
    note = [line for line in capsys.readouterr().err.splitlines() if "score_every is now eval_every" in line]
    assert len(note) == 1
    assert metrics_without_time(tmp_path / "cut") == metrics_without_time(tmp_path / "full")
    assert [m["step"] for m in metrics_without_time(tmp_path / "cut") if "modes_covered" in m] == [10, 20, 30, 40]


@pytest.mark.parametrize("dataset, every, samples", [("digits", 7, 30), ("ring", 3, 500)])
def test_a_config_saved_before_the_rename_keeps_the_cadence_its_task_used(dataset, every, samples, capsys):
    if dataset == "ring":
        old = old_style({"dataset": "ring"}, eval_every=every, eval_samples=samples, score_every=99)
    else:
        old = old_style({"dataset": "digits"}, score_every=every, score_samples=samples, eval_every=99)
    cfg = resolve_config(T.GANConfig, None, base=old)
    assert (cfg.eval_every, cfg.eval_samples) == (every, samples)
    assert "score_every is now eval_every, score_samples is now eval_samples" in capsys.readouterr().err
    from manifold_mixup.gan.config import (
        saved_config,  # an old checkpoint's config, as gan.sample and gan.score read it
    )

    assert saved_config(old, "checkpoint.pt").eval_every == every


def test_old_yaml_keys_and_flags_name_the_new_fields(tmp_path, capsys):
    path = tmp_path / "old.yaml"
    path.write_text("dataset: digits\nscore-every: 4\nscore_samples: 0\n")
    cfg = resolve_config(T.GANConfig, path)
    assert (cfg.eval_every, cfg.eval_samples) == (4, 0)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(path) in err[0] and "score_samples is now eval_samples" in err[0]
    args = T.get_args_parser().parse_args(["--score-every", "5", "--score-samples", "20"])
    assert cli_overrides(args) == {"eval_every": "5", "eval_samples": "20"}
    with pytest.raises(UsageError, match="--eval-samples: 0 \\(off\\) or >= 10"):
        resolve_config(T.GANConfig, path, {"eval_samples": "5"})


def test_shipped_configs_use_the_new_names(capsys):
    for path in sorted((ROOT / "configs" / "gan").glob("*.yaml")):
        resolve_config(T.GANConfig, path)
        text = path.read_text()
        assert "score_every" not in text and "score_samples" not in text and capsys.readouterr().err == "", path


def test_each_task_has_its_own_default_number_of_evaluation_samples():
    from manifold_mixup.gan import images, toy

    assert T.GANConfig(dataset="ring").eval_samples is None
    assert toy.RingTask(T.GANConfig(dataset="ring"), torch.device("cpu")).eval_samples == toy.EVAL_SAMPLES
    assert images.scored_samples(T.GANConfig(dataset="digits")) == images.EVAL_SAMPLES
    assert images.scored_samples(T.GANConfig(dataset="digits", eval_samples=0)) == 0


# ---------------------------------------------------------------------------------------------
# Gradient penalty, G's mixup term, the first-convolution point (issue 25)


def digits_cfg(**overrides):
    base = {"g_channels": "16", "d_channels": "16", "batch_size": "8", "g_batch_size": "8"}
    return resolve_config(T.GANConfig, ROOT / "configs" / "gan" / "digits.yaml", base | overrides)


def digits_nets(cfg):
    torch.manual_seed(0)
    return T.build_generator(cfg, (1, 8, 8)), T.build_discriminator(cfg, (1, 8, 8))


def d_grads(cfg, mix=()):
    G, D = digits_nets(cfg)
    torch.manual_seed(1)
    x, z = torch.rand(8, 1, 8, 8) * 2 - 1, torch.randn(8, G.z_dim)
    loss, parts = T.d_step(G, D, x, z, cfg, T.LayerMixup(D, mix) if mix else None)
    loss.backward()
    return {n: p.grad.clone() for n, p in D.named_parameters()}, parts


@pytest.mark.parametrize("sn", ["true", "false"])
@pytest.mark.parametrize("on", ["real", "interp"])
def test_gradient_penalty_reaches_every_weight_of_d_with_or_without_spectral_norm(sn, on):
    plain, _ = d_grads(digits_cfg(spectral_norm=sn))
    penalised, parts = d_grads(digits_cfg(spectral_norm=sn, gp="10", gp_on=on, gp_of="logit"))
    assert "d_gp" in parts and float(parts["d_gp"]) > 0
    weights = [n for n in plain if n.endswith("weight") or n.endswith("original")]
    assert weights and all(not torch.equal(plain[n], penalised[n]) for n in weights)


def test_gradient_penalty_works_with_d_mixup_and_is_taken_at_the_real_batch_only():
    cfg = digits_cfg(gp="1", mix="h1,pixel", mix_pairs="fr,ff")
    G, D = digits_nets(cfg)
    x, z = torch.rand(8, 1, 8, 8), torch.randn(8, G.z_dim)
    torch.manual_seed(3)
    _, parts = T.d_step(G, D, x, z, cfg, T.LayerMixup(D, cfg.mix))
    assert {"d_mix", "d_gp"} <= set(parts)
    xr = x.clone().requires_grad_(True)  # the released code's --dnorm: ‖∇ₓ σ(D(x))‖² on the real batch alone
    D.eval()  # the same spectral-norm weights as that step's (no further power iteration)
    (grad,) = torch.autograd.grad(torch.sigmoid(D(xr)).sum(), xr)
    torch.testing.assert_close(parts["d_gp"], grad.flatten(1).pow(2).sum(1).mean())


def test_a_run_with_the_gradient_penalty_and_g_mix_resumes_exactly(tmp_path, monkeypatch):
    argv = [*RING, "--steps", "200", "--mix", "h1,pixel", "--gp", "1", "--gp-on", "interp", "--g-mix"]
    assert T.main([*argv, "--out", str(tmp_path / "full")]) == 0
    monkeypatch.setattr(T, "StopSignal", signal_after(T.StopSignal, 130, signal.SIGTERM))
    assert T.main([*argv, "--out", str(tmp_path / "cut")]) == 128 + signal.SIGTERM
    monkeypatch.undo()
    assert T.main(["--out", str(tmp_path / "cut"), "--resume", "--device", "cpu"]) == 0
    full = metrics_without_time(tmp_path / "full")
    assert full == metrics_without_time(tmp_path / "cut")
    assert any("d_gp" in m and "g_mix" in m for m in full)
    a = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=True)
    b = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)
    for key in ("generator", "discriminator"):
        for name, value in a[key].items():
            torch.testing.assert_close(b[key][name], value, rtol=0, atol=0)


def test_a_run_saved_before_the_new_fields_existed_resumes(tmp_path, monkeypatch):
    import yaml

    argv = [*RING, "--steps", "40", "--checkpoint-every", "20"]
    assert T.main([*argv, "--out", str(tmp_path / "full")]) == 0
    monkeypatch.setattr(T, "StopSignal", signal_after(T.StopSignal, 25, signal.SIGTERM))
    assert T.main([*argv, "--out", str(tmp_path / "cut")]) == 128 + signal.SIGTERM
    monkeypatch.undo()
    saved = tmp_path / "cut" / "config.yaml"
    config = yaml.safe_load(saved.read_text())
    new = ("gp", "gp_on", "gp_of", "g_mix", "d_stem")
    saved.write_text(yaml.safe_dump({k: v for k, v in config.items() if k not in new}))
    assert T.main(["--out", str(tmp_path / "cut"), "--resume", "--device", "cpu"]) == 0
    assert metrics_without_time(tmp_path / "cut") == metrics_without_time(tmp_path / "full")


def g_grads(cfg, x_real):
    """G's loss, loss parts and gradients on fresh digits nets; whether the step drew any random number."""
    G, D = digits_nets(cfg)
    D.requires_grad_(False)
    z = torch.randn(8, G.z_dim, generator=torch.Generator().manual_seed(2))
    state = torch.random.get_rng_state()
    loss, parts = T.g_step(G, D, z, cfg, T.LayerMixup(D, cfg.mix), x_real)
    drew = not torch.equal(state, torch.random.get_rng_state())
    loss.backward()
    return loss.detach(), parts, [p.grad.clone() for p in G.parameters()], drew


def test_g_mix_changes_the_generators_gradient_and_off_is_the_ordinary_loss():
    x = torch.rand(8, 1, 8, 8) * 2 - 1
    off_loss, off_parts, off_grads, drew = g_grads(digits_cfg(mix="pixel"), x)
    G, D = digits_nets(digits_cfg(mix="pixel"))
    z = torch.randn(8, G.z_dim, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(off_loss, T.g_loss(D(G(z)).float(), "ns"), rtol=0, atol=0)  # today's loss
    assert set(off_parts) == {"g_loss"} and not drew  # and today's random stream
    on_loss, on_parts, on_grads, _ = g_grads(digits_cfg(mix="pixel", g_mix="true"), x)
    assert set(on_parts) == {"g_loss", "g_mix"}
    torch.testing.assert_close(on_parts["g_loss"], off_loss)  # the ordinary part is unchanged...
    torch.testing.assert_close(on_loss, off_loss - on_parts["g_mix"])  # ...minus the mixup term (weight 1)
    assert any(not torch.equal(a, b) for a, b in zip(off_grads, on_grads))


def test_g_mix_needs_mixup(tmp_path):
    with pytest.raises(UsageError, match="--g-mix gives G the mixup term: it needs --mix"):
        T.main([*TINY_DIGITS, "--g-mix", "--out", str(tmp_path / "run")])
    assert not (tmp_path / "run").exists()


def test_first_convolution_point_trains_with_the_penalty(tmp_path):
    out = tmp_path / "run"
    argv = ["--d-stem", "8", "--mix", "conv1", "--mix-pairs", "fr", "--gp", "0.5", "--spectral-norm", "false"]
    assert T.main([*TINY_DIGITS, *argv, "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["mixing_points"] == "conv1"
    assert any("d_gp" in m and "d_mix" in m for m in metrics_without_time(out))


def test_conv1_without_a_first_convolution_is_one_line(tmp_path):
    with pytest.raises(UsageError, match="--d-stem"):
        T.main([*TINY_DIGITS, "--mix", "conv1", "--out", str(tmp_path / "run")])


def test_a_module_name_on_a_residual_branch_is_one_line_not_a_traceback(tmp_path, capsys):
    from manifold_mixup.common.cli import run_main

    argv = [*TINY_DIGITS, "--mix", "stages.0.residual.0", "--out", str(tmp_path / "run")]
    with pytest.raises(SystemExit) as exit_:
        run_main(T.main, argv, prog="python -m gan.train")
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "'stages.0.residual.0'" in err and "pixel, h1" in err


def test_the_preprints_conv1_configuration_runs_a_step_on_cifar_sized_images():
    cfg = resolve_config(
        T.GANConfig, ROOT / "configs" / "gan" / "gangp-conv1-fr-cifar10.yaml", {"g_channels": "8", "d_channels": "8"}
    )
    assert (cfg.mix, cfg.mix_pairs, cfg.gp, cfg.mix_alpha, cfg.spectral_norm) == (("conv1",), ("fr",), 0.5, 0.2, False)
    T.check_combinations(cfg)
    torch.manual_seed(0)
    G, D = T.build_generator(cfg, (3, 32, 32)), T.build_discriminator(cfg, (3, 32, 32))
    mixer = T.LayerMixup(D, cfg.mix)
    T.check_mixing_layers(D, mixer, (3, 32, 32))
    seen = []
    D.stages[1].register_forward_hook(lambda m, i, o: seen.append(len(i[0])))
    loss, parts = T.d_step(G, D, torch.rand(4, 3, 32, 32) * 2 - 1, torch.randn(4, G.z_dim), cfg, mixer)
    assert seen == [4 + 4 + 4]  # the first block sees real, fake and the FR mixes of conv1's output
    assert {"d_mix", "d_gp"} <= set(parts) and torch.isfinite(loss)


@pytest.mark.parametrize("name", ["table6-digits-gangp", "table6-digits-sngan"])
def test_table6_configs_are_the_preprints_mixup_settings(name):
    cfg = resolve_config(T.GANConfig, ROOT / "configs" / "gan" / f"{name}.yaml")
    assert (cfg.mix_labels, cfg.mix_lam, cfg.mix_alpha, cfg.mix_per_example) == ("fake", "beta", 0.2, True)
    assert (cfg.gp, cfg.spectral_norm) == ((10.0, False) if "gangp" in name else (0.0, True))
