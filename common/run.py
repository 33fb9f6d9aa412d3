"""A run directory and what keeps it safe: config, metrics log, atomic checkpoints, RNG, signals.

Layout of ``--out DIR``::

    config.yaml      the fully resolved config (what ``--resume`` continues with)
    metrics.jsonl    one JSON object per logged step/evaluation
    checkpoint.pt    the latest checkpoint (model, optimizer, step, RNG), written by rename
    summary.json     final numbers, written when the run ends

A directory that holds a run is never reused by mistake: starting again needs ``--resume``
(continue from ``checkpoint.pt``) or ``--overwrite`` (delete it and start over).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from tqdm import tqdm

from common.config import UsageError, diff

CONFIG = "config.yaml"
METRICS = "metrics.jsonl"
CHECKPOINT = "checkpoint.pt"
SUMMARY = "summary.json"


def prepare_run_dir(out: str | Path, *, resume: bool, overwrite: bool) -> dict[str, Any] | None:
    """Check what ``out`` holds before anything is written; return the saved config when resuming."""
    out = Path(out)
    if resume and overwrite:
        raise UsageError("--resume and --overwrite exclude each other; pick one")
    holds_run = (out / CONFIG).is_file()
    if resume:
        if not holds_run:
            raise UsageError(f"--resume: {out} holds no run ({CONFIG} missing); start it without --resume")
        if not (out / CHECKPOINT).is_file():
            raise UsageError(f"--resume: {out} has no {CHECKPOINT} yet; start over with --overwrite")
        saved = yaml.safe_load((out / CONFIG).read_text())
        if not isinstance(saved, dict):
            raise UsageError(f"--resume: {out / CONFIG} is not a config mapping")
        return saved
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file, not a directory")
    if out.is_dir() and any(out.iterdir()):
        if not holds_run:
            raise UsageError(f"--out {out} is a non-empty directory that holds no run; choose a new or empty one")
        if not overwrite:
            raise UsageError(f"{out} already holds a run; pass --resume to continue it or --overwrite to replace it")
    return None


class Run:
    """The run directory of one training run (rank 0 writes; other ranks only read).

    A new run touches the disk only at ``begin()``, which the trainers call once data, model and
    mixing points are set up: a run that fails to start leaves ``--out`` as it was (an old run that
    ``--overwrite`` would replace included).
    """

    def __init__(self, out: str | Path, config: dict[str, Any], *, resume: bool, overwrite: bool, writer: bool = True):
        self.out = Path(out)
        self.writer = writer
        self.config, self.resume, self.overwrite = config, resume, overwrite
        if writer and resume:
            saved = yaml.safe_load((self.out / CONFIG).read_text())
            changed = diff(saved, config)
            if changed:
                raise UsageError(
                    f"--resume: the config differs from the saved run ({'; '.join(changed)}); "
                    "start a new run with another --out instead"
                )

    def begin(self) -> Run:
        """Create the directory of a new run (replacing an old one under ``--overwrite``) and write
        its config.yaml. Nothing to do when resuming or on ranks other than 0."""
        if not self.writer or self.resume:
            return self
        if self.overwrite and (self.out / CONFIG).is_file():
            shutil.rmtree(self.out)
        self.out.mkdir(parents=True, exist_ok=True)
        _write_atomic(self.out / CONFIG, yaml.safe_dump(self.config, sort_keys=False))
        return self

    @property
    def checkpoint_path(self) -> Path:
        return self.out / CHECKPOINT

    def log(self, **metrics: Any) -> None:
        """Append one JSON line to metrics.jsonl (non-finite floats are written as null)."""
        if not self.writer:
            return
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in metrics.items()}
        with open(self.out / METRICS, "a") as f:
            f.write(json.dumps(clean) + "\n")

    def metrics(self) -> list[dict[str, Any]]:
        path = self.out / METRICS
        if not path.is_file():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def truncate_metrics(self, step: int) -> None:
        """Drop lines logged after ``step`` (a run killed after its last checkpoint logged them)."""
        if not self.writer:
            return
        kept = [m for m in self.metrics() if m.get("step", 0) <= step]
        _write_atomic(self.out / METRICS, "".join(json.dumps(m) + "\n" for m in kept))

    def save_checkpoint(self, state: dict[str, Any]) -> None:
        if self.writer:
            save_checkpoint(self.checkpoint_path, state)

    def load_checkpoint(self, map_location: str | torch.device = "cpu") -> dict[str, Any]:
        return load_checkpoint(self.checkpoint_path, map_location)

    def write_summary(self, summary: dict[str, Any]) -> None:
        if self.writer:
            _write_atomic(self.out / SUMMARY, json.dumps(summary, indent=2) + "\n")


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """``torch.save`` to a temporary file, fsync, then rename: a crash never leaves half a file."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``; a missing or unreadable file is a UsageError."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"checkpoint {path} does not exist")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # corrupt, truncated or not a torch file
        raise UsageError(
            f"checkpoint {path} cannot be read ({type(e).__name__}); is it a checkpoint of this package?"
        ) from None


# ---------------------------------------------------------------------------------------------
# Randomness. Training loops draw only from torch's generators (CPU and CUDA), so their states
# are all a checkpoint needs for an exact resume. Python's and NumPy's are seeded for libraries.
# Under torchrun every rank is seeded alike and draws alike, so rank 0's states serve all ranks.


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device


def rng_state() -> dict[str, Any]:
    """The CPU generator's state and, when CUDA is in use, the current device's."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore :func:`rng_state`; the CUDA state goes to the current device (each rank's own)."""
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"].cpu())


# ---------------------------------------------------------------------------------------------


class StopSignal:
    """Context manager: SIGINT/SIGTERM set ``.signum`` so the loop can checkpoint and exit.

    A second Ctrl-C while the first is being handled raises KeyboardInterrupt at once.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum
        tqdm.write(f"\n{signal.Signals(signum).name} received: saving a checkpoint and stopping", file=sys.stderr)

    def __enter__(self) -> StopSignal:
        for s in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(ValueError):  # not the main thread: no handler
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)

    @property
    def exit_code(self) -> int:
        """128 + signal number, the shell's convention for a run stopped by a signal."""
        return 128 + (self.signum or 0)


def progress(total: int, initial: int = 0, desc: str = "") -> tqdm:
    """A tqdm bar on stderr, silent when stderr is not a terminal (CI, log files)."""
    return tqdm(
        total=total, initial=initial, desc=desc, disable=not sys.stderr.isatty(), dynamic_ncols=True, leave=False
    )


def resolve_device(name: str) -> torch.device:
    """``auto`` is cuda when a GPU is visible, else cpu; asking for a missing GPU is a UsageError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"--device {name}: no CUDA device is visible here; use --device cpu")
    try:
        return torch.device(name)
    except RuntimeError:
        raise UsageError(f"--device: unknown device {name!r} (use auto, cpu or cuda)") from None


def provenance(device: torch.device) -> dict[str, Any]:
    """What produced a number: code version, library versions, machine."""
    try:
        commit = (
            subprocess.run(
                ["git", "rev-parse", "--short", "HEAD"],
                capture_output=True,
                text=True,
                timeout=5,
                cwd=Path(__file__).resolve().parent,
            ).stdout.strip()
            or None
        )
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {
        "commit": commit,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "threads": torch.get_num_threads(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
