"""Issue 21's battery, one table per family: every case a new user's bad input or a fault once turned into lost
data, a silently wrong result, a traceback or a hang; each now ends in one line and exit 2 with nothing lost, or
behaves as docs/reliability.md says. Commands run in-process (``main_in_process``) on tiny data."""

import errno
import os
import signal
import sys

import numpy as np
import pytest
import torch
import yaml

import manifold_mixup.analyses.evaluate as E
import manifold_mixup.common.plot as P
import manifold_mixup.common.report as R
import manifold_mixup.gan.sample as GS
import manifold_mixup.gan.score as S
import manifold_mixup.gan.train as GT
import manifold_mixup.ssl.train as T
from manifold_mixup.common.config import UsageError
from manifold_mixup.common.outputs import write_atomic

from conftest import ROOT, metrics_without_time, signal_after

SSL_BASE = [  # digits.yaml, one epoch of 6 updates
    *("--config", str(ROOT / "configs" / "ssl" / "digits.yaml"), "--device", "cpu"),
    *("--epochs", "1", "--iterations-per-epoch", "6", "--log-every", "3"),
]
SSL_TINY = [*SSL_BASE, "--depth", "10", "--width", "1"]
TORCHVISION = [  # the digits protocol without digits.yaml's WRN fields, on a torchvision ResNet-18
    *("--dataset", "digits", "--labels", "50", "--val-size", "200", "--zca", "false", "--translate", "1"),
    *("--batch-size", "16", "--unlabelled-batch-size", "16", "--epochs", "1", "--iterations-per-epoch", "6"),
    *("--log-every", "3", "--device", "cpu", "--arch", "torchvision:resnet18", "--method", "manifold"),
    *("--mix-points", "input,layer1"),
]
GAN_TINY = [
    *("--config", str(ROOT / "configs" / "gan" / "digits.yaml"), "--device", "cpu", "--seed", "5"),
    *("--steps", "6", "--g-channels", "16", "--d-channels", "16", "--batch-size", "16", "--g-batch-size", "16"),
    *("--log-every", "1", "--sample-every", "100", "--checkpoint-every", "2", "--eval-samples", "20"),
]


def tree(path):
    """{relative path: bytes} of every file under ``path``: what must not change."""
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def ssl_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("battery") / "run"
    assert T.main([*SSL_TINY, "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def gan_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("battery") / "gan"
    assert GT.main([*GAN_TINY, "--eval-samples", "0", "--out", str(out)]) == 0
    return out


# ---------------------------------------------------------------------------------------------
# Data loss: no command but the trainer writes a run directory's own files; nothing is overwritten
# without --overwrite; the output path is checked before the work.

OUTPUT_CASES = [
    # (command, argv with {run}/{gan}/{tmp}, message)
    (E.main, ["{run}", "--out", "{run}/summary.json"], "run directory's own file"),
    (E.main, ["{run}", "--out", "{run}/checkpoint.pt"], "name a .json file"),
    (E.main, ["{run}", "--out", "{run}/config.yaml"], "name a .json file"),
    (E.main, ["{run}", "--out", "{tmp}/exists.json"], "already exists; pass --overwrite"),
    (E.main, ["{run}", "--out", "{tmp}/missing/e.json"], "does not exist; create it first"),
    (R.main, ["{run}", "--unfinished", "--json", "{run}/summary.json"], "run directory's own file"),
    (R.main, ["{run}", "--unfinished", "--json", "{gan}/metrics.jsonl"], "run directory's own file"),
    (R.main, ["{run}", "--unfinished", "--json", "{tmp}/exists.json"], "already exists"),
    (R.main, ["{run}", "--json", "{tmp}/missing/t.json"], "does not exist; create it first"),
    (R.main, ["{run}", "--unfinished", "--archive", "{tmp}/exists.json"], "is a file, not a folder"),
    (P.main, ["{run}", "--out", "{tmp}/curves"], "name a .png or .pdf or .svg file"),
    (P.main, ["{run}", "--out", "{tmp}/curves.xyz"], "name a .png or .pdf or .svg file"),
    (P.main, ["{run}", "--out", "{run}/checkpoint.pt"], "name a .png"),
    (P.main, ["{run}", "--out", "{tmp}/exists.png"], "already exists"),
    (P.main, ["{run}", "--out", "{run}/samples/x.png"], "run directory's own file"),
    (GS.main, ["{gan}/checkpoint.pt", "--num", "4", "--out", "{gan}/split.npz"], "run directory's own file"),
    (GS.main, ["{gan}/checkpoint.pt", "--num", "4", "--out", "{gan}/samples"], "run directory's own file"),
    (GS.main, ["{gan}/checkpoint.pt", "--num", "4", "--out", "{tmp}/exists.npz"], "already exists"),
    (S.main, ["{gan}/checkpoint.pt", "--out", "{gan}/summary.json", "--overwrite"], "run directory's own file"),
    (S.main, ["{gan}/checkpoint.pt", "--out", "{gan}/checkpoint.pt", "--overwrite"], "run directory's own file"),
    (S.main, ["{gan}/checkpoint.pt", "--out", "{tmp}/exists.json"], "already exists"),
]


@pytest.mark.parametrize(("main", "argv", "message"), OUTPUT_CASES, ids=lambda c: getattr(c, "__module__", None))
def test_output_paths_are_checked_before_the_work_and_nothing_is_overwritten(
    main, argv, message, ssl_run, gan_run, tmp_path, main_in_process
):
    for name in ("exists.json", "exists.png", "exists.npz"):
        (tmp_path / name).write_text("keep me")
    (ssl_run / "samples").mkdir(exist_ok=True)
    before = {p: tree(p) for p in (ssl_run, gan_run, tmp_path)}
    argv = [a.format(run=ssl_run, gan=gan_run, tmp=tmp_path) for a in argv]
    code, _, err = (
        main_in_process(main, *argv, "--device", "cpu")
        if main is not R.main and main is not P.main
        else (main_in_process(main, *argv))
    )
    assert code == 2 and message in err and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1, err
    assert {p: tree(p) for p in (ssl_run, gan_run, tmp_path)} == before


def test_ssl_evaluate_writes_an_existing_file_only_with_overwrite(ssl_run, tmp_path, main_in_process):
    out = tmp_path / "e.json"
    assert main_in_process(E.main, ssl_run, "--device", "cpu", "--out", out)[0] == 0
    first = out.read_bytes()
    code, _, err = main_in_process(E.main, ssl_run, "--device", "cpu", "--out", out)
    assert code == 2 and "--overwrite" in err and out.read_bytes() == first
    assert main_in_process(E.main, ssl_run, "--device", "cpu", "--out", out, "--overwrite")[0] == 0


def test_plot_writes_exactly_the_path_asked(ssl_run, tmp_path, main_in_process):
    for name in ("c.pdf", "c.svg", "c.png"):
        code, out, err = main_in_process(P.main, ssl_run, "--out", tmp_path / name)
        assert code == 0 and out.strip() == str(tmp_path / name), err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pdf", "c.png", "c.svg"]


# ---------------------------------------------------------------------------------------------
# A full disk: one line naming the disk, no temporary file left, the old run back


def _enospc_after(monkeypatch, module, name, calls=0):
    """Make ``module.name`` (a writer) raise ENOSPC from its ``calls``+1-th call on."""
    real = getattr(module, name)
    count = {"n": 0}

    def full(*args, **kwargs):
        count["n"] += 1
        if count["n"] > calls:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, full)


def test_torch_save_on_a_full_disk_is_recognised_too(tmp_path):
    from manifold_mixup.common.outputs import is_disk_full

    assert is_disk_full(RuntimeError(f"[enforce fail at inline_container.cc:664] . {os.strerror(errno.ENOSPC)}"))
    assert not is_disk_full(RuntimeError("shape mismatch"))


def test_write_atomic_on_a_full_disk_names_the_disk_and_leaves_no_temporary_file(tmp_path):
    (tmp_path / "f.json").write_text("old")

    def writer(f):
        f.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(UsageError, match=r"the disk mounted at /\S* is full .*f\.json"):
        write_atomic(tmp_path / "f.json", writer)
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"] and (tmp_path / "f.json").read_text() == "old"


@pytest.mark.parametrize("when", ["new", "resume", "overwrite"])
def test_trainer_on_a_full_disk_is_one_line_and_leaves_no_temporary_file(when, tmp_path, monkeypatch, main_in_process):
    out = tmp_path / "run"
    if when != "new":
        assert T.main([*SSL_TINY, "--out", str(out)]) == 0
        if when == "resume":  # a run stopped after its first checkpoint
            monkeypatch.setattr(T, "StopSignal", signal_after(T.StopSignal, 2, signal.SIGTERM))
            assert T.main([*SSL_TINY, "--out", str(out), "--overwrite"]) == 128 + signal.SIGTERM
            monkeypatch.undo()
    before = tree(out) if out.exists() else {}
    import manifold_mixup.common.checkpoint as checkpoint_module

    monkeypatch.setattr(
        checkpoint_module.torch, "save", lambda *a, **k: (_ for _ in ()).throw(OSError(errno.ENOSPC, "full"))
    )
    argv = ["--out", out, "--resume", "--device", "cpu"] if when == "resume" else [*SSL_TINY, "--out", out]
    code, _, err = main_in_process(T.main, *argv, *(["--overwrite"] if when == "overwrite" else []))
    assert code == 2 and "is full" in err and "Traceback" not in err, err
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]
    if when == "overwrite":
        assert tree(out) == before and "old run is back" in err  # the replaced run is restored byte for byte
    if when == "resume":  # the last good checkpoint is kept as it was
        assert tree(out)["checkpoint.pt"] == before["checkpoint.pt"]


def test_metrics_log_on_a_full_disk_is_one_line(tmp_path, monkeypatch, main_in_process):
    import manifold_mixup.common.outputs as outputs

    real_open = open

    def full_open(path, mode="r", *args, **kwargs):
        if "a" in mode and str(path).endswith("metrics.jsonl"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr(outputs, "open", full_open, raising=False)
    code, _, err = main_in_process(T.main, *SSL_TINY, "--out", tmp_path / "run")
    assert code == 2 and "is full" in err and "metrics.jsonl" in err and "Traceback" not in err, err


# ---------------------------------------------------------------------------------------------
# Exact resume: every trainer and network kind, with and without mixup, stopped after a checkpoint


def _checkpoints_equal(a, b, keys):
    full = torch.load(a / "checkpoint.pt", weights_only=True)
    cut = torch.load(b / "checkpoint.pt", weights_only=True)
    for key in keys:
        for name, value in full[key].items():
            torch.testing.assert_close(cut[key][name], value, rtol=0, atol=0)


RING_TINY = [
    *("--config", str(ROOT / "configs" / "gan" / "ring.yaml"), "--device", "cpu", "--steps", "30", "--mix", "pixel"),
    *("--log-every", "5", "--checkpoint-every", "10", "--sample-every", "100", "--eval-every", "100"),
    *("--eval-samples", "500"),
]
RESUME_CASES = [
    # (trainer, argv, polls before the signal, networks compared)
    (GT.main, RING_TINY, 12, ("generator", "discriminator")),
    (GT.main, GAN_TINY, 3, ("generator", "discriminator")),
    (GT.main, [*GAN_TINY, "--mix", "pixel", "--mix-pairs", "fr,ff"], 3, ("generator", "discriminator")),
    (T.main, [*SSL_TINY, "--method", "manifold"], 4, ("model",)),
    (T.main, [*SSL_TINY, "--method", "supervised", "--labels", "all", "--val-size", "100"], 4, ("model",)),
    (T.main, TORCHVISION, 4, ("model",)),
]


@pytest.mark.parametrize(("main", "argv", "polls", "keys"), RESUME_CASES)
@pytest.mark.parametrize("signum", [signal.SIGTERM])
def test_exact_resume_after_a_stop(main, argv, polls, keys, signum, tmp_path, monkeypatch):
    if "--eval-samples" in argv and "20" in argv:
        from manifold_mixup.common.features import digits_extractor_weights

        digits_extractor_weights()  # trained once per session, as a user's first digits run does
    assert main([*argv, "--out", str(tmp_path / "full")]) == 0
    module = sys.modules[main.__module__]
    monkeypatch.setattr(module, "StopSignal", signal_after(module.StopSignal, polls, signum))
    assert main([*argv, "--out", str(tmp_path / "cut")]) == 128 + signum
    monkeypatch.undo()
    assert main(["--out", str(tmp_path / "cut"), "--resume", "--device", "cpu"]) == 0
    assert metrics_without_time(tmp_path / "cut") == metrics_without_time(tmp_path / "full")
    _checkpoints_equal(tmp_path / "full", tmp_path / "cut", keys)


def test_a_killed_digits_gan_resumes_exactly_from_its_first_checkpoint(tmp_path, monkeypatch):
    """Killed (kill -9) right after its first checkpoint: the resume ends where the uninterrupted run ends (the
    image path's scorer once shifted the random stream of a resume)."""
    import manifold_mixup.common.run as run_module
    from manifold_mixup.common.features import digits_extractor_weights

    digits_extractor_weights()
    argv = [*GAN_TINY, "--mix", "pixel"]
    assert GT.main([*argv, "--out", str(tmp_path / "full")]) == 0
    real = run_module.Run.save_checkpoint

    def die_after_saving(self, state):
        real(self, state)
        raise SystemExit(137)  # nothing after the checkpoint runs, as under kill -9

    monkeypatch.setattr(run_module.Run, "save_checkpoint", die_after_saving)
    with pytest.raises(SystemExit):
        GT.main([*argv, "--out", str(tmp_path / "cut")])
    monkeypatch.undo()
    assert torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)["step"] == 2
    assert GT.main(["--out", str(tmp_path / "cut"), "--resume", "--device", "cpu"]) == 0
    assert metrics_without_time(tmp_path / "cut") == metrics_without_time(tmp_path / "full")
    _checkpoints_equal(tmp_path / "full", tmp_path / "cut", ("generator", "discriminator"))


# ---------------------------------------------------------------------------------------------
# Silently wrong: each now refused in one line (or warned about), nothing changed


def copy_run(run, tmp_path):
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(run, out)
    return out


def split_file(tmp_path, labelled, unlabelled, val, name="s.npz"):
    from manifold_mixup.common.data import Split

    path = tmp_path / name
    Split(np.asarray(labelled), np.asarray(unlabelled), np.asarray(val)).save(path, dataset="digits", num_train=1297)
    return path


def _other_split(run, tmp_path, **change):
    from manifold_mixup.common.data import Split

    s = Split.load(run / "split.npz", num_train=1297, dataset="digits")
    parts = {"labelled": s.labelled, "unlabelled": s.unlabelled, "val": s.val} | change
    return split_file(tmp_path, parts["labelled"], parts["unlabelled"], parts["val"])


RUN_INPUT_CASES = [
    # (what is done to a copy of the tiny run, argv after it, message)
    ("metrics log linked elsewhere", ["--resume"], "metrics.jsonl is a symbolic link"),
    ("split of 100 labels", ["--resume"], "but --labels is 50"),
    ("metrics deleted", ["--resume"], "metrics.jsonl is missing"),
    ("config edited", ["--resume"], "differs from the config the checkpoint was written with (lr: "),
    ("split truncated", ["--resume"], "cannot be read"),
]


@pytest.mark.parametrize(("harm", "argv", "message"), RUN_INPUT_CASES, ids=[c[0] for c in RUN_INPUT_CASES])
def test_a_harmed_run_directory_is_refused_on_resume(harm, argv, message, ssl_run, tmp_path, main_in_process):
    out = copy_run(ssl_run, tmp_path)
    if harm == "split of 100 labels":
        s = np.load(out / "split.npz")
        extra = np.setdiff1d(s["unlabelled"], s["labelled"])[:50]
        _other_split(ssl_run, tmp_path, labelled=np.sort(np.concatenate([s["labelled"], extra])))
        (tmp_path / "s.npz").replace(out / "split.npz")
    elif harm == "metrics log linked elsewhere":  # appending would write outside the run directory
        (tmp_path / "elsewhere.jsonl").write_bytes((out / "metrics.jsonl").read_bytes())
        (out / "metrics.jsonl").unlink()
        (out / "metrics.jsonl").symlink_to(tmp_path / "elsewhere.jsonl")
    elif harm == "metrics deleted":
        (out / "metrics.jsonl").unlink()
    elif harm == "config edited":
        cfg = yaml.safe_load((out / "config.yaml").read_text())
        (out / "config.yaml").write_text(yaml.safe_dump(cfg | {"lr": 0.5}, sort_keys=False))
    elif harm == "split truncated":
        data = (out / "split.npz").read_bytes()
        (out / "split.npz").write_bytes(data[: len(data) // 2])
    (out / "summary.json").unlink()
    before = tree(out)
    code, _, err = main_in_process(T.main, "--out", out, *argv, "--device", "cpu")
    assert code == 2 and message in err and "Traceback" not in err, err
    assert tree(out) == before


SPLIT_CASES = [
    ("duplicate indices", [], "lists an index twice"),
    ("another --val-size", ["--val-size", "100"], "holds 200 validation images but --val-size is 100"),
    ("truncated", [], "cannot be read (BadZipFile)"),
]


@pytest.mark.parametrize(("harm", "argv", "message"), SPLIT_CASES, ids=[c[0] for c in SPLIT_CASES])
def test_a_bad_split_flag_is_refused(harm, argv, message, ssl_run, tmp_path, main_in_process):
    path = _other_split(ssl_run, tmp_path)
    if harm == "duplicate indices":
        s = np.load(path)
        lab = s["labelled"].copy()
        lab[1] = lab[0]
        path = _other_split(ssl_run, tmp_path, labelled=lab)
    elif harm == "truncated":
        path.write_bytes(path.read_bytes()[:100])
    code, _, err = main_in_process(T.main, *SSL_TINY, "--split", path, *argv, "--out", tmp_path / "new")
    assert code == 2 and message in err and "Traceback" not in err, err
    assert not (tmp_path / "new").exists()


def test_ssl_evaluate_refuses_a_truncated_split_in_one_line(ssl_run, tmp_path, main_in_process):
    out = copy_run(ssl_run, tmp_path)
    (out / "split.npz").write_bytes((out / "split.npz").read_bytes()[:64])
    code, _, err = main_in_process(E.main, out, "--device", "cpu", "--out", tmp_path / "e.json")
    assert code == 2 and "cannot be read" in err and not (tmp_path / "e.json").exists(), err


@pytest.mark.parametrize("target", ["link", "mount point", "busy"])
def test_overwrite_of_a_link_or_a_mount_point_is_refused_and_nothing_moves(
    target, ssl_run, tmp_path, monkeypatch, main_in_process
):
    import manifold_mixup.common.run as run_module

    out = copy_run(ssl_run, tmp_path)
    given = out
    if target == "link":
        given = tmp_path / "link"
        given.symlink_to(out)
    elif target == "mount point":
        real = os.path.ismount
        monkeypatch.setattr(run_module.os.path, "ismount", lambda p: os.fspath(p) == os.fspath(out) or real(p))
    else:  # the rename of a busy directory fails (EBUSY) after the checks
        monkeypatch.setattr(run_module.os, "rename", lambda *a: (_ for _ in ()).throw(OSError(errno.EBUSY, "busy")))
    before = tree(out)
    code, _, err = main_in_process(T.main, *SSL_TINY, "--out", given, "--overwrite")
    expected = {"link": "is a symbolic link", "mount point": "is a mount point", "busy": "cannot be moved aside"}
    assert code == 2 and expected[target] in err and "Traceback" not in err, err
    assert tree(out) == before and sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["copy"] + (["link"] if target == "link" else [])
    )
    assert target != "link" or given.is_symlink()


def test_a_yaml_key_given_twice_is_refused(tmp_path, main_in_process):
    config = tmp_path / "c.yaml"
    config.write_text((ROOT / "configs" / "ssl" / "digits.yaml").read_text() + "labels: 100\n")
    code, _, err = main_in_process(T.main, "--config", config, "--device", "cpu", "--out", tmp_path / "run")
    assert code == 2 and "key 'labels' is given twice" in err and not (tmp_path / "run").exists(), err


def test_fid_from_fewer_images_than_feature_dimensions_warns(capsys):
    S.check_fid_size(3, 500, 64)
    assert "FID from 3 images" in capsys.readouterr().err
    S.check_fid_size(500, 500, 64)
    assert capsys.readouterr().err == ""
    with pytest.raises(UsageError, match="at least 2 samples"):
        S.check_fid_size(1, 500, 64)


def test_a_run_given_twice_to_report_is_refused(ssl_run, tmp_path, main_in_process):
    (tmp_path / "again").symlink_to(ssl_run)
    code, _, err = main_in_process(R.main, ssl_run, tmp_path / "again", "--unfinished")
    assert code == 2 and "given twice" in err, err


@pytest.mark.parametrize("main", [R.main, P.main])
def test_a_damaged_metrics_line_is_named_not_skipped(main, ssl_run, tmp_path, main_in_process):
    out = copy_run(ssl_run, tmp_path)
    lines = (out / "metrics.jsonl").read_text().splitlines()
    (out / "metrics.jsonl").write_text("\n".join([lines[0], '{"step": 3, "loss": 0.', *lines[1:]]) + "\n")
    argv = ["--json", tmp_path / "t.json"] if main is R.main else ["--out", tmp_path / "c.png"]
    code, _, err = main_in_process(main, out, *argv)
    assert code == 2 and "line 2 is not a JSON object" in err and "Traceback" not in err, err
    assert not (tmp_path / "t.json").exists() and not (tmp_path / "c.png").exists()


# ---------------------------------------------------------------------------------------------
# Loaders: only regular files, each image under one label


def image_folder(tmp_path):
    from PIL import Image

    root = tmp_path / "images"
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(np.full((8, 8), 40 * i + (c == "b") * 100, np.uint8)).save(root / c / f"{i}.png")
    return root


def _fifo(path):
    os.mkfifo(path)


LOADER_CASES = [
    ("FIFO named x.png", lambda r: _fifo(r / "a" / "x.png"), "is a FIFO (named pipe), not a regular file"),
    ("class folder linked to another", lambda r: (r / "c").symlink_to(r / "a"), "is the same folder as"),
    ("image linked into another class", lambda r: (r / "b" / "9.png").symlink_to(r / "a" / "0.png"), "two labels"),
    ("zero-byte PNG", lambda r: (r / "a" / "z.png").write_bytes(b""), "is empty (0 bytes)"),
]


@pytest.mark.parametrize(("harm", "make", "message"), LOADER_CASES, ids=[c[0] for c in LOADER_CASES])
def test_an_image_folder_made_to_hurt_is_refused_in_one_line(harm, make, message, tmp_path):
    from manifold_mixup.common.data import load_image_folder

    root = image_folder(tmp_path)
    make(root)
    signal.signal(signal.SIGALRM, lambda *a: pytest.fail("the loader hangs"))
    signal.alarm(20)
    try:
        with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
            load_image_folder(root)
    finally:
        signal.alarm(0)


@pytest.mark.parametrize("what", ["checkpoint", "config", "split", "samples"])
def test_a_fifo_given_as_an_input_is_refused_not_read(what, tmp_path, main_in_process):
    fifo = tmp_path / {"checkpoint": "c.pt", "config": "c.yaml", "split": "s.npz", "samples": "s.npz"}[what]
    os.mkfifo(fifo)
    main, argv = {
        "checkpoint": (GS.main, [fifo, "--num", "4", "--out", tmp_path / "o.npz", "--device", "cpu"]),
        "config": (T.main, ["--config", fifo, "--device", "cpu", "--out", tmp_path / "run"]),
        "split": (T.main, [*SSL_TINY, "--split", fifo, "--out", tmp_path / "run"]),
        "samples": (S.main, [fifo, "--no-fid", "--device", "cpu"]),
    }[what]
    signal.signal(signal.SIGALRM, lambda *a: pytest.fail("the command hangs"))
    signal.alarm(20)
    try:
        code, _, err = main_in_process(main, *argv)
    finally:
        signal.alarm(0)
    assert code == 2 and ("FIFO" in err or "not a regular file" in err) and "Traceback" not in err, err


# ---------------------------------------------------------------------------------------------
# Security: hostile checkpoints


def _checkpoint_with(path, model_args):
    from manifold_mixup.common.checkpoint import save_checkpoint

    state = torch.load(path, weights_only=True)
    state["model_args"] = model_args
    save_checkpoint(path, state)


HOSTILE_ARGS = [
    ({"arch": "wrn", "args": {"depth": 10, "width": 200_000, "num_classes": 10}}, "outside the sane range"),
    ({"arch": "wrn", "args": {"depth": 10, "width": 1, "num_classes": 10, "evil": 1}}, "do not fit its constructor"),
    ({"arch": "wrn", "args": {"depth": 10, "width": [1, {"a": 1}], "num_classes": 10}}, "not a plain value"),
    ({"arch": "wrn", "args": {"depth": 10, "width": 60000, "num_classes": 10}}, "parameters, beyond"),
]


@pytest.mark.parametrize(("model_args", "message"), HOSTILE_ARGS, ids=[m for _, m in HOSTILE_ARGS])
def test_stored_model_arguments_are_checked_before_anything_is_built(
    model_args, message, ssl_run, tmp_path, monkeypatch, main_in_process
):
    import torch.nn as nn

    out = copy_run(ssl_run, tmp_path)
    _checkpoint_with(out / "checkpoint.pt", model_args)
    built = []
    real_init = nn.Conv2d.__init__

    def spy(self, *args, **kwargs):
        built.append(torch.get_default_device())
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(nn.Conv2d, "__init__", spy)
    code, _, err = main_in_process(E.main, out, "--device", "cpu", "--out", tmp_path / "e.json")
    assert code == 2 and message in err and "Traceback" not in err, err
    assert all(d.type == "meta" for d in built)  # nothing was built with real memory


def test_a_refused_unsafe_pickle_never_advises_turning_the_safety_off(tmp_path, main_in_process):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"model": Evil()}, tmp_path / "w.pt")
    from manifold_mixup.common.features import DIGITS_EXTRACTOR

    with pytest.raises(UsageError) as info:
        S.Extractor(DIGITS_EXTRACTOR, tmp_path / "w.pt")
    assert "weights_only=False" not in str(info.value) and "can still be loaded" not in str(info.value)
    assert "safe load" in str(info.value)


def test_pyproject_requires_a_torch_whose_safe_load_cannot_be_bypassed():
    import tomllib

    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    (torch_dep,) = [d for d in deps if d.startswith("torch>=")]
    assert tuple(int(x) for x in torch_dep.split(">=")[1].split(".")[:2]) >= (2, 6)
    assert any(d.startswith("filelock") for d in deps)


# ---------------------------------------------------------------------------------------------
# Portability


def test_the_package_imports_and_locks_without_fcntl(tmp_path):
    from conftest import run_python

    code = (
        "import sys; sys.modules['fcntl'] = None\n"
        "import manifold_mixup.common.cli, manifold_mixup.common.run  # what every command imports\n"
        "import manifold_mixup.common.lock as lock\n"
        "key = lock.lock_run_dir(sys.argv[1]); lock.unlock_run_dir(key); print('ok')\n"
    )
    result = run_python("-c", code, str(tmp_path))
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


def test_the_portable_lock_refuses_a_second_holder(tmp_path, monkeypatch):
    import manifold_mixup.common.lock as D

    monkeypatch.setattr(D, "_fcntl", lambda: None)
    first = D.DirLock(tmp_path)
    with pytest.raises(D.Busy):
        D.DirLock(tmp_path)
    first.release()
    D.DirLock(tmp_path).release()


def test_device_mps_is_accepted_where_pytorch_has_it_and_refused_clearly_where_not(monkeypatch):
    from manifold_mixup.common.device import resolve_device

    mps = torch.backends.mps
    monkeypatch.setattr(mps, "is_built", lambda: False)
    with pytest.raises(UsageError, match="built without MPS"):
        resolve_device("mps")
    monkeypatch.setattr(mps, "is_built", lambda: True)
    monkeypatch.setattr(mps, "is_available", lambda: False)
    with pytest.raises(UsageError, match="no usable Apple GPU"):
        resolve_device("mps")
    monkeypatch.setattr(mps, "is_available", lambda: True)
    assert resolve_device("mps").type == "mps"


# ---------------------------------------------------------------------------------------------
# Tracebacks that are now one line (the other cases of the list are in the tables above)


def test_resume_with_a_checkpoint_of_another_width_is_one_line(ssl_run, tmp_path, main_in_process):
    out = copy_run(ssl_run, tmp_path)
    other = tmp_path / "wide"
    assert T.main([*SSL_TINY, "--width", "2", "--out", str(other)]) == 0
    (other / "checkpoint.pt").replace(out / "checkpoint.pt")
    cfg = torch.load(out / "checkpoint.pt", weights_only=True)["config"]
    (out / "config.yaml").write_text(yaml.safe_dump(cfg | {"width": 1}, sort_keys=False))
    (out / "summary.json").unlink()
    code, _, err = main_in_process(T.main, "--out", out, "--resume", "--device", "cpu")
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert "differs from the config the checkpoint was written with (width: 2 -> 1)" in err


def test_weights_of_another_shape_are_one_line_on_load(tmp_path):
    from manifold_mixup.common.loop import load_into

    with pytest.raises(UsageError, match=r"does not fit this run's network \(Error\(s\) in loading"):
        load_into(torch.nn.Linear(3, 2), torch.nn.Linear(4, 2).state_dict(), "model", tmp_path / "c.pt")


@pytest.mark.parametrize("when", ["start-up", "second Ctrl-C in the loop"])
def test_ctrl_c_is_one_line_and_the_exit_code_130(when, tmp_path, monkeypatch, main_in_process):
    import manifold_mixup.ssl.data as ssl_data

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    if when == "start-up":
        monkeypatch.setattr(T, "build_data", interrupt)
    else:  # StopSignal raises KeyboardInterrupt at a second Ctrl-C while the first is handled
        monkeypatch.setattr(ssl_data.PairedBatches, "indices", interrupt)
    code, _, err = main_in_process(T.main, *SSL_TINY, "--out", tmp_path / "run")
    assert code == 130 and "interrupted" in err and "Traceback" not in err, err
    assert len(err.strip().splitlines()) <= 2, err
