import shutil

import pytest
import torch

import manifold_mixup.gan.train as G
from manifold_mixup.common.checkpoint import (
    FORMAT_KEY,
    FORMAT_VERSION,
    format_version,
    load_checkpoint,
    save_checkpoint,
)
from manifold_mixup.common.config import UsageError
from manifold_mixup.common.registry import build
from manifold_mixup.common.rng import rng_state
from manifold_mixup.common.rundir import CHECKPOINT
from manifold_mixup.gan.sample import main as sample_main

from conftest import ROOT, metrics_without_time

# A run directory written by gan.train before checkpoints had a format version (commit 6f89ddb): a ring GAN
# with 8-unit MLPs stopped by SIGTERM at update 3 of 4. It must keep loading and resuming exactly.
UNVERSIONED_RUN = ROOT / "tests" / "data" / "ring-run-v0"


def test_a_checkpoint_carries_its_format_version_is_atomic_and_loads_with_weights_only(tmp_path):
    path = tmp_path / CHECKPOINT
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    save_checkpoint(path, {"model": model.state_dict(), "optimizer": opt.state_dict(), "step": 7, "rng": rng_state()})
    assert [p.name for p in tmp_path.iterdir()] == [CHECKPOINT]  # no temporary file left
    state = torch.load(path, weights_only=True)
    assert state["step"] == 7 and state[FORMAT_KEY] == FORMAT_VERSION
    torch.testing.assert_close(state["model"]["weight"], model.weight)
    assert load_checkpoint(path)["step"] == 7


def test_unreadable_or_foreign_checkpoint_is_a_usage_error(tmp_path):
    path = tmp_path / CHECKPOINT
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(UsageError, match="cannot be read"):
        load_checkpoint(path)
    with pytest.raises(UsageError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")
    torch.save([1, 2], path)
    with pytest.raises(UsageError, match="holds a list"):
        load_checkpoint(path)
    torch.save({"step": 1, FORMAT_KEY: "two"}, path)
    with pytest.raises(UsageError, match="unknown format version 'two'"):
        load_checkpoint(path)


def test_todays_unversioned_checkpoint_still_loads():
    raw = torch.load(UNVERSIONED_RUN / CHECKPOINT, weights_only=True)
    assert FORMAT_KEY not in raw  # the fixture really predates the version
    state = load_checkpoint(UNVERSIONED_RUN / CHECKPOINT)
    assert format_version(state) == 1 and state["step"] == 3 and state["run"] == {"kind": "gan", "world": 1}
    generator = build(state["model_args"]["generator"])
    generator.load_state_dict(state["generator"])  # the weights fit the network its model_args describe
    assert generator(torch.zeros(5, state["config"]["z_dim"])).shape == (5, 2)


def test_todays_unversioned_run_resumes_exactly_and_its_next_checkpoint_is_versioned(tmp_path, main_in_process):
    out = tmp_path / "run"
    shutil.copytree(UNVERSIONED_RUN, out)
    code, _, err = main_in_process(G.main, "--out", out, "--resume", "--device", "cpu")
    assert code == 0, err
    full = tmp_path / "full"  # the same run uninterrupted, by today's code
    code, _, err = main_in_process(G.main, "--config", out / "config.yaml", "--out", full, "--device", "cpu")
    assert code == 0, err
    assert metrics_without_time(out) == metrics_without_time(full)
    resumed = torch.load(out / CHECKPOINT, weights_only=True)
    assert resumed[FORMAT_KEY] == FORMAT_VERSION and resumed["step"] == 4
    reference = torch.load(full / CHECKPOINT, weights_only=True)
    for key in ("generator", "discriminator"):
        for name, value in reference[key].items():
            torch.testing.assert_close(resumed[key][name], value, rtol=0, atol=0)


def test_a_future_format_is_refused_in_one_line(tmp_path, main_in_process):
    out = tmp_path / "run"
    shutil.copytree(UNVERSIONED_RUN, out)
    state = torch.load(out / CHECKPOINT, weights_only=True)
    torch.save(state | {FORMAT_KEY: FORMAT_VERSION + 1}, out / CHECKPOINT)
    for main, argv in (
        (G.main, ["--out", out, "--resume", "--device", "cpu"]),
        (sample_main, [out / CHECKPOINT, "--num", "4", "--out", tmp_path / "s.npz"]),
    ):
        code, _, err = main_in_process(main, *argv)
        assert code == 2, err
        assert err.count("\n") == 1 and "Traceback" not in err
        assert f"format version {FORMAT_VERSION + 1}, newer than this manifold-mixup reads" in err
