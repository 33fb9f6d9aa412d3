"""Reading what someone else prepared: only regular files, never a FIFO, socket or device (reading one can block
forever or never end), and never one folder under two names."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from manifold_mixup.common.config import UsageError

_KINDS = {stat.S_ISFIFO: "a FIFO (named pipe)", stat.S_ISSOCK: "a socket", stat.S_ISCHR: "a device"}
_KINDS |= {stat.S_ISBLK: "a device", stat.S_ISDIR: "a folder"}


def file_kind(mode: int) -> str:
    """What a non-regular file is, in words."""
    return next((name for test, name in _KINDS.items() if test(mode)), "not a regular file")


def regular_file(path: str | Path, what: str = "") -> os.stat_result:
    """``os.stat(path)`` of a regular file (links followed); a missing file or a FIFO, socket, device or folder is
    a UsageError naming it, before anything opens it."""
    label = f"{what} {path}" if what else str(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise UsageError(f"{label} does not exist") from None
    except OSError as e:
        raise UsageError(f"{label} cannot be read ({e.strerror})") from None
    if not stat.S_ISREG(st.st_mode):
        raise UsageError(f"{label} is {file_kind(st.st_mode)}, not a regular file; replace or remove it")
    return st


def same_folder_twice(folders: list[Path]) -> tuple[Path, Path] | None:
    """Two of ``folders`` that are one folder (a symbolic link to another, or a bind mount), or None."""
    seen: dict[tuple[int, int], Path] = {}
    for folder in folders:
        st = os.stat(folder)
        key = (st.st_dev, st.st_ino)
        if key in seen:
            return seen[key], folder
        seen[key] = folder
    return None
