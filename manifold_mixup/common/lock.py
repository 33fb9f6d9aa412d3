"""One process at a time in a run directory: an exclusive, non-blocking lock on the directory itself, portable.

POSIX: an ``flock`` on the directory itself (the kernel drops it when the process dies, even by kill -9, so no
stale lock can remain, and it moves with the directory when renamed). Where ``fcntl`` does not exist (Windows):
the ``filelock`` library's lock on a file inside the directory (:data:`LOCK_FILE`).

Rank 0 holds it while its Run lives (in a trainer: until main() returns). Within one process the lock is
counted, so a second Run on the same directory in the same process (a test, a notebook) shares it.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

from manifold_mixup.common.config import UsageError

LOCK_FILE = ".manifold-mixup-run.lock"  # only where fcntl is missing


class Busy(Exception):
    """Another process holds the lock."""


def _fcntl() -> Any:
    try:
        return importlib.import_module("fcntl")
    except ImportError:
        return None


class DirLock:
    """The held lock of one directory; :meth:`release` gives it back. ``key`` is its (device, inode)."""

    def __init__(self, path: str | Path):
        path = Path(path)
        st = os.stat(path)
        self.key: tuple[int, int] = (st.st_dev, st.st_ino)
        self._fd: int | None = None
        self._file_lock: Any = None
        fcntl = _fcntl()
        if fcntl is not None:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
            st = os.fstat(fd)
            self.key = (st.st_dev, st.st_ino)  # of what was opened: an open descriptor keeps the inode alive
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise Busy(str(path)) from None
            self._fd = fd
        else:
            import filelock

            self._file_lock = filelock.FileLock(str(path / LOCK_FILE), timeout=0)
            try:
                self._file_lock.acquire()
            except filelock.Timeout:
                raise Busy(str(path)) from None

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None
        if self._file_lock is not None:
            self._file_lock.release()
            self._file_lock = None


_LOCKS: dict[tuple[int, int], list[Any]] = {}  # (device, inode) of a locked directory -> [DirLock, users]


def _in_use_error(path: Path) -> UsageError:
    return UsageError(
        f"{path} is in use by another running process (training, --resume or --overwrite on it); "
        "wait for it to end or choose another --out"
    )


def lock_run_dir(path: str | Path) -> tuple[int, int]:
    """Lock the directory ``path`` for this process and return its key for :func:`unlock_run_dir`, or
    raise UsageError when another process holds it."""
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
