"""A run directory and what keeps it safe: config, metrics log, atomic checkpoints, RNG, signals.

Layout of ``--out DIR``::

    .manifold-mixup-run  marker: what wrote the directory (trainer, number of processes)
    config.yaml          the fully resolved config (what ``--resume`` continues with)
    metrics.jsonl        one JSON object per logged step/evaluation
    checkpoint.pt        the latest checkpoint (model, optimizer, step, RNG), written by rename
    summary.json         final numbers, written when the run ends

A directory that holds a run is never reused by mistake: starting again needs ``--resume``
(continue from ``checkpoint.pt``) or ``--overwrite`` (start over). ``--overwrite`` replaces only a
directory this package wrote (the marker, or for older runs only files a trainer writes), and it
keeps the old run beside the new one (``DIR.replaced-<time>-<pid>``) until the new run has written
its first checkpoint; a start that fails before then puts the old run back. One process at a time
works in a run directory: rank 0 holds a lock on it while the run lives (common/dirlock.py: an ``flock``,
which the kernel drops when the process ends however it ends; ``filelock`` where there is no ``fcntl``).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import math
import os
import platform
import random
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from tqdm import tqdm

from common.config import UsageError, diff, load_yaml
from common.dirlock import LOCK_FILE, Busy, DirLock
from common.inputs import regular_file
from common.outputs import append_line, write_atomic

MARKER = ".manifold-mixup-run"
MARKER_VERSION = 1
CONFIG = "config.yaml"
METRICS = "metrics.jsonl"
CHECKPOINT = "checkpoint.pt"
SUMMARY = "summary.json"
SPLIT = "split.npz"
SAMPLES = "samples"
EVALUATION = "evaluation.json"  # written by python -m ssl.evaluate
# Everything the trainers (and gan.score / ssl.evaluate beside a checkpoint) write into a run
# directory, and their temporary files: a directory holding anything else is not replaced by --overwrite.
RUN_FILES = {MARKER, CONFIG, METRICS, CHECKPOINT, SUMMARY, SPLIT, EVALUATION, LOCK_FILE}
_RUN_FILE = re.compile(
    r"\.?(" + "|".join(re.escape(f) for f in RUN_FILES) + r")(\.\d+)?(\.tmp)?|checkpoint-scores.*\.json"
)  # temporary files: NAME.tmp (older runs) and .NAME.PID.tmp (common/outputs.py)


def foreign_entries(out: Path) -> list[str]:
    """Entries of ``out`` that no trainer of this package writes (``samples/`` holds only PNGs)."""
    foreign = []
    for entry in sorted(out.iterdir()):
        if entry.name == SAMPLES and entry.is_dir() and not entry.is_symlink():
            foreign += [f"{SAMPLES}/{p.name}" for p in sorted(entry.iterdir()) if not _is_sample(p)]
        elif not (_RUN_FILE.fullmatch(entry.name) and entry.is_file() and not entry.is_symlink()):
            foreign.append(entry.name + ("/" if entry.is_dir() else ""))
    return foreign


def _is_sample(p: Path) -> bool:
    return p.suffix == ".png" and p.is_file() and not p.is_symlink()


def read_marker(out: Path) -> dict[str, Any] | None:
    """The marker of a run directory (``{}`` when unreadable), or None when there is none."""
    path = Path(out) / MARKER
    if not path.is_file():
        return None
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def holds_run(out: Path) -> bool:
    """Whether ``out`` is a run directory of this package: it has the marker, or (a run made before
    the marker existed) a config.yaml, something a run writes next, and nothing a run does not write."""
    if read_marker(out) is not None:
        return True
    names = {p.name for p in out.iterdir()} if out.is_dir() else set()
    return CONFIG in names and bool(names & {METRICS, CHECKPOINT, SUMMARY, SPLIT, SAMPLES}) and not foreign_entries(out)


def replaced_copies(out: Path) -> list[Path]:
    """Old runs that ``--overwrite`` moved aside and nobody removed (a start killed before its first checkpoint)."""
    return sorted(out.parent.glob(f"{_glob_escape(out.name)}.replaced-*"))


def _glob_escape(name: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", name)


def _replaced_note(out: Path) -> str:
    kept = replaced_copies(out)
    return f" (the run it replaced is kept in {kept[-1]})" if kept else ""


def _check_writable(out: Path, overwrite: bool) -> None:
    """Refuse an --out that cannot be written before any work starts."""
    existing = out if out.exists() else next(p for p in out.parents if p.exists() or p == p.parent)
    if existing == out and not out.is_dir():
        raise UsageError(f"--out {out} is a file, not a directory")
    if not existing.is_dir():
        raise UsageError(f"--out {out}: {existing} is a file, so no folder can be made under it; choose another --out")
    needed = [existing] + ([out.parent] if overwrite and existing == out else [])
    for path in needed:
        if not os.access(path, os.W_OK | os.X_OK):
            raise UsageError(f"--out {out}: {path} is not writable (permissions or a read-only file system)")


def prepare_run_dir(
    out: str | Path, *, resume: bool, overwrite: bool, kind: str = "", world: int = 1, lock: bool = True
) -> dict[str, Any] | None:
    """Check what ``out`` holds before anything is written; return the saved config when resuming.

    With ``lock`` (rank 0) an existing ``out`` that another process holds is refused here, before
    any work (:func:`lock_run_dir` takes the lock itself).
    """
    out = Path(out)
    if resume and overwrite:
        raise UsageError("--resume and --overwrite exclude each other; pick one")
    _check_writable(out, overwrite)
    if lock and out.is_dir():
        check_not_in_use(out)
    is_run = holds_run(out)
    if resume:
        if not (out / CONFIG).is_file():
            raise UsageError(f"--resume: {out} holds no run ({CONFIG} missing); start it without --resume")
        if not is_run:
            raise UsageError(f"--resume: {out} is not a run directory of this package (it holds files no run writes)")
        if not (out / CHECKPOINT).is_file():
            raise UsageError(
                f"--resume: {out} has no {CHECKPOINT} yet; start over with --overwrite{_replaced_note(out)}"
            )
        check_resumable(out, kind, world)
        _check_run_files(out)
        return _load_saved_config(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file, not a directory")
    if out.is_dir() and any(out.iterdir()):
        if not is_run:
            raise UsageError(f"--out {out} is a non-empty directory that holds no run; choose a new or empty one")
        if not overwrite:
            raise UsageError(f"{out} already holds a run; pass --resume to continue it or --overwrite to replace it")
        _check_replaceable(out)
    return None


def _check_run_files(out: Path) -> None:
    """Refuse to resume a run directory whose own files are links or special files: appending to a linked
    metrics.jsonl would write outside the run directory, reading a FIFO would block."""
    for name in sorted(RUN_FILES):
        path = out / name
        if path.is_symlink() or (path.exists() and not path.is_file()):
            what = "a symbolic link" if path.is_symlink() else "not a regular file"
            raise UsageError(f"--resume: {path} is {what}; a run directory's own files must be plain files")


def _check_movable(out: Path) -> None:
    """``--overwrite`` moves the old run aside by renaming ``out``: refuse, before any work, an ``out`` that is
    a symbolic link (the link would be renamed, not the run) or a mount point (it cannot be renamed)."""
    if out.is_symlink():
        raise UsageError(
            f"--overwrite: --out {out} is a symbolic link (to {os.readlink(out)}); give the directory itself"
        )
    if os.path.ismount(out):
        raise UsageError(
            f"--overwrite: --out {out} is a mount point, which cannot be moved aside; use a folder inside it"
        )


def _check_replaceable(out: Path) -> None:
    _check_movable(out)
    foreign = foreign_entries(out)
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise UsageError(
            f"--overwrite: {out} holds files no run writes ({shown}); move them out or choose another --out"
        )


def check_resumable(out: Path, kind: str, world: int) -> None:
    """Refuse to resume a run of the other trainer, or with another number of processes than it ran with."""
    info = read_marker(out) or {}
    saved_kind, saved_world = info.get("kind"), info.get("world")
    if kind and saved_kind and saved_kind != kind:
        raise UsageError(
            f"--resume: {out} is a run of {saved_kind}.train, not {kind}.train; "
            f"continue it with: {resume_command(f'{saved_kind}.train', out, saved_world or 1)}"
        )
    if isinstance(saved_world, int) and saved_world != world:
        module = f"{kind or saved_kind or 'ssl'}.train"
        raise UsageError(
            f"--resume: {out} ran on {saved_world} process(es), this is {world}; a resume must use as many "
            f"(the batches and results differ otherwise): {resume_command(module, out, saved_world)}"
        )


def _load_saved_config(out: Path) -> dict[str, Any]:
    try:
        saved = load_yaml(out / CONFIG)
    except UsageError as e:
        raise UsageError(f"--resume: {e}; the run cannot be continued, start over with --overwrite") from None
    if not saved:
        raise UsageError(f"--resume: {out / CONFIG} is not a config mapping")
    return saved


def resume_command(module: str, out: str | Path, world: int = 1) -> str:
    """The command that continues the run in ``out``: torchrun with as many processes when it had several."""
    tail = f"-m {module} --out {shlex.quote(str(out))} --resume"
    if world <= 1:
        return f"python {tail}"
    local = int(os.environ.get("LOCAL_WORLD_SIZE", world))
    if 0 < local < world and world % local == 0:
        return f"torchrun --nnodes {world // local} --nproc_per_node {local} {tail}"
    return f"torchrun --nproc_per_node {world} {tail}"


# ---------------------------------------------------------------------------------------------
# The lock: an exclusive lock on the run directory itself (common/dirlock.py), held by rank 0 while its Run lives (in
# a trainer: until main() returns). The kernel drops it when the process dies, even by kill -9, so
# no stale lock can remain. Within one process the lock is counted, so a second Run on the same
# directory in the same process (a test, a notebook) shares it.

_LOCKS: dict[tuple[int, int], list[Any]] = {}  # (device, inode) of a locked directory -> [DirLock, users]


def _in_use_error(path: Path) -> UsageError:
    return UsageError(
        f"{path} is in use by another running process (training, --resume or --overwrite on it); "
        "wait for it to end or choose another --out"
    )


def lock_run_dir(path: str | Path) -> tuple[int, int]:
    """Lock the directory ``path`` for this process (common/dirlock.py) and return its key for
    :func:`unlock_run_dir`, or raise UsageError when another process holds it."""
    try:
        st = os.stat(path)
    except OSError as e:
        raise UsageError(f"--out {path} cannot be opened ({e.strerror})") from None
    key = (st.st_dev, st.st_ino)
    if key in _LOCKS:  # the held lock keeps its inode alive, so the key cannot be a reused inode
        _LOCKS[key][1] += 1
        return key
    try:
        lock = DirLock(path)
    except Busy:
        raise _in_use_error(Path(path)) from None
    except OSError as e:
        raise UsageError(f"--out {path} cannot be opened ({e.strerror})") from None
    _LOCKS[lock.key] = [lock, 1]
    return lock.key


def unlock_run_dir(key: tuple[int, int]) -> None:
    """Give back one use of a lock from :func:`lock_run_dir`; the last one releases it."""
    held = _LOCKS.get(key)
    if held is None:
        return
    held[1] -= 1
    if held[1] == 0:
        del _LOCKS[key]
        held[0].release()


def check_not_in_use(path: str | Path) -> None:
    """Raise UsageError when another process holds the lock on the directory ``path`` (holds nothing)."""
    unlock_run_dir(lock_run_dir(path))


_PENDING: list[Run] = []  # runs whose --overwrite has not yet reached a first checkpoint


def pending_runs() -> list[Run]:
    """The runs whose ``--overwrite`` moved an old run aside and that have not written a checkpoint yet."""
    return list(_PENDING)


def restore_replaced(keep: Sequence[Run] = ()) -> str:
    """Put back the old runs that ``--overwrite`` moved aside and whose replacement never reached a
    checkpoint, except those of the runs in ``keep`` (called when a trainer fails or is interrupted,
    and at exit). Returns a note saying where they are."""
    return "; ".join(run.restore_replaced() for run in pending_runs() if not any(run is k for k in keep))


def _restore_at_exit() -> None:
    note = restore_replaced()
    if note:
        print(f"note: {note}", file=sys.stderr)


atexit.register(_restore_at_exit)


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
        own = writer and self._existed and lock is None
        if own:
            lock = lock_run_dir(self.out)
        try:
            if writer and resume:
                changed = diff(saved_as_now(_load_saved_config(self.out)), config)
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
            _check_replaceable(self.out)
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
        _write_atomic(self.out / CONFIG, yaml.safe_dump(self.config, sort_keys=False))
        _write_atomic(self.out / METRICS, "")  # a resume refuses a run whose log is gone (common/resume_checks.py)
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
        _PENDING.append(self)
        try:
            self.out.mkdir()
            self._claim_new_dir()
        except BaseException:
            self.restore_replaced()
            raise

    def _write_marker(self) -> None:
        info = {"written_by": "manifold-mixup", "version": MARKER_VERSION, "kind": self.kind, "world": self.world}
        _write_atomic(self.out / MARKER, json.dumps(info) + "\n")

    def restore_replaced(self) -> str:
        """Remove the new run's directory and put the old run back where it was (byte for byte).
        Returns a note saying where the old run is."""
        if self._replaced is None:
            return ""
        aside, self._replaced = self._replaced, None
        with contextlib.suppress(ValueError):
            _PENDING.remove(self)
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
            _PENDING.remove(self)

    @property
    def checkpoint_path(self) -> Path:
        return self.out / CHECKPOINT

    def log(self, **metrics: Any) -> None:
        """Append one JSON line to metrics.jsonl (non-finite floats are written as null)."""
        if not self.writer:
            return
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in metrics.items()}
        append_line(self.out / METRICS, json.dumps(clean) + "\n")

    def metrics(self) -> list[dict[str, Any]]:
        """The logged lines; a last line cut short (power cut, full disk) is left out."""
        return self._read_metrics()[0]

    def _read_metrics(self) -> tuple[list[dict[str, Any]], bool]:
        path = self.out / METRICS
        if not path.is_file():
            return [], False
        lines = [line for line in path.read_bytes().decode("utf-8", "replace").split("\n") if line.strip("\x00 \t\r")]
        parsed, partial = [], False
        for i, line in enumerate(lines):
            try:
                m = json.loads(line)
                if not isinstance(m, dict):
                    raise ValueError
            except ValueError:
                if i < len(lines) - 1:
                    raise UsageError(f"{path} line {i + 1} is not a JSON object; the file is damaged") from None
                partial = True
                continue
            parsed.append(m)
        return parsed, partial

    def truncate_metrics(self, step: int) -> None:
        """Drop lines logged after ``step`` (a run killed after its last checkpoint logged them) and a
        last line that was cut short (with a note)."""
        if not self.writer:
            return
        metrics, partial = self._read_metrics()
        if partial:
            print(
                f"note: dropped the incomplete last line of {self.out / METRICS} (a write cut short)", file=sys.stderr
            )
        kept = [m for m in metrics if m.get("step", 0) <= step]
        _write_atomic(self.out / METRICS, "".join(json.dumps(m) + "\n" for m in kept))

    def save_checkpoint(self, state: dict[str, Any]) -> None:
        """Write the checkpoint (tagged with the trainer and its number of processes); the first one
        also removes the old run that ``--overwrite`` kept until now."""
        if self.writer:
            save_checkpoint(self.checkpoint_path, {**state, "run": {"kind": self.kind, "world": self.world}})
            self._drop_replaced()

    def load_checkpoint(self, map_location: str | torch.device = "cpu", keys: tuple[str, ...] = ()) -> dict[str, Any]:
        """Load the run's checkpoint and check that this trainer wrote it (``keys`` it must hold) with as
        many processes as now."""
        path = self.checkpoint_path
        state = load_checkpoint(path, map_location)
        if not isinstance(state, dict):
            raise UsageError(f"checkpoint {path} holds a {type(state).__name__}, not a checkpoint of this package")
        tag = state.get("run") if isinstance(state.get("run"), dict) else {}
        kind, world = tag.get("kind"), tag.get("world")
        missing = [k for k in keys if k not in state]
        if (self.kind and kind and kind != self.kind) or missing:
            by = f"written by {kind}.train" if kind else f"lacks {', '.join(missing)}"
            raise UsageError(f"checkpoint {path} is not a {self.module} checkpoint ({by}); it cannot be resumed here")
        if isinstance(world, int) and world != self.world:
            raise UsageError(
                f"checkpoint {path} was written by {world} process(es), this run has {self.world}; "
                f"resume with as many: {resume_command(self.module, self.out, world)}"
            )
        return state

    def write_summary(self, summary: dict[str, Any]) -> None:
        if self.writer:
            _write_atomic(self.out / SUMMARY, json.dumps(summary, indent=2) + "\n")
            self._drop_replaced()


def _write_atomic(path: Path, text: str) -> None:
    write_atomic(path, text, sync=False)


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """``torch.save`` to a temporary file, fsync, then rename: a crash never leaves half a file, a full disk
    ends in one line naming the disk (common/outputs.py)."""
    write_atomic(path, lambda f: torch.save(state, f))


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``; a missing or unreadable file is a UsageError."""
    path = Path(path)
    regular_file(path, "checkpoint")  # a FIFO would block torch.load forever
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
    """``auto`` is cuda when a GPU is visible, else cpu. cpu, cuda[:N] and mps (Apple silicon) are supported:
    any other device (meta, ...), a missing GPU or MPS, or a GPU index beyond those visible is a UsageError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        raise UsageError(f"--device: unknown device {name!r} (use auto, cpu, cuda[:N] or mps)") from None
    if device.type == "mps":
        check_mps(name)
        return device
    if device.type not in ("cpu", "cuda"):
        raise UsageError(f"--device {name}: this package runs on cpu, cuda or mps only (use auto, cpu, cuda[:N], mps)")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"--device {name}: no CUDA device is visible here; use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UsageError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) are visible")
    return device


def check_mps(name: str) -> None:
    """Refuse ``--device mps`` where this PyTorch has no MPS backend or no Apple GPU is usable, saying which."""
    backend = getattr(torch.backends, "mps", None)
    if backend is None or not backend.is_built():
        raise UsageError(f"--device {name}: this PyTorch was built without MPS (Apple silicon); use --device cpu")
    if not backend.is_available():
        raise UsageError(f"--device {name}: no usable Apple GPU here (MPS needs macOS 12.3+ on Apple silicon)")


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
