"""Images for gan.train (CIFAR-10, digits): the training set resident on the device, sample grids, FID/IS.

The counterpart of :class:`gan.toy.RingTask`; ``gan.tasks.make_task`` picks one of the two.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from manifold_mixup.common.config import UsageError
from manifold_mixup.common.data import load_dataset
from manifold_mixup.common.dist import NO_DIST, Dist, shard
from manifold_mixup.common.sampler import BatchStream
from manifold_mixup.gan.nets import sample

EVAL_SAMPLES = 5000  # samples scored per evaluation when --eval-samples is not given


def scored_samples(cfg: Any) -> int:
    """How many generated images each FID/IS evaluation scores (0 = never score)."""
    return EVAL_SAMPLES if cfg.eval_samples is None else cfg.eval_samples


class ImageTask:
    """Real batches of a training set (uint8 on the device, indexed there), grids, and the FID/IS scorer."""

    visual_noise = 64  # images in each sample grid

    def __init__(self, cfg: Any, device: torch.device, dist: Dist = NO_DIST, say: Callable = print):
        self.cfg, self.device, self.dist = cfg, device, dist
        train = load_dataset(cfg.dataset, cfg.data_dir, "train", download=cfg.download)
        self.num_images: int | None = len(train)
        self.images = train.images.to(device)
        self.shape: tuple[int, ...] = tuple(train.images.shape[1:])
        self.stream = BatchStream(torch.arange(len(train)), cfg.batch_size, cfg.seed, stream=2, device=device)
        say(f"data: {cfg.dataset} train, {len(train)} images of {self.shape}")
        self.eval_every = cfg.eval_every  # updates between scorings (0 = only at the end)
        self.eval_samples = 0  # generated one batch at a time by the scorer
        self.resident_bytes = scored_samples(cfg) * self.images[0].numel()  # the scored samples, uint8
        # every rank: a bad --score-ref stops them all before anything is written
        self.reference = explicit_reference(cfg)
        self.scorer: Callable[[nn.Module], dict[str, float]] | None = None

    def batch(self, i: int) -> Tensor:
        """This rank's part of the real batch of discriminator update i, in [-1, 1]."""
        return self.images[shard(self.stream.batch(i), self.dist)].float() / 127.5 - 1

    def start_evaluation(self) -> str | None:
        """Set up the scorer (rank 0 only); returns why scoring is skipped, if it is."""
        self.scorer, skipped = make_scorer(self.cfg, self.device, self.reference)
        return skipped

    def evaluate(self, G: nn.Module) -> dict[str, float]:
        """FID/IS when a scorer is set up, else nothing."""
        return self.scorer(G) if self.scorer is not None else {}

    def save_visual(self, G: nn.Module, z: Tensor, path: Path) -> None:
        """A grid of G(z), small images enlarged (nearest) so it can be read."""
        from torchvision.utils import save_image

        x = sample(G, z).float().cpu()
        if x.shape[-1] < 32:
            x = torch.nn.functional.interpolate(x, scale_factor=32 // x.shape[-1], mode="nearest")
        save_image(x * 0.5 + 0.5, path, nrow=int(len(x) ** 0.5), padding=2, pad_value=0.5)


def explicit_reference(cfg: Any):
    """The samples of an explicit ``--score-ref``, loaded up front (None without one, or when nothing is
    scored): a reference that cannot be read stops the start. The default reference, the training set, may
    still be unavailable: then scoring is skipped with a message (make_scorer)."""
    if cfg.score_ref is None or scored_samples(cfg) == 0:
        return None
    from manifold_mixup.gan.score import load_samples

    try:
        return load_samples(cfg.score_ref, data_dir=cfg.data_dir)
    except UsageError as e:
        raise UsageError(f"--score-ref {cfg.score_ref}: {e}") from None


def make_scorer(cfg: Any, device: torch.device, reference=None) -> tuple[Callable | None, str | None]:
    """A function G -> {fid, is, is_std} on ``scored_samples(cfg)`` samples, or (None, why not).

    Digits use the ``digits-cnn`` domain extractor (trained on first use; its keys are prefixed
    ``digits-cnn_`` because they are not Inception numbers); other images use Inception, whose
    weights must be found locally (common.features.find_inception_weights) or downloadable. The
    reference statistics are computed once and cached (gan.score.reference_statistics).
    """
    from manifold_mixup.common.features import DIGITS_EXTRACTOR
    from manifold_mixup.gan.sample import generate
    from manifold_mixup.gan.score import INCEPTION, load_samples, make_extractor, score

    num = scored_samples(cfg)
    if num == 0:
        return None, None
    try:
        extractor = make_extractor(DIGITS_EXTRACTOR if cfg.dataset == "digits" else INCEPTION, device=device)
        if reference is None:
            reference = load_samples(cfg.score_ref or f"{cfg.dataset}-train", data_dir=cfg.data_dir)
    except UsageError as e:
        return None, f"scoring skipped: {e}"
    prefix = "" if extractor.name == INCEPTION else f"{extractor.name}_"

    def scorer(G: nn.Module) -> dict[str, float]:
        images = generate(G, num, device=device, seed=cfg.seed)  # the same noise every time
        r = score(images, reference, extractor=extractor)
        return {
            f"{prefix}fid": r["frechet_inception_distance"],
            f"{prefix}is": r["inception_score_mean"],
            f"{prefix}is_std": r["inception_score_std"],
        }

    return scorer, None
