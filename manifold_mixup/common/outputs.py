"""Where commands write: the check of an output path before any work, and atomic, disk-full-safe writes.

Rules every command keeps (README: What the package promises):

- only a trainer writes a run directory's own files (:data:`TRAINER_FILES`); another command refuses an
  output path that is one of them, even with ``--overwrite``;
- an existing file is replaced only when the caller says so (``--overwrite``);
- the path is checked before the work starts (a missing folder, a folder, a read-only place);
- a file appears under its name only once complete (temporary file, fsync, rename); a full disk ends in one
  line naming the disk, and the temporary file is removed.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from manifold_mixup.common.config import UsageError

# What only the trainers write in a run directory (common/rundir.py names them; repeated here so that this
# module stands alone). ``evaluation.json`` and ``*-scores*.json`` belong to ssl.evaluate and gan.score.
TRAINER_FILES = frozenset(
    {".manifold-mixup-run", "config.yaml", "metrics.jsonl", "checkpoint.pt", "summary.json", "split.npz"}
)
DISK_FULL = (errno.ENOSPC, errno.EDQUOT) if hasattr(errno, "EDQUOT") else (errno.ENOSPC,)


def mount_point(path: str | Path) -> Path:
    """The mount point of the file system that holds ``path`` (or would hold it)."""
    p = Path(os.path.abspath(path))
    while not p.exists() and p != p.parent:
        p = p.parent
    while not os.path.ismount(p) and p != p.parent:
        p = p.parent
    return p


def disk_full_message(path: str | Path) -> str:
    """One line naming the disk that is full and what to do."""
    where = mount_point(path)
    try:
        free = f"{shutil.disk_usage(where).free / 2**20:.1f} MiB free"
    except OSError:
        free = "free space unknown"
    return (
        f"the disk mounted at {where} is full (no space left while writing {path}; {free}); "
        "free some space or write elsewhere, then run the command again"
    )


def is_disk_full(e: BaseException) -> bool:
    """ENOSPC or EDQUOT, also as torch's C++ writer reports it (a RuntimeError quoting the OS message)."""
    if isinstance(e, OSError):
        return e.errno in DISK_FULL
    return isinstance(e, RuntimeError) and any(os.strerror(n) in str(e) for n in DISK_FULL)


@contextlib.contextmanager
def disk_errors(path: str | Path) -> Iterator[None]:
    """Turn a full disk (ENOSPC, EDQUOT) while writing ``path`` into a one-line UsageError."""
    try:
        yield
    except (OSError, RuntimeError) as e:
        if is_disk_full(e):
            raise UsageError(disk_full_message(path)) from None
        raise


def write_atomic(path: str | Path, data: str | bytes | Callable[[IO[bytes]], None], *, sync: bool = True) -> Path:
    """Write ``data`` (text, bytes, or a function that writes to a binary file) to ``path`` atomically.

    The data go to ``.<name>.<pid>.tmp`` beside ``path``, are flushed and fsync'ed, then renamed over
    ``path``: a crash or a full disk never leaves half a file under the name, and the temporary file is
    removed whatever ends the write (a full disk is a one-line UsageError naming the disk).
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with disk_errors(path):
            with open(tmp, "wb") as f:
                if callable(data):
                    data(f)
                else:
                    f.write(data.encode() if isinstance(data, str) else data)
                f.flush()
                if sync:
                    os.fsync(f.fileno())
            os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return path


def append_line(path: str | Path, line: str) -> None:
    """Append one line to a log file; a full disk is a one-line UsageError (a line cut short is dropped by
    the readers of the log)."""
    with disk_errors(path), open(path, "a") as f:
        f.write(line)


def trainer_file(path: str | Path) -> bool:
    """Whether ``path`` (or where a link there points) is one of a run directory's own files."""
    candidates = {Path(os.path.abspath(path))}
    with contextlib.suppress(OSError, RuntimeError):
        candidates.add(Path(path).resolve())
    for p in candidates:
        if p.name in TRAINER_FILES and is_run_dir(p.parent):
            return True
        run = p.parent if p.name == "samples" else p.parent.parent if p.parent.name == "samples" else None
        if run is not None and is_run_dir(run):
            return True
    return False


def is_run_dir(folder: Path) -> bool:
    """A trainer's run directory: its marker, or (older runs) config.yaml and something else a run writes."""
    if (folder / ".manifold-mixup-run").exists():
        return True
    others = ("metrics.jsonl", "checkpoint.pt", "summary.json", "split.npz", "samples")
    return (folder / "config.yaml").is_file() and any((folder / name).exists() for name in others)


def check_output_file(
    path: str | Path,
    flag: str = "--out",
    *,
    overwrite: bool = False,
    suffixes: tuple[str, ...] = (),
    inputs: tuple[str | Path, ...] = (),
) -> Path:
    """Check, before any work, that a command may write the file ``path``; return it.

    Refused in one line: a path with another suffix than ``suffixes`` (when given), a run directory's own
    file (only the trainer writes those; never, even with ``overwrite``), one of the command's ``inputs``,
    a folder, a special file (FIFO, device, socket), an existing file without ``overwrite``, a missing
    folder, a place that cannot be written.
    """
    path = Path(path)
    if suffixes and path.suffix.lower() not in suffixes:
        raise UsageError(f"{flag} {path}: name a {' or '.join(suffixes)} file (the path is written as given)")
    if trainer_file(path):
        raise UsageError(
            f"{flag} {path} is a run directory's own file, which only the trainer writes; choose another path"
        )
    for given in inputs:
        with contextlib.suppress(OSError):
            if path.exists() and os.path.samefile(path, given):
                raise UsageError(f"{flag} {path} is one of this command's inputs; choose another path")
    if path.is_dir():
        raise UsageError(f"{flag} {path} is a folder; name a file")
    if path.exists() or path.is_symlink():
        with contextlib.suppress(OSError):
            if not stat.S_ISREG(os.stat(path).st_mode):
                raise UsageError(f"{flag} {path} is not a regular file (a FIFO, device or socket); choose another path")
        if not overwrite:
            raise UsageError(f"{flag} {path} already exists; pass --overwrite to replace it or choose another path")
    folder = path.parent
    if not folder.exists():
        raise UsageError(f"{flag} {path}: folder {folder} does not exist; create it first")
    if not folder.is_dir():
        raise UsageError(f"{flag} {path}: {folder} is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError(f"{flag} {path}: cannot write in {folder} (read-only or no permission)")
    return path
