"""Data-parallel training with torchrun and DistributedDataParallel.

    torchrun --nproc_per_node 4 -m ssl.train --labels 4000
    torchrun --nproc_per_node 4 -m gan.train --mix h1,pixel

The configured batch sizes are *global*. Every rank computes the same global batch (the samplers
are stateless in the step, and all ranks share one seed, so one RNG stream) and keeps its own
contiguous shard. Random draws that are not tied to examples (the mixing point k, λ) are therefore
the same on every rank; the permutation that pairs examples for mixing works inside each rank's
shard; BatchNorm statistics are computed per rank. Rank 0 alone writes metrics and checkpoints.
Without torchrun's environment everything here is a no-op on one process.
"""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from manifold_mixup.common.config import UsageError
from manifold_mixup.common.device import resolve_device


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        """Whether this process writes files and prints."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


NO_DIST = Dist()


def init_distributed(device_name: str) -> tuple[Dist, torch.device]:
    """Join torchrun's process group when launched by torchrun; pick this rank's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    device = resolve_device(device_name)
    if world == 1:
        return Dist(), device
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise UsageError(f"LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} GPUs are visible")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Dist(rank, world), device


def shard(batch: torch.Tensor, d: Dist) -> torch.Tensor:
    """This rank's contiguous part of a global batch; the global size must divide evenly."""
    if not d.enabled:
        return batch
    if len(batch) % d.world:
        raise UsageError(
            f"a global batch of {len(batch)} does not split over {d.world} processes; "
            "choose batch sizes divisible by the number of processes"
        )
    n = len(batch) // d.world
    return batch[d.rank * n : (d.rank + 1) * n]


def wrap(module: nn.Module, d: Dist, device: torch.device) -> nn.Module:
    """DistributedDataParallel around ``module`` when distributed (BatchNorm stays per rank)."""
    if not d.enabled:
        return module
    ids = [device.index] if device.type == "cuda" else None
    ddp = nn.parallel.DistributedDataParallel
    # Keep BatchNorm buffers per rank (no broadcast before every forward); torch 2.14 renamed the switch.
    per_rank = (
        "forward_sync_buffers" if "forward_sync_buffers" in inspect.signature(ddp).parameters else "broadcast_buffers"
    )
    return ddp(module, device_ids=ids, **{per_rank: False})


def mean_over_ranks(values: dict[str, torch.Tensor], d: Dist) -> dict[str, torch.Tensor]:
    """Average scalar tensors over ranks (for logging; one collective for all of them)."""
    if not d.enabled or not values:
        return values
    stacked = torch.stack([v.float() for v in values.values()])
    dist.all_reduce(stacked)
    return dict(zip(values, stacked / d.world))


def any_rank(flag: bool, d: Dist, device: torch.device) -> bool:
    """True on every rank if it is true on any (e.g. a stop signal that reached only some)."""
    if not d.enabled:
        return flag
    t = torch.tensor(float(flag), device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def agree_to_stop(requested: bool, d: Dist, device: torch.device, sync_point: bool) -> bool:
    """Whether all ranks stop now. A signal may reach some ranks only, so distributed ranks agree at
    sync points (one small collective each) and otherwise carry on; a single process stops at once."""
    if not d.enabled:
        return requested
    return sync_point and any_rank(requested, d, device)


def in_sync(module: nn.Module, d: Dist, device: torch.device) -> bool:
    """Whether every rank holds the same parameters (compares a checksum across ranks)."""
    if not d.enabled:
        return True
    checksum = torch.stack([p.detach().double().sum() for p in module.parameters()]).sum().to(device)
    low, high = checksum.clone(), checksum.clone()
    dist.all_reduce(low, op=dist.ReduceOp.MIN)
    dist.all_reduce(high, op=dist.ReduceOp.MAX)
    return bool((high - low).abs() <= 1e-9 * checksum.abs().clamp_min(1))


def barrier(d: Dist) -> None:
    if d.enabled:
        dist.barrier()


def shutdown(d: Dist) -> None:
    if d.enabled and dist.is_initialized():
        dist.destroy_process_group()
