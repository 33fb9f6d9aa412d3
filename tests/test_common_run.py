import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import manifold_mixup.gan.train as G
import manifold_mixup.ssl.train as S
from manifold_mixup.common.checkpoint import save_checkpoint
from manifold_mixup.common.cli import run_main
from manifold_mixup.common.config import UsageError, load_yaml
from manifold_mixup.common.device import resolve_device
from manifold_mixup.common.rng import rng_state, set_rng_state
from manifold_mixup.common.run import Run
from manifold_mixup.common.rundir import CHECKPOINT, MARKER, prepare_run_dir, resume_command

from conftest import ROOT, metrics_without_time, signal_after


def test_new_directory_is_accepted_and_config_written(tmp_path):
    out = tmp_path / "run"
    assert prepare_run_dir(out, resume=False, overwrite=False) is None
    Run(out, {"lr": 0.1}, resume=False, overwrite=False).begin()
    assert (out / "config.yaml").read_text() == "lr: 0.1\n"


def test_existing_run_is_refused_without_resume_or_overwrite(tmp_path):
    Run(tmp_path, {"lr": 0.1}, resume=False, overwrite=False).begin()
    (tmp_path / "metrics.jsonl").write_text('{"step": 1}\n')
    with pytest.raises(UsageError, match="already holds a run; pass --resume .* or --overwrite"):
        prepare_run_dir(tmp_path, resume=False, overwrite=False)
    assert (tmp_path / "metrics.jsonl").read_text() == '{"step": 1}\n'  # nothing touched


def test_overwrite_replaces_the_run_once_the_new_one_has_a_checkpoint(tmp_path):
    out = tmp_path / "run"
    Run(out, {"lr": 0.1}, resume=False, overwrite=False).begin()
    (out / "metrics.jsonl").write_text('{"step": 1}\n')
    prepare_run_dir(out, resume=False, overwrite=True)
    run = Run(out, {"lr": 0.2}, resume=False, overwrite=True).begin()
    assert (out / "metrics.jsonl").read_text() == ""  # a new, empty log
    assert (out / "config.yaml").read_text() == "lr: 0.2\n"
    (aside,) = tmp_path.glob("run.replaced-*")  # the old run, kept until the first checkpoint
    assert (aside / "metrics.jsonl").read_text() == '{"step": 1}\n'
    run.save_checkpoint({"step": 1})
    assert not aside.exists() and list(tmp_path.iterdir()) == [out]


def test_nothing_is_written_before_begin(tmp_path):
    Run(tmp_path / "new", {"lr": 0.1}, resume=False, overwrite=False)
    assert not (tmp_path / "new").exists()
    Run(tmp_path / "old", {"lr": 0.1}, resume=False, overwrite=False).begin()
    (tmp_path / "old" / "metrics.jsonl").write_text('{"step": 1}\n')
    Run(tmp_path / "old", {"lr": 0.2}, resume=False, overwrite=True)  # a start that fails before begin()
    assert (tmp_path / "old" / "metrics.jsonl").read_text() == '{"step": 1}\n'


def test_non_run_directory_is_never_used_even_with_overwrite(tmp_path):
    (tmp_path / "thesis.tex").write_text("precious")
    for overwrite in (False, True):
        with pytest.raises(UsageError, match="non-empty directory that holds no run"):
            prepare_run_dir(tmp_path, resume=False, overwrite=overwrite)
    assert (tmp_path / "thesis.tex").read_text() == "precious"


def test_resume_needs_a_run_with_a_checkpoint(tmp_path):
    with pytest.raises(UsageError, match="holds no run"):
        prepare_run_dir(tmp_path, resume=True, overwrite=False)
    Run(tmp_path, {"lr": 0.1}, resume=False, overwrite=False).begin()
    with pytest.raises(UsageError, match="no checkpoint.pt yet"):
        prepare_run_dir(tmp_path, resume=True, overwrite=False)
    save_checkpoint(tmp_path / CHECKPOINT, {"step": 3})
    assert prepare_run_dir(tmp_path, resume=True, overwrite=False) == {"lr": 0.1}
    with pytest.raises(UsageError, match="exclude each other"):
        prepare_run_dir(tmp_path, resume=True, overwrite=True)


def test_resume_with_a_changed_config_is_refused_with_the_diff(tmp_path):
    Run(tmp_path, {"lr": 0.1, "epochs": 3}, resume=False, overwrite=False).begin()
    with pytest.raises(UsageError, match=r"lr: 0.1 -> 0.2"):
        Run(tmp_path, {"lr": 0.2, "epochs": 3}, resume=True, overwrite=False)


def test_rng_state_round_trip_replays_the_same_numbers():
    state = rng_state()
    a = torch.rand(5)
    set_rng_state(state)
    torch.testing.assert_close(torch.rand(5), a)


def test_metrics_log_and_truncation(tmp_path):
    run = Run(tmp_path, {}, resume=False, overwrite=False).begin()
    for step in (1, 2, 3, 4):
        run.log(step=step, loss=1.0 / step, bad=float("nan"))
    run.truncate_metrics(2)
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in lines] == [1, 2] and lines[0]["bad"] is None


def test_toy_training_interrupted_and_resumed_matches_uninterrupted(tmp_path):
    """The checkpoint holds everything a loop needs: model, optimizer, step and RNG."""

    def train(out, steps, stop_at=None, resume=False):
        if not resume:
            torch.manual_seed(0)
        run = Run(out, {"steps": steps}, resume=resume, overwrite=False).begin()
        model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Dropout(0.5), torch.nn.Linear(8, 1))
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        step = 0
        if resume:
            state = run.load_checkpoint()
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            set_rng_state(state["rng"])
            step = state["step"]
            run.truncate_metrics(step)
        while step < steps:
            x = torch.randn(16, 4)  # random data and dropout masks: the RNG must be restored
            loss = (model(x) - x.sum(1, keepdim=True)).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            run.log(step=step, loss=loss.item())
            if step == stop_at:
                run.save_checkpoint(
                    {"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step, "rng": rng_state()}
                )
                run.log(step=step + 1, loss=-1.0)  # logged after the checkpoint, then "killed"
                return run.metrics()
        return run.metrics()

    full = train(tmp_path / "a", 20)
    train(tmp_path / "b", 20, stop_at=9)
    resumed = train(tmp_path / "b", 20, resume=True)
    assert resumed == full


def test_resolve_device():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(UsageError, match="no CUDA device"):
            resolve_device("cuda")
    with pytest.raises(UsageError, match="unknown device"):
        resolve_device("tpu")


# ---------------------------------------------------------------------------------------------
# Run directories under stress: foreign folders, failed --overwrite starts, two processes, damaged files.

RING = [
    "--config",
    str(ROOT / "configs" / "gan" / "ring.yaml"),
    "--device",
    "cpu",
    "--steps",
    "4",
    "--batch-size",
    "32",
    "--g-batch-size",
    "32",
    "--log-every",
    "2",
    "--checkpoint-every",
    "2",
    "--eval-every",
    "4",
    "--eval-samples",
    "100",
    "--sample-every",
    "1000",
]
SSL = [
    "--config",
    str(ROOT / "configs" / "ssl" / "digits.yaml"),
    "--device",
    "cpu",
    "--epochs",
    "1",
    "--iterations-per-epoch",
    "4",
    "--depth",
    "10",
    "--width",
    "1",
    "--log-every",
    "2",
    "--eval-batch-size",
    "1000",
    "--lr-milestones",
    "1",
]
LOCKER = (
    "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDONLY); fcntl.flock(fd, fcntl.LOCK_EX); "
    "print('locked', flush=True); sys.stdin.read()"
)


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` with its bytes: what must be identical after a refused or failed start."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def old_run(out: Path) -> dict[str, bytes]:
    """A finished run as an older version of the package left it (no marker): config, metrics, checkpoint, summary."""
    out.mkdir(parents=True)
    (out / "config.yaml").write_text("dataset: ring\nsteps: 3\n")
    (out / "metrics.jsonl").write_text('{"step": 1, "loss": 0.5}\n{"step": 3, "modes": 8}\n')
    save_checkpoint(out / CHECKPOINT, {"step": 3, "generator": {"w": torch.ones(2)}})
    (out / "summary.json").write_text('{"modes": 8}\n')
    return snapshot(out)


def cli(main, argv, capsys) -> tuple[int, str, str]:
    """``run_main(main, argv)`` in this process: (exit code, stdout, stderr)."""
    try:
        run_main(main, argv, prog="trainer")
        code = 0
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, *fragments: str) -> None:
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in err, err


@pytest.fixture(scope="module")
def ring_run(tmp_path_factory) -> Path:
    """A finished 4-update ring GAN run (checkpoints at 2 and 4)."""
    out = tmp_path_factory.mktemp("ring") / "run"
    assert G.main([*RING, "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def ssl_run(tmp_path_factory) -> Path:
    """A finished 4-update SSL run on the digits."""
    out = tmp_path_factory.mktemp("ssl") / "run"
    assert S.main([*SSL, "--out", str(out)]) == 0
    return out


def copy_run(src: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "run"
    shutil.copytree(src, dst)
    return dst


def test_overwrite_refuses_a_folder_with_a_config_and_foreign_files(tmp_path, capsys):
    out = tmp_path / "thesis"
    (out / "src").mkdir(parents=True)
    (out / "config.yaml").write_text("dataset: ring\n")
    (out / "src" / "thesis.py").write_text("print('years of work')\n")
    (out / "notes.md").write_text("# notes\n")
    before = snapshot(out)
    code, _, err = cli(G.main, [*RING, "--out", str(out), "--overwrite"], capsys)
    assert_one_line_error(code, err, "holds no run")
    assert snapshot(out) == before and sorted(p.name for p in tmp_path.iterdir()) == ["thesis"]


def test_a_run_with_a_foreign_file_is_not_replaced_but_an_old_run_is_recognised(tmp_path):
    out = tmp_path / "run"
    old_run(out)  # made before the marker existed: recognised by holding only what runs write
    assert prepare_run_dir(out, resume=False, overwrite=True) is None
    Run(out, {"lr": 0.1}, resume=False, overwrite=True).begin().save_checkpoint({"step": 0})  # now with the marker
    (out / "notes.md").write_text("mine\n")
    with pytest.raises(UsageError, match=r"--overwrite: .* holds files no run writes \(notes.md\)"):
        prepare_run_dir(out, resume=False, overwrite=True)
    assert (out / "notes.md").read_text() == "mine\n"


@pytest.mark.parametrize("crash", [RuntimeError("boom"), KeyboardInterrupt()])
def test_a_crash_before_the_first_checkpoint_puts_the_old_run_back(tmp_path, monkeypatch, capsys, crash):
    out = tmp_path / "run"
    before = old_run(out)

    def fail(*args, **kwargs):
        assert (out / "config.yaml").read_text() != before["config.yaml"].decode()  # the new run has started
        raise crash

    monkeypatch.setattr(G, "train_iteration", fail)
    if isinstance(crash, KeyboardInterrupt):  # Ctrl-C: one line and the shell's exit code, no traceback
        code, _, err = cli(G.main, [*RING, "--out", str(out), "--overwrite"], capsys)
        assert code == 130 and "interrupted" in err and "the old run is back" in err and "Traceback" not in err
    else:
        with pytest.raises(type(crash)):
            cli(G.main, [*RING, "--out", str(out), "--overwrite"], capsys)
    assert snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_a_usage_error_after_the_start_puts_the_old_run_back_and_says_so_in_one_line(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    before = old_run(out)
    monkeypatch.setattr(G, "train_iteration", lambda *a, **k: (_ for _ in ()).throw(UsageError("bad input")))
    code, _, err = cli(G.main, [*RING, "--out", str(out), "--overwrite"], capsys)
    assert_one_line_error(code, err, "bad input", "the old run is back in")
    assert snapshot(out) == before


def test_a_failed_start_leaves_the_old_run_untouched(tmp_path, capsys):
    out = tmp_path / "run"
    before = old_run(out)
    code, _, err = cli(
        G.main,
        [*RING, "--out", str(out), "--overwrite", "--data-dir", str(tmp_path / "none"), "--dataset", "cifar10"],
        capsys,
    )
    assert code == 2 and "Traceback" not in err
    assert snapshot(out) == before and sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_the_old_run_is_removed_once_the_new_one_has_a_checkpoint(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    old_run(out)
    real = G.train_iteration
    calls = []

    def crash_after_the_first_checkpoint(*args, **kwargs):
        calls.append(1)
        if len(calls) > 2:  # --checkpoint-every 2: the first checkpoint is written after update 2
            raise RuntimeError("crash")
        return real(*args, **kwargs)

    monkeypatch.setattr(G, "train_iteration", crash_after_the_first_checkpoint)
    with pytest.raises(RuntimeError):
        cli(G.main, [*RING, "--out", str(out), "--overwrite"], capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # nothing kept aside
    state = torch.load(out / CHECKPOINT, weights_only=True)
    assert state["step"] == 2 and state["run"] == {"kind": "gan", "world": 1}
    assert not (out / "summary.json").exists()


def hold_lock(path: Path) -> subprocess.Popen:
    """Another process holding the lock a run holds on its directory."""
    proc = subprocess.Popen(
        [sys.executable, "-c", LOCKER, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_a_directory_in_use_by_another_process_is_refused(tmp_path, capsys):
    out, empty = tmp_path / "run", tmp_path / "empty"
    before = old_run(out)
    empty.mkdir()
    holders = [hold_lock(out), hold_lock(empty)]
    try:
        for resume, overwrite in ((True, False), (False, True)):
            with pytest.raises(UsageError, match="in use by another running process"):
                prepare_run_dir(out, resume=resume, overwrite=overwrite)
        with pytest.raises(UsageError, match="in use"):
            prepare_run_dir(empty, resume=False, overwrite=False)
        code, _, err = cli(G.main, ["--out", str(out), "--resume", "--device", "cpu"], capsys)
        assert_one_line_error(code, err, "in use")
        assert snapshot(out) == before and list(empty.iterdir()) == []
    finally:
        for proc in holders:
            proc.kill()
            proc.wait()


def test_a_run_killed_with_sigkill_leaves_no_stuck_lock(tmp_path):
    out = tmp_path / "run"
    old_run(out)
    holder = hold_lock(out)
    with pytest.raises(UsageError, match="in use"):
        prepare_run_dir(out, resume=True, overwrite=False)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert prepare_run_dir(out, resume=True, overwrite=False) == {"dataset": "ring", "steps": 3}


def test_a_half_written_last_metrics_line_is_dropped_with_a_note(tmp_path, capsys):
    run = Run(tmp_path, {}, resume=False, overwrite=False).begin()
    for step in (1, 2, 3):
        run.log(step=step, loss=1.0)
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"step": 4, "lo')  # the power went off here
    assert [m["step"] for m in run.metrics()] == [1, 2, 3]
    run.truncate_metrics(3)
    assert (tmp_path / "metrics.jsonl").read_text().count("\n") == 3
    assert "incomplete last line" in capsys.readouterr().err
    (tmp_path / "metrics.jsonl").write_text('{"step": 1}\n{"st\n{"step": 3}\n')  # damage inside is not hidden
    with pytest.raises(UsageError, match="line 2 is not a JSON object"):
        run.metrics()


def test_resume_drops_a_half_written_metrics_line(ring_run, tmp_path, capsys):
    out = copy_run(ring_run, tmp_path)
    with open(out / "metrics.jsonl", "ab") as f:
        f.write(b'{"step": 5, "loss_d": 0.6\x00\x00')
    code, _, err = cli(G.main, ["--out", str(out), "--resume", "--device", "cpu"], capsys)
    assert code == 0 and "incomplete last line" in err
    assert metrics_without_time(out) == metrics_without_time(ring_run)


@pytest.mark.parametrize("config", [b"steps: [4,\n", b"dataset: ring\xff\xfe\n"])
def test_a_corrupt_config_in_the_run_is_one_line_on_resume(ring_run, tmp_path, capsys, config):
    out = copy_run(ring_run, tmp_path)
    (out / "config.yaml").write_bytes(config)
    before = snapshot(out)
    code, _, err = cli(G.main, ["--out", str(out), "--resume", "--device", "cpu"], capsys)
    assert_one_line_error(code, err, "--resume", "config.yaml")
    assert snapshot(out) == before


def test_a_checkpoint_of_the_other_trainer_is_one_line(ring_run, ssl_run, tmp_path, capsys):
    for trainer, run_dir, other, name in ((S, ssl_run, ring_run, "ssl"), (G, ring_run, ssl_run, "gan")):
        out = copy_run(run_dir, tmp_path / name)
        shutil.copy(other / CHECKPOINT, out / CHECKPOINT)
        before = snapshot(out)
        code, _, err = cli(trainer.main, ["--out", str(out), "--resume", "--device", "cpu"], capsys)
        assert_one_line_error(code, err, f"is not a {name}.train checkpoint")
        assert snapshot(out) == before
        state = torch.load(out / CHECKPOINT, weights_only=True)  # a checkpoint from before the tag: by its keys
        del state["run"]
        save_checkpoint(out / CHECKPOINT, state)
        code, _, err = cli(trainer.main, ["--out", str(out), "--resume", "--device", "cpu"], capsys)
        assert_one_line_error(code, err, f"is not a {name}.train checkpoint", "lacks")


def test_a_run_of_the_other_trainer_is_refused_before_any_work(ring_run, tmp_path, capsys):
    out = copy_run(ring_run, tmp_path)
    code, _, err = cli(S.main, ["--out", str(out), "--resume", "--device", "cpu"], capsys)
    assert_one_line_error(code, err, "is a run of gan.train", "python -m gan.train --out")


def test_resume_with_another_number_of_processes_is_refused(ring_run, tmp_path, capsys):
    out = copy_run(ring_run, tmp_path)
    marker = json.loads((out / MARKER).read_text())
    assert marker["kind"] == "gan" and marker["world"] == 1
    (out / MARKER).write_text(json.dumps({**marker, "world": 2}))
    with pytest.raises(UsageError, match=f"torchrun --nproc_per_node 2 -m gan.train --out {out} --resume"):
        prepare_run_dir(out, resume=True, overwrite=False, kind="gan", world=1)
    code, _, err = cli(G.main, ["--out", str(out), "--resume", "--device", "cpu"], capsys)
    assert_one_line_error(code, err, "ran on 2 process(es), this is 1")
    (out / MARKER).unlink()  # no marker: the checkpoint's own tag is checked
    save_checkpoint(
        out / CHECKPOINT, {**torch.load(out / CHECKPOINT, weights_only=True), "run": {"kind": "gan", "world": 2}}
    )
    with pytest.raises(UsageError, match="written by 2 process"):
        Run(out, load_yaml(out / "config.yaml"), resume=True, overwrite=False, kind="gan", world=1).load_checkpoint()


def test_the_resume_command_names_torchrun_with_as_many_processes(tmp_path, monkeypatch):
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    out = tmp_path / "my run"
    assert resume_command("ssl.train", out, 1) == f"python -m ssl.train --out '{out}' --resume"
    run = Run(out, {}, resume=False, overwrite=False, kind="ssl", world=2)
    assert run.resume_command() == f"torchrun --nproc_per_node 2 -m ssl.train --out '{out}' --resume"
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert resume_command("gan.train", out, 8).startswith("torchrun --nnodes 2 --nproc_per_node 4 -m gan.train")


def test_the_stop_message_prints_the_resume_command(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(G, "StopSignal", signal_after(G.StopSignal, 1, signal.SIGTERM))
    out = tmp_path / "run"
    assert G.main([*RING, "--out", str(out)]) == 128 + signal.SIGTERM
    assert f"continue with: python -m gan.train --out {out} --resume" in capsys.readouterr().out


def test_the_lock_lasts_as_long_as_the_run(ring_run, tmp_path):
    def free(path):
        fd = os.open(path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False
        finally:
            os.close(fd)

    assert free(ring_run)  # its main() has returned
    run = Run(tmp_path / "run", {"lr": 0.1}, resume=False, overwrite=False).begin()
    also = Run(tmp_path / "run", {"lr": 0.1}, resume=True, overwrite=False)  # the same process may open it again
    assert not free(tmp_path / "run")
    del run, also
    assert free(tmp_path / "run")


def test_resume_after_a_kill_before_the_first_checkpoint_names_the_kept_old_run(tmp_path):
    out = tmp_path / "run"
    before = old_run(out)
    run = Run(out, {"lr": 0.1}, resume=False, overwrite=True).begin()  # then "kill -9": nothing restores it
    (aside,) = tmp_path.glob("run.replaced-*")
    assert snapshot(aside) == before
    with pytest.raises(UsageError, match=f"no checkpoint.pt yet; .* kept in {aside}"):
        prepare_run_dir(out, resume=True, overwrite=False)
    run.restore_replaced()
    assert snapshot(out) == before
