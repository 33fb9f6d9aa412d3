"""Which training images each update sees: endless reshuffled passes, stateless in the step.

``batch(step)`` depends only on (indices, batch size, seed, stream, step): a resumed run needs
nothing but its step to continue with exactly the batches it would have seen, and every rank of a
distributed run computes the same global batch and keeps its own shard.
"""

from __future__ import annotations

import numpy as np
import torch

from manifold_mixup.common.data import Split


class BatchStream:
    """Batches of ``batch_size`` indices drawn from passes over ``indices``, each pass freshly shuffled.

    A batch may straddle two passes, so no image is dropped and every pass shows each index once.
    """

    def __init__(
        self,
        indices: np.ndarray | torch.Tensor,
        batch_size: int,
        seed: int,
        stream: int = 0,
        device: torch.device | str = "cpu",
    ):
        self.indices = torch.as_tensor(np.asarray(indices), dtype=torch.int64)
        self.device = torch.device(device)
        if len(self.indices) == 0 and batch_size > 0:
            raise ValueError("cannot draw batches from an empty index set")
        self.batch_size, self.seed, self.stream = batch_size, seed, stream
        self._cache: dict[int, torch.Tensor] = {}

    def _pass(self, k: int) -> torch.Tensor:
        """The k-th shuffled pass over the indices, on the device (the last two are cached): one
        host-to-device copy per pass, none per batch."""
        if k not in self._cache:
            seed = int(np.random.SeedSequence([self.seed, self.stream, k]).generate_state(1)[0])
            g = torch.Generator().manual_seed(seed)
            if len(self._cache) >= 2:
                self._cache.pop(min(self._cache))
            self._cache[k] = self.indices[torch.randperm(len(self.indices), generator=g)].to(self.device)
        return self._cache[k]

    def batch(self, step: int) -> torch.Tensor:
        """(batch_size,) int64 dataset indices of update ``step``."""
        n = len(self.indices)
        start = step * self.batch_size
        parts, position = [], start
        while position < start + self.batch_size:
            k, offset = divmod(position, n)
            take = min(n - offset, start + self.batch_size - position)
            parts.append(self._pass(k)[offset : offset + take])
            position += take
        return torch.cat(parts) if parts else torch.empty(0, dtype=torch.int64, device=self.device)


class PairedBatches:
    """A labelled batch and an unlabelled batch per update (Algorithm 1 lines 3 and 6).

    An epoch is one pass over the unlabelled set (``len(unlabelled) // unlabelled_batch_size``
    updates) unless ``iterations_per_epoch`` is given; the labelled set, much smaller, is reshuffled
    each time it runs out. With ``unlabelled_batch_size == 0`` (the supervised baseline) no unlabelled
    indices are drawn and an epoch is one pass over the labelled set.
    """

    def __init__(
        self,
        split: Split,
        batch_size: int,
        unlabelled_batch_size: int,
        seed: int,
        iterations_per_epoch: int | None = None,
        device: torch.device | str = "cpu",
    ):
        self.labelled = BatchStream(split.labelled, batch_size, seed, stream=0, device=device)
        self.unlabelled = BatchStream(split.unlabelled, unlabelled_batch_size, seed, stream=1, device=device)
        self.unlabelled_batch_size = unlabelled_batch_size
        if iterations_per_epoch is None:
            if unlabelled_batch_size > 0:
                iterations_per_epoch = len(split.unlabelled) // unlabelled_batch_size
            else:
                iterations_per_epoch = len(split.labelled) // batch_size
        self.iterations_per_epoch = max(1, iterations_per_epoch)

    def indices(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(labelled indices (B,), unlabelled indices (B_u,)) of update ``step``."""
        if not self.unlabelled_batch_size:
            return self.labelled.batch(step), torch.empty(0, dtype=torch.int64, device=self.labelled.device)
        unlabelled = self.unlabelled.batch(step)
        return self.labelled.batch(step), unlabelled
