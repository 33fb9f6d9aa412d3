"""Data-parallel training with torchrun and DistributedDataParallel.

    torchrun --nproc_per_node 4 -m ssl.train --labels 4000
    torchrun --nproc_per_node 4 -m gan.train --mix h1,pixel

Every rank computes the same *global* batch indices from the shared seed (the samplers are
stateless in the step) and keeps its own contiguous shard, so the global batch size is the
configured one whatever the number of processes. Rank 0 alone writes metrics and checkpoints.
Without torchrun's environment everything here is a no-op on one process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from common.config import UsageError
from common.run import resolve_device


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Whether this process writes files and prints."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def init_distributed(device_name: str) -> tuple[Dist, torch.device]:
    """Join torchrun's process group when launched by torchrun; pick this rank's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Dist(), resolve_device(device_name)
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_name)
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise UsageError(f"LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} GPUs are visible")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Dist(rank, world, local_rank), device


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


def barrier(d: Dist) -> None:
    if d.enabled:
        dist.barrier()


def shutdown(d: Dist) -> None:
    if d.enabled and dist.is_initialized():
        dist.destroy_process_group()
