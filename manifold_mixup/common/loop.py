"""Run bookkeeping both trainers share, as small helpers around their own training loops.

A trainer's ``main()`` opens a :class:`Session` (config, run directory, processes, device, speed),
builds its data and networks, calls :meth:`Session.begin`, restores or saves its named state dicts
with :meth:`Session.restore` / :meth:`Session.save`, and keeps its own ``while`` loop, in the
algorithm's order, calling :class:`LossMeter` (losses summed on the device, one sync per log line),
:meth:`Session.checkpoint` (never over a good checkpoint with non-finite weights),
:meth:`Session.poll_stop` (Ctrl-C / SIGTERM: checkpoint and exit) and :meth:`Session.finish`.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import Tensor, nn
from tqdm import tqdm

from manifold_mixup.common.cli import start_run
from manifold_mixup.common.config import UsageError, to_dict
from manifold_mixup.common.device import provenance
from manifold_mixup.common.dist import Dist, agree_to_stop, barrier, init_distributed, mean_over_ranks, shutdown
from manifold_mixup.common.dist import in_sync as ranks_in_sync
from manifold_mixup.common.guard import non_finite, weights_finite
from manifold_mixup.common.resume_checks import check_config_unchanged, check_history
from manifold_mixup.common.rng import rng_state, seed_everything, set_rng_state
from manifold_mixup.common.run import Run
from manifold_mixup.common.rundir import CONFIG, METRICS
from manifold_mixup.common.signals import StopSignal
from manifold_mixup.common.speed import Speed

NON_FINITE_EXIT = 3  # exit code of a run stopped because its losses or weights turned nan/inf


class Stateful(Protocol):
    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> Any: ...


def _silent(*args: Any, **kwargs: Any) -> None:
    return None


@dataclass
class Session:
    """One trainer process's run: what it prints with, where it writes, and what a checkpoint keeps."""

    cfg: Any
    run: Run
    resuming: bool
    dist: Dist
    device: torch.device
    speed: Speed
    say: Callable[..., None]
    prog: str  # "python -m ssl.train": the prefix of the one-line stop message
    t_start: float
    wall_before: float = 0.0  # wall time of earlier sessions of a resumed run
    last_good: int | None = None  # the update of the checkpoint on disk with finite weights
    weights: tuple[nn.Module | None, ...] = field(default_factory=tuple)
    hint: str = ""  # how to avoid a non-finite run, e.g. "lower --lr (now 0.1)"
    count_key: str = "updates"  # the summary's name for the number of updates

    def begin(self) -> None:
        """Setup worked: only now is --out created (or an old run there replaced)."""
        self.run.begin()
        ranks = f" x {self.dist.world} ranks" if self.dist.enabled else ""
        self.say(f"run: {self.run.out} ({'resuming' if self.resuming else 'new'}) on {self.device}{ranks}")

    def wall(self) -> float:
        """Wall time of the whole run so far, earlier sessions of a resumed run included."""
        return self.wall_before + time.perf_counter() - self.t_start

    # -- checkpoints ---------------------------------------------------------------------------

    def restore(self, objects: Mapping[str, Stateful | None], extra: Sequence[str] = ()) -> dict[str, Any]:
        """Load the checkpoint into every named object (None: absent in this run), set the RNG, drop
        metrics logged after it; returns the checkpoint (``step``, ``meter`` and the ``extra`` keys).
        A gradient scaler (``scaler*``) that the checkpoint lacks starts fresh: the run was a bf16 or fp32
        one (e.g. saved before float16 autocast existed, or on a device with native bf16)."""
        present = [k for k, v in objects.items() if v is not None]
        required = (*[k for k in present if not k.startswith("scaler")], *extra, "meter", "step", "rng")
        state = self.run.load_checkpoint(self.device, keys=required)
        check_history(self.run.out, METRICS, state["step"])
        check_config_unchanged(self.run.out, CONFIG, state.get("config"), to_dict(self.cfg), self.run.saved_as_now)
        for name, obj in objects.items():
            if obj is not None and state.get(name) is not None:  # a scaler the checkpoint lacks starts fresh
                load_into(obj, state[name], name, self.run.checkpoint_path)
        set_rng_state(state["rng"])
        self.run.truncate_metrics(state["step"])
        self.wall_before = previous_wall_time(self.run)
        self.last_good = state["step"]
        return state

    def save(self, objects: Mapping[str, Stateful | None], *, step: int, meter: LossMeter, **extra: Any) -> None:
        """Write the named state dicts (None for an absent object) with the RNG, step, meter and config."""
        state = {name: (obj.state_dict() if obj is not None else None) for name, obj in objects.items()}
        state |= {"meter": meter.state_dict(), "step": step, "rng": rng_state(), "config": to_dict(self.cfg)}
        self.run.save_checkpoint(state | extra)

    def keep(self, *weights: nn.Module | None, hint: str, count_key: str) -> None:
        """Which weights must be finite before a checkpoint, and what a stop message suggests."""
        self.weights, self.hint, self.count_key = weights, hint, count_key

    def checkpoint(self, step: int, save: Callable[[], None]) -> int | None:
        """``save()`` a checkpoint unless the weights turned non-finite (then keep the last good one and
        stop): None when written, else the exit code to return."""
        if not weights_finite(*self.weights):  # one sync, beside the many of writing a checkpoint
            return self.stop_non_finite("the weights are not finite", step)
        save()
        self.last_good = step
        return None

    # -- stopping ------------------------------------------------------------------------------

    def check_losses(self, logged: Mapping[str, float], step: int) -> int | None:
        """Stop (exit code) when a logged loss is nan/inf; None otherwise. The values are on the host."""
        bad = non_finite(logged)
        if not bad:
            return None
        return self.stop_non_finite("a non-finite loss (" + ", ".join(f"{k} {logged[k]}" for k in bad) + ")", step)

    def stop_non_finite(self, what: str, step: int) -> int:
        """Stop a run whose losses or weights are nan/inf: say so, mark the summary failed, exit 3."""
        kept = (
            f"the last good checkpoint is update {self.last_good}'s ({self.run.checkpoint_path})"
            if self.last_good is not None
            else "no checkpoint was written before it"
        )
        message = f"stopped: {what} at update {step}; {kept}; {self.hint} and start over with --overwrite"
        self.run.write_summary(
            {
                "status": "failed",
                "reason": message,
                self.count_key: step,
                "last_good_checkpoint_update": self.last_good,
                "run_dir": str(self.run.out),
                "wall_time_s": self.wall(),
            }
        )
        if self.dist.main:
            tqdm.write(f"{self.prog}: {message}", file=sys.stderr)
        shutdown(self.dist)
        return NON_FINITE_EXIT

    def poll_stop(self, stop: StopSignal, step: int, save: Callable[[], None], sync_point: bool) -> int | None:
        """After Ctrl-C or SIGTERM on any rank: checkpoint, say how to continue, return the exit code."""
        if not agree_to_stop(stop.signum is not None, self.dist, self.device, sync_point=sync_point):
            return None
        code = self.checkpoint(step, save)
        if code is not None:
            return code
        self.say(f"stopped at update {step}; continue with: {self.run.resume_command()}")
        shutdown(self.dist)
        return stop.exit_code

    def finish(
        self,
        results: dict[str, Any],
        counts: dict[str, Any],
        nets: Sequence[nn.Module],
        line: Callable[[dict[str, Any]], str],
        extra: dict[str, Any] | None = None,
    ) -> int:
        """Write summary.json (results, counts, where, how long, on what), print its line, shut down."""
        in_sync = all(ranks_in_sync(net, self.dist, self.device) for net in nets)
        summary = results | {"status": "completed", **counts}
        summary |= {
            "run_dir": str(self.run.out),
            "wall_time_s": round(self.wall(), 1),
            "ranks": self.dist.world,
            "ranks_in_sync": in_sync,
            "speed": self.speed.describe(),
            "provenance": provenance(self.device),
        }
        summary |= extra or {}
        self.run.write_summary(summary)
        self.say(line(summary))
        shutdown(self.dist)
        return 0


def start_session(cls: type, parser: argparse.ArgumentParser, argv: Sequence[str] | None, name: str) -> Session:
    """Parse the flags, join the processes, resolve the config and open (not yet create) the run directory;
    seed every RNG alike on every rank (one stream, common/dist.py) and resolve the speed settings."""
    t_start = time.perf_counter()
    args = parser.parse_args(argv)
    dist, device = init_distributed(args.device)
    cfg, run, resuming = start_run(cls, args, name, rank=dist.rank, world=dist.world, barrier=lambda: barrier(dist))
    say = tqdm.write if dist.main else _silent  # prints beside progress bars; rank 0 only
    seed_everything(cfg.seed)
    speed = Speed.resolve(cfg.amp, cfg.channels_last, cfg.compile, device, cfg.amp_dtype)
    return Session(cfg, run, resuming, dist, device, speed, say, parser.prog, t_start)


class LossMeter:
    """Sums of the loss parts since the last log line, kept on the device; :meth:`flush` syncs once."""

    def __init__(self, state: dict[str, Any] | None = None):
        self.sums: dict[str, Any] = dict(state or {})

    def add(self, parts: Mapping[str, Tensor]) -> None:
        for k, v in parts.items():
            self.sums[k] = self.sums.get(k, 0) + v
        self.sums["steps"] = self.sums.get("steps", 0) + 1

    def flush(self, dist: Dist) -> dict[str, float]:
        """The means since the last flush, averaged over ranks, on the host (the one sync); then reset."""
        averaged = mean_over_ranks({k: v / self.sums["steps"] for k, v in self.sums.items() if k != "steps"}, dist)
        self.sums = {}
        return {k: v.item() for k, v in averaged.items()}

    def state_dict(self) -> dict[str, Any]:
        return self.sums


class Throughput:
    """Examples per second of training between log lines; time spent in :meth:`paused` does not count."""

    def __init__(self, step: int):
        self.t, self.step = time.perf_counter(), step

    def rate(self, step: int, per_step: float) -> float:
        now = time.perf_counter()
        rate = (step - self.step) * per_step / (now - self.t)
        self.t, self.step = now, step
        return rate

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.t += time.perf_counter() - t0


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """θ_ema ← decay·θ_ema + (1−decay)·θ; buffers (BN statistics) are copied."""
    torch._foreach_lerp_(list(ema.parameters()), list(model.parameters()), 1.0 - decay)
    for b_ema, b in zip(ema.buffers(), model.buffers()):
        b_ema.copy_(b)


def load_into(obj: Stateful, state: Any, name: str, path: Any) -> None:
    """``obj.load_state_dict(state)``; weights of another shape (a checkpoint of another width) or a damaged
    entry are a one-line UsageError, not torch's many-line message."""
    try:
        obj.load_state_dict(state)
    except (RuntimeError, KeyError, ValueError, TypeError, AttributeError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        raise UsageError(
            f"--resume: the {name} in {path} does not fit this run's network ({first}); was the checkpoint made "
            "with another width or architecture? Start a new run with another --out"
        ) from None


def previous_wall_time(run: Run) -> float:
    """Wall time, in seconds, that earlier sessions of a resumed run logged (0 for a new run)."""
    times = [m["time"].get("wall_s", 0.0) for m in run.metrics() if isinstance(m.get("time"), dict)]
    return float(times[-1]) if times else 0.0


def hms(seconds: float) -> str:
    """1:02:03 for 3723 seconds (hours unbounded)."""
    m, s = divmod(round(seconds), 60)
    return f"{m // 60}:{m % 60:02d}:{s:02d}"


def num_params(net: nn.Module) -> float:
    """Parameters in millions."""
    return sum(p.numel() for p in net.parameters()) / 1e6
