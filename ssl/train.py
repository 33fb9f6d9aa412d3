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
from common.config import check, opt, to_dict
from common.data import DATASETS, Split, load_dataset, make_split
from common.dist import agree_to_stop, barrier, init_distributed, mean_over_ranks, shard, shutdown, wrap
from common.dist import in_sync as ranks_in_sync
from common.mixup import mixup_forward, resolve_points, sample_mix
from common.run import Run, StopSignal, progress, provenance, rng_state, seed_everything, set_rng_state
from common.sampler import PairedBatches
from common.speed import Speed, fused_kwargs, maybe_compile
from ssl.wrn import WideResNet

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "ssl"
SPLIT = "split.npz"  # the labelled/validation split, saved in the run directory


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
        check(self.labels > 0, f"--labels must be positive, got {self.labels}")
        check(self.batch_size > 0, f"--batch-size must be positive, got {self.batch_size}")
        check(self.unlabelled_batch_size >= 0, "--unlabelled-batch-size must be >= 0")
        check(
            self.method == "supervised" or self.unlabelled_batch_size > 0,
            f"--method {self.method} needs --unlabelled-batch-size > 0",
        )
        check(self.alpha_sup > 0 and self.alpha_unsup > 0, "--alpha-sup and --alpha-unsup must be positive")
        check(0 < self.rampup <= 1, f"--rampup is a fraction of training in (0, 1], got {self.rampup}")
        check(0 <= self.ema_decay < 1, f"--ema-decay must be in [0, 1), got {self.ema_decay}")
        check(self.epochs > 0, "--epochs must be positive")
        check(self.iterations_per_epoch is None or self.iterations_per_epoch > 0, "--iterations-per-epoch must be > 0")
        check(
            min(self.eval_every, self.log_every, self.checkpoint_every, self.eval_batch_size) > 0,
            "--eval-every, --log-every, --checkpoint-every and --eval-batch-size must be positive",
        )
        check(self.translate >= 0, "--translate must be >= 0")
        check(
            self.depth >= 10 and (self.depth - 4) % 6 == 0,
            f"--depth: a WRN is 6n+4 layers deep with n >= 1 (10, 16, 22, 28, ...), got {self.depth}",
        )
        check(self.width >= 1, f"--width must be >= 1, got {self.width}")
        check(0 <= self.dropout < 1, f"--dropout must be in [0, 1), got {self.dropout}")
        check(0 < self.bn_momentum <= 1, f"--bn-momentum must be in (0, 1], got {self.bn_momentum}")
        check(self.leaky_slope >= 0, f"--leaky-slope must be >= 0, got {self.leaky_slope}")


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
        f"{prefix}best_val_acc": best[f"{prefix}val_acc"],
        f"{prefix}test_error_at_best_val": 1 - best[f"{prefix}test_acc"],
        f"{prefix}test_nll_at_best_val": best[f"{prefix}test_nll"],
        f"{prefix}best_val_epoch": best["epoch"],
        f"{prefix}median_test_error_last20": statistics.median(last),
        f"{prefix}final_test_error": 1 - evals[-1][f"{prefix}test_acc"],
        f"{prefix}final_test_nll": evals[-1][f"{prefix}test_nll"],
    }


# ---------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
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
        f"method {cfg.method}, mixing points {[net.mix_points[k] for k in points]}; {speed.describe()}"
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
            if cfg.l1:  # Appendix C's L1 term; its L2 term is SGD's weight decay
                loss = loss + cfg.l1 * l1_penalty(net, cfg.l1_scope)
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
                run.log(step=step, epoch=step / ipe, lr=lr, w=w, **logged, time={"img_per_s": speed_img})
                say(log_line(step, total, ipe, lr, w, logged, speed_img))

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
                if epoch % cfg.checkpoint_every == 0 or step == total:
                    checkpoint()
            if agree_to_stop(stop.signum is not None, d, device, sync_point=step % cfg.log_every == 0):
                checkpoint()
                say(f"stopped at update {step}; continue with: {run.resume_command()}")
                shutdown(d)
                return stop.exit_code

    in_sync = ranks_in_sync(net, d, device)
    evals = [m for m in run.metrics() if "val_acc" in m]
    summary = summarize(evals) | (summarize(evals, "ema_") if cfg.eval_ema else {})
    summary |= {
        "updates": step,
        "epochs": cfg.epochs,
        "ranks": d.world,
        "ranks_in_sync": in_sync,
        "speed": speed.describe(),
        "provenance": provenance(device),
    }
    run.write_summary(summary)
    say("summary: " + " | ".join(f"{k} {v:.4f}" for k, v in summary.items() if isinstance(v, float)))
    shutdown(d)
    return 0


def log_line(step: int, total: int, ipe: int, lr: float, w: float, losses: dict[str, float], speed: float) -> str:
    cons = f", cons {losses['loss_cons']:.5f} × w {w:.3f}" if "loss_cons" in losses else ""
    return (
        f"step {step}/{total} | epoch {step / ipe:.2f} | loss {losses['loss']:.4f} "
        f"(sup {losses['loss_sup']:.4f}{cons}) | lr {lr:.4g} | {speed:.0f} img/s"
    )


if __name__ == "__main__":
    run_main(main, prog="python -m ssl.train")
