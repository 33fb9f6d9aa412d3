"""The data of an SSL run: the split, the images resident on the device, the batches, the size checks."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from manifold_mixup.common.augment import ZCA, Preprocess, normalize
from manifold_mixup.common.config import check
from manifold_mixup.common.data import DATASETS, Split, load_dataset, make_split
from manifold_mixup.common.guard import FLOAT_BYTES, check_memory, footprint
from manifold_mixup.common.registry import build
from manifold_mixup.common.sampler import PairedBatches
from manifold_mixup.ssl.config import SSLConfig, network_args


@dataclass
class Data:
    """Everything the loop reads: uint8 images resident on the device, the split, the batches."""

    train: Tensor  # (N, C, H, W) uint8, all training images (validation included)
    train_labels: Tensor  # (N,) int64
    test: Tensor
    test_labels: Tensor
    split: Split
    batches: PairedBatches
    preprocess: Preprocess
    num_classes: int
    channels: int


def build_data(cfg: SSLConfig, device: torch.device, saved_split: Path | None = None, say=print) -> Data:
    """The run's data on ``device``. ``saved_split``: the split.npz of the run being resumed or evaluated
    (None: a new run, whose split is ``cfg.split`` or drawn from ``cfg.seed``)."""
    info = DATASETS[cfg.dataset]
    train = load_dataset(cfg.dataset, cfg.data_dir, "train", extra=cfg.svhn_extra, download=cfg.download)
    test = load_dataset(cfg.dataset, cfg.data_dir, "test", download=cfg.download)
    if saved_split is not None:
        split = Split.load(saved_split, num_train=len(train.labels), dataset=cfg.dataset)
        check_split_fits(cfg, split, f"{saved_split} (the run's own split)")
    elif cfg.split is not None:
        split = Split.load(cfg.split, num_train=len(train.labels), dataset=cfg.dataset)
        check_split_fits(cfg, split, f"--split {cfg.split}")
    else:
        num_val = info.num_val if cfg.val_size is None else cfg.val_size
        split = new_split(cfg, train.labels.numpy(), num_val, info.num_classes)
    resident = train.images.numel() + test.images.numel()  # uint8 bytes kept on the device
    check_sizes(cfg, split, tuple(train.images.shape[1:]), info.num_classes, resident, device)

    images = train.images.to(device)
    zca = None
    if cfg.zca:  # fitted on the images the run trains on (every non-validation one unless --labelled-only),
        # in the layout it is applied to, on the device
        fit_on = torch.as_tensor(split.labelled if cfg.labelled_only else split.unlabelled, device=device)
        zca = ZCA.fit(normalize(images[fit_on], info.mean, info.std))
    preprocess = Preprocess(
        mean=info.mean, std=info.std, zca=zca, translate=cfg.translate, flip=info.flip if cfg.flip is None else cfg.flip
    )
    # The supervised baseline draws no unlabelled images but keeps the same epochs, hence the same updates.
    # With --labels all there is no unlabelled batch and an epoch is one pass over the (labelled) training set.
    unlabelled_bs = 0 if not cfg.method_spec.unlabelled or cfg.labels_only else cfg.unlabelled_batch_size
    if cfg.labels_only:
        ipe = cfg.iterations_per_epoch or max(1, len(split.labelled) // cfg.batch_size)
        unused = len(split.unlabelled) - len(split.labelled)
        use = "all labelled, no unlabelled batch" if cfg.all_labels else f"labelled only, {unused} unused"
    else:
        ipe = cfg.iterations_per_epoch or max(1, len(split.unlabelled) // max(cfg.unlabelled_batch_size, 1))
        use = f"{len(split.labelled)} labelled; all {len(split.unlabelled)} used as unlabelled"
    batches = PairedBatches(split, cfg.batch_size, unlabelled_bs, cfg.seed, ipe, device=device)
    trained = len(split.labelled) if cfg.labelled_only else len(split.unlabelled)
    say(
        f"data: {cfg.dataset} | train {trained} ({use}) | validation {len(split.val)} "
        f"| test {len(test.labels)} | {batches.iterations_per_epoch} updates per epoch"
    )
    return Data(
        train=images,
        train_labels=train.labels.to(device),
        test=test.images.to(device),
        test_labels=test.labels.to(device),
        split=split,
        batches=batches,
        preprocess=preprocess,
        num_classes=info.num_classes,
        channels=info.channels,
    )


def check_split_fits(cfg: SSLConfig, split: Split, what: str) -> None:
    """Refuse a split whose labelled images are not the config's ``--labels`` (or all of them with ``--labels
    all``), not among its training images, or whose validation set is not the ``--val-size`` given."""
    wanted = len(split.unlabelled) if cfg.all_labels else cfg.labels
    check(
        len(split.labelled) == wanted and bool(np.isin(split.labelled, split.unlabelled).all()),
        f"{what} has {len(split.labelled)} labelled images of {len(split.unlabelled)} but --labels is {cfg.labels}; "
        "use the split of a run with the same --labels",
    )
    check(
        cfg.val_size is None or cfg.val_size == len(split.val),
        f"{what} holds {len(split.val)} validation images but --val-size is {cfg.val_size}; a split fixes its "
        "validation set: drop --val-size or give no split",
    )


def new_split(cfg: SSLConfig, labels: np.ndarray, num_val: int, num_classes: int) -> Split:
    """The split of a new run: ``--labels`` per class as in Oliver et al., or with ``--labels all`` every
    non-validation image labelled (the same validation images as the SSL split of the same seed)."""
    if not cfg.all_labels:
        return make_split(labels, cfg.labels, num_val, cfg.seed, num_classes)
    ssl_split = make_split(labels, num_classes, num_val, cfg.seed, num_classes)  # one label per class: any
    return Split(ssl_split.unlabelled, ssl_split.unlabelled, ssl_split.val)


def check_sizes(
    cfg: SSLConfig,
    split: Split,
    shape: tuple[int, ...],
    num_classes: int,
    bytes_resident: int = 0,
    device: torch.device | str = "cpu",
) -> None:
    """Refuse, in one line, batches larger than the sets they are drawn from, a translation as large as
    the image, and a run whose rough memory estimate (common/guard.py) exceeds all of ``device``'s memory."""
    labelled, unlabelled = len(split.labelled), len(split.unlabelled)
    check(
        cfg.batch_size <= labelled,
        f"--batch-size {cfg.batch_size} is larger than the {labelled} labelled images; use at most {labelled}",
    )
    unlabelled_bs = cfg.unlabelled_batch_size if cfg.method_spec.unlabelled else 0
    check(
        unlabelled_bs <= unlabelled,
        f"--unlabelled-batch-size {unlabelled_bs} is larger than the {unlabelled} unlabelled images; "
        f"use at most {unlabelled}",
    )
    check(cfg.translate < shape[-1], f"--translate {cfg.translate} must be smaller than the {shape[-1]}-pixel images")
    params, per_example = footprint(lambda: build(network_args(cfg, num_classes, shape[0])), shape)
    copies = 3 + (cfg.pseudolabels == "ema" or cfg.eval_ema)  # weights, gradients, momentum (+ EMA)
    need = FLOAT_BYTES * (params * copies + per_example * (cfg.batch_size + unlabelled_bs)) + bytes_resident
    check_memory(
        need,
        torch.device(device),
        f"{cfg.network_name()} ({params / 1e6:,.1f}M parameters) with batches of {cfg.batch_size} + {unlabelled_bs}",
        "lower --batch-size, --unlabelled-batch-size, --width or --depth, or pick a smaller --arch",
    )
