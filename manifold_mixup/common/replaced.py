"""Old runs that ``--overwrite`` moved aside (``DIR.replaced-<time>-<pid>``) while the new run has no
checkpoint yet: put back when the command fails or is interrupted (common/cli.py ``run_main``) and at exit."""

from __future__ import annotations

import atexit
import sys
from collections.abc import Sequence
from typing import Protocol


class Run(Protocol):
    """A :class:`common.run.Run` as seen from here."""

    def restore_replaced(self) -> str: ...


PENDING: list[Run] = []  # runs whose --overwrite has not yet reached a first checkpoint


def pending_runs() -> list[Run]:
    """The runs whose ``--overwrite`` moved an old run aside and that have not written a checkpoint yet."""
    return list(PENDING)


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
