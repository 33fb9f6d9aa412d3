"""TensorBoard event files beside metrics.jsonl (``--tensorboard``; ``pip install -e ".[tensorboard]"``).

Every line the run logs to metrics.jsonl is written as scalars under the same names (nested keys joined by
``/``: ``time/img_per_s``) at its ``step``; the GAN's sample grids go in as images. The event files live in
``OUT/tensorboard/``: ``tensorboard --logdir runs`` shows every run. A resumed run purges the events that the
interrupted run logged after its last checkpoint, as metrics.jsonl does.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from manifold_mixup.common.config import UsageError

FOLDER = "tensorboard"
INSTALL = 'pip install -e ".[tensorboard]" (or pip install tensorboard)'


def require_tensorboard() -> None:
    """A UsageError saying how to install TensorBoard when it is missing (torch's writer needs it)."""
    if importlib.util.find_spec("tensorboard") is None:
        raise UsageError(f"--tensorboard needs the tensorboard package, which is not installed: {INSTALL}")


def scalars(row: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, float]]:
    """(name, value) of every finite number in a metrics row, nested keys joined by ``/`` (``step`` left out)."""
    for key, value in row.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            yield from scalars(value, prefix=f"{name}/")
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and key != "step" and math.isfinite(value):
            yield name, float(value)


class TensorBoard:
    """A ``SummaryWriter`` on ``run_dir/tensorboard``, opened at the first write (its purge step is that step)."""

    def __init__(self, run_dir: str | Path):
        require_tensorboard()
        self.dir = Path(run_dir) / FOLDER
        self._writer: Any = None

    def _open(self, step: int) -> Any:
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(self.dir), purge_step=step)
        return self._writer

    def log(self, row: Mapping[str, Any]) -> None:
        """One metrics row (it must have ``step``) as scalars."""
        writer = self._open(int(row["step"]))
        for name, value in scalars(row):
            writer.add_scalar(name, value, int(row["step"]))
        writer.flush()  # lines are rare (every log_every updates); a killed run keeps what it logged

    def image(self, tag: str, png: str | Path, step: int) -> None:
        """An image file (a sample grid) at ``step``."""
        from PIL import Image

        with Image.open(png) as im:
            pixels = np.asarray(im.convert("RGB"))
        writer = self._open(step)
        writer.add_image(tag, pixels, step, dataformats="HWC")
        writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
