"""Preprocessing and augmentation of whole batches, on whatever device the batch lives on.

The dataset stays uint8 (on the GPU when there is one); each batch is turned into network input by
:class:`Preprocess`: per-channel normalisation, optional ZCA whitening, then for training a random
translation (zero padding) and a random horizontal flip. Randomness comes from torch's generator of
the batch's device, so a checkpoint's RNG state covers it. No per-example Python anywhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor


def normalize(images: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """uint8 (B, C, H, W) -> float32 (x/255 − mean)/std, per channel."""
    m = torch.tensor(mean, device=images.device).view(1, -1, 1, 1)
    s = torch.tensor(std, device=images.device).view(1, -1, 1, 1)
    return (images.float() / 255 - m) / s


class ZCA:
    """ZCA whitening W = U diag(1/sqrt(s + eps)) Uᵀ of the covariance of flattened (C, H, W) images.

    Fitted and applied in the same channel-first layout (the original code fitted on HWC-flattened
    images and applied the matrix to CHW ones, DESIGN.md §4). ``eps`` is relative to the mean
    eigenvalue, so it does not depend on the data's scale.
    """

    def __init__(self, mean: Tensor, matrix: Tensor):
        self.mean, self.matrix = mean, matrix  # (D,), (D, D) with D = C·H·W

    @classmethod
    def fit(cls, x: Tensor, eps: float = 0.1) -> ZCA:
        """x: float (N, C, H, W). Computed in float64 on x's device."""
        flat = x.reshape(len(x), -1).double()
        mean = flat.mean(0)
        centred = flat - mean
        cov = centred.T @ centred / (len(flat) - 1)
        s, u = torch.linalg.eigh(cov)
        s = s.clamp_min(0)
        matrix = (u * (s + eps * s.mean()).rsqrt()) @ u.T
        return cls(mean.float(), matrix.float())

    def __call__(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, C, H, W) whitened."""
        return ((x.reshape(len(x), -1) - self.mean) @ self.matrix).view_as(x)

    def to(self, device: torch.device | str) -> ZCA:
        return ZCA(self.mean.to(device), self.matrix.to(device))

    def state_dict(self) -> dict[str, Tensor]:
        return {"mean": self.mean, "matrix": self.matrix}

    @classmethod
    def from_state_dict(cls, state: dict[str, Tensor]) -> ZCA:
        return cls(state["mean"], state["matrix"])


def random_translate(x: Tensor, max_shift: int) -> Tensor:
    """Shift each image by (dy, dx) ~ U{−max_shift..max_shift}², filling with zeros. (B, C, H, W)."""
    if max_shift == 0:
        return x
    b, c, h, w = x.shape
    p = max_shift
    padded = torch.nn.functional.pad(x, (p, p, p, p))  # (B, C, H+2p, W+2p)
    dy = torch.randint(0, 2 * p + 1, (b, 1), device=x.device)
    dx = torch.randint(0, 2 * p + 1, (b, 1), device=x.device)
    rows = (dy + torch.arange(h, device=x.device)).view(b, 1, h, 1).expand(b, c, h, w + 2 * p)
    cols = (dx + torch.arange(w, device=x.device)).view(b, 1, 1, w).expand(b, c, h, w)
    return padded.gather(2, rows).gather(3, cols)


def random_flip(x: Tensor) -> Tensor:
    """Mirror each image left-right with probability 1/2. (B, C, H, W)."""
    flip = torch.rand(len(x), device=x.device) < 0.5
    return torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)


@dataclass
class Preprocess:
    """uint8 batch (B, C, H, W) -> network input: normalize -> ZCA -> (training) translate -> flip."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    zca: ZCA | None = None
    translate: int = 0
    flip: bool = False

    def __call__(self, images: Tensor, train: bool) -> Tensor:
        x = normalize(images, self.mean, self.std)
        if self.zca is not None:
            x = self.zca(x)
        if train:
            x = random_translate(x, self.translate)
            if self.flip:
                x = random_flip(x)
        return x
