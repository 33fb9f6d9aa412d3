import json

import pytest
import torch

from common.config import UsageError
from common.run import (
    CHECKPOINT,
    Run,
    load_checkpoint,
    prepare_run_dir,
    resolve_device,
    rng_state,
    save_checkpoint,
    set_rng_state,
)


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


def test_overwrite_replaces_the_run(tmp_path):
    Run(tmp_path, {"lr": 0.1}, resume=False, overwrite=False).begin()
    (tmp_path / "metrics.jsonl").write_text('{"step": 1}\n')
    prepare_run_dir(tmp_path, resume=False, overwrite=True)
    Run(tmp_path, {"lr": 0.2}, resume=False, overwrite=True).begin()
    assert not (tmp_path / "metrics.jsonl").exists()
    assert (tmp_path / "config.yaml").read_text() == "lr: 0.2\n"


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


def test_checkpoint_is_atomic_and_loads_with_weights_only(tmp_path):
    path = tmp_path / CHECKPOINT
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    save_checkpoint(path, {"model": model.state_dict(), "optimizer": opt.state_dict(), "step": 7, "rng": rng_state()})
    assert not path.with_name(CHECKPOINT + ".tmp").exists()
    state = torch.load(path, weights_only=True)
    assert state["step"] == 7
    torch.testing.assert_close(state["model"]["weight"], model.weight)


def test_unreadable_checkpoint_is_a_usage_error(tmp_path):
    path = tmp_path / CHECKPOINT
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(UsageError, match="cannot be read"):
        load_checkpoint(path)
    with pytest.raises(UsageError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")


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
