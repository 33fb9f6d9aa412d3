"""Semi-supervised Manifold Mixup on a Wide ResNet (preprint §4.2, Algorithms 1 and 3).

    python -m ssl.train --labels 4000                         # CIFAR-10, 4,000 labels: the paper's recipe
    python -m ssl.train --config configs/ssl/svhn-1k.yaml     # SVHN, 1,000 labels
    python -m ssl.train --config configs/ssl/digits.yaml      # bundled digits: minutes on a laptop CPU
    python -m ssl.train --method input                        # Algorithm 3 (Input Mixup)
    python -m ssl.train --method supervised                   # labelled data only, no mixup
    python -m ssl.train --out runs/x --resume                 # continue an interrupted run

Each step (Algorithm 1): a labelled batch is mixed at a random eligible layer with α = 0.1 and
trained with cross-entropy on the mixed labels; the model's own predictions on an unlabelled batch
(no gradient) are the pseudolabels; the unlabelled batch is mixed at a random layer with α = 2.0 and
its predictions are pulled towards the mixed pseudolabels with an MSE; the two losses are summed
with the consistency weight w(t) = w_max·exp(−5(1−t)²) that reaches w_max at 40% of training.
"""

from __future__ import annotations

import copy
import math
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from common.augment import ZCA, Preprocess, normalize
from common.cli import run_main, start_run, trainer_parser
from common.config import check, check_number, opt, to_dict
from common.data import DATASETS, Split, load_dataset, make_split
from common.dist import agree_to_stop, barrier, init_distributed, mean_over_ranks, shard, shutdown, wrap
from common.dist import in_sync as ranks_in_sync
from common.guard import FLOAT_BYTES, check_memory, footprint, non_finite, weights_finite
from common.mixup import mixup_forward, resolve_points, sample_mix
from common.run import Run, StopSignal, progress, provenance, rng_state, seed_everything, set_rng_state
from common.sampler import PairedBatches
from common.speed import Speed, fused_kwargs, maybe_compile
from ssl.wrn import WideResNet

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "ssl"
SPLIT = "split.npz"  # the labelled/validation split, saved in the run directory
MAX_DEPTH = 1000  # deeper WRNs are not meant; the cap keeps the up-front memory estimate instant
NON_FINITE_EXIT = 3  # exit code of a run stopped because its loss or weights turned nan/inf


@dataclass(frozen=True)
class SSLConfig:
    # data: the protocol of Oliver et al. 2018
    dataset: Literal["cifar10", "svhn", "digits"] = opt("cifar10", "dataset")
    data_dir: str = opt("data/cifar10", "folder with the dataset's files (README: Data); ignored for digits")
    download: bool = opt(False, "download missing dataset files (needs internet)")
    svhn_extra: bool = opt(False, "append SVHN's extra_32x32.mat to the training images")
    labels: int = opt(4000, "labelled training images, the same number per class")
    val_size: int | None = opt(None, "validation images held out of training (default: the dataset's protocol)")
    split: str | None = opt(None, "reuse the split.npz of another run, to compare methods on the same labels")
    zca: bool = opt(True, "ZCA-whiten inputs, fitted on the non-validation training images")
    translate: int = opt(2, "random translation in pixels, zero padded (0 = off)")
    flip: bool | None = opt(None, "random horizontal flips (default: the dataset's convention)")
    # model: WRN-depth-width
    depth: int = opt(28, "WRN depth, 6n+4")
    width: int = opt(2, "WRN widening factor")
    leaky_slope: float = opt(0.1, "LeakyReLU slope (Oliver et al.: 0.1; original code: 0.01)")
    bn_momentum: float = opt(0.001, "BatchNorm momentum, PyTorch convention (Oliver et al.: 0.001)")
    dropout: float = opt(0.0, "dropout inside residual blocks (original code: 0.3)")
    # method
    method: Literal["manifold", "input", "supervised"] = opt("manifold", "Algorithm 1, Algorithm 3, or no mixup")
    mix_points: tuple[str, ...] = opt(("pixel", "h1", "h2"), "eligible mixing points for method=manifold")
    alpha_sup: float = opt(0.1, "α of λ ~ Beta(α, α) for the labelled batch")
    alpha_unsup: float = opt(2.0, "α of λ ~ Beta(α, α) for the unlabelled batch")
    per_example_lam: bool = opt(False, "one λ per example instead of one per batch")
    consistency: Literal["logit", "prob"] = opt(
        "logit", "MSE between logits (the code behind the paper's numbers) or softmax outputs (README: Recipes)"
    )
    pseudolabels: Literal["model", "ema"] = opt("model", "pseudolabels from the current model (paper) or an EMA")
    w_max: float = opt(1.0, "maximum consistency weight (CIFAR-10: 1.0, SVHN: 2.0)")
    rampup: float = opt(0.4, "fraction of all updates over which the weight ramps up to w_max")
    ema_decay: float = opt(0.999, "decay of the EMA weights (used by pseudolabels=ema and eval_ema)")
    eval_ema: bool = opt(False, "also evaluate the EMA weights")
    # optimisation: SGD, preprint Appendix C
    epochs: int = opt(1000, "epochs; an epoch is one pass over the unlabelled set")
    iterations_per_epoch: int | None = opt(None, "updates per epoch (default: unlabelled images / batch)")
    batch_size: int = opt(100, "labelled images per update")
    unlabelled_batch_size: int = opt(100, "unlabelled images per update")
    lr: float = opt(0.1, "initial learning rate")
    lr_milestones: tuple[int, ...] = opt((500, 750, 875), "epochs at which the learning rate drops")
    lr_gamma: float = opt(0.1, "learning-rate factor at each milestone")
    momentum: float = opt(0.9, "SGD momentum")
    nesterov: bool = opt(True, "Nesterov momentum (as the original code)")
    weight_decay: float = opt(5e-4, "L2 coefficient (SGD weight decay, all parameters)")
    l1: float = opt(1e-3, "L1 coefficient")
    l1_scope: Literal["first", "all"] = opt(
        "first", "L1 on the first tensor only (the code behind the paper's numbers) or on every parameter"
    )
    # evaluation and bookkeeping
    eval_every: int = opt(1, "evaluate every N epochs")
    eval_batch_size: int = opt(500, "batch size for evaluation")
    log_every: int = opt(50, "log training losses every N updates")
    checkpoint_every: int = opt(1, "checkpoint every N epochs")
    seed: int = opt(0, "seed for the split, initialisation and every random draw")
    # speed: None = on for CUDA, off on the CPU (README: Speed)
    amp: bool | None = opt(None, "bfloat16 autocast")
    channels_last: bool | None = opt(None, "channels-last memory format")
    compile: bool | None = opt(None, "torch.compile the network (falls back to eager if it fails)")

    def __post_init__(self) -> None:
        # Every number is checked here, before any data is read: finite (nan and inf never pass) and in range.
        # Sizes that depend on the data or on memory are checked in check_sizes, before anything is written.
        check(self.labels > 0, f"--labels must be positive, got {self.labels}")
        check(self.val_size is None or self.val_size >= 0, f"--val-size must be >= 0, got {self.val_size}")
        check(self.batch_size > 0, f"--batch-size must be positive, got {self.batch_size}")
        check(self.unlabelled_batch_size >= 0, "--unlabelled-batch-size must be >= 0")
        check(
            self.method == "supervised" or self.unlabelled_batch_size > 0,
            f"--method {self.method} needs --unlabelled-batch-size > 0",
        )
        check_number("--alpha-sup", self.alpha_sup, gt=0)
        check_number("--alpha-unsup", self.alpha_unsup, gt=0)
        check_number("--w-max", self.w_max, ge=0)
        check(0 < self.rampup <= 1, f"--rampup is a fraction of training in (0, 1], got {self.rampup}")
        check(0 <= self.ema_decay < 1, f"--ema-decay must be in [0, 1), got {self.ema_decay}")
        check(self.epochs > 0, "--epochs must be positive")
        check(self.iterations_per_epoch is None or self.iterations_per_epoch > 0, "--iterations-per-epoch must be > 0")
        check_number("--lr", self.lr, gt=0)
        check(all(m >= 0 for m in self.lr_milestones), f"--lr-milestones are epochs >= 0, got {self.lr_milestones}")
        check_number("--lr-gamma", self.lr_gamma, gt=0, le=1)
        check_number("--momentum", self.momentum, ge=0, lt=1)
        check(not self.nesterov or self.momentum > 0, "--nesterov needs --momentum > 0 (or pass --nesterov false)")
        check_number("--weight-decay", self.weight_decay, ge=0)
        check_number("--l1", self.l1, ge=0)
        check(
            min(self.eval_every, self.log_every, self.checkpoint_every, self.eval_batch_size) > 0,
            "--eval-every, --log-every, --checkpoint-every and --eval-batch-size must be positive",
        )
        check(self.translate >= 0, "--translate must be >= 0")
        check(
            10 <= self.depth <= MAX_DEPTH and (self.depth - 4) % 6 == 0,
            f"--depth: a WRN is 6n+4 layers deep, from 10 to {MAX_DEPTH} (10, 16, 22, 28, ...), got {self.depth}",
        )
        check(self.width >= 1, f"--width must be >= 1, got {self.width}")
        check(0 <= self.dropout < 1, f"--dropout must be in [0, 1), got {self.dropout}")
        check(0 < self.bn_momentum <= 1, f"--bn-momentum must be in (0, 1], got {self.bn_momentum}")
        check_number("--leaky-slope", self.leaky_slope, ge=0, le=1)
        check_number("--seed", self.seed, ge=0, lt=2**63)


def get_args_parser():
    return trainer_parser(SSLConfig, "python -m ssl.train", __doc__, str(CONFIGS / "cifar10-4k.yaml"))


# ---------------------------------------------------------------------------------------------
# Data


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


def build_data(cfg: SSLConfig, device: torch.device, run: Run, resuming: bool, say=print) -> Data:
    info = DATASETS[cfg.dataset]
    train = load_dataset(cfg.dataset, cfg.data_dir, "train", extra=cfg.svhn_extra, download=cfg.download)
    test = load_dataset(cfg.dataset, cfg.data_dir, "test", download=cfg.download)
    if resuming:
        split = Split.load(run.out / SPLIT, num_train=len(train.labels), dataset=cfg.dataset)
    elif cfg.split is not None:
        split = Split.load(cfg.split, num_train=len(train.labels), dataset=cfg.dataset)
        check(
            len(split.labelled) == cfg.labels,
            f"--split {cfg.split} has {len(split.labelled)} labelled images but --labels is {cfg.labels}",
        )
    else:
        num_val = info.num_val if cfg.val_size is None else cfg.val_size
        split = make_split(train.labels.numpy(), cfg.labels, num_val, cfg.seed, info.num_classes)
    resident = train.images.numel() + test.images.numel()  # uint8 bytes kept on the device
    check_sizes(cfg, split, tuple(train.images.shape[1:]), info.num_classes, resident, device)

    images = train.images.to(device)
    zca = None
    if cfg.zca:  # fitted on every non-validation training image, in the layout it is applied to, on the device
        unlabelled = torch.as_tensor(split.unlabelled, device=device)
        zca = ZCA.fit(normalize(images[unlabelled], info.mean, info.std))
    preprocess = Preprocess(
        mean=info.mean, std=info.std, zca=zca, translate=cfg.translate, flip=info.flip if cfg.flip is None else cfg.flip
    )
    # The supervised baseline draws no unlabelled images but keeps the same epochs, hence the same updates.
    unlabelled_bs = 0 if cfg.method == "supervised" else cfg.unlabelled_batch_size
    ipe = cfg.iterations_per_epoch or max(1, len(split.unlabelled) // max(cfg.unlabelled_batch_size, 1))
    batches = PairedBatches(split, cfg.batch_size, unlabelled_bs, cfg.seed, ipe, device=device)
    say(
        f"data: {cfg.dataset} | train {len(split.unlabelled)} ({len(split.labelled)} labelled; all "
        f"{len(split.unlabelled)} used as unlabelled) | validation {len(split.val)} | test {len(test.labels)} "
        f"| {batches.iterations_per_epoch} updates per epoch"
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
    unlabelled_bs = 0 if cfg.method == "supervised" else cfg.unlabelled_batch_size
    check(
        unlabelled_bs <= unlabelled,
        f"--unlabelled-batch-size {unlabelled_bs} is larger than the {unlabelled} unlabelled images; "
        f"use at most {unlabelled}",
    )
    check(cfg.translate < shape[-1], f"--translate {cfg.translate} must be smaller than the {shape[-1]}-pixel images")
    params, per_example = footprint(lambda: build_model(cfg, num_classes, shape[0]), shape)
    copies = 3 + (cfg.pseudolabels == "ema" or cfg.eval_ema)  # weights, gradients, momentum (+ EMA)
    need = FLOAT_BYTES * (params * copies + per_example * (cfg.batch_size + unlabelled_bs)) + bytes_resident
    check_memory(
        need,
        torch.device(device),
        f"WRN-{cfg.depth}-{cfg.width} ({params / 1e6:,.1f}M parameters) with batches of {cfg.batch_size} + "
        f"{unlabelled_bs}",
        "lower --batch-size, --unlabelled-batch-size, --width or --depth",
    )


def build_model(cfg: SSLConfig, num_classes: int, channels: int) -> WideResNet:
    return WideResNet(num_classes, cfg.depth, cfg.width, channels, cfg.leaky_slope, cfg.bn_momentum, cfg.dropout)


def eligible_points(cfg: SSLConfig, model: WideResNet) -> tuple[int, ...]:
    """The set S: the input alone for Input Mixup (Algorithm 3), ``mix_points`` for Manifold Mixup."""
    return (0,) if cfg.method == "input" else resolve_points(cfg.mix_points, model.mix_points)


# ---------------------------------------------------------------------------------------------
# The objective


def consistency_weight(step: int, total_steps: int, w_max: float, rampup: float) -> float:
    """π(t) = w_max·exp(−5(1−t)²) with t = step / (rampup·total), capped at 1 (Tarvainen & Valpola 2017)."""
    t = min(step / (rampup * total_steps), 1.0)
    return w_max * math.exp(-5.0 * (1.0 - t) ** 2)


def learning_rate(step: int, cfg: SSLConfig, iterations_per_epoch: int) -> float:
    """Step decay: lr·γ^(number of milestones passed), milestones in epochs."""
    epoch = step / iterations_per_epoch
    return cfg.lr * cfg.lr_gamma ** sum(epoch >= m for m in cfg.lr_milestones)


def l1_penalty(model: nn.Module, scope: str = "all") -> Tensor:
    """Σ|θ| over every parameter tensor, or over the first one only, which is what the original code's
    L1 term did (its loop kept only the first tensor). One fused kernel for all tensors."""
    params = list(model.parameters())
    params = params[:1] if scope == "first" else params
    return torch.stack(torch._foreach_norm(params, 1)).sum()


def soft_cross_entropy(logits: Tensor, targets: Tensor) -> Tensor:
    """−Σ_c y_c log softmax(logits)_c, averaged over the batch; targets (B, C) sum to 1."""
    return -(targets * F.log_softmax(logits, dim=1)).sum(1).mean()


def train_step(
    model: WideResNet,
    teacher: nn.Module,
    x_l: Tensor,
    y_l: Tensor,
    x_u: Tensor | None,
    w: float,
    cfg: SSLConfig,
    points: Sequence[int],
    num_classes: int,
) -> tuple[Tensor, dict[str, Tensor]]:
    """The loss of one update (Algorithm 1; Algorithm 3 when points == (0,)). Returns (loss, parts).

    ``model`` and ``teacher`` are callables ``f(x, start, stop)`` (the network, possibly wrapped in
    DDP or compiled); the loop adds the L1 term and steps the optimizer.
    """
    if cfg.method == "supervised":
        loss_s = F.cross_entropy(model(x_l), y_l)
        return loss_s, {"loss_sup": loss_s.detach()}

    # Lines 3-5: supervised loss on the labelled batch mixed at a random eligible layer
    mix_l = sample_mix(len(x_l), points, cfg.alpha_sup, per_example=cfg.per_example_lam, device=x_l.device)
    logits_l, y_mixed = mixup_forward(model, x_l, F.one_hot(y_l, num_classes).float(), mix_l)
    loss_s = soft_cross_entropy(logits_l, y_mixed)

    # Lines 6-7: pseudolabels are the model's outputs on the unlabelled batch, without gradient
    with torch.no_grad():
        pseudo = teacher(x_u).float()
        if cfg.consistency == "prob":
            pseudo = pseudo.softmax(1)

    # Lines 8-9: mix the unlabelled batch and its pseudolabels the same way; MSE consistency
    mix_u = sample_mix(len(x_u), points, cfg.alpha_unsup, per_example=cfg.per_example_lam, device=x_u.device)
    logits_u, pseudo_mixed = mixup_forward(model, x_u, pseudo, mix_u)
    pred_u = logits_u.float().softmax(1) if cfg.consistency == "prob" else logits_u.float()
    loss_u = F.mse_loss(pred_u, pseudo_mixed)

    # Line 10: L = L_S + π(t)·L_US
    loss = loss_s + w * loss_u
    return loss, {"loss_sup": loss_s.detach(), "loss_cons": loss_u.detach()}


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """θ_ema ← decay·θ_ema + (1−decay)·θ; buffers (BN statistics) are copied."""
    ema_params, params = list(ema.parameters()), list(model.parameters())
    torch._foreach_lerp_(ema_params, params, 1.0 - decay)
    for b_ema, b in zip(ema.buffers(), model.buffers()):
        b_ema.copy_(b)


@torch.no_grad()
def evaluate(model: nn.Module, images: Tensor, labels: Tensor, preprocess: Preprocess, batch_size: int) -> dict:
    """Accuracy and mean negative log-likelihood on uint8 images (B, C, H, W)."""
    was_training = model.training
    model.eval()
    correct = torch.zeros((), device=images.device)
    nll = torch.zeros((), device=images.device)
    for i in range(0, len(images), batch_size):
        logits = model(preprocess(images[i : i + batch_size], train=False)).float()
        y = labels[i : i + batch_size]
        correct += (logits.argmax(1) == y).sum()
        nll += F.cross_entropy(logits, y, reduction="sum")
    model.train(was_training)
    n = max(len(images), 1)
    return {"acc": correct.item() / n, "nll": nll.item() / n}


def evaluate_all(model: nn.Module, data: Data, cfg: SSLConfig, prefix: str = "") -> dict[str, float]:
    val_idx = torch.as_tensor(data.split.val, device=data.train.device)
    val = evaluate(model, data.train[val_idx], data.train_labels[val_idx], data.preprocess, cfg.eval_batch_size)
    test = evaluate(model, data.test, data.test_labels, data.preprocess, cfg.eval_batch_size)
    return {f"{prefix}val_acc": val["acc"], f"{prefix}test_acc": test["acc"], f"{prefix}test_nll": test["nll"]}


def summarize(evals: list[dict], prefix: str = "") -> dict[str, float]:
    """Test error at the best validation accuracy (the paper) and the median of the last 20 (FixMatch)."""
    if not evals:
        return {}
    best = max(evals, key=lambda m: m[f"{prefix}val_acc"])  # first of equals: earliest
    last = [1 - m[f"{prefix}test_acc"] for m in evals[-20:]]
    return {
        f"{prefix}best_val_error": 1 - best[f"{prefix}val_acc"],
        f"{prefix}test_error_at_best_val": 1 - best[f"{prefix}test_acc"],
        f"{prefix}test_nll_at_best_val": best[f"{prefix}test_nll"],
        f"{prefix}best_val_epoch": best["epoch"],
        f"{prefix}median_test_error_last20": statistics.median(last),
        f"{prefix}final_test_error": 1 - evals[-1][f"{prefix}test_acc"],
        f"{prefix}final_test_nll": evals[-1][f"{prefix}test_nll"],
    }


# ---------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    t_start = time.perf_counter()
    args = get_args_parser().parse_args(argv)
    d, device = init_distributed(args.device)
    cfg, run, resuming = start_run(SSLConfig, args, "ssl", rank=d.rank, world=d.world, barrier=lambda: barrier(d))
    say = tqdm.write if d.main else lambda *a, **k: None  # prints beside progress bars; rank 0 only
    seed_everything(cfg.seed)  # the same on every rank: one RNG stream (common/dist.py)
    speed = Speed.resolve(cfg.amp, cfg.channels_last, cfg.compile, device)

    data = build_data(cfg, device, run, resuming, say)
    net = speed.module(build_model(cfg, data.num_classes, data.channels).to(device))
    model = maybe_compile(wrap(net, d, device), speed)  # what the training step calls
    points = eligible_points(cfg, net)
    ema = copy.deepcopy(net) if (cfg.pseudolabels == "ema" or cfg.eval_ema) else None
    teacher = maybe_compile(ema, speed) if cfg.pseudolabels == "ema" else model
    optimizer = torch.optim.SGD(
        net.parameters(),
        lr=cfg.lr,
        momentum=cfg.momentum,
        nesterov=cfg.nesterov,
        weight_decay=cfg.weight_decay,
        **fused_kwargs(device),
    )
    say(
        f"model: WRN-{cfg.depth}-{cfg.width}, {sum(p.numel() for p in net.parameters()) / 1e6:.2f}M parameters; "
        f"method {cfg.method}, {mixing_description(cfg, net, points)}; {speed.describe()}"
    )

    run.begin()  # setup worked: only now is --out created (or an old run there replaced)
    say(
        f"run: {run.out} ({'resuming' if resuming else 'new'}) on {device}"
        + (f" x {d.world} ranks" if d.enabled else "")
    )
    if run.writer and not resuming:
        data.split.save(
            run.out / SPLIT, dataset=cfg.dataset, num_labels=cfg.labels, seed=cfg.seed, num_train=len(data.train_labels)
        )

    ipe = data.batches.iterations_per_epoch
    total = cfg.epochs * ipe
    step = 0
    meter: dict = {}  # sums of the losses since the last log line, kept on the device, and their count
    if resuming:
        state = run.load_checkpoint(device, keys=("model", "optimizer", "meter", "step", "rng"))
        net.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if ema is not None:
            ema.load_state_dict(state["ema"])
        meter, step = state["meter"], state["step"]
        set_rng_state(state["rng"])
        run.truncate_metrics(step)
        say(f"resumed at update {step} of {total}")

    def checkpoint() -> None:
        run.save_checkpoint(
            {
                "model": net.state_dict(),
                "optimizer": optimizer.state_dict(),
                "ema": ema.state_dict() if ema is not None else None,
                "meter": meter,
                "step": step,
                "rng": rng_state(),
                "config": to_dict(cfg),
            }
        )

    last_good = step if resuming else None  # the update of the checkpoint on disk that has finite weights
    wall_before = previous_wall_time(run)  # wall time of earlier sessions of a resumed run

    def save_if_finite() -> bool:
        """Write a checkpoint unless the weights turned non-finite (then keep the last good one)."""
        nonlocal last_good
        if not weights_finite(net, ema):  # one sync, beside the many of writing a checkpoint
            return False
        checkpoint()
        last_good = step
        return True

    def stop_non_finite(what: str) -> int:
        """Stop a run whose losses or weights are nan/inf: say so, mark the summary failed, exit 3."""
        kept = (
            f"the last good checkpoint is update {last_good}'s ({run.checkpoint_path})"
            if last_good is not None
            else "no checkpoint was written before it"
        )
        message = (
            f"stopped: {what} at update {step}; {kept}; lower --lr (now {cfg.lr:g}), --w-max or --l1 "
            "and start over with --overwrite"
        )
        run.write_summary(
            {
                "status": "failed",
                "reason": message,
                "updates": step,
                "last_good_checkpoint_update": last_good,
                "run_dir": str(run.out),
                "wall_time_s": wall_before + time.perf_counter() - t_start,
            }
        )
        if d.main:
            tqdm.write(f"python -m ssl.train: {message}", file=sys.stderr)
        shutdown(d)
        return NON_FINITE_EXIT

    net.train()
    t_log, step_log = time.perf_counter(), step
    with StopSignal() as stop, progress(total if d.main else 0, step, "ssl") as bar:
        while step < total:
            lr = learning_rate(step, cfg, ipe)
            for group in optimizer.param_groups:
                group["lr"] = lr
            w = consistency_weight(step, total, cfg.w_max, cfg.rampup)

            idx_l, idx_u = (shard(i, d) for i in data.batches.indices(step))  # this rank's part
            x_l = speed.images(data.preprocess(data.train[idx_l], train=True))
            x_u = speed.images(data.preprocess(data.train[idx_u], train=True)) if len(idx_u) else None
            with speed.autocast(device):
                loss, parts = train_step(
                    model, teacher, x_l, data.train_labels[idx_l], x_u, w, cfg, points, data.num_classes
                )
            if "loss_cons" in parts:
                parts["loss_cons_weighted"] = w * parts["loss_cons"]
            if cfg.l1:  # Appendix C's L1 term; its L2 term is SGD's weight decay
                l1 = cfg.l1 * l1_penalty(net, cfg.l1_scope)
                loss = loss + l1
                parts["loss_l1"] = l1.detach()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if ema is not None:
                update_ema(ema, net, cfg.ema_decay)
            step += 1
            bar.update()

            parts["loss"] = loss.detach()
            for k, v in parts.items():
                meter[k] = meter.get(k, 0) + v
            meter["steps"] = meter.get("steps", 0) + 1
            if step % cfg.log_every == 0 or step == total:  # the only host-device sync of a training step
                averaged = mean_over_ranks({k: v / meter["steps"] for k, v in meter.items() if k != "steps"}, d)
                logged = {k: v.item() for k, v in averaged.items()}
                meter = {}
                speed_img = (step - step_log) * (cfg.batch_size + len(idx_u) * d.world) / (time.perf_counter() - t_log)
                t_log, step_log = time.perf_counter(), step
                wall = wall_before + time.perf_counter() - t_start
                times = {"img_per_s": speed_img, "wall_s": wall}
                run.log(step=step, epoch=step / ipe, lr=lr, w=w, **logged, time=times)
                say(log_line(step, total, ipe, lr, w, logged, speed_img))
                bad = non_finite(logged)  # already on the host: no extra sync
                if bad:
                    return stop_non_finite("a non-finite loss (" + ", ".join(f"{k} {logged[k]}" for k in bad) + ")")

            if step % ipe == 0 or step == total:
                epoch = math.ceil(step / ipe)
                if epoch % cfg.eval_every == 0 or step == total:
                    t_eval = time.perf_counter()
                    if d.main:
                        with speed.autocast(device):
                            metrics = evaluate_all(net, data, cfg)
                            if cfg.eval_ema and ema is not None:
                                metrics |= evaluate_all(ema, data, cfg, prefix="ema_")
                        run.log(step=step, epoch=epoch, **metrics)
                        say(f"epoch {epoch}: " + " | ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
                    barrier(d)
                    t_log += time.perf_counter() - t_eval  # throughput counts training only
                if (epoch % cfg.checkpoint_every == 0 or step == total) and not save_if_finite():
                    return stop_non_finite("the weights are not finite")
            if agree_to_stop(stop.signum is not None, d, device, sync_point=step % cfg.log_every == 0):
                if not save_if_finite():
                    return stop_non_finite("the weights are not finite")
                say(f"stopped at update {step}; continue with: {run.resume_command()}")
                shutdown(d)
                return stop.exit_code

    in_sync = ranks_in_sync(net, d, device)
    evals = [m for m in run.metrics() if "val_acc" in m]
    summary = summarize(evals) | (summarize(evals, "ema_") if cfg.eval_ema else {})
    wall = wall_before + time.perf_counter() - t_start
    summary |= {
        "status": "completed",
        "updates": step,
        "epochs": cfg.epochs,
        "run_dir": str(run.out),
        "wall_time_s": wall,
        "ranks": d.world,
        "ranks_in_sync": in_sync,
        "speed": speed.describe(),
        "provenance": provenance(device),
    }
    run.write_summary(summary)
    say(summary_line(summary, cfg.eval_ema))
    shutdown(d)
    return 0


def mixing_description(cfg: SSLConfig, net: WideResNet, points: Sequence[int]) -> str:
    """What the model line says about mixing: the eligible points, or that a supervised run has none."""
    if cfg.method == "supervised":
        return "no mixup"
    return "mixing points " + ", ".join(net.mix_points[k] for k in points)


def log_line(step: int, total: int, ipe: int, lr: float, w: float, losses: dict[str, float], speed: float) -> str:
    """``loss 59.5 (sup 2.37, cons 0.0001 × w 1 = 0.0001, l1 57.1)``: every term of the total, the
    consistency term both raw and weighted (averaged over the updates since the last line)."""
    terms = [f"sup {losses['loss_sup']:.4f}"]
    if "loss_cons" in losses:
        weighted = losses.get("loss_cons_weighted", w * losses["loss_cons"])
        terms.append(f"cons {losses['loss_cons']:.5f} × w {w:.3f} = {weighted:.5f}")
    if "loss_l1" in losses:
        terms.append(f"l1 {losses['loss_l1']:.4f}")
    return (
        f"step {step}/{total} | epoch {step / ipe:.2f} | loss {losses['loss']:.4f} ({', '.join(terms)}) "
        f"| lr {lr:.4g} | {speed:.0f} img/s"
    )


def summary_line(summary: dict, eval_ema: bool = False) -> str:
    """The summary as test errors in % (as the paper reports), with the run directory and wall time."""

    def errors(prefix: str, label: str) -> str:
        if f"{prefix}test_error_at_best_val" not in summary:
            return f"{label}no evaluation"
        return (
            f"{label}test error {100 * summary[f'{prefix}test_error_at_best_val']:.2f}% at the best validation error "
            f"{100 * summary[f'{prefix}best_val_error']:.2f}% (epoch {summary[f'{prefix}best_val_epoch']}) | "
            f"median test error of the last 20 evaluations {100 * summary[f'{prefix}median_test_error_last20']:.2f}% "
            f"| final test error {100 * summary[f'{prefix}final_test_error']:.2f}%"
        )

    parts = [errors("", "")] + ([errors("ema_", "EMA weights: ")] if eval_ema else [])
    wall = hms(summary["wall_time_s"])
    return (
        "summary: " + " | ".join(parts) + f" | {summary['updates']} updates in {wall} (wall time) "
        f"| run directory {summary['run_dir']}"
    )


def hms(seconds: float) -> str:
    """1:02:03 for 3723 seconds (hours unbounded)."""
    m, s = divmod(round(seconds), 60)
    return f"{m // 60}:{m % 60:02d}:{s:02d}"


def previous_wall_time(run: Run) -> float:
    """Wall time, in seconds, that earlier sessions of a resumed run logged (0 for a new run)."""
    times = [m["time"].get("wall_s", 0.0) for m in run.metrics() if isinstance(m.get("time"), dict)]
    return float(times[-1]) if times else 0.0


if __name__ == "__main__":
    run_main(main, prog="python -m ssl.train")
