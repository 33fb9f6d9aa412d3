"""A mixable network is a sequence of stages (timm's ``feature_info`` idea, as data).

Mixing point k is the input of stage k: point 0 (``pixel``) is the network input and point k
(``hk``) the output of stage k. ``net(x, start, stop)`` runs stages ``start..stop-1``, so mixing
at k is ``net(mix(net(x, 0, k)), k)`` and no network contains any mixup code.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn


class StagedNet(nn.Module):
    """Runs ``stages`` in order; the input and the output of every stage but the last are mix points."""

    def __init__(self, stages: Sequence[nn.Module]):
        super().__init__()
        self.stages = nn.ModuleList(stages)

    @property
    def mix_points(self) -> tuple[str, ...]:
        """("pixel", "h1", ..., "h{n-1}") for n stages."""
        return ("pixel", *(f"h{i}" for i in range(1, len(self.stages))))

    def forward(self, x: Tensor, start: int = 0, stop: int | None = None) -> Tensor:
        for i in range(start, len(self.stages) if stop is None else stop):
            x = self.stages[i](x)
        return x
