"""One way of naming a network's mixing points: a sequence of stages (timm's ``feature_info`` idea, as data).

Mixing point k is the input of stage k: point 0 (``pixel``) is the network input and point k
(``hk``) the output of stage k, i.e. of the module ``stages.{k-1}``. The mixing itself is
:class:`common.layers.LayerMixup`'s, as for any other network: ``mix_point_layers`` tells it which layer
each point name means. ``net(x, start, stop)`` runs stages ``start..stop-1`` (hidden states for analyses).
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

    @property
    def mix_point_layers(self) -> dict[str, str]:
        """Point names -> layer names of :mod:`common.layers`: pixel -> input, hk -> stages.{k-1}."""
        return {"pixel": "input", **{f"h{i}": f"stages.{i - 1}" for i in range(1, len(self.stages))}}

    def forward(self, x: Tensor, start: int = 0, stop: int | None = None) -> Tensor:
        for i in range(start, len(self.stages) if stop is None else stop):
            x = self.stages[i](x)
        return x
