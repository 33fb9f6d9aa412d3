"""Shared test fixtures. Tests run on the CPU with few threads so the suite fits 2 cores."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
torch.set_num_threads(1)


@pytest.fixture(autouse=True, scope="session")
def isolated_caches(tmp_path_factory):
    """Tests never read or write the user's caches and never download: trained extractors, FID
    statistics and torch hub files live in a fresh folder for the session."""
    cache = tmp_path_factory.mktemp("cache")
    os.environ.update(MMIX_CACHE=str(cache), TORCH_HOME=str(cache / "torch"), MMIX_OFFLINE="1")
    os.environ.pop("MMIX_INCEPTION_WEIGHTS", None)


def run_python(
    *args: str, cwd: Path = ROOT, timeout: float = 600, env: dict | None = None
) -> subprocess.CompletedProcess:
    """``python args...`` from the repository root, as a user would run it."""
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=full_env
    )


def run_module(*args: str, **kwargs) -> subprocess.CompletedProcess:
    """``python -m args...`` from the repository root."""
    return run_python("-m", *args, **kwargs)


@pytest.fixture
def run_cli():
    return run_module


def metrics_without_time(run_dir: Path) -> list[dict]:
    """A run's metrics.jsonl without its wall-clock fields: what must match between two equal runs."""
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in m.items() if k != "time"} for m in lines]


def wait_for_training(run_dir: Path, timeout: float = 180) -> None:
    """Wait until the run's metrics.jsonl holds a logged line: its training loop, which saves a checkpoint on
    SIGINT/SIGTERM, is running. (The file appears empty when the run starts, before the loop takes over the
    signals: a signal sent then ends the start without a checkpoint, and a loaded machine widens that window.)"""
    import time

    deadline = time.time() + timeout
    path = run_dir / "metrics.jsonl"
    while time.time() < deadline and not (path.is_file() and path.read_text().strip()):
        time.sleep(0.1)


def signal_after(base: type, polls: int, signum: int) -> type:
    """A StopSignal subclass that reports ``signum`` from its ``polls``-th poll on: a Ctrl-C or SIGTERM
    that arrives at a chosen update, without sending real signals to the test process."""

    class SignalAfter(base):
        count = 0

        @property
        def signum(self):
            SignalAfter.count += 1
            return signum if SignalAfter.count >= polls else None

        @signum.setter
        def signum(self, value):
            pass

    return SignalAfter


@pytest.fixture
def main_in_process(capsys):
    """``run(main, *argv) -> (exit code, stdout, stderr)``: a command's ``main`` through ``common.cli.run_main``
    as ``python -m`` would run it, without a subprocess's seconds of imports. A traceback propagates."""
    from manifold_mixup.common.cli import run_main

    def run(main, *argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        try:
            run_main(main, [str(a) for a in argv], prog="prog")
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture
def in_process(main_in_process):
    """``in_process("ssl.train", *argv)``: the command ``python -m ssl.train argv`` run in this process
    (its ``main`` through ``run_main``), with the fields of a finished subprocess: returncode, stdout, stderr."""
    import importlib

    def run(module: str, *argv: str) -> subprocess.CompletedProcess:
        code, out, err = main_in_process(importlib.import_module(f"manifold_mixup.{module}").main, *argv)
        return subprocess.CompletedProcess([module, *argv], code, out, err)

    return run
