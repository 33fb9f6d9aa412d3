"""The run directory: its layout, what it may hold, and the checks made before a run starts in it.

Layout of ``--out DIR``::

    .manifold-mixup-run  marker: what wrote the directory (trainer, number of processes)
    config.yaml          the fully resolved config (what ``--resume`` continues with)
    metrics.jsonl        one JSON object per logged step/evaluation
    checkpoint.pt        the latest checkpoint (common/checkpoint.py), written by rename
    summary.json         final numbers, written when the run ends

A directory that holds a run is never reused by mistake: starting again needs ``--resume``
(continue from ``checkpoint.pt``) or ``--overwrite`` (start over). ``--overwrite`` replaces only a
directory this package wrote (the marker, or for older runs only files a trainer writes). The
:class:`common.run.Run` of a run writes it; :mod:`common.lock` keeps it to one process at a time.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from pathlib import Path
from typing import Any

from manifold_mixup.common.config import UsageError, load_yaml
from manifold_mixup.common.lock import LOCK_FILE, check_not_in_use
from manifold_mixup.common.outputs import write_atomic as _write_atomic

MARKER = ".manifold-mixup-run"
MARKER_VERSION = 1
CONFIG = "config.yaml"
METRICS = "metrics.jsonl"
CHECKPOINT = "checkpoint.pt"
SUMMARY = "summary.json"
SPLIT = "split.npz"
SAMPLES = "samples"
EVALUATION = "evaluation.json"  # written by python -m analyses.evaluate
# Everything the trainers (and gan.score / analyses.evaluate beside a checkpoint) write into a run
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


def write_marker(out: Path, kind: str, world: int) -> None:
    """Mark ``out`` as a run directory of this package, written by trainer ``kind`` on ``world`` processes."""
    info = {"written_by": "manifold-mixup", "version": MARKER_VERSION, "kind": kind, "world": world}
    write_atomic(out / MARKER, json.dumps(info) + "\n")


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
        return load_saved_config(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file, not a directory")
    if out.is_dir() and any(out.iterdir()):
        if not is_run:
            raise UsageError(f"--out {out} is a non-empty directory that holds no run; choose a new or empty one")
        if not overwrite:
            raise UsageError(f"{out} already holds a run; pass --resume to continue it or --overwrite to replace it")
        check_replaceable(out)
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


def check_replaceable(out: Path) -> None:
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


def load_saved_config(out: Path) -> dict[str, Any]:
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


def write_atomic(path: Path, text: str) -> None:
    """Write a run file by rename (common/outputs.py): a full disk is one line naming the disk."""
    _write_atomic(path, text, sync=False)
