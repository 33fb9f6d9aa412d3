"""One process at a time in a run directory: an exclusive ``flock`` on the directory itself.

Rank 0 holds it while its Run lives (in a trainer: until main() returns). The kernel drops it when the
process dies, even by kill -9, so no stale lock can remain. Within one process the lock is counted, so a
second Run on the same directory in the same process (a test, a notebook) shares it.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from common.config import UsageError

_LOCKS: dict[tuple[int, int], list[int]] = {}  # (device, inode) of a locked directory -> [descriptor, users]


def _in_use_error(path: Path) -> UsageError:
    return UsageError(
        f"{path} is in use by another running process (training, --resume or --overwrite on it); "
        "wait for it to end or choose another --out"
    )


def _open_dir(path: Path) -> tuple[int, tuple[int, int]]:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as e:
        raise UsageError(f"--out {path} cannot be opened ({e.strerror})") from None
    st = os.fstat(fd)
    return fd, (st.st_dev, st.st_ino)


def lock_run_dir(path: str | Path) -> tuple[int, int]:
    """Lock the directory ``path`` for this process and return its key for :func:`unlock_run_dir`, or
    raise UsageError when another process holds it."""
    fd, key = _open_dir(Path(path))
    if key in _LOCKS:  # an open descriptor keeps its inode alive, so the key cannot be a reused inode
        os.close(fd)
        _LOCKS[key][1] += 1
        return key
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise _in_use_error(Path(path)) from None
    _LOCKS[key] = [fd, 1]
    return key


def unlock_run_dir(key: tuple[int, int]) -> None:
    """Give back one use of a lock from :func:`lock_run_dir`; the last one releases it."""
    held = _LOCKS.get(key)
    if held is None:
        return
    held[1] -= 1
    if held[1] == 0:
        del _LOCKS[key]
        os.close(held[0])


def check_not_in_use(path: str | Path) -> None:
    """Raise UsageError when another process holds the lock on the directory ``path`` (holds nothing)."""
    unlock_run_dir(lock_run_dir(path))
