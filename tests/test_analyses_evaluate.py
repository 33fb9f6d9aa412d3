import json
import math
import shutil

import pytest
import torch
import torch.nn.functional as F
import yaml
from torch import nn

import manifold_mixup.analyses.evaluate as E
from manifold_mixup.common.augment import ZCA, Preprocess
from manifold_mixup.common.cli import run_main

from conftest import ROOT, run_module

DIGITS = str(ROOT / "configs" / "ssl" / "digits.yaml")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A 5-update digits run with ZCA and an EMA: the real trainer, its real run directory."""
    out = tmp_path_factory.mktemp("eval") / "run"
    result = run_module(
        "ssl.train",
        *("--config", DIGITS, "--epochs", "1", "--iterations-per-epoch", "5", "--depth", "10", "--width", "1"),
        *("--zca", "true", "--eval-ema", "true", "--device", "cpu", "--out", str(out)),
    )
    assert result.returncode == 0, result.stderr
    return out


def test_fgsm_is_eps_times_the_sign_of_the_input_gradient_clipped_to_pixels():
    torch.manual_seed(0)
    lin = nn.Linear(4, 3)
    model = nn.Sequential(nn.Flatten(), lin)
    zca = ZCA(torch.randn(4) * 0.1, torch.randn(4, 4))  # a mixing matrix: the gradient must go through it
    pre = Preprocess(mean=(0.4,), std=(0.25,), zca=zca)
    x = torch.tensor([[[[0.0, 1.0], [0.5, 0.99]]], [[[0.02, 0.3], [1.0, 0.0]]]])
    y = torch.tensor([2, 0])
    eps = 0.1

    # by hand: z = ((x − m)/s − μ)·M, logits = zWᵀ + b, ∂CE/∂logits = softmax − onehot
    flat = x.reshape(2, 4)
    z = ((flat - 0.4) / 0.25 - zca.mean) @ zca.matrix
    p = (z @ lin.weight.T + lin.bias).softmax(1)
    g_logits = p - F.one_hot(y, 3).float()
    g_x = (g_logits @ lin.weight) @ zca.matrix.T / 0.25
    expected = (flat + eps * g_x.sign()).clamp(0, 1).reshape_as(x)

    adv = E.fgsm(model, pre, x, y, eps)
    assert torch.allclose(adv, expected, atol=1e-6)
    assert adv.min() >= 0 and adv.max() <= 1
    assert (adv != x + eps * g_x.sign().reshape_as(x)).any()  # clipping happened on the 0/1 pixels
    assert torch.equal(E.fgsm(model, pre, x, y, 0.0), x)


def test_one_pgd_step_of_size_eps_is_fgsm_and_the_projection_keeps_the_ball():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    pre = Preprocess(mean=(0.5,), std=(0.2,))
    x, y = torch.rand(6, 1, 4, 4), torch.tensor([0, 1, 2, 0, 1, 2])
    fgsm_correct = model(E.network_input(pre, E.fgsm(model, pre, x, y, 0.05))).argmax(1) == y
    for eps in (math.inf, 0.05, 0.3):
        out = E.pgd(model, pre, x, y, eps=eps, step_size=0.05, steps=1, report=[0, 1])
        assert torch.equal(out[0], model(E.network_input(pre, x)).argmax(1) == y)  # x_0 = x: the clean prediction
        assert torch.equal(out[1], fgsm_correct)

    # a bounded attack never leaves the ε-ball or the pixel range: record the iterates through the model
    seen = []
    probe = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    probe.load_state_dict(model.state_dict())
    probe.register_forward_pre_hook(lambda m, inp: seen.append(inp[0].detach()))
    ident = Preprocess(mean=(0.0,), std=(1.0,))
    E.pgd(probe, ident, x, y, eps=0.03, step_size=0.01, steps=8, report=[8])
    assert len(seen) == 9 and all((s - x).abs().max() <= 0.03 + 1e-6 and s.min() >= 0 and s.max() <= 1 for s in seen)
    assert (seen[-1] - x).abs().max() > 0.029  # 8 steps of 0.01 reach the bound
    with pytest.raises(ValueError, match="report counts"):
        E.pgd(model, pre, x, y, eps=0.1, step_size=0.01, steps=5, report=[6])


@pytest.fixture(scope="module")
def digits_mlp():
    """A 64-128-10 MLP trained on the bundled digits in about a second: ~95% test accuracy."""
    from manifold_mixup.analyses.flattening import fit, load_digits_split
    from manifold_mixup.common.staged import StagedNet

    x, y, xt, yt = load_digits_split()
    torch.manual_seed(0)
    net = StagedNet([nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU()), nn.Linear(128, 10)])
    fit(net, x.view(-1, 1, 8, 8), y, steps=400, batch_size=100, lr=3e-3)
    return net, xt.view(-1, 1, 8, 8), yt


def test_pgd_on_a_trained_digits_model_beats_fgsm_and_unbounded_reaches_zero(digits_mlp):
    net, x, y = digits_mlp
    pre = Preprocess(mean=(0.3,), std=(0.4,))
    clean = (net(E.network_input(pre, x)).argmax(1) == y).float().mean().item()
    assert clean > 0.9
    for eps in (0.02, 0.05, 0.1):
        fgsm_acc = (net(E.network_input(pre, E.fgsm(net, pre, x, y, eps))).argmax(1) == y).float().mean().item()
        out = E.pgd(net, pre, x, y, eps=eps, step_size=0.01, steps=50, report=[10, 50])
        for t, c in out.items():
            assert c.float().mean().item() <= fgsm_acc, (eps, t)
        assert out[50].float().mean().item() < clean
    unbounded = E.pgd(net, pre, x, y, eps=math.inf, step_size=0.01, steps=200, report=[10, 50, 200])
    accs = {t: c.float().mean().item() for t, c in unbounded.items()}
    assert accs[200] <= 0.01 and accs[10] > accs[200], accs


def test_pgd_defaults_are_the_papers_and_flags_parse():
    args = E.get_args_parser().parse_args(["run"])
    assert E.parse_pgd(args.pgd_eps, args.pgd_step_size, args.pgd_steps, args.pgd_report) == (
        math.inf,
        0.01,
        200,
        [10, 50, 200],
    )
    assert E.parse_pgd("8/255", "1/255", "20", "5,50") == (8 / 255, 1 / 255, 20, [5, 20])
    assert E.parse_pgd("inf", "0.01", "0", "10") == (math.inf, 0.01, 0, [])


def test_network_input_is_the_runs_preprocessing():
    images = torch.randint(0, 256, (6, 3, 4, 4), dtype=torch.uint8)
    zca = ZCA.fit(torch.randn(50, 3, 4, 4))
    pre = Preprocess(mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3), zca=zca, translate=2, flip=True)
    assert torch.allclose(E.network_input(pre, images.float() / 255), pre(images, train=False), atol=1e-5)


def test_deformations_are_deterministic_and_keep_shapes_and_ranges():
    x = torch.rand(5, 3, 8, 8)
    u = E.deformation_draws(5, seed=3)
    assert torch.equal(u, E.deformation_draws(5, seed=3))
    assert not torch.equal(u, E.deformation_draws(5, seed=4))
    assert u.abs().max() <= 1
    for d in E.TABLE9:
        out = E.deform(x, d, u)
        assert out.shape == x.shape and out.dtype == x.dtype
        assert out.min() >= 0 and out.max() <= 1
        assert torch.equal(out, E.deform(x, d, E.deformation_draws(5, seed=3)))
        if d.kind != "zoom":
            assert not torch.allclose(out, E.deform(x, d, E.deformation_draws(5, seed=4)))


def test_deformation_geometry():
    x = torch.rand(2, 1, 6, 6)
    zero = torch.zeros(2)
    for d in (E.Deformation("rotation", 40), E.Deformation("shear", 57.3), E.Deformation("zoom", 1.0)):
        assert torch.allclose(E.deform(x, d, zero), x, atol=1e-6)  # angle 0 / factor 1 is the identity
    quarter = E.deform(x, E.Deformation("rotation", 90), torch.ones(2))
    assert torch.allclose(quarter, torch.rot90(x, 1, dims=(2, 3)), atol=1e-5)
    ones = torch.ones(1, 1, 8, 8)
    out = E.deform(ones, E.Deformation("zoom", 2.0), torch.zeros(1))  # zoom out 200%: the image in the centre half
    assert torch.allclose(out[..., 2:6, 2:6], torch.ones(1, 1, 4, 4)) and out[..., 0, :].max() < 0.3
    assert E.Deformation("zoom", 0.6).name == "zoom in 60%" and E.Deformation("zoom", 1.4).name == "zoom out 140%"
    assert [d.name for d in E.TABLE5] == [d.name for d in E.TABLE9 if d in E.TABLE5]


def test_expected_calibration_error_on_constructed_predictions():
    # 4 predictions at confidence 0.9 (3 right) and 2 at 0.62 (1 right), 15 bins:
    # ECE = 4/6·|0.75 − 0.9| + 2/6·|0.5 − 0.62| = 0.1 + 0.04
    probs = torch.tensor([[0.9, 0.1]] * 4 + [[0.38, 0.62]] * 2)
    labels = torch.tensor([0, 0, 0, 1, 1, 0])
    assert math.isclose(E.expected_calibration_error(probs, labels), 0.14, abs_tol=1e-6)
    # calibrated within each bin: 0.7 and 0.72 fall in one bin (0.667, 0.733] of mean 0.71; half right -> |0.5 − 0.71|
    probs = torch.tensor([[0.7, 0.3], [0.72, 0.28]])
    assert math.isclose(E.expected_calibration_error(probs, torch.tensor([0, 1])), 0.21, abs_tol=1e-6)
    assert E.expected_calibration_error(torch.tensor([[1.0, 0.0]] * 3), torch.tensor([0, 0, 0])) == 0


def test_knn_uses_cosine_similarity_and_breaks_ties_by_the_nearest():
    train = torch.tensor([[1.0, 0.0], [0.0, 10.0]])
    labels = torch.tensor([0, 1])
    # [0.5, 0.6] is nearer [1, 0] in L2 but points nearer [0, 10]: cosine says class 1
    assert E.knn_predict(train, labels, torch.tensor([[0.5, 0.6]]), 1, 2).tolist() == [1]
    # k = 2 is a 1-1 tie: the nearest neighbour's class wins, whichever class index is smaller
    test = torch.tensor([[0.3, 1.0], [1.0, 0.3]])
    assert E.knn_predict(train, labels, test, 2, 2).tolist() == [1, 0]
    assert E.knn_predict(train, labels, test, 99, 2).tolist() == [1, 0]  # k capped at the reference set
    # a majority beats the nearest neighbour
    train3, labels3 = torch.tensor([[1.0, 0.1], [1.0, 0.2], [1.0, 0.0]]), torch.tensor([0, 0, 1])
    assert E.knn_predict(train3, labels3, torch.tensor([[1.0, 0.0]]), 3, 2).tolist() == [0]


def test_end_to_end_on_a_tiny_run(tiny_run, tmp_path):
    out = tmp_path / "eval.json"
    assert E.main([str(tiny_run), "--device", "cpu", "--out", str(out), "--pgd-steps", "6", "--pgd-report", "3"]) == 0
    result = json.loads(out.read_text())
    assert set(result) == {"run", "checkpoint", "step", "weights", "dataset", "results", "protocol"}
    r, p = result["results"], result["protocol"]
    assert set(r) == {"clean_error", "clean_acc", "nll", "ece", "fgsm_acc", "pgd_acc", "knn_acc", "deformation_acc"}
    assert list(r["pgd_acc"]) == ["3", "6"] and r["pgd_acc"]["6"] <= r["clean_acc"]
    assert p["pgd"] == p["pgd"] | {"eps": None, "step_size": 0.01, "steps": 6, "report": [3, 6]}
    assert list(r["deformation_acc"]) == [d.name for d in E.TABLE5]
    assert {"test_images", "fgsm", "ece", "deformations", "knn", "batch_size", "device"} <= set(p)
    assert p["fgsm"]["eps"] == pytest.approx(8 / 255) and p["ece"]["bins"] == 15 and p["deformations"]["seed"] == 0
    assert p["knn"]["k"] == 5 and p["knn"]["train_images"] == 50
    assert result["step"] == 5 and result["weights"] == "model" and p["test_images"] == 500
    # the same network and preprocessing (ZCA fitted on the run's split) as the trainer's own last evaluation
    last = [json.loads(line) for line in (tiny_run / "metrics.jsonl").read_text().splitlines()][-1]
    assert r["clean_acc"] == pytest.approx(last["test_acc"], abs=1e-6)
    assert r["nll"] == pytest.approx(last["test_nll"], rel=1e-4)
    assert r["fgsm_acc"] <= r["clean_acc"] + 0.02

    out2 = tmp_path / "eps0.json"
    argv = [str(tiny_run / "checkpoint.pt"), "--eps", "0", "--max-images", "100", "--knn-train", "all"]
    argv += ["--pgd-steps", "0"]
    assert E.main([*argv, "--weights", "ema", "--device", "cpu", "--out", str(out2)]) == 0
    second = json.loads(out2.read_text())
    assert second["protocol"]["test_images"] == 100 and second["weights"] == "ema"
    assert second["protocol"]["knn"]["train_images"] == 1097
    assert second["results"]["fgsm_acc"] == second["results"]["clean_acc"]  # ε = 0 changes nothing
    assert second["results"]["pgd_acc"] == {} and second["protocol"]["pgd"]["steps"] == 0


def test_a_saved_evaluation_prints_its_table_again(tiny_run, tmp_path, capsys):
    """The JSON it wrote, or a run's record of common.report --archive holding it, prints the same table."""
    out = tmp_path / "eval.json"
    assert E.main([str(tiny_run), "--device", "cpu", "--out", str(out), "--pgd-steps", "2", "--max-images", "50"]) == 0
    printed = capsys.readouterr().out.splitlines()[:-1]  # without the "written:" line
    assert E.main([str(out)]) == 0
    assert capsys.readouterr().out.splitlines() == printed
    record = tmp_path / "run-s0.json"
    record.write_text(json.dumps({"format": 1, "name": "run-s0", "evaluation": json.loads(out.read_text())}))
    assert E.main([str(record)]) == 0
    assert capsys.readouterr().out.splitlines() == printed
    unevaluated = tmp_path / "plain.json"
    unevaluated.write_text(json.dumps({"format": 1, "name": "run-s1", "evaluation": None}))
    with pytest.raises(E.UsageError, match="holds no evaluation"):
        E.main([str(unevaluated)])


def _gan_like_run(path):
    path.mkdir()
    (path / "config.yaml").write_text(yaml.safe_dump({"dataset": "digits", "z_dim": 8, "n_dis": 1}))
    torch.save({"gen": {}, "disc": {}, "step": 1}, path / "checkpoint.pt")


def _no_model_run(tiny_run, path):
    shutil.copytree(tiny_run, path)
    torch.save({"step": 5}, path / "checkpoint.pt")


def _no_ema_run(tiny_run, path):
    shutil.copytree(tiny_run, path)
    state = torch.load(path / "checkpoint.pt", weights_only=True)
    torch.save(state | {"ema": None}, path / "checkpoint.pt")


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing", "does not exist"),
        ("empty_dir", "has no checkpoint.pt"),
        ("gan", "not a classifier run"),
        ("no_model", "no classifier weights"),
        ("no_ema", "no 'ema' weights"),
        ("eps_big", "--eps 1.5: must be in [0, 1]"),
        ("max_zero", "--max-images: expected a positive integer"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(tiny_run, tmp_path, case, message, in_process):
    target, extra = str(tiny_run), []
    if case == "missing":
        target = str(tmp_path / "nothing")
    elif case == "empty_dir":
        (tmp_path / "empty").mkdir()
        target = str(tmp_path / "empty")
    elif case == "gan":
        _gan_like_run(tmp_path / "gan")
        target = str(tmp_path / "gan")
    elif case == "no_model":
        _no_model_run(tiny_run, tmp_path / "r")
        target = str(tmp_path / "r")
    elif case == "no_ema":
        _no_ema_run(tiny_run, tmp_path / "r")
        target, extra = str(tmp_path / "r"), ["--weights", "ema"]
    else:
        flag, value = {
            "eps_big": ("--eps", "1.5"),
            "max_zero": ("--max-images", "0"),
        }[case]
        extra = [f"{flag}={value}"]
    before = {p: p.read_bytes() for p in [*tmp_path.rglob("*"), *tiny_run.rglob("*")] if p.is_file()}
    result = in_process("analyses.evaluate", target, *extra, "--device", "cpu")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert message in result.stderr
    after = {p: p.read_bytes() for p in [*tmp_path.rglob("*"), *tiny_run.rglob("*")] if p.is_file()}
    assert after == before  # nothing written, nothing changed


@pytest.mark.parametrize(
    "flag, value, message",
    [
        ("--eps", "-8/255", "--eps -8/255: must be in [0, 1]"),
        ("--eps", "1.0001", "--eps 1.0001: must be in [0, 1]"),
        ("--eps", "eight", "--eps: expected a number"),
        ("--eps", "1/0", "--eps: expected a number"),
        ("--max-images", "ten", "--max-images: expected a positive integer"),
        ("--max-images", "-3", "--max-images: expected a positive integer"),
        ("--batch-size", "0", "--batch-size: expected a positive integer"),
        ("--knn-k", "0", "--knn-k: expected a positive integer"),
        ("--seed", "x", "--seed: expected an integer"),
        ("--pgd-eps", "2", "--pgd-eps 2: must be inf or in [0, 1]"),
        ("--pgd-eps", "big", "--pgd-eps: expected inf or a number"),
        ("--pgd-step-size", "0", "--pgd-step-size 0: must be in (0, 1]"),
        ("--pgd-steps", "-1", "--pgd-steps: expected a non-negative integer"),
        ("--pgd-report", "10,x", "--pgd-report: expected comma-separated"),
        ("--pgd-report", "-5", "--pgd-report -5: iteration counts must be positive"),
    ],
)
def test_bad_numbers_are_one_line_and_exit_code_2_in_process(tmp_path, capsys, flag, value, message):
    """The same CLI path (run_main) without a new interpreter per case; the subprocess test covers the rest."""
    with pytest.raises(SystemExit) as exit_:
        run_main(E.main, [str(tmp_path), f"{flag}={value}", "--device", "cpu"], prog="python -m analyses.evaluate")
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and len(err.strip().splitlines()) == 1 and message in err
    assert list(tmp_path.iterdir()) == []
