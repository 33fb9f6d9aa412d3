"""The device a command runs on, and the provenance of a number (code version, libraries, machine)."""

from __future__ import annotations

import platform
import subprocess
import time
from pathlib import Path
from typing import Any

import torch

from manifold_mixup.common.config import UsageError


def resolve_device(name: str) -> torch.device:
    """``auto`` is cuda when a GPU is visible, else cpu. cpu, cuda[:N] and mps (Apple silicon) are supported:
    any other device (meta, ...), a missing GPU or MPS, or a GPU index beyond those visible is a UsageError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        raise UsageError(f"--device: unknown device {name!r} (use auto, cpu, cuda[:N] or mps)") from None
    if device.type == "mps":
        check_mps(name)
        return device
    if device.type not in ("cpu", "cuda"):
        raise UsageError(f"--device {name}: this package runs on cpu, cuda or mps only (use auto, cpu, cuda[:N], mps)")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"--device {name}: no CUDA device is visible here; use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UsageError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) are visible")
    return device


def check_mps(name: str) -> None:
    """Refuse ``--device mps`` where this PyTorch has no MPS backend or no Apple GPU is usable, saying which."""
    backend = getattr(torch.backends, "mps", None)
    if backend is None or not backend.is_built():
        raise UsageError(f"--device {name}: this PyTorch was built without MPS (Apple silicon); use --device cpu")
    if not backend.is_available():
        raise UsageError(f"--device {name}: no usable Apple GPU here (MPS needs macOS 12.3+ on Apple silicon)")


def provenance(device: torch.device) -> dict[str, Any]:
    """What produced a number: code version, library versions, machine."""
    try:
        commit = (
            subprocess.run(
                ["git", "rev-parse", "--short", "HEAD"],
                capture_output=True,
                text=True,
                timeout=5,
                cwd=Path(__file__).resolve().parent,
            ).stdout.strip()
            or None
        )
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {
        "commit": commit,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "threads": torch.get_num_threads(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
