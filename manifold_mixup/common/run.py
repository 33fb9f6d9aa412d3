"""The run directory of one training run: created when setup worked, written while it trains.

``--overwrite`` keeps the old run beside the new one (``DIR.replaced-<time>-<pid>``) until the new run
has written its first checkpoint; a start that fails before then puts the old run back
(:mod:`common.replaced`). The layout and the checks before a start are in :mod:`common.rundir`, the
lock in :mod:`common.lock`, the checkpoint file in :mod:`common.checkpoint`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import yaml

from manifold_mixup.common.checkpoint import check_owner, load_checkpoint, save_checkpoint
from manifold_mixup.common.config import UsageError, diff
from manifold_mixup.common.lock import lock_run_dir, unlock_run_dir
from manifold_mixup.common.metrics_file import append_metrics, read_metrics, truncate_metrics
from manifold_mixup.common.replaced import PENDING
from manifold_mixup.common.rundir import (
    CHECKPOINT,
    CONFIG,
    METRICS,
    SUMMARY,
    check_replaceable,
    holds_run,
    load_saved_config,
    read_marker,
    resume_command,
    write_atomic,
    write_marker,
)
from manifold_mixup.common.tensorboard import TensorBoard


class Run:
    """The run directory of one training run (rank 0 writes; other ranks only read).

    A new run touches the disk only at ``begin()``, which the trainers call once data, model and
    mixing points are set up: a run that fails to start leaves ``--out`` as it was (an old run that
    ``--overwrite`` would replace included). ``kind`` names the trainer (``ssl``, ``gan``) and
    ``world`` its number of processes; both go into the marker and every checkpoint.
    """

    def __init__(
        self,
        out: str | Path,
        config: dict[str, Any],
        *,
        resume: bool,
        overwrite: bool,
        writer: bool = True,
        kind: str = "",
        world: int = 1,
        lock: tuple[int, int] | None = None,
        tensorboard: bool = False,
        # a saved config under today's key names (common.config.upgrade): a renamed field is no resume diff
        saved_as_now: Callable[[dict[str, Any]], dict[str, Any]] = dict,
    ):
        self.out = Path(out)
        self.writer = writer
        self.config, self.resume, self.overwrite = config, resume, overwrite
        self.kind, self.world = kind, world
        self.saved_as_now = saved_as_now
        self._existed = self.out.is_dir()
        self._replaced: Path | None = None  # the old run, moved aside until the first checkpoint
        self._new_dir: tuple[int, int] | None = None  # (device, inode) of the directory begin() made
        self._locks: list[tuple[int, int]] = []  # held until close()
        # --tensorboard: the scalars of every logged line (and images) also as event files (rank 0)
        self.tensorboard = TensorBoard(self.out) if tensorboard and writer else None
        own = writer and self._existed and lock is None
        if own:
            lock = lock_run_dir(self.out)
        try:
            if writer and resume:
                changed = diff(saved_as_now(load_saved_config(self.out)), config)
                if changed:
                    raise UsageError(
                        f"--resume: the config differs from the saved run ({'; '.join(changed)}); "
                        "start a new run with another --out instead"
                    )
        except BaseException:
            if own:
                unlock_run_dir(lock)
            raise
        if lock is not None:
            self._locks.append(lock)

    @property
    def module(self) -> str:
        return f"{self.kind or 'ssl'}.train"

    def resume_command(self) -> str:
        """How to continue this run (torchrun with as many processes when it has several)."""
        return resume_command(self.module, self.out, self.world)

    def begin(self) -> Run:
        """Create the directory of a new run and write its marker and config.yaml. Under ``--overwrite``
        an old run is moved aside to ``DIR.replaced-<time>-<pid>`` and removed once the new run's first
        checkpoint is written (:func:`restore_replaced` puts it back if that never happens). When
        resuming only the marker of a run made before markers existed is added; other ranks do nothing."""
        if not self.writer:
            return self
        if self.resume:
            if read_marker(self.out) is None:
                self._write_marker()
            return self
        if self._existed and not self.out.is_dir():
            raise UsageError(f"--out {self.out} disappeared while the run was starting; start it again")
        if self._existed and any(self.out.iterdir()):
            if not (self.overwrite and holds_run(self.out)):
                raise UsageError(f"--out {self.out} was filled by something else while the run was starting")
            check_replaceable(self.out)
            self._move_aside()
        elif not self._existed:
            try:
                self.out.mkdir(parents=True)
            except FileExistsError:
                raise UsageError(
                    f"--out {self.out} was created by another process while this run was starting; choose another --out"
                ) from None
            except OSError as e:
                raise UsageError(f"--out {self.out} cannot be created ({e.strerror})") from None
            self._claim_new_dir()
        self._write_marker()
        write_atomic(self.out / CONFIG, yaml.safe_dump(self.config, sort_keys=False))
        write_atomic(self.out / METRICS, "")  # a resume refuses a run whose log is gone (common/resume_checks.py)
        return self

    def _claim_new_dir(self) -> None:
        self._new_dir = lock_run_dir(self.out)
        self._locks.append(self._new_dir)

    def _unlock(self, key: tuple[int, int] | None) -> None:
        if key in self._locks:
            self._locks.remove(key)
            unlock_run_dir(key)

    def close(self) -> None:
        """Release the run directory's lock (done when the Run is garbage collected, e.g. after main())."""
        if self.tensorboard is not None:
            self.tensorboard.close()
        for key in list(self._locks):
            self._unlock(key)

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()

    def _move_aside(self) -> None:
        aside = self.out.with_name(f"{self.out.name}.replaced-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")
        try:
            os.rename(self.out, aside)  # our lock moves with the directory and guards it until it is gone
        except OSError as e:  # EBUSY (in use, a mount point), EXDEV, EACCES: nothing has moved
            raise UsageError(f"--overwrite: {self.out} cannot be moved aside ({e.strerror}); nothing changed") from None
        self._replaced = aside
        PENDING.append(self)
        try:
            self.out.mkdir()
            self._claim_new_dir()
        except BaseException:
            self.restore_replaced()
            raise

    def _write_marker(self) -> None:
        write_marker(self.out, self.kind, self.world)

    def restore_replaced(self) -> str:
        """Remove the new run's directory and put the old run back where it was (byte for byte).
        Returns a note saying where the old run is."""
        if self._replaced is None:
            return ""
        aside, self._replaced = self._replaced, None
        with contextlib.suppress(ValueError):
            PENDING.remove(self)
        with contextlib.suppress(OSError):
            st = os.stat(self.out)
            if (st.st_dev, st.st_ino) == self._new_dir:  # only the directory begin() made
                self._unlock(self._new_dir)
                shutil.rmtree(self.out)
        if self.out.exists():
            return f"the run that --overwrite replaced is kept in {aside}"
        os.rename(aside, self.out)
        return f"the old run is back in {self.out}, as the new one wrote no checkpoint"

    def _drop_replaced(self) -> None:
        """The new run has a checkpoint: the old one it replaced can go."""
        if self._replaced is None:
            return
        with contextlib.suppress(OSError):
            st = os.stat(self._replaced)
            self._unlock((st.st_dev, st.st_ino))
        shutil.rmtree(self._replaced, ignore_errors=True)
        self._replaced = None
        with contextlib.suppress(ValueError):
            PENDING.remove(self)

    @property
    def checkpoint_path(self) -> Path:
        return self.out / CHECKPOINT

    def log(self, **metrics: Any) -> None:
        """Append one JSON line to metrics.jsonl (non-finite floats are written as null), and its numbers to
        TensorBoard under ``--tensorboard``."""
        if self.writer:
            append_metrics(self.out / METRICS, metrics)
            if self.tensorboard is not None and "step" in metrics:
                self.tensorboard.log(metrics)

    def log_image(self, tag: str, png: Path, step: int) -> None:
        """An image file the run wrote (a sample grid) to TensorBoard under ``--tensorboard``."""
        if self.writer and self.tensorboard is not None:
            self.tensorboard.image(tag, png, step)

    def metrics(self) -> list[dict[str, Any]]:
        """The logged lines; a last line cut short (power cut, full disk) is left out."""
        return read_metrics(self.out / METRICS)[0]

    def truncate_metrics(self, step: int) -> None:
        """Drop lines logged after ``step`` (a run killed after its last checkpoint logged them) and a
        last line that was cut short (with a note)."""
        if self.writer:
            truncate_metrics(self.out / METRICS, step)

    def save_checkpoint(self, state: dict[str, Any]) -> None:
        """Write the checkpoint (tagged with the trainer and its number of processes); the first one
        also removes the old run that ``--overwrite`` kept until now."""
        if self.writer:
            save_checkpoint(self.checkpoint_path, {**state, "run": {"kind": self.kind, "world": self.world}})
            self._drop_replaced()

    def load_checkpoint(self, map_location: str | torch.device = "cpu", keys: tuple[str, ...] = ()) -> dict[str, Any]:
        """Load the run's checkpoint and check that this trainer wrote it (``keys`` it must hold) with as
        many processes as now."""
        state = load_checkpoint(self.checkpoint_path, map_location)
        check_owner(state, self.checkpoint_path, self.module, self.kind, self.world, keys, self._resume_with)
        return state

    def _resume_with(self, world: int) -> str:
        return resume_command(self.module, self.out, world)

    def write_summary(self, summary: dict[str, Any]) -> None:
        if self.writer:
            write_atomic(self.out / SUMMARY, json.dumps(summary, indent=2) + "\n")
            self._drop_replaced()
