import functools
import json
import math
import re
import signal
import sys

import pytest
import torch
import torch.nn.functional as F
import yaml

import manifold_mixup.ssl.train as T
from manifold_mixup.classifiers.wrn import WideResNet
from manifold_mixup.common.config import UsageError, resolve_config
from manifold_mixup.common.loop import NON_FINITE_EXIT, update_ema
from manifold_mixup.common.mixup import sample_mix

from conftest import ROOT, metrics_without_time, run_module, signal_after, wait_for_training

DIGITS = str(ROOT / "configs" / "ssl" / "digits.yaml")
# A few seconds on one CPU core: 2 epochs of 20 updates, a small network.
TINY = [
    "--config",
    DIGITS,
    "--epochs",
    "2",
    "--iterations-per-epoch",
    "20",
    "--depth",
    "10",
    "--width",
    "1",
    "--log-every",
    "5",
    "--eval-batch-size",
    "1000",
    "--lr-milestones",
    "1",
    "--device",
    "cpu",
]


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return WideResNet(num_classes=10, depth=10, width=1, in_channels=1, bn_momentum=0.1)


def cfg(**overrides):
    return resolve_config(T.SSLConfig, None, {"dataset": "digits", **overrides})


def tiny_batch(n=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 8, 8, generator=g), torch.arange(n) % 10, torch.randn(n, 1, 8, 8, generator=g)


@pytest.mark.parametrize(("t", "expected"), [(0.0, math.exp(-5)), (0.2, math.exp(-1.25)), (0.4, 1.0), (0.9, 1.0)])
def test_consistency_weight_follows_the_sigmoid_ramp(t, expected):
    total = 1000
    assert T.consistency_weight(int(t * total), total, w_max=2.0, rampup=0.4) == pytest.approx(2.0 * expected)


def test_learning_rate_drops_at_milestones():
    c = cfg(lr="0.1", lr_milestones="2,3")
    assert [T.learning_rate(s, c, 10) for s in (0, 19, 20, 29, 30)] == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001])


def test_l1_term_covers_every_parameter_tensor():
    model = tiny_model()
    penalty = T.l1_penalty(model)
    torch.testing.assert_close(penalty, sum(p.abs().sum() for p in model.parameters()))
    penalty.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        torch.testing.assert_close(p.grad, torch.sign(p.detach()), msg=name)


def test_l1_first_scope_reproduces_the_original_code():
    model = tiny_model()
    first = next(model.parameters())
    torch.testing.assert_close(T.l1_penalty(model, "first"), first.abs().sum())


def test_pseudolabels_carry_no_gradient():
    model, (x_l, y_l, x_u) = tiny_model(), tiny_batch()
    seen = []

    class Teacher(torch.nn.Module):
        def forward(self, x):
            out = model(x)
            seen.append((torch.is_grad_enabled(), out.requires_grad))
            return out

    loss, _ = T.train_step(T.LayerMixup(model, "pixel,h1,h2"), Teacher(), x_l, y_l, x_u, 1.0, cfg(), 10)
    loss.backward()
    assert seen == [(False, False)]


def test_supervised_makes_no_unlabelled_forward_pass():
    model, (x_l, y_l, x_u) = tiny_model(), tiny_batch()
    batch_sizes = []
    model.stages[0].register_forward_hook(lambda m, i, o: batch_sizes.append(i[0].shape[0]))
    T.train_step(T.LayerMixup(model, "input"), model, x_l, y_l, x_u, 1.0, cfg(method="supervised"), 10)
    assert batch_sizes == [len(x_l)]
    # ... and the data side never draws unlabelled indices for it
    from manifold_mixup.common.data import make_split
    from manifold_mixup.common.sampler import PairedBatches

    split = make_split(torch.arange(200) % 10, 20, 20, 0, 10)
    assert len(PairedBatches(split, 10, 0, 0).indices(3)[1]) == 0


@pytest.mark.parametrize("consistency", ["prob", "logit"])
def test_loss_on_a_fixed_batch_matches_a_hand_computation(consistency):
    model, (x_l, y_l, x_u) = tiny_model(), tiny_batch()
    c = cfg(consistency=consistency)
    torch.manual_seed(5)
    loss, parts = T.train_step(T.LayerMixup(model, "pixel,h1,h2"), model, x_l, y_l, x_u, 0.7, c, 10)

    # The same draws, the formulas written out: eq. 1 on both batches, CE + w·MSE + L1.
    torch.manual_seed(5)
    m_l = sample_mix(len(x_l), (0, 1, 2), 0.1)
    lam = float(m_l.lam)
    h = model(x_l, 0, m_l.point)
    logits = model(lam * h + (1 - lam) * h[m_l.perm], m_l.point)
    y = F.one_hot(y_l, 10).float()
    y_mix = lam * y + (1 - lam) * y[m_l.perm]
    ce = -(y_mix * torch.log(torch.exp(logits) / torch.exp(logits).sum(1, keepdim=True))).sum() / len(x_l)
    with torch.no_grad():
        target = model(x_u)
        target = torch.exp(target) / torch.exp(target).sum(1, keepdim=True) if consistency == "prob" else target
    m_u = sample_mix(len(x_u), (0, 1, 2), 2.0)
    lam_u = float(m_u.lam)
    h_u = model(x_u, 0, m_u.point)
    out_u = model(lam_u * h_u + (1 - lam_u) * h_u[m_u.perm], m_u.point)
    pred = torch.exp(out_u) / torch.exp(out_u).sum(1, keepdim=True) if consistency == "prob" else out_u
    mse = ((pred - (lam_u * target + (1 - lam_u) * target[m_u.perm])) ** 2).sum() / pred.numel()
    torch.testing.assert_close(parts["loss_sup"], ce.detach())
    torch.testing.assert_close(parts["loss_cons"], mse.detach())
    torch.testing.assert_close(loss, ce + 0.7 * mse)  # the loop adds L1 (test above) and SGD the L2


def test_eligible_layers_per_method():
    model = tiny_model()
    assert T.eligible_layers(cfg(method="input", mix_points="h1,h2"), model).names == ("input",)
    assert T.eligible_layers(cfg(method="supervised"), model).names == ("input",)
    assert T.eligible_layers(cfg(method="manifold"), model).names == ("input", "stages.0", "stages.1")
    assert T.eligible_layers(cfg(method="manifold", mix_points="input,h3"), model).names == ("input", "stages.2")
    assert T.eligible_layers(cfg(method="manifold", mix_points="pixel,stages.2"), model).labels == ("pixel", "stages.2")


def test_ema_update_moves_towards_the_model():
    model, ema = tiny_model(0), tiny_model(1)
    before = [p.clone() for p in ema.parameters()]
    update_ema(ema, model, 0.9)
    for b, e, m in zip(before, ema.parameters(), model.parameters()):
        torch.testing.assert_close(e, 0.9 * b + 0.1 * m)


def test_summary_uses_best_validation_and_median_of_last_20():
    evals = [
        {"epoch": i, "val_acc": v, "test_acc": t, "test_nll": 1.0}
        for i, (v, t) in enumerate([(0.5, 0.6), (0.9, 0.7), (0.8, 0.9)])
    ]
    s = T.summarize(evals)
    assert s["test_error_at_best_val"] == pytest.approx(0.3) and s["best_val_epoch"] == 1
    assert s["median_test_error_last20"] == pytest.approx(0.3)


@pytest.mark.parametrize(
    "options",
    [
        ["--method", "manifold"],  # the defaults: pseudolabels from the current model
        ["--method", "input", "--pseudolabels", "ema", "--eval-ema"],
        ["--method", "supervised", "--eval-ema"],
        ["--labels", "all", "--val-size", "0"],  # supervised Manifold Mixup, no validation set
    ],
)
@pytest.mark.slow
def test_interrupted_and_resumed_run_matches_an_uninterrupted_one(tmp_path, monkeypatch, options):
    argv = [*TINY, *options]
    assert T.main([*argv, "--out", str(tmp_path / "full")]) == 0

    stop = signal_after(T.StopSignal, 27, signal.SIGINT)  # a SIGINT that arrives during update 27 (mid-epoch)
    monkeypatch.setattr(T, "StopSignal", stop)
    assert T.main([*argv, "--out", str(tmp_path / "cut")]) == 128 + signal.SIGINT
    monkeypatch.undo()
    assert T.main(["--out", str(tmp_path / "cut"), "--resume", "--device", "cpu"]) == 0

    assert metrics_without_time(tmp_path / "cut") == metrics_without_time(tmp_path / "full")
    full = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=True)
    cut = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)
    for k, v in full["model"].items():
        torch.testing.assert_close(cut["model"][k], v, rtol=0, atol=0)
    summary = json.loads((tmp_path / "cut" / "summary.json").read_text())
    has_val = "--val-size" not in options
    assert {"final_test_nll", "median_test_error_last20"} <= set(summary)
    assert has_val == ({"test_error_at_best_val", "test_nll_at_best_val"} <= set(summary))


@pytest.mark.slow
def test_float16_run_with_its_gradient_scaler_resumes_exactly(tmp_path, monkeypatch):
    """--amp-dtype float16 on the CPU (slow there: a few updates of a few images); the checkpoint keeps the
    scaler's state (its scale and count of clean steps), so the resumed run ends where the whole one does."""
    small = ["--epochs", "1", "--iterations-per-epoch", "4", "--batch-size", "8", "--unlabelled-batch-size", "8"]
    argv = [*TINY, *small, "--log-every", "1", "--amp-dtype", "float16"]
    assert T.main([*argv, "--out", str(tmp_path / "full")]) == 0
    stop = signal_after(T.StopSignal, 2, signal.SIGINT)  # during update 2
    monkeypatch.setattr(T, "StopSignal", stop)
    assert T.main([*argv, "--out", str(tmp_path / "cut")]) == 128 + signal.SIGINT
    monkeypatch.undo()
    cut = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)
    fresh = torch.amp.GradScaler("cpu").state_dict()
    assert cut["step"] == 2 and cut["scaler"] != fresh  # the scale or its count of clean steps has moved
    assert T.main(["--out", str(tmp_path / "cut"), "--resume", "--device", "cpu"]) == 0
    assert metrics_without_time(tmp_path / "cut") == metrics_without_time(tmp_path / "full")
    full = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=True)
    cut = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)
    assert cut["scaler"] == full["scaler"] and full["scaler"]["_growth_tracker"] > 0
    for k, v in full["model"].items():
        torch.testing.assert_close(cut["model"][k], v, rtol=0, atol=0)
    summary = json.loads((tmp_path / "full" / "summary.json").read_text())
    assert "amp float16 with a gradient scaler" in summary["speed"]


@pytest.mark.slow
def test_tiny_wrn_learns_digits(tmp_path):
    out = tmp_path / "run"
    assert (
        T.main(
            [
                *TINY,
                "--epochs",
                "8",
                "--iterations-per-epoch",
                "25",
                "--lr-milestones",
                "6",
                "--labels",
                "100",
                "--method",
                "manifold",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    summary = json.loads((out / "summary.json").read_text())
    assert summary["final_test_error"] < 0.5  # chance is 0.9
    assert (out / "split.npz").is_file() and (out / "config.yaml").is_file()


def test_sigint_saves_a_checkpoint_and_exits_cleanly(tmp_path):
    import subprocess
    import sys

    out = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "ssl.train", *TINY, "--epochs", "1000", "--out", str(out)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for_training(out, timeout=120)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert "--resume" in stdout
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["step"] > 0


def test_command_line_errors_are_one_line_with_exit_code_2(tmp_path, in_process):
    bad = in_process("ssl.train", *TINY, "--method", "mixup", "--out", str(tmp_path / "a"))
    assert bad.returncode == 2 and "invalid value 'mixup'" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    bad = in_process("ssl.train", *TINY, "--mix-points", "h9", "--out", str(tmp_path / "b"))
    assert bad.returncode == 2 and "unknown layer 'h9'" in bad.stderr
    bad = in_process("ssl.train", *TINY, "--labels", "15", "--out", str(tmp_path / "c"))
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def test_missing_cifar10_is_a_clear_data_error(tmp_path):
    result = run_module(
        "ssl.train",
        "--labels",
        "4000",
        "--data-dir",
        str(tmp_path / "nothing"),
        "--out",
        str(tmp_path / "run"),
        "--device",
        "cpu",
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "cifar-10" in result.stderr.lower()
    assert not (tmp_path / "run").exists()  # a run that cannot start leaves nothing behind


def test_existing_run_is_not_overwritten(tmp_path):
    out = tmp_path / "run"
    assert T.main([*TINY, "--epochs", "1", "--out", str(out)]) == 0
    before = (out / "checkpoint.pt").read_bytes()
    again = run_module("ssl.train", *TINY, "--epochs", "1", "--out", str(out))
    assert again.returncode == 2 and "already holds a run" in again.stderr
    assert (out / "checkpoint.pt").read_bytes() == before
    with pytest.raises(UsageError, match="--labels 15"):  # --overwrite, but the new run cannot start
        T.main([*TINY, "--labels", "15", "--out", str(out), "--overwrite"])
    assert (out / "checkpoint.pt").read_bytes() == before


@pytest.mark.parametrize(
    "flag, value, message",
    [
        ("--depth", "27", "6n+4"),
        ("--width", "0", "--width must be >= 1"),
        ("--dropout", "1.5", "--dropout must be in [0, 1)"),
        ("--bn-momentum", "0", "--bn-momentum must be in (0, 1]"),
    ],
)
def test_impossible_network_sizes_are_usage_errors(tmp_path, flag, value, message):
    with pytest.raises(UsageError, match=re.escape(message)):
        T.main([*TINY, flag, value, "--out", str(tmp_path / "run")])
    assert not (tmp_path / "run").exists()


@functools.cache
def consistency_gradient_ratio(consistency: str, seeds=(0, 1, 2, 3)) -> float:
    """Mean over seeds of |∇θ L_cons| / |∇θ L_sup| (weight 1) at initialisation on random 32x32 batches."""
    c = resolve_config(T.SSLConfig, None, {"dataset": "cifar10", "consistency": consistency})
    ratios = []
    for seed in seeds:
        torch.manual_seed(seed)
        model = WideResNet(10, depth=10, width=1, in_channels=3, bn_momentum=0.1)
        x_l, y_l, x_u = torch.randn(32, 3, 32, 32), torch.randint(0, 10, (32,)), torch.randn(32, 3, 32, 32)
        grads = []
        for w in (0.0, 1.0):  # the same draws twice: supervised alone, then with the consistency term
            torch.manual_seed(seed)
            model.zero_grad()
            T.train_step(T.LayerMixup(model, "pixel,h1,h2"), model, x_l, y_l, x_u, w, c, 10)[0].backward()
            grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
        ratios.append(float((grads[1] - grads[0]).norm() / grads[0].norm()))
    return sum(ratios) / len(ratios)


def test_softmax_consistency_at_the_same_weight_is_30x_weaker():
    """Why the default changed: at w = 1 softmax-MSE moves the weights ~30-50x less than logit-MSE."""
    assert consistency_gradient_ratio("prob") < 0.01 < 0.02 < consistency_gradient_ratio("logit")
    assert consistency_gradient_ratio("logit") > 10 * consistency_gradient_ratio("prob")


@pytest.mark.parametrize("config", ["cifar10-4k", "cifar10-4k-laptop", "svhn-1k", "digits"])
def test_shipped_consistency_term_is_not_negligible(config):
    """w_max·|∇θ L_cons| must be a visible fraction of |∇θ L_sup| for every shipped recipe (README: Recipes)."""
    c = resolve_config(T.SSLConfig, str(ROOT / "configs" / "ssl" / f"{config}.yaml"), {})
    assert c.w_max * consistency_gradient_ratio(c.consistency) > 0.02


def test_default_l1_reaches_the_first_tensor_only():
    assert T.SSLConfig().l1_scope == "first" and T.SSLConfig().consistency == "logit"


# --- every number validated up front; impossible sizes refused; non-finite runs stopped -------------------


@pytest.mark.parametrize(
    "field, value",
    [
        ("lr", "nan"),
        ("lr", "-1"),
        ("lr", "inf"),
        ("l1", "nan"),
        ("l1", "-1"),
        ("w_max", "inf"),
        ("w_max", "-1"),
        ("alpha_sup", "inf"),
        ("alpha_unsup", "nan"),
        ("momentum", "-1"),
        ("momentum", "1"),
        ("momentum", "nan"),
        ("momentum", "0"),  # with --nesterov (the default), which torch refuses
        ("weight_decay", "-1"),
        ("weight_decay", "nan"),
        ("lr_gamma", "nan"),
        ("lr_gamma", "0"),
        ("lr_gamma", "2"),
        ("ema_decay", "nan"),
        ("ema_decay", "1"),
        ("rampup", "inf"),
        ("rampup", "0"),
        ("leaky_slope", "nan"),
        ("leaky_slope", "-0.5"),
        ("val_size", "-5"),
        ("lr_milestones", "10,-1"),
        ("seed", "-1"),
        ("depth", "6004"),
    ],
)
def test_every_bad_number_is_refused_naming_its_flag(field, value):
    flag = "--" + field.replace("_", "-")
    with pytest.raises(UsageError) as e:
        resolve_config(T.SSLConfig, None, {"dataset": "digits", field: value})
    assert flag in str(e.value) or (field == "momentum" and "--nesterov" in str(e.value))
    assert "\n" not in str(e.value)


def test_bad_number_on_the_command_line_is_one_line_exit_2_and_writes_nothing(tmp_path, in_process):
    (tmp_path / "keep.txt").write_text("untouched")
    for flag, value in (("--lr", "nan"), ("--w-max", "inf")):
        result = in_process("ssl.train", *TINY, flag, value, "--out", str(tmp_path / "run"))
        assert result.returncode == 2, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
        assert flag in result.stderr and "finite" in result.stderr
        assert result.stdout == ""  # refused before any data is read
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]
    assert (tmp_path / "keep.txt").read_text() == "untouched"


@pytest.mark.parametrize(
    "flag, value, message",
    [
        ("--batch-size", "1000000000", "larger than the 50 labelled images"),
        ("--unlabelled-batch-size", "1000000000", "larger than the 1097 unlabelled images"),
        ("--translate", "8", "smaller than the 8-pixel images"),
        ("--width", "100000", "outside the sane range"),  # the network's arguments are bounded before any estimate
        ("--width", "200", "parameters, beyond"),  # within the bounds: billions of parameters are refused too
    ],
)
def test_impossible_sizes_are_refused_before_the_run_folder_exists(tmp_path, flag, value, message):
    with pytest.raises(UsageError, match=re.escape(message)):
        T.main([*TINY, flag, value, "--out", str(tmp_path / "run")])
    assert not (tmp_path / "run").exists()


def poison_train_step(monkeypatch, first_bad_call):
    """From the ``first_bad_call``-th update on, the loss is nan: its gradients turn the weights nan."""
    real, calls = T.train_step, [0]

    def poisoned(*args, **kwargs):
        loss, parts = real(*args, **kwargs)
        calls[0] += 1
        return (loss * float("nan") if calls[0] >= first_bad_call else loss), parts

    monkeypatch.setattr(T, "train_step", poisoned)


@pytest.mark.parametrize(
    "options, first_bad, stop_step, what",
    [
        ([], 23, 25, "loss nan"),  # caught at the log line of update 25
        (["--log-every", "50", "--epochs", "3"], 25, 40, "weights are not finite"),  # before the update-40 checkpoint
    ],
)
def test_a_non_finite_run_stops_and_keeps_the_last_good_checkpoint(
    tmp_path, monkeypatch, capsys, options, first_bad, stop_step, what
):
    out = tmp_path / "run"
    poison_train_step(monkeypatch, first_bad)
    assert T.main([*TINY, "--method", "supervised", *options, "--out", str(out)]) == NON_FINITE_EXIT
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and what in err[0] and f"at update {stop_step}" in err[0]
    assert "update 20's" in err[0] and "--lr" in err[0]
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["step"] == 20
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "failed" and summary["last_good_checkpoint_update"] == 20
    assert "test_error_at_best_val" not in summary


def test_log_line_shows_every_term_of_the_loss():
    losses = {"loss": 59.5, "loss_sup": 2.37, "loss_cons": 0.0002, "loss_cons_weighted": 0.0001, "loss_l1": 57.1}
    line = T.log_line(10, 100, 10, 0.1, 0.5, losses, 1000.0)
    assert "loss 59.5000 (sup 2.3700, w·cons 0.00010 [cons 0.00020, w now 0.500], l1 57.1000)" in line
    line = T.log_line(10, 100, 10, 0.1, 0.5, {"loss": 2.0, "loss_sup": 2.0}, 1000.0)
    assert "(sup 2.0000)" in line and "cons" not in line and "l1" not in line


def test_supervised_run_names_no_mixing_points():
    model = tiny_model()
    assert T.mixing_description(cfg(method="supervised"), T.LayerMixup(model, "input")) == "no mixup"
    mixer = T.LayerMixup(model, "pixel,h1,h2")
    assert T.mixing_description(cfg(), mixer) == "mixing points pixel, h1, h2, α 0.1"


def test_summary_reports_errors_in_percent_with_run_directory_and_wall_time():
    evals = [{"epoch": 1, "val_acc": 0.8, "test_acc": 0.75, "test_nll": 1.0}]
    summary = T.summarize(evals) | {"updates": 40, "run_dir": "runs/x", "wall_time_s": 3723.0}
    assert "best_val_acc" not in summary and summary["best_val_error"] == pytest.approx(0.2)
    line = T.summary_line(summary)
    assert "test error 25.00% at the best validation error 20.00% (epoch 1)" in line
    assert "acc" not in line and "1:02:03" in line and "runs/x" in line


def test_input_mixup_refuses_mixing_points_it_would_ignore(tmp_path):
    with pytest.raises(UsageError, match="--method input mixes at the input only") as e:
        T.main([*TINY, "--method", "input", "--mix-points", "h1,h2", "--out", str(tmp_path / "run")])
    assert "\n" not in str(e.value) and not (tmp_path / "run").exists()


def test_the_loss_of_an_update_includes_the_l1_term_of_the_plain_network():
    model, (x_l, y_l, x_u) = tiny_model(), tiny_batch()
    c = cfg(method="supervised", l1="0.01", l1_scope="all")
    loss, parts = T.train_step(T.LayerMixup(model, "input"), model, x_l, y_l, x_u, 1.0, c, 10, net=model)
    torch.testing.assert_close(parts["loss_l1"], 0.01 * T.l1_penalty(model).detach())
    torch.testing.assert_close(loss.detach(), parts["loss_sup"] + parts["loss_l1"])


# --- any torchvision classifier (--arch torchvision:NAME) --------------------------------------------------------

TORCHVISION = [  # the digits protocol without digits.yaml's WRN fields, on a torchvision ResNet-18
    *("--dataset", "digits", "--labels", "50", "--val-size", "200", "--zca", "false", "--translate", "1"),
    *("--batch-size", "16", "--unlabelled-batch-size", "16", "--epochs", "1", "--iterations-per-epoch", "3"),
    *("--log-every", "3", "--device", "cpu", "--arch", "torchvision:resnet18"),
]


def test_a_torchvision_network_trains_at_its_named_layers_and_its_checkpoint_rebuilds_it(tmp_path):
    from manifold_mixup.common.registry import build

    out = tmp_path / "run"
    assert T.main([*TORCHVISION, "--mix-points", "input,layer1,layer2", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["updates"] == 3 and math.isfinite(summary["final_test_nll"])
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["model_args"] == {"arch": "torchvision:resnet18", "args": {"num_classes": 10, "in_channels": 1}}
    net = build(state["model_args"])
    net.load_state_dict(state["model"])  # the same module names: the trainer trained torchvision's network
    assert net.conv1.in_channels == 1


def test_the_digits_config_trains_a_torchvision_network_and_only_typed_wrn_flags_conflict(tmp_path, main_in_process):
    short = ["--epochs", "1", "--iterations-per-epoch", "2", "--batch-size", "16", "--unlabelled-batch-size", "16"]
    argv = ["--config", DIGITS, *short, "--device", "cpu", "--arch", "torchvision:resnet18"]
    out = tmp_path / "run"
    code, _, err = main_in_process(T.main, *argv, "--mix-points", "input,layer1,layer2", "--out", out)
    assert code == 0, err
    assert "note: " in err and "depth, bn_momentum set the WRN" in err  # digits.yaml's WRN fields, set aside
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert (saved["depth"], saved["bn_momentum"], saved["arch"]) == (28, 0.001, "torchvision:resnet18")
    assert json.loads((out / "summary.json").read_text())["updates"] == 2
    # a WRN flag the user typed still conflicts, and the message names it alone (not the file's fields)
    code, _, err = main_in_process(T.main, *argv, "--depth", "16", "--out", tmp_path / "other")
    assert code == 2 and len(err.strip().splitlines()) == 2 and not (tmp_path / "other").exists()
    error = err.strip().splitlines()[-1]
    assert "--depth 16 set(s) the WRN of --arch wrn" in error and "bn-momentum" not in error


def test_a_timm_model_trains_with_manifold_mixup_at_named_layers(tmp_path):
    pytest.importorskip("timm", reason="timm is the optional extra .[timm]")
    from manifold_mixup.common.registry import build

    out = tmp_path / "run"
    argv = [*TORCHVISION[:-1], "timm:test_resnet", "--mix-points", "input,layer1,layer2", "--out", str(out)]
    # fp32: on this CPU, bf16 autocast now and then (same seed, other outcome) wrote single entries of ~1e20 into
    # the weights of test_resnet's stride-2 convolutions on 2x2 maps, without mixing too (--method supervised)
    argv += ["--amp", "false", "--channels-last", "false"]
    assert T.main(argv) == 0
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert math.isfinite(lines[0]["loss_sup"]) and math.isfinite(lines[0]["loss_cons"])  # both mixed terms
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["model_args"] == {"arch": "timm:test_resnet", "args": {"num_classes": 10, "in_channels": 1}}
    build(state["model_args"]).load_state_dict(state["model"])  # timm's own module names


def test_without_timm_a_timm_arch_is_refused_before_any_work(tmp_path, main_in_process, monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # `import timm` fails, as without the extra
    argv = [*TORCHVISION[:-1], "timm:resnet10t", "--mix-points", "input,layer1", "--out", tmp_path / "run"]
    code, _, err = main_in_process(T.main, *argv)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "pip install -e '.[timm]'" in err
    assert not (tmp_path / "run").exists()


def test_a_torchvision_network_without_named_layers_is_refused_for_manifold_mixup(tmp_path, in_process):
    result = in_process("ssl.train", *TORCHVISION, "--out", str(tmp_path / "run"))
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "has no recipe for its mixing layers" in result.stderr and "--mix-points input,layer1" in result.stderr
    assert not (tmp_path / "run").exists()
    result = in_process("ssl.train", *TORCHVISION, "--mix-points", "layer9", "--out", str(tmp_path / "run"))
    assert result.returncode == 2 and "unknown layer 'layer9'" in result.stderr and "layer1" in result.stderr
    assert not (tmp_path / "run").exists()
