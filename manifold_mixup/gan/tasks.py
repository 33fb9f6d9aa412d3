"""The seam between gan.train and its data: images (gan/images.py) or the 2-D ring (gan/toy.py).

A task gives the real batches (``batch(i)``, ``shape``, ``num_images``), the size of its sample
visuals (``visual_noise``) and writes them (``save_visual``), sets up and runs its evaluation
(``start_evaluation``, ``evaluate``: every ``--eval-every`` updates, on ``--eval-samples`` samples or the
task's default), and says what its evaluation keeps in memory.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from manifold_mixup.common.dist import NO_DIST, Dist
from manifold_mixup.gan.images import ImageTask
from manifold_mixup.gan.toy import RingTask

Task = ImageTask | RingTask


def make_task(cfg: Any, device: torch.device, dist: Dist = NO_DIST, say: Callable = print) -> Task:
    """The task of ``cfg.dataset``: its training data loaded (images) or its sampler ready (ring)."""
    return (RingTask if cfg.dataset == "ring" else ImageTask)(cfg, device, dist, say)
