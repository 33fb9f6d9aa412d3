"""Data parallelism on the CPU: torchrun with 2 processes and the gloo backend."""

import json
import os
import signal
import subprocess
import sys

import pytest
import torch

from manifold_mixup.common.config import UsageError
from manifold_mixup.common.dist import Dist, agree_to_stop, shard

from conftest import ROOT, metrics_without_time, run_module, wait_for_training

RING = [
    "--config",
    str(ROOT / "configs" / "gan" / "ring.yaml"),
    "--device",
    "cpu",
    "--steps",
    "40",
    "--batch-size",
    "64",
    "--g-batch-size",
    "64",
    "--log-every",
    "10",
    "--eval-every",
    "40",
    "--sample-every",
    "40",
    "--checkpoint-every",
    "40",
]
SSL = [
    "--config",
    str(ROOT / "configs" / "ssl" / "digits.yaml"),
    "--device",
    "cpu",
    "--epochs",
    "3",
    "--iterations-per-epoch",
    "10",
    "--depth",
    "10",
    "--width",
    "1",
    "--log-every",
    "5",
    "--batch-size",
    "20",
    "--unlabelled-batch-size",
    "40",
    "--lr-milestones",
    "2",
]


def torchrun(*args, nproc=2, **kwargs):
    return run_module("torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc), "-m", *args, **kwargs)


def test_shard_splits_the_global_batch_evenly():
    batch = torch.arange(12)
    assert shard(batch, Dist(0, 1)) is batch
    assert shard(batch, Dist(1, 3)).tolist() == [4, 5, 6, 7]
    assert torch.cat([shard(batch, Dist(r, 4)) for r in range(4)]).tolist() == batch.tolist()
    with pytest.raises(UsageError, match="does not split over 5 processes"):
        shard(batch, Dist(0, 5))


def test_a_single_process_stops_at_once():
    assert agree_to_stop(True, Dist(), torch.device("cpu"), sync_point=False)
    assert not agree_to_stop(False, Dist(), torch.device("cpu"), sync_point=True)


@pytest.mark.slow
def test_two_processes_train_the_same_gan_as_one_with_the_same_global_batch(tmp_path):
    """No BatchNorm in the ring's MLPs and real-fake mixes pair example i with example i, so the
    global batch split over two ranks is the same computation as one process."""
    # n_dis 1 pinned: with the ring config's n_dis 2 both runs agree to 1e-6 for the first 10 updates, then
    # the GAN's dynamics amplify float rounding (all-reduce sums in another order) past any tolerance
    argv = [*RING, "--mix", "pixel", "--mix-pairs", "rf", "--n-dis", "1"]
    one = run_module("gan.train", *argv, "--out", str(tmp_path / "one"))
    assert one.returncode == 0, one.stderr
    two = torchrun("gan.train", *argv, "--out", str(tmp_path / "two"))
    assert two.returncode == 0, two.stderr[-3000:]
    a = torch.load(tmp_path / "one" / "checkpoint.pt", weights_only=True)
    b = torch.load(tmp_path / "two" / "checkpoint.pt", weights_only=True)
    for key in ("generator", "discriminator"):
        for name, value in a[key].items():
            torch.testing.assert_close(b[key][name], value, rtol=1e-4, atol=1e-5, msg=f"{key}.{name}")
    summary = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert summary["ranks"] == 2 and summary["ranks_in_sync"] is True
    lines = (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == len((tmp_path / "one" / "metrics.jsonl").read_text().splitlines())  # rank 0 writes alone


@pytest.mark.slow
def test_ssl_under_torchrun_stays_in_sync_and_resumes_exactly(tmp_path):
    full = torchrun("ssl.train", *SSL, "--out", str(tmp_path / "full"))
    assert full.returncode == 0, full.stderr[-3000:]
    summary = json.loads((tmp_path / "full" / "summary.json").read_text())
    assert summary["ranks"] == 2 and summary["ranks_in_sync"] is True

    cut = tmp_path / "cut"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "ssl.train",
        *SSL,
        "--out",
        str(cut),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # as run_module's runs: the same thread count, the same sums
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    wait_for_training(cut, timeout=180)
    proc.send_signal(signal.SIGTERM)  # torchrun passes it on to both workers
    proc.communicate(timeout=180)
    state = torch.load(cut / "checkpoint.pt", weights_only=True)
    assert 0 < state["step"] < 30

    resumed = torchrun("ssl.train", "--out", str(cut), "--resume", "--device", "cpu")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert metrics_without_time(cut) == metrics_without_time(tmp_path / "full")


def test_torchrun_needs_an_explicit_out_directory(tmp_path):
    result = torchrun("gan.train", *RING)
    assert result.returncode != 0 and "under torchrun pass --out DIR" in result.stderr
