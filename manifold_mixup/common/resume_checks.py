"""What a resume checks before it continues a run: the history it appends to and the config it follows.

A checkpoint holds the config it was written with; ``config.yaml`` beside it is what ``--resume`` reads. An
edited ``config.yaml`` or a deleted ``metrics.jsonl`` would let a resumed run follow another config than the
checkpoint's, or continue with a hole in its history, without a word: both are refused in one line.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from manifold_mixup.common.config import UsageError, diff


def check_history(out: Path, metrics: str, step: int) -> None:
    """Refuse to continue a run at ``step`` > 0 whose metrics log is gone (its curves would have a hole)."""
    if step > 0 and not (out / metrics).is_file():
        raise UsageError(
            f"--resume: {out / metrics} is missing, so the run's history up to update {step} is lost; put it back, "
            "or start over with --overwrite"
        )


def check_config_unchanged(
    out: Path, config_name: str, saved: Any, now: dict[str, Any], as_now: Callable[[dict], dict] = dict
) -> None:
    """Refuse to resume when ``config.yaml`` (``now``, after flags) differs from the config saved in the
    checkpoint (``saved``; old key names read as today's by ``as_now``). Fields one of them lacks (a field
    added since) are not compared."""
    if not isinstance(saved, dict):
        return
    saved = as_now(saved)
    shared = [k for k in saved if k in now]
    changed = diff({k: saved[k] for k in shared}, {k: now[k] for k in shared})
    if changed:
        raise UsageError(
            f"--resume: {out / config_name} differs from the config the checkpoint was written with "
            f"({'; '.join(changed)}); put {config_name} back as it was, or start a new run with another --out"
        )
