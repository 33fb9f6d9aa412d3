"""Supervised training with every label (--labels all), networks by name (--arch), the ICML Table 1 configs."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import manifold_mixup.ssl.train as T
from manifold_mixup.classifiers.preact import PreActResNet
from manifold_mixup.common.config import UsageError, diff, resolve_config, to_dict
from manifold_mixup.common.mixup import sample_mix
from manifold_mixup.common.registry import ARCHS, build, classifiers
from manifold_mixup.ssl.config import DEFAULT_MIX_POINTS, SSLConfig, check_method, network_args

from conftest import ROOT

CONFIGS = sorted((ROOT / "configs" / "ssl").glob("*.yaml"))
SUPERVISED = [p for p in CONFIGS if p.name.startswith("supervised-")]
# The brief's end-to-end command: seconds on one core.
E2E = ["--dataset", "digits", "--labels", "all", "--depth", "10", "--width", "1", "--epochs", "1"]
E2E += ["--iterations-per-epoch", "5", "--device", "cpu"]


def cfg(**overrides):
    return resolve_config(SSLConfig, None, {"dataset": "digits", **overrides})


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_loads(path):
    c = resolve_config(SSLConfig, path, {})
    assert c.dataset in ("cifar10", "cifar100", "svhn", "digits") and c.mix_points


def test_every_shipped_config_loads_in_a_fresh_process():
    """The named networks must be registered by importing the config module itself, not by whatever another test
    imported first (the package move once dropped that import: --arch preactresnet18 was 'unknown')."""
    code = (
        "import sys; from manifold_mixup.common.config import resolve_config; "
        "from manifold_mixup.ssl.config import SSLConfig; "
        "[resolve_config(SSLConfig, p, {}) for p in sys.argv[1:]]"
    )
    done = subprocess.run([sys.executable, "-c", code, *map(str, CONFIGS)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr.strip().splitlines()[-1:]


def test_there_is_a_table_1_config_per_network_and_dataset():
    names = {p.name for p in SUPERVISED}
    nets, datasets = ("preactresnet18", "preactresnet34", "wrn28-10"), ("cifar10", "cifar100")
    assert names == {f"supervised-{a}-{d}.yaml" for a in nets for d in datasets}


@pytest.mark.parametrize("path", SUPERVISED, ids=lambda p: p.name)
def test_table_1_config_follows_appendix_c_and_trains_one_update(path):
    c = resolve_config(SSLConfig, path, {"dataset": "digits"})
    assert c.all_labels and c.unlabelled_batch_size == 0 and c.val_size == 0
    assert (c.lr, c.momentum, c.weight_decay, c.l1, c.alpha_sup) == (0.1, 0.9, 1e-4, 0.0, 2.0)
    epochs, milestones = (400, (200, 300)) if c.arch == "wrn28_10" else (1200, (400, 800))
    assert (c.epochs, c.lr_milestones) == (epochs, milestones)
    assert c.mix_points == ARCHS[c.arch].paper_mix_points
    assert resolve_config(SSLConfig, path, {"method": "input"}).alpha_sup == 1.0  # Appendix C.1

    torch.manual_seed(0)
    net = build(network_args(c, 10, 1))
    opt = torch.optim.SGD(net.parameters(), lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay)
    x, y = torch.randn(4, 1, 8, 8), torch.arange(4)
    mixer = T.eligible_layers(c, net)
    assert mixer.labels == tuple(c.mix_points)
    loss, parts = T.train_step(mixer, net, x, y, None, 0.0, c, 10, net=net)
    before = [p.detach().clone() for p in net.parameters()]
    loss.backward()
    opt.step()
    assert torch.isfinite(loss) and set(parts) == {"loss_sup"}
    assert all(not torch.equal(b, p) for b, p in zip(before[:1], net.parameters()))  # the stem moved


def test_supervised_mixup_is_the_labelled_term_alone():
    torch.manual_seed(0)
    net = build(network_args(cfg(depth="10", width="1", bn_momentum="0.1"), 10, 1))
    c = cfg(labels="all", method="manifold")
    x, y = torch.randn(6, 1, 8, 8), torch.arange(6)
    seen = []
    net.stages[0].register_forward_hook(lambda m, i, o: seen.append(i[0].shape[0]))
    torch.manual_seed(3)
    loss, parts = T.train_step(T.LayerMixup(net, "pixel,h1,h2"), net, x, y, None, 1.0, c, 10)
    assert seen == [6] and set(parts) == {"loss_sup"}  # one labelled forward pass, no pseudolabels
    torch.manual_seed(3)
    m = sample_mix(6, (0, 1, 2), c.alpha_sup)
    lam, h = float(m.lam), net(x, 0, m.point)
    logits = net(lam * h + (1 - lam) * h[m.perm], m.point)
    target = lam * F.one_hot(y, 10) + (1 - lam) * F.one_hot(y, 10)[m.perm]
    torch.testing.assert_close(loss, -(target * logits.log_softmax(1)).sum(1).mean())


def test_labels_all_means_no_unlabelled_batch_and_paper_alpha():
    c = cfg(labels="all", unlabelled_batch_size="100")
    assert c.labels == "all" and c.unlabelled_batch_size == 0 and c.alpha_sup == 2.0
    assert cfg(labels="all", method="input").alpha_sup == 1.0
    assert cfg(labels="all", alpha_sup="0.5").alpha_sup == 0.5  # an explicit α wins
    assert cfg().labels == 50 * 80 and cfg().alpha_sup == 0.1  # the SSL defaults are unchanged
    assert cfg(labels="250").labels == 250


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"labels": "some"}, "--labels: expected a number of labelled images or 'all'"),
        ({"labels": "0"}, "--labels must be positive or 'all'"),
        ({"labels": "all", "pseudolabels": "ema"}, "--pseudolabels ema needs unlabelled images"),
        ({"arch": "preactresnet18", "depth": "10"}, "--depth 10 set(s) the WRN of --arch wrn"),
        ({"arch": "resnet50"}, "unknown --arch 'resnet50' (valid: wrn, preactresnet18"),
    ],
)
def test_contradictory_or_unknown_values_are_one_line(overrides, message):
    with pytest.raises(UsageError) as e:
        cfg(**overrides)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_a_config_files_wrn_fields_give_way_to_another_arch_typed_ones_do_not(tmp_path, capsys):
    digits = ROOT / "configs" / "ssl" / "digits.yaml"  # depth 10, width 2, bn_momentum 0.1
    c = resolve_config(SSLConfig, digits, {"arch": "preactresnet18"})
    assert (c.arch, c.depth, c.bn_momentum, c.mix_points) == ("preactresnet18", 28, 0.001, ("pixel", "h1", "h2"))
    assert "digits.yaml: depth, bn_momentum set the WRN" in capsys.readouterr().err
    assert resolve_config(SSLConfig, digits, {}).depth == 10  # without --arch the file's WRN is the network
    (tmp_path / "own.yaml").write_text("dataset: digits\narch: wrn28_10\ndepth: 16\n")
    with pytest.raises(UsageError, match=r"own.yaml: --depth 16 set\(s\) the WRN"):  # a file at odds with itself
        resolve_config(SSLConfig, tmp_path / "own.yaml", {})
    with pytest.raises(UsageError, match=r"--width 4 set\(s\) the WRN") as e:
        resolve_config(SSLConfig, digits, {"arch": "preactresnet18", "width": "4"})
    assert "depth" not in str(e.value) and "bn-momentum" not in str(e.value)
    with pytest.raises(UsageError, match=r"--depth 10 set\(s\) the WRN"):  # typed in Python: no file to give way
        SSLConfig(dataset="digits", arch="preactresnet18", depth=10)
    saved = to_dict(resolve_config(SSLConfig, digits, {"arch": "preactresnet18"}))
    resumed = resolve_config(SSLConfig, None, {}, base=saved)  # a resume re-reads the saved config unchanged
    assert to_dict(resumed) == saved


def test_unknown_arch_through_main_is_one_line_exit_2_and_touches_nothing(tmp_path, main_in_process):
    (tmp_path / "keep.txt").write_bytes(b"untouched")
    code, _, err = main_in_process(T.main, *E2E, "--arch", "resnet50", "--out", tmp_path / "run")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert all(name in err for name in classifiers())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]
    assert (tmp_path / "keep.txt").read_bytes() == b"untouched"


def test_named_arch_defaults_to_the_papers_mixing_points():
    assert cfg(arch="wrn28_10").mix_points == ("pixel", "h1")
    assert cfg(arch="preactresnet34").mix_points == ("pixel", "h1", "h2")
    assert cfg(arch="wrn28_10", mix_points="h2").mix_points == ("h2",)
    assert cfg().mix_points == DEFAULT_MIX_POINTS
    check_method(cfg(arch="wrn28_10", method="input"))  # its own default set is fine for Input Mixup
    check_method(cfg(arch="wrn28_10", method="input", mix_points="pixel,h1,h2"))  # as the SSL configs spell it
    with pytest.raises(UsageError, match="--method input mixes at the input only"):
        check_method(cfg(arch="wrn28_10", method="input", mix_points="h1,h3"))


def test_preact_model_args_rebuild_the_same_network_from_a_checkpoint(tmp_path):
    args = network_args(cfg(arch="preactresnet18"), 100, 1)
    assert args["arch"] == "preactresnet"
    torch.manual_seed(0)
    net = build(args)
    torch.save({"model": net.state_dict(), "model_args": args}, tmp_path / "c.pt")
    state = torch.load(tmp_path / "c.pt", weights_only=True)
    again = build(state["model_args"])
    again.load_state_dict(state["model"])
    assert isinstance(again, PreActResNet) and len(again.stages[2]) == 2
    x = torch.randn(2, 1, 8, 8)
    torch.testing.assert_close(again.eval()(x), net.eval()(x))


def test_configs_saved_before_arch_and_labels_all_still_resume():
    """--resume refuses any difference from the saved config.yaml: an older run (no arch field, labels an
    int, mix_points and alpha_sup written out) must read back identical."""
    old = {k: v for k, v in to_dict(cfg()).items() if k != "arch"}
    old |= {"labels": 4000, "mix_points": ["pixel", "h1", "h2"], "alpha_sup": 0.1}
    assert diff(old, to_dict(resolve_config(SSLConfig, None, {}, base=old))) == []


def test_labels_all_end_to_end_without_validation(tmp_path, capsys):
    out = tmp_path / "run"
    assert T.main([*E2E, "--val-size", "0", "--method", "input", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert {"final_test_error", "final_test_nll"} <= set(summary) and "test_error_at_best_val" not in summary
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert any("test_acc" in m for m in metrics) and not any("val_acc" in m for m in metrics)
    assert any("loss" in m for m in metrics) and not any("w" in m for m in metrics)  # no consistency weight to plot
    with np.load(out / "split.npz") as split:
        assert len(split["val"]) == 0 and np.array_equal(split["labelled"], split["unlabelled"])
        assert len(split["labelled"]) == 1297
    printed = capsys.readouterr().out
    assert "no validation set (--val-size 0)" in printed and "(supervised: every image labelled)" in printed


def test_labels_all_keeps_a_validation_set_by_default(tmp_path):
    out = tmp_path / "run"
    assert T.main([*E2E, "--method", "supervised", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert {"test_error_at_best_val", "test_nll_at_best_val", "final_test_nll"} <= set(summary)
    with np.load(out / "split.npz") as split:
        assert len(split["val"]) == 200 and len(split["labelled"]) == 1297 - 200
        assert not np.intersect1d(split["val"], split["labelled"]).size


# The low-label supervised tier (preprint §4.2): --labelled-only, --eval-test best, --loss bce.
LOW = ["--dataset", "digits", "--labels", "100", "--labelled-only", "true", "--depth", "10", "--width", "1"]
LOW += ["--epochs", "4", "--iterations-per-epoch", "3", "--batch-size", "20", "--device", "cpu"]


def test_labelled_only_trains_on_the_labelled_images_alone(tmp_path, capsys, monkeypatch):
    from manifold_mixup.common.sampler import PairedBatches

    drawn = []

    original = PairedBatches.indices
    monkeypatch.setattr(PairedBatches, "indices", lambda self, step: drawn.append(original(self, step)) or drawn[-1])
    out = tmp_path / "run"
    assert T.main([*LOW, "--method", "manifold", "--out", str(out)]) == 0
    with np.load(out / "split.npz") as split:
        labelled = set(split["labelled"].tolist())
        assert len(labelled) == 100 and len(split["val"]) == 200
    assert drawn and all(len(u) == 0 for _, u in drawn)  # no unlabelled batch, ever
    assert all(set(idx.tolist()) <= labelled for idx, _ in drawn)  # only labelled images are trained on
    config = resolve_config(SSLConfig, out / "config.yaml")
    assert config.labels_only and config.alpha_sup == 2.0 and config.unlabelled_batch_size == 0
    printed = capsys.readouterr().out
    assert "train 100 (labelled only, 997 unused)" in printed and "(supervised: the labelled images only)" in printed


def test_eval_test_best_tests_only_improvements_and_the_end_and_keeps_the_result(tmp_path):
    out = tmp_path / "run"
    assert T.main([*LOW, "--method", "supervised", "--eval-test", "best", "--out", str(out)]) == 0
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    evals = [m for m in records if "val_acc" in m]
    assert len(evals) == 4 and all("eval_s" in m["time"] for m in evals)
    best_so_far = -1.0
    for i, m in enumerate(evals):
        improved = m["val_acc"] > best_so_far
        assert ("test_acc" in m) == (improved or i == len(evals) - 1), (i, m)
        best_so_far = max(best_so_far, m["val_acc"])
    assert "train_acc" in evals[-1] and not any("train_acc" in m for m in evals[:-1])  # the fit, measured once
    summary = json.loads((out / "summary.json").read_text())
    best = max(evals, key=lambda m: m["val_acc"])
    assert summary["test_error_at_best_val"] == pytest.approx(1 - best["test_acc"])
    assert summary["final_train_error"] == pytest.approx(1 - evals[-1]["train_acc"])


def test_evaluation_cadence_and_batch_size_change_no_training_step_and_no_selected_number(tmp_path):
    """Why the tier configs could move to --eval-test best and small evaluation batches (BENCHMARKS.md):
    evaluating draws no random number and changes no weight, so the training records are identical, and the
    validation accuracy (hence the best-validation checkpoint and its test error) does not depend on them."""

    def run(name: str, *flags: str) -> tuple[list[dict], list[dict], dict]:
        out = tmp_path / name
        assert T.main([*LOW, "--method", "manifold", *flags, "--out", str(out)]) == 0
        records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        train = [{k: v for k, v in m.items() if k != "time"} for m in records if "loss" in m]
        evals = [{k: v for k, v in m.items() if k != "time"} for m in records if "val_acc" in m]
        return train, evals, json.loads((out / "summary.json").read_text())

    train_a, evals_a, summary_a = run("every", "--eval-test", "every", "--eval-batch-size", "1000")
    train_b, evals_b, summary_b = run("best", "--eval-test", "best", "--eval-batch-size", "7")
    assert train_a and train_a == train_b
    assert [m["val_acc"] for m in evals_a] == [m["val_acc"] for m in evals_b]
    assert [m["val_nll"] for m in evals_a] == pytest.approx([m["val_nll"] for m in evals_b], rel=1e-5)
    assert sum("test_acc" in m for m in evals_b) < sum("test_acc" in m for m in evals_a) == 4  # one was skipped
    assert summary_a["test_error_at_best_val"] == summary_b["test_error_at_best_val"]


def test_the_fit_is_measured_on_every_label_of_a_small_split_and_a_fixed_random_5000_of_a_large_one():
    small = np.arange(0, 8000, 2)
    assert T.fit_subset(small) is small  # 4,000 labels: all of them
    by_class = np.arange(45000)  # stored class by class: image i has class i // 4500
    subset = T.fit_subset(by_class)
    assert len(subset) == T.FIT_IMAGES == 5000 and len(set(subset.tolist())) == 5000
    assert np.all(np.diff(subset) > 0) and np.array_equal(subset, T.fit_subset(by_class))  # sorted, fixed
    per_class = np.bincount(subset // 4500, minlength=10)
    assert per_class.min() > 400 and per_class.max() < 600  # every class, not the first ones (a prefix would be 0-1)


def test_bce_loss_is_the_released_codes_and_pulls_1_over_c_minus_1_as_hard():
    logits = torch.zeros(4, 10, requires_grad=True)  # a uniform prediction
    targets = F.one_hot(torch.tensor([0, 3, 5, 9]), 10).float()
    bce = T.supervised_loss(logits, targets, "bce")
    expected = torch.nn.BCELoss()(logits.softmax(1), targets)
    assert bce.item() == pytest.approx(expected.item())
    (g_bce,) = torch.autograd.grad(bce, logits)
    (g_ce,) = torch.autograd.grad(T.supervised_loss(logits, targets, "ce"), logits)
    assert torch.allclose(g_bce, g_ce / 9, atol=1e-7)  # 1/(C-1) of the cross-entropy gradient (docs/departures.md)
    with pytest.raises(UsageError, match="--loss"):
        cfg(loss="mse")
