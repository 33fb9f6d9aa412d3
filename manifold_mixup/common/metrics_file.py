"""The metrics file of a run directory (metrics.jsonl): read it, append a line, truncate it on resume."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

from manifold_mixup.common.config import UsageError
from manifold_mixup.common.outputs import append_line
from manifold_mixup.common.outputs import write_atomic as _write_atomic


def read_metrics(path: Path) -> tuple[list[dict[str, Any]], bool]:
    """The lines of a metrics.jsonl and whether a last line cut short (power cut, full disk) was left out;
    a damaged line before the last is a UsageError."""
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


def append_metrics(path: Path, metrics: dict[str, Any]) -> None:
    """Append one JSON line to a metrics.jsonl (non-finite floats are written as null)."""
    clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in metrics.items()}
    append_line(path, json.dumps(clean) + "\n")


def truncate_metrics(path: Path, step: int) -> None:
    """Drop the lines of a metrics.jsonl logged after ``step`` and a last line that was cut short (with a note)."""
    metrics, partial = read_metrics(path)
    if partial:
        print(f"note: dropped the incomplete last line of {path} (a write cut short)", file=sys.stderr)
    kept = [m for m in metrics if m.get("step", 0) <= step]
    _write_atomic(path, "".join(json.dumps(m) + "\n" for m in kept), sync=False)
