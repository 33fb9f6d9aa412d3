"""Ctrl-C and SIGTERM during training: note the signal so the loop can checkpoint and exit."""

from __future__ import annotations

import contextlib
import signal
import sys
from typing import Any

from tqdm import tqdm


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
