"""An exclusive, non-blocking lock on a directory, portable: POSIX ``flock`` on the directory itself (the kernel
drops it when the process dies, even by kill -9, and it moves with the directory when renamed); where ``fcntl``
does not exist (Windows) the ``filelock`` library's lock on a file inside the directory (:data:`LOCK_FILE`)."""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

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
