"""Semi-supervised Manifold Mixup on a Wide ResNet (preprint §4.2, Algorithms 1 and 3).

    python -m ssl.train --labels 4000                         # CIFAR-10, 4,000 labels: the paper's recipe
    python -m ssl.train --config configs/ssl/svhn-1k.yaml     # SVHN, 1,000 labels
    python -m ssl.train --config configs/ssl/digits.yaml      # bundled digits: minutes on a laptop CPU
    python -m ssl.train --method input                        # Algorithm 3 (Input Mixup)
    python -m ssl.train --method supervised                   # labelled data only, no mixup
    python -m ssl.train --out runs/x --resume                 # continue an interrupted run
    python -m ssl.train --config configs/ssl/supervised-preactresnet18-cifar10.yaml --method manifold
                                                              # supervised Manifold Mixup (ICML Table 1)

Each step (Algorithm 1): a labelled batch is mixed at a random eligible layer with α = 0.1 and
trained with cross-entropy on the mixed labels; the model's own predictions on an unlabelled batch
(no gradient) are the pseudolabels; the unlabelled batch is mixed at a random layer with α = 2.0 and
its predictions are pulled towards the mixed pseudolabels with an MSE; the two losses are summed
with the consistency weight w(t) = w_max·exp(−5(1−t)²) that reaches w_max at 40% of training.

With ``--labels all`` every training image is labelled and there is no unlabelled batch: the step is
lines 3-5 alone, i.e. supervised Manifold Mixup (ICML 2019) or Input Mixup, or plain training with
``--method supervised``; an epoch is one pass over the training set.
"""

from __future__ import annotations

import copy
import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from manifold_mixup.common.augment import Preprocess
from manifold_mixup.common.cli import progress, run_main, trainer_parser
from manifold_mixup.common.dist import barrier, shard, wrap
from manifold_mixup.common.layers import LayerMixup
from manifold_mixup.common.loop import LossMeter, Session, Throughput, hms, num_params, start_session, update_ema
from manifold_mixup.common.mixup import sample_mix, soft_cross_entropy
from manifold_mixup.common.registry import build
from manifold_mixup.common.rundir import SPLIT
from manifold_mixup.common.signals import StopSignal
from manifold_mixup.common.speed import backward_step, configure, fused_kwargs, maybe_compile
from manifold_mixup.ssl.config import CONFIGS, SSLConfig, check_method, network_args
from manifold_mixup.ssl.data import Data, build_data


def get_args_parser():
    return trainer_parser(SSLConfig, "python -m ssl.train", __doc__, str(CONFIGS / "cifar10-4k.yaml"))


def eligible_layers(cfg: SSLConfig, model: nn.Module) -> LayerMixup:
    """The set S as a mixer of ``model`` (any network, DDP'd and/or compiled): the input alone for Input Mixup
    (Algorithm 3) and plain training, ``mix_points`` for Manifold Mixup (point or layer names)."""
    return LayerMixup(model, cfg.mix_points if cfg.method_spec.hidden_layers else ("input",))


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


def train_step(
    mixer: LayerMixup,
    teacher: Callable,
    x_l: Tensor,
    y_l: Tensor,
    x_u: Tensor | None,
    w: float,
    cfg: SSLConfig,
    num_classes: int,
    net: nn.Module | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """The loss of one update (Algorithm 1; Algorithm 3 when the mixer's only layer is the input).
    Returns (loss, parts).

    ``mixer`` mixes the trained network (``mixer.model``: the network, possibly wrapped in DDP or compiled)
    at its eligible layers; ``teacher`` gives the pseudolabels; ``net`` is the plain network whose weights
    carry Appendix C's L1 term (its L2 term is SGD's weight decay). Without ``net`` the loss is the mixup
    objective alone.
    """
    if not cfg.method_spec.mixes:
        loss = supervised_loss(mixer.model(x_l), F.one_hot(y_l, num_classes).float(), cfg.loss)
        parts = {"loss_sup": loss.detach()}
    elif x_u is None:  # --labels all: supervised mixup, the labelled term of Algorithm 1 alone
        loss = supervised_mixup_loss(mixer, x_l, y_l, cfg, num_classes)
        parts = {"loss_sup": loss.detach()}
    else:
        loss, parts = mixup_objective(mixer, teacher, x_l, y_l, x_u, w, cfg, num_classes)
    if cfg.l1 and net is not None:
        l1 = cfg.l1 * l1_penalty(net, cfg.l1_scope)
        loss = loss + l1
        parts["loss_l1"] = l1.detach()
    return loss, parts


def supervised_mixup_loss(mixer: LayerMixup, x_l: Tensor, y_l: Tensor, cfg: SSLConfig, num_classes: int) -> Tensor:
    """Lines 3-5 of Algorithm 1: cross-entropy on the labelled batch mixed at a random eligible layer, λ ~ Beta(α, α)
    with α = ``cfg.alpha_sup`` (the input alone: Input Mixup)."""
    mix_l = sample_mix(len(x_l), mixer.points, cfg.alpha_sup, per_example=cfg.per_example_lam, device=x_l.device)
    logits_l, y_mixed = mixer(x_l, F.one_hot(y_l, num_classes).float(), mix_l)
    return supervised_loss(logits_l, y_mixed, cfg.loss)


def supervised_loss(logits: Tensor, targets: Tensor, kind: str = "ce") -> Tensor:
    """The loss of logits (B, C) against targets (B, C) that sum to 1 (one-hot or mixed): ``ce`` is the soft
    cross-entropy; ``bce`` is the released supervised code's ``BCELoss(softmax(logits), targets)``, the binary
    cross-entropy of each class's probability averaged over batch and classes."""
    if kind == "ce":
        return soft_cross_entropy(logits, targets)
    with torch.autocast(logits.device.type, enabled=False):  # CUDA autocast refuses binary_cross_entropy
        return F.binary_cross_entropy(logits.float().softmax(1), targets.float())


def mixup_objective(
    mixer: LayerMixup,
    teacher: Callable,
    x_l: Tensor,
    y_l: Tensor,
    x_u: Tensor,
    w: float,
    cfg: SSLConfig,
    num_classes: int,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Lines 3-10 of Algorithm 1: the mixed supervised loss plus w·the mixed consistency loss."""
    loss_s = supervised_mixup_loss(mixer, x_l, y_l, cfg, num_classes)

    # Lines 6-7: pseudolabels are the model's outputs on the unlabelled batch, without gradient
    with torch.no_grad():
        pseudo = teacher(x_u).float()
        if cfg.consistency == "prob":
            pseudo = pseudo.softmax(1)

    # Lines 8-9: mix the unlabelled batch and its pseudolabels the same way; MSE consistency
    mix_u = sample_mix(len(x_u), mixer.points, cfg.alpha_unsup, per_example=cfg.per_example_lam, device=x_u.device)
    logits_u, pseudo_mixed = mixer(x_u, pseudo, mix_u)
    pred_u = logits_u.float().softmax(1) if cfg.consistency == "prob" else logits_u.float()
    loss_u = F.mse_loss(pred_u, pseudo_mixed)

    # Line 10: L = L_S + π(t)·L_US
    loss = loss_s + w * loss_u
    return loss, {"loss_sup": loss_s.detach(), "loss_cons": loss_u.detach(), "loss_cons_weighted": w * loss_u.detach()}


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


FIT_IMAGES = 5000  # the fit (train error) is measured on at most this many labelled images: every one of a
# 4,000-label split, a fixed random 5,000 of CIFAR-10's 45,000 with --labels all (BENCHMARKS.md: evaluation cost)


def fit_subset(labelled: np.ndarray, limit: int = FIT_IMAGES) -> np.ndarray:
    """The labelled indices the fit is measured on: all of them, or a fixed random ``limit`` (its own generator,
    so no training draw moves; not a prefix, since the images may be stored class by class)."""
    if len(labelled) <= limit:
        return labelled
    return np.sort(np.random.default_rng(0).choice(labelled, limit, replace=False))


def evaluate_all(
    model: nn.Module,
    data: Data,
    cfg: SSLConfig,
    prefix: str = "",
    test: bool = True,
    train: bool = False,
    val: bool = True,
) -> dict[str, float]:
    """Validation accuracy and NLL (none with --val-size 0, or ``val`` False); test accuracy and NLL unless
    ``test`` is False; with ``train``, accuracy and NLL on the clean labelled training images (the fit; at most
    FIT_IMAGES of them, :func:`fit_subset`, so that --labels all does not pay for 45,000)."""
    metrics = {}

    def subset(name: str, indices) -> None:
        idx = torch.as_tensor(indices, device=data.train.device)
        result = evaluate(model, data.train[idx], data.train_labels[idx], data.preprocess, cfg.eval_batch_size)
        metrics.update({f"{prefix}{name}_acc": result["acc"], f"{prefix}{name}_nll": result["nll"]})

    if val and len(data.split.val):
        subset("val", data.split.val)
    if train:
        subset("train", fit_subset(data.split.labelled))
    if test:
        result = evaluate(model, data.test, data.test_labels, data.preprocess, cfg.eval_batch_size)
        metrics |= {f"{prefix}test_acc": result["acc"], f"{prefix}test_nll": result["nll"]}
    return metrics


def summarize(evals: list[dict], prefix: str = "") -> dict[str, float]:
    """Test error at the best validation accuracy (the paper), the median of the last 20 test evaluations
    (FixMatch) and the final one. ``evals`` are the evaluation records; under ``--eval-test best`` only those
    that improved the validation accuracy (and the last) hold test numbers, and the best one always does.
    Without a validation set (--val-size 0, as the ICML supervised runs) there is no best-validation
    entry: the final test error and NLL are the result."""
    tested = [m for m in evals if f"{prefix}test_acc" in m]
    if not tested:
        return {}
    last = [1 - m[f"{prefix}test_acc"] for m in tested[-20:]]
    summary = {
        f"{prefix}median_test_error_last20": statistics.median(last),
        f"{prefix}final_test_error": 1 - tested[-1][f"{prefix}test_acc"],
        f"{prefix}final_test_nll": tested[-1][f"{prefix}test_nll"],
    }
    if f"{prefix}train_acc" in evals[-1]:
        summary |= {
            f"{prefix}final_train_error": 1 - evals[-1][f"{prefix}train_acc"],
            f"{prefix}final_train_nll": evals[-1][f"{prefix}train_nll"],
        }
    validated = [m for m in evals if f"{prefix}val_acc" in m]
    if not validated:
        return summary
    best = max(validated, key=lambda m: m[f"{prefix}val_acc"])  # first of equals: earliest (the one tested)
    return {
        f"{prefix}best_val_error": 1 - best[f"{prefix}val_acc"],
        f"{prefix}test_error_at_best_val": 1 - best[f"{prefix}test_acc"],
        f"{prefix}test_nll_at_best_val": best[f"{prefix}test_nll"],
        f"{prefix}best_val_epoch": best["epoch"],
    } | summary


def is_evaluation(record: dict) -> bool:
    """A metrics.jsonl record written by :func:`evaluate_epoch` (not a training-loss line)."""
    return any(k.endswith(("val_acc", "test_acc")) for k in record)


# ---------------------------------------------------------------------------------------------
# The run


@dataclass
class Networks:
    """The plain network (checkpoints, evaluation, the L1 term), the mixer of the callable the step trains
    (DDP and/or compiled) at the eligible layers, the teacher of the pseudolabels, the EMA copy, the
    optimizer, the network's model_args and the gradient scaler of float16 autocast (else None)."""

    net: nn.Module
    mixer: LayerMixup
    teacher: Callable
    ema: nn.Module | None
    optimizer: torch.optim.Optimizer
    model_args: dict[str, Any]
    scaler: torch.amp.GradScaler | None = None

    @property
    def model(self) -> Callable:
        """The callable the step trains: the network, DDP'd and/or compiled."""
        return self.mixer.model

    def states(self) -> dict[str, Any]:
        """What a checkpoint keeps, by name (None: no EMA, or no gradient scaler, in this run)."""
        return {"model": self.net, "optimizer": self.optimizer, "ema": self.ema, "scaler": self.scaler}


def build_networks(s: Session, data: Data) -> Networks:
    cfg = s.cfg
    model_args = network_args(cfg, data.num_classes, data.channels)
    net = s.speed.module(build(model_args).to(s.device))
    model = maybe_compile(wrap(net, s.dist, s.device), s.speed)
    ema = copy.deepcopy(net) if (cfg.pseudolabels == "ema" or cfg.eval_ema) else None
    teacher = maybe_compile(ema, s.speed) if cfg.pseudolabels == "ema" else model
    optimizer = torch.optim.SGD(
        net.parameters(),
        lr=cfg.lr,
        momentum=cfg.momentum,
        nesterov=cfg.nesterov,
        weight_decay=cfg.weight_decay,
        **fused_kwargs(s.device),
    )
    mixer = eligible_layers(cfg, model)  # names checked against the network, hooks installed before compiling
    s.say(
        f"model: {cfg.network_name()}, {num_params(net):.2f}M parameters; "
        f"method {cfg.method}, {mixing_description(cfg, mixer)}; {s.speed.describe()}"
    )
    return Networks(net, mixer, teacher, ema, optimizer, model_args, s.speed.grad_scaler(s.device))


def main(argv: Sequence[str] | None = None) -> int:
    s = start_session(SSLConfig, get_args_parser(), argv, "ssl")
    check_method(s.cfg)
    configure(s.device)
    data = build_data(s.cfg, s.device, s.run.out / SPLIT if s.resuming else None, s.say)
    nets = build_networks(s, data)
    s.begin()
    if s.run.writer and not s.resuming:
        data.split.save(
            s.run.out / SPLIT,
            dataset=s.cfg.dataset,
            num_labels=s.cfg.labels,
            seed=s.cfg.seed,
            num_train=len(data.train_labels),
        )
    step, meter = 0, LossMeter()
    if s.resuming:
        state = s.restore(nets.states())
        step, meter = state["step"], LossMeter(state["meter"])
        s.say(f"resumed at update {step} of {s.cfg.epochs * data.batches.iterations_per_epoch}")
    code = train(s, data, nets, step, meter)
    if code is not None:
        return code
    evals = [m for m in s.run.metrics() if is_evaluation(m)]
    summary = summarize(evals) | (summarize(evals, "ema_") if s.cfg.eval_ema else {})
    counts = {"updates": s.cfg.epochs * data.batches.iterations_per_epoch, "epochs": s.cfg.epochs}
    speed = {"speed": s.speed.describe(nets.model, nets.teacher)}  # what ran: compiled, or eager and why
    return s.finish(summary, counts, [nets.net], lambda sm: summary_line(sm, s.cfg.eval_ema), speed)


def train(s: Session, data: Data, nets: Networks, step: int, meter: LossMeter) -> int | None:
    """Algorithm 1's loop from update ``step`` to the end: None when done, else the exit code of a stop."""
    cfg, device, dist = s.cfg, s.device, s.dist
    ipe = data.batches.iterations_per_epoch
    total = cfg.epochs * ipe
    s.keep(nets.net, nets.ema, hint=f"lower --lr (now {cfg.lr:g}), --w-max or --l1", count_key="updates")

    def save() -> None:
        s.save(nets.states(), step=step, meter=meter, model_args=nets.model_args)

    nets.net.train()
    throughput = Throughput(step)
    with StopSignal() as stop, progress(total if dist.main else 0, step, "ssl") as bar:
        while step < total:
            lr = learning_rate(step, cfg, ipe)
            for group in nets.optimizer.param_groups:
                group["lr"] = lr
            w = consistency_weight(step, total, cfg.w_max, cfg.rampup)

            idx_l, idx_u = (shard(i, dist) for i in data.batches.indices(step))  # this rank's part
            with s.speed.autocast(device):  # the ZCA matmul in bf16 under amp: the first conv casts to it anyway
                x_l = s.speed.images(data.preprocess(data.train[idx_l], train=True))
                x_u = s.speed.images(data.preprocess(data.train[idx_u], train=True)) if len(idx_u) else None
            y_l = data.train_labels[idx_l]
            with s.speed.autocast(device):
                loss, parts = train_step(
                    nets.mixer, nets.teacher, x_l, y_l, x_u, w, cfg, data.num_classes, net=nets.net
                )
            nets.optimizer.zero_grad(set_to_none=True)
            backward_step(loss, nets.optimizer, nets.scaler)
            if nets.ema is not None:
                update_ema(nets.ema, nets.net, cfg.ema_decay)
            step += 1
            bar.update()

            meter.add(parts | {"loss": loss.detach()})
            if step % cfg.log_every == 0 or step == total:  # the only host-device sync of a training step
                logged = meter.flush(dist)
                rate = throughput.rate(step, cfg.batch_size + len(idx_u) * dist.world)
                times = {"img_per_s": rate, "wall_s": s.wall()}
                weight = {"w": w} if x_u is not None else {}  # no consistency term with --labels all
                s.run.log(step=step, epoch=step / ipe, lr=lr, **weight, **logged, time=times)
                s.say(log_line(step, total, ipe, lr, w, logged, rate))
                if (code := s.check_losses(logged, step)) is not None:
                    return code

            if step % ipe == 0 or step == total:
                epoch = math.ceil(step / ipe)
                if epoch % cfg.eval_every == 0 or step == total:
                    with throughput.paused():  # throughput counts training only
                        evaluate_epoch(s, data, nets, step, epoch, last=step == total)
                saving = epoch % cfg.checkpoint_every == 0 or step == total
                if saving and (code := s.checkpoint(step, save)) is not None:
                    return code
            if (code := s.poll_stop(stop, step, save, sync_point=step % cfg.log_every == 0)) is not None:
                return code
    return None


def evaluate_epoch(s: Session, data: Data, nets: Networks, step: int, epoch: int, last: bool = False) -> None:
    """Validation and test accuracy of the weights (and of the EMA weights), logged by rank 0. Under
    ``--eval-test best`` the test set is evaluated only when the validation accuracy beats every earlier one
    (so the best-validation record always holds its test numbers) and at the end; the last evaluation also
    measures the fit of the labelled training images."""
    if s.dist.main:
        start = time.perf_counter()
        with s.speed.autocast(s.device):
            metrics = evaluate_all(nets.net, data, s.cfg, test=False)
            test = last or s.cfg.eval_test == "every" or "val_acc" not in metrics
            if not test:
                earlier = [m["val_acc"] for m in s.run.metrics() if "val_acc" in m]
                test = metrics["val_acc"] > max(earlier, default=-1.0)
            if test:
                metrics |= evaluate_all(nets.net, data, s.cfg, test=True, train=last, val=False)
            if s.cfg.eval_ema and nets.ema is not None:
                metrics |= evaluate_all(nets.ema, data, s.cfg, prefix="ema_", test=test)
        s.run.log(step=step, epoch=epoch, **metrics, time={"eval_s": time.perf_counter() - start})
        s.say(f"epoch {epoch}: " + " | ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
    barrier(s.dist)


def mixing_description(cfg: SSLConfig, mixer: LayerMixup) -> str:
    """What the model line says about mixing: the eligible layers, or that a supervised run has none."""
    if not cfg.method_spec.mixes:
        return "no mixup"
    where = "mixing points " + ", ".join(mixer.labels)
    return f"{where}, α {cfg.alpha_sup:g}" + (
        f" (supervised: {'every image labelled' if cfg.all_labels else 'the labelled images only'})"
        if cfg.labels_only
        else ""
    )


def log_line(step: int, total: int, ipe: int, lr: float, w: float, losses: dict[str, float], speed: float) -> str:
    """``loss 59.5 (sup 2.37, w·cons 0.0001 [cons 0.0002, w now 0.5], l1 57.1)``: the terms that add up to the
    total, each averaged over the updates since the last line, and the raw consistency loss with the current
    weight (w ramps up, so the average of w·cons is not the product of the averages)."""
    terms = [f"sup {losses['loss_sup']:.4f}"]
    if "loss_cons" in losses:
        weighted = losses.get("loss_cons_weighted", w * losses["loss_cons"])
        terms.append(f"w·cons {weighted:.5f} [cons {losses['loss_cons']:.5f}, w now {w:.3f}]")
    if "loss_l1" in losses:
        terms.append(f"l1 {losses['loss_l1']:.4f}")
    return (
        f"step {step}/{total} | epoch {step / ipe:.2f} | loss {losses['loss']:.4f} ({', '.join(terms)}) "
        f"| lr {lr:.4g} | {speed:.0f} img/s"
    )


def summary_line(summary: dict, eval_ema: bool = False) -> str:
    """The summary as test errors in % (as the paper reports), with the run directory and wall time."""

    def errors(prefix: str, label: str) -> str:
        if f"{prefix}final_test_error" not in summary:
            return f"{label}no evaluation"
        if f"{prefix}test_error_at_best_val" not in summary:
            return (
                f"{label}final test error {100 * summary[f'{prefix}final_test_error']:.2f}% "
                f"(NLL {summary[f'{prefix}final_test_nll']:.4f}) | no validation set (--val-size 0), so no "
                f"best-validation result | median test error of the last 20 evaluations "
                f"{100 * summary[f'{prefix}median_test_error_last20']:.2f}%"
            )
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


if __name__ == "__main__":
    run_main(main, prog="python -m ssl.train")
