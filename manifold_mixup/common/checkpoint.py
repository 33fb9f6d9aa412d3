"""The checkpoint file: one writer and one reader for every checkpoint the package writes or reads.

A checkpoint is a dict of tensors and plain values (``torch.save``), read back with
``torch.load(..., weights_only=True)``. Every checkpoint carries its format version under
:data:`FORMAT_KEY`; the reader refuses a version newer than :data:`FORMAT_VERSION` in one line
(a checkpoint of a later release). A checkpoint without the key was written before the version
existed; its layout is version 1's, so it reads as version 1.

What the trainers store (common/loop.py ``Session.save``): the named state dicts, ``step``, ``rng``,
``meter``, ``config`` (the resolved config), ``model_args`` (how to rebuild each network,
common/registry.py) and ``run`` (``{"kind": "ssl"|"gan", "world": processes}``, common/run.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from manifold_mixup.common.config import UsageError
from manifold_mixup.common.inputs import regular_file
from manifold_mixup.common.outputs import write_atomic

FORMAT_KEY = "format"
FORMAT_VERSION = 1  # raise it when a change makes older readers misread a checkpoint; keep reading the old ones
UNVERSIONED = 1  # the version of a checkpoint written before the key existed (the same layout)


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """``torch.save`` of ``state`` and its format version to a temporary file, fsync, then rename: a crash
    never leaves half a file, a full disk ends in one line naming the disk (common/outputs.py)."""
    versioned = {**state, FORMAT_KEY: FORMAT_VERSION}
    write_atomic(path, lambda f: torch.save(versioned, f))


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``. A missing or unreadable file, one that holds no
    checkpoint dict, or a checkpoint of a newer format than this version reads is a UsageError."""
    path = Path(path)
    regular_file(path, "checkpoint")  # a FIFO would block torch.load forever
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # corrupt, truncated or not a torch file
        raise UsageError(
            f"checkpoint {path} cannot be read ({type(e).__name__}); is it a checkpoint of this package?"
        ) from None
    if not isinstance(state, dict):
        raise UsageError(f"checkpoint {path} holds a {type(state).__name__}, not a checkpoint of this package")
    version = format_version(state)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise UsageError(f"checkpoint {path} has an unknown format version {version!r} (not this package's)")
    if version > FORMAT_VERSION:
        raise UsageError(
            f"checkpoint {path} has format version {version}, newer than this manifold-mixup reads "
            f"(up to {FORMAT_VERSION}); load it with the release that wrote it or upgrade the package"
        )
    return state


def format_version(state: dict[str, Any]) -> Any:
    """The format version of a loaded checkpoint (:data:`UNVERSIONED` when it has none)."""
    return state.get(FORMAT_KEY, UNVERSIONED)


def check_owner(
    state: dict[str, Any],
    path: Path,
    module: str,
    kind: str,
    world: int,
    keys: Sequence[str],
    resume_with: Callable[[int], str],
) -> None:
    """Refuse to resume from a checkpoint that another trainer wrote (its ``run`` tag, or lacking one of
    ``keys``) or that was written by another number of processes (``resume_with(world)``: the command
    that continues it with as many)."""
    tag = state.get("run") if isinstance(state.get("run"), dict) else {}
    saved_kind, saved_world = tag.get("kind"), tag.get("world")
    missing = [k for k in keys if k not in state]
    if (kind and saved_kind and saved_kind != kind) or missing:
        by = f"written by {saved_kind}.train" if saved_kind else f"lacks {', '.join(missing)}"
        raise UsageError(f"checkpoint {path} is not a {module} checkpoint ({by}); it cannot be resumed here")
    if isinstance(saved_world, int) and saved_world != world:
        raise UsageError(
            f"checkpoint {path} was written by {saved_world} process(es), this run has {world}; "
            f"resume with as many: {resume_with(saved_world)}"
        )
