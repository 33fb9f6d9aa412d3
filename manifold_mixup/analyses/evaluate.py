"""Evaluate a trained classifier of ``python -m ssl.train`` on its test set (ICML paper §5.2-5.3).

    python -m analyses.evaluate runs/digits-manifold-s0                  # or .../checkpoint.pt
    python -m analyses.evaluate RUN --eps 0.031 --max-images 2000 --out eval.json
    python -m analyses.evaluate RUN --deformations table9 --weights ema
    python -m analyses.evaluate RUN --pgd-steps 200 --pgd-step-size 0.01 --pgd-eps inf --pgd-report 10,50,200
    python -m analyses.evaluate docs/results/digits/manifold-s0.json   # the table of a saved evaluation

Reports, on the test images:

- clean error and NLL (mean cross-entropy);
- expected calibration error: 15 equal-width bins of the top-class confidence, (m−1)/15 < conf ≤ m/15,
  ECE = Σ_m |B_m|/n · |accuracy(B_m) − confidence(B_m)| (Guo et al. 2017);
- white-box FGSM accuracy (Goodfellow et al. 2015; ICML Table 7): x_adv = clip(x + ε·sign(∇_x CE), 0, 1)
  with x the image in [0, 1] pixel space before normalisation and ZCA; the gradient is taken through
  the preprocessing and the network in eval mode; ε = 8/255 by default (Madry et al. 2018's setting);
- white-box unbounded PGD accuracy (ICML Appendix D, the sanity check of Athalye et al. 2018): iterated
  signed-gradient steps x_{t+1} = clip(Π_ε(x_t + step·sign(∇_x CE)), 0, 1) from x_0 = x, no random start,
  200 iterations of step 0.01 and ε = ∞ (no projection Π_ε, only the pixel range) by default; the accuracy on
  x_t is reported after each of a few iteration counts t (10, 50, 200). A defence that only masks gradients
  keeps its accuracy here; a real one falls to about 0 (the paper: 1% input mixup, 0% manifold mixup);
- accuracy under the novel deformations of ICML Table 5 (``table9``: all of Appendix Table 9): rotation
  by an angle ~ U(−a, a), shear by an angle ~ U(−a, a), zoom in / out by a fixed factor (centre box of k%
  of the side, resized to the full image; outside the image is black); bilinear, in pixel space;
- k-NN accuracy on the penultimate features (the input of the network's last linear layer): k = 5,
  cosine similarity, majority vote with ties going to the nearest neighbour's class; the neighbours are
  the run's labelled training images (``--knn-train all``: every non-validation training image with
  its label).

Preprocessing is the run's own: ``build_data`` of ssl/data.py rebuilt from the saved config and the
run's split.npz, so ZCA is fitted on the same images as in training.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from manifold_mixup.common.augment import Preprocess
from manifold_mixup.common.checkpoint import load_checkpoint
from manifold_mixup.common.cli import ArgumentParser, integer, positive_int, run_main
from manifold_mixup.common.config import UsageError, load_yaml, resolve_config
from manifold_mixup.common.device import resolve_device
from manifold_mixup.common.outputs import check_output_file, write_atomic
from manifold_mixup.common.registry import build
from manifold_mixup.common.rundir import CHECKPOINT, CONFIG, EVALUATION, SPLIT
from manifold_mixup.ssl.config import SSLConfig, network_args
from manifold_mixup.ssl.data import build_data

ECE_BINS = 15
KNN_K = 5
DEFAULT_EPS = "8/255"
PGD_STEPS = 200  # ICML Appendix D: "PGD for 200 iterations with a step size of 0.01"
PGD_STEP_SIZE = "0.01"
PGD_EPS = "inf"  # unbounded: only the pixel range [0, 1] constrains the image
PGD_REPORT = "10,50,200"
RESULT = EVALUATION


@dataclasses.dataclass(frozen=True)
class Deformation:
    """kind: rotation / shear (``value`` = the half-width of the uniform angle range, degrees) or
    zoom (``value`` = the side of the centre box as a fraction of the image: < 1 zooms in, > 1 out)."""

    kind: str
    value: float

    @property
    def name(self) -> str:
        if self.kind == "zoom":
            return f"zoom {'in' if self.value < 1 else 'out'} {round(self.value * 100)}%"
        return f"{self.kind} U(-{self.value:g}°, {self.value:g}°)"


# ICML Table 5, and Appendix Table 9 (the shear ranges are 0.5, 1, 2, 2.5, 3 radians).
TABLE5 = (
    Deformation("rotation", 20),
    Deformation("rotation", 40),
    Deformation("shear", 28.6),
    Deformation("shear", 57.3),
    Deformation("zoom", 0.6),
    Deformation("zoom", 0.8),
    Deformation("zoom", 1.2),
    Deformation("zoom", 1.4),
)
TABLE9 = (
    *(Deformation("rotation", a) for a in (20, 40, 60, 80)),
    *(Deformation("shear", a) for a in (28.6, 57.3, 114.6, 143.2, 171.9)),
    *(Deformation("zoom", k) for k in (0.2, 0.4, 0.6, 0.8, 1.2, 1.4, 1.6, 1.8)),
)
DEFORMATION_SETS = {"table5": TABLE5, "table9": TABLE9, "none": ()}  # none: NLL, ECE, FGSM and k-NN only


# ---------------------------------------------------------------------------------------------
# The measurements, each a small function of tensors


def network_input(preprocess: Preprocess, x: Tensor) -> Tensor:
    """Images in [0, 1] (B, C, H, W), float -> network input: the run's normalisation and ZCA, differentiable."""
    mean = torch.tensor(preprocess.mean, device=x.device).view(1, -1, 1, 1)
    std = torch.tensor(preprocess.std, device=x.device).view(1, -1, 1, 1)
    z = (x - mean) / std
    return preprocess.zca(z) if preprocess.zca is not None else z


def fgsm(model: nn.Module, preprocess: Preprocess, x: Tensor, y: Tensor, eps: float) -> Tensor:
    """One white-box FGSM step in pixel space: clip(x + eps·sign(∇_x CE(model(x), y)), 0, 1)."""
    x = x.detach().clone().requires_grad_(True)
    loss = F.cross_entropy(model(network_input(preprocess, x)).float(), y, reduction="sum")
    (grad,) = torch.autograd.grad(loss, x)
    return (x + eps * grad.sign()).clamp(0, 1).detach()


def pgd(
    model: nn.Module,
    preprocess: Preprocess,
    x: Tensor,
    y: Tensor,
    *,
    eps: float,
    step_size: float,
    steps: int,
    report: Sequence[int] = (),
) -> dict[int, Tensor]:
    """L∞ PGD in pixel space from x_0 = x (no random start; Madry et al. 2018, unbounded when eps = inf):

        x_{t+1} = clip(clip(x_t + step_size·sign(∇_x CE(model(x_t), y)), x − eps, x + eps), 0, 1)

    Returns {t: (B,) bool, whether x_t is classified as y} for each t in ``report`` (0 <= t <= steps),
    the model in whatever mode it is in (eval for the white-box check).
    """
    want = sorted(set(report))
    if any(not 0 <= t <= steps for t in want):
        raise ValueError(f"report counts must be in [0, {steps}], got {list(report)}")
    x0 = x.detach()
    xt = x0.clone()
    correct: dict[int, Tensor] = {}
    for t in range(steps + 1):
        xt.requires_grad_(True)
        logits = model(network_input(preprocess, xt)).float()
        if t in want:
            correct[t] = (logits.argmax(1) == y).detach()
        if t == steps:
            break
        (grad,) = torch.autograd.grad(F.cross_entropy(logits, y, reduction="sum"), xt)
        with torch.no_grad():
            xt = xt + step_size * grad.sign()
            if math.isfinite(eps):
                xt = torch.minimum(torch.maximum(xt, x0 - eps), x0 + eps)
            xt = xt.clamp(0, 1)
    return correct


def deformation_matrix(d: Deformation, u: Tensor) -> Tensor:
    """(B, 2, 2) maps from output to input pixel coordinates (x right, y down, about the centre).

    ``u`` (B,) ~ U(−1, 1) scales the angle range. Rotation by φ = u·a; shear by φ = u·a turns the image's
    vertical axis by φ keeping lengths, (x, y) <- (x − sin φ·y, cos φ·y) (the shear of Keras's
    ImageDataGenerator with an angle in radians, which the paper's ranges 0.5 ... 3 rad suggest); zoom by
    k samples the centre box of side k·size: (x, y) <- (k·x, k·y).
    """
    b = len(u)
    if d.kind == "zoom":
        return torch.eye(2, dtype=u.dtype).expand(b, 2, 2) * d.value
    phi = u * math.radians(d.value)
    c, s = phi.cos(), phi.sin()
    one, zero = torch.ones_like(phi), torch.zeros_like(phi)
    if d.kind == "rotation":
        rows = [[c, -s], [s, c]]
    elif d.kind == "shear":
        rows = [[one, -s], [zero, c]]
    else:
        raise ValueError(f"unknown deformation kind {d.kind!r}")
    return torch.stack([torch.stack(r, -1) for r in rows], -2)


def deform(x: Tensor, d: Deformation, u: Tensor) -> Tensor:
    """Apply ``d`` with per-image draws ``u`` (B,) in [−1, 1] to images x in [0, 1] (B, C, H, W).

    Bilinear sampling about the image centre, black (0) outside the image; the output stays in [0, 1].
    """
    b, _, h, w = x.shape
    a = deformation_matrix(d, u.to(torch.float64))
    # pixel coordinates about the centre = diag(w/2, h/2) · grid_sample's normalised coordinates
    scale = torch.tensor([w / 2, h / 2], dtype=torch.float64)
    theta = a * scale.view(1, 1, 2) / scale.view(1, 2, 1)  # D⁻¹ A D
    theta = torch.cat([theta, torch.zeros(b, 2, 1, dtype=torch.float64)], 2).to(x)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False).clamp(0, 1)


def deformation_draws(n: int, seed: int) -> Tensor:
    """u ~ U(−1, 1) per test image from a generator seeded with ``seed`` (the same u for every deformation)."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, generator=g, dtype=torch.float64) * 2 - 1


def expected_calibration_error(probs: Tensor, labels: Tensor, bins: int = ECE_BINS) -> float:
    """Σ_m |B_m|/n · |acc(B_m) − conf(B_m)| over equal-width bins (m−1)/bins < conf ≤ m/bins of the top probability."""
    conf, pred = probs.float().max(1)
    correct = (pred == labels).float()
    idx = (conf * bins).ceil().long().clamp(1, bins) - 1
    conf_sum = torch.zeros(bins).index_add_(0, idx.cpu(), conf.cpu())
    acc_sum = torch.zeros(bins).index_add_(0, idx.cpu(), correct.cpu())
    return float((conf_sum - acc_sum).abs().sum() / max(len(conf), 1))  # |B_m|·|conf − acc| summed, over n


def knn_predict(train_feats: Tensor, train_labels: Tensor, test_feats: Tensor, k: int, num_classes: int) -> Tensor:
    """Cosine-similarity k-NN majority vote; a tie goes to the class of the nearest neighbour among the tied."""
    a = F.normalize(train_feats.float(), dim=1)
    k = min(k, len(a))
    preds = []
    for chunk in test_feats.float().split(1024):
        sim = F.normalize(chunk, dim=1) @ a.T
        top = sim.topk(k, dim=1).indices  # sorted, nearest first
        labels = train_labels[top]
        votes = torch.zeros(len(chunk), num_classes, device=chunk.device).scatter_add_(
            1, labels, torch.ones_like(labels, dtype=torch.float)
        )
        votes.scatter_add_(1, labels[:, :1], torch.full_like(labels[:, :1], 0.5, dtype=torch.float))
        preds.append(votes.argmax(1))
    return torch.cat(preds)


class Penultimate:
    """Records the input of the network's last ``nn.Linear`` (the penultimate features) on each forward."""

    def __init__(self, model: nn.Module):
        linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
        if not linears:
            raise UsageError("the network has no linear output layer, so it has no penultimate features for k-NN")
        self.features: Tensor | None = None
        self.handle = linears[-1].register_forward_hook(self._hook)

    def _hook(self, module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        self.features = inputs[0].detach()


# ---------------------------------------------------------------------------------------------
# Loading a run


def parse_eps(text: str) -> float:
    """``8/255``, ``0.031``: a number in [0, 1], the L∞ radius in [0, 1] pixel units."""
    try:
        eps = float(Fraction(text.strip()))
    except (ValueError, ZeroDivisionError):
        raise UsageError(f"--eps: expected a number or a fraction such as 8/255, got {text!r}") from None
    if not 0 <= eps <= 1:
        raise UsageError(f"--eps {text}: must be in [0, 1] (pixels are in [0, 1]; 8/255 is Madry et al.'s)")
    return eps


def parse_pgd(eps_text: str, step_text: str, steps_text: str, report_text: str) -> tuple[float, float, int, list[int]]:
    """The PGD flags -> (eps, step size, iterations, report counts); ``--pgd-steps 0`` turns PGD off."""
    if eps_text.strip().lower() in ("inf", "none", "unbounded"):
        eps = math.inf
    else:
        try:
            eps = float(Fraction(eps_text.strip()))
        except (ValueError, ZeroDivisionError):
            raise UsageError(f"--pgd-eps: expected inf or a number such as 8/255, got {eps_text!r}") from None
        if not 0 <= eps <= 1:
            raise UsageError(f"--pgd-eps {eps_text}: must be inf or in [0, 1] (pixels are in [0, 1])")
    try:
        step_size = float(Fraction(step_text.strip()))
    except (ValueError, ZeroDivisionError):
        raise UsageError(f"--pgd-step-size: expected a number such as 0.01, got {step_text!r}") from None
    if not 0 < step_size <= 1:
        raise UsageError(f"--pgd-step-size {step_text}: must be in (0, 1] (pixel units; the paper's is 0.01)")
    if not steps_text.strip().isdigit():
        raise UsageError(f"--pgd-steps: expected a non-negative integer (0 turns PGD off), got {steps_text!r}")
    steps = int(steps_text)
    try:
        report = sorted({int(t) for t in report_text.split(",") if t.strip()} | ({steps} if steps else set()))
    except ValueError:
        raise UsageError(
            f"--pgd-report: expected comma-separated iteration counts like 10,50,200, got {report_text!r}"
        ) from None
    report = [t for t in report if t <= steps] if steps else []
    if any(t < 1 for t in report):
        raise UsageError(f"--pgd-report {report_text}: iteration counts must be positive")
    return eps, step_size, steps, report


def locate_run(path: str) -> tuple[Path, Path]:
    """RUN_DIR or RUN_DIR/checkpoint.pt -> (run directory, checkpoint file)."""
    p = Path(path)
    if not p.exists():
        raise UsageError(f"{p} does not exist; give a run directory of python -m ssl.train or its {CHECKPOINT}")
    run_dir, ckpt = (p, p / CHECKPOINT) if p.is_dir() else (p.parent, p)
    if not ckpt.is_file():
        raise UsageError(f"{run_dir} has no {CHECKPOINT} (has the run saved one yet?)")
    if not (run_dir / CONFIG).is_file():
        raise UsageError(f"{run_dir} has no {CONFIG} beside the checkpoint: not a run directory of python -m ssl.train")
    return run_dir, ckpt


def load_run(run_dir: Path, ckpt: Path, device: torch.device) -> tuple[SSLConfig, dict[str, Any]]:
    """The run's SSLConfig and checkpoint, refusing anything that is not a classifier run."""
    saved = load_yaml(run_dir / CONFIG)
    not_classifier = f"{run_dir} is not a classifier run of python -m ssl.train"
    if not isinstance(saved, dict) or "dataset" not in saved or not ({"depth", "arch"} & set(saved)):
        raise UsageError(f"{not_classifier} ({CONFIG} has no dataset and network fields; a GAN run?)")
    try:
        cfg = resolve_config(SSLConfig, base=saved)
    except UsageError as e:
        raise UsageError(f"{not_classifier} ({e})") from None
    state = load_checkpoint(ckpt, device)
    if not isinstance(state, dict) or not isinstance(state.get("model"), dict):
        raise UsageError(f"{ckpt} holds no classifier weights ('model'); is it a checkpoint of python -m ssl.train?")
    return cfg, state


@dataclasses.dataclass
class LoadedRun:
    """A trained classifier of ``python -m ssl.train`` with the run's own data and preprocessing."""

    run_dir: Path
    ckpt: Path
    cfg: SSLConfig
    state: dict[str, Any]
    data: Any  # ssl.data's Data: test, test_labels, train, split, preprocess, num_classes, channels
    model: nn.Module  # in eval mode, on the device


def load_classifier(path: str, device: torch.device, weights: str = "model", data_dir: str | None = None) -> LoadedRun:
    """RUN_DIR or RUN_DIR/checkpoint.pt -> the network with its ``weights`` ("model" or "ema") and the run's data.

    The data and preprocessing are rebuilt from the run's split.npz (as on --resume), so ZCA is fitted on the same
    images as in training. Anything that is not a classifier run is a one-line UsageError.
    """
    run_dir, ckpt = locate_run(path)
    cfg, state = load_run(run_dir, ckpt, device)
    if data_dir is not None:
        cfg = dataclasses.replace(cfg, data_dir=data_dir)
    chosen = state.get(weights)
    if not isinstance(chosen, dict):
        raise UsageError(f"{ckpt} has no {weights!r} weights (train with --eval-ema true to keep an EMA)")
    saved_split = run_dir / SPLIT if (run_dir / SPLIT).is_file() else None
    data = build_data(cfg, device, saved_split, say=lambda *a, **kw: None)
    model = build(state.get("model_args") or network_args(cfg, data.num_classes, data.channels)).to(device)
    try:
        model.load_state_dict(chosen)
    except RuntimeError as e:
        raise UsageError(f"{ckpt}: weights do not fit the network of {CONFIG} ({str(e).splitlines()[0]})") from None
    return LoadedRun(run_dir, ckpt, cfg, state, data, model.eval())


# ---------------------------------------------------------------------------------------------


def get_args_parser() -> ArgumentParser:
    p = ArgumentParser(
        prog="python -m analyses.evaluate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "run",
        metavar="RUN_DIR_OR_CHECKPOINT",
        help="a run directory of ssl.train or its checkpoint.pt; or a saved evaluation (.json) to print",
    )
    p.add_argument("--data-dir", default=None, help="dataset folder (default: the run's data_dir)")
    p.add_argument("--eps", default=DEFAULT_EPS, help=f"FGSM L∞ radius in [0, 1] pixel units (default: {DEFAULT_EPS})")
    p.add_argument("--out", default=None, metavar="FILE.json", help=f"where to write the JSON (default: RUN/{RESULT})")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file (or RUN/evaluation.json)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda[:N] or mps (default: auto)")
    p.add_argument("--batch-size", default=None, help="images per forward pass (default: the run's eval_batch_size)")
    p.add_argument("--max-images", default=None, help="evaluate on the first N test images only (default: all)")
    p.add_argument("--seed", default="0", help="seed of the deformations' random angles (default: 0)")
    p.add_argument("--weights", choices=("model", "ema"), default="model", help="the trained or the EMA weights")
    p.add_argument(
        "--pgd-steps", default=str(PGD_STEPS), help=f"PGD iterations, 0 = off (default: {PGD_STEPS}, ICML App. D)"
    )
    p.add_argument("--pgd-step-size", default=PGD_STEP_SIZE, help=f"PGD step in pixel units (default: {PGD_STEP_SIZE})")
    p.add_argument("--pgd-eps", default=PGD_EPS, help=f"PGD L∞ radius, inf = unbounded (default: {PGD_EPS})")
    p.add_argument(
        "--pgd-report",
        default=PGD_REPORT,
        help=f"iteration counts to report; those above --pgd-steps are dropped (default: {PGD_REPORT})",
    )
    p.add_argument(
        "--deformations", choices=tuple(DEFORMATION_SETS), default="table5", help="ICML Table 5 or 9, or none"
    )
    p.add_argument("--knn-k", default=str(KNN_K), help=f"neighbours of the k-NN vote (default: {KNN_K})")
    p.add_argument(
        "--knn-train",
        choices=("labelled", "all"),
        default="labelled",
        help="k-NN reference set: the run's labelled images or every non-validation training image (default: labelled)",
    )
    return p


@torch.no_grad()
def clean_pass(
    model: nn.Module, hook: Penultimate, preprocess: Preprocess, x: Tensor, bs: int
) -> tuple[Tensor, Tensor]:
    """(logits (N, classes), penultimate features (N, D)) of images x in [0, 1]."""
    logits, feats = [], []
    for chunk in x.split(bs):
        logits.append(model(network_input(preprocess, chunk)).float())
        feats.append(hook.features)
    return torch.cat(logits), torch.cat(feats)


@torch.no_grad()
def accuracy(model: nn.Module, preprocess: Preprocess, x: Tensor, y: Tensor, bs: int) -> float:
    correct = sum(
        (model(network_input(preprocess, xb)).argmax(1) == yb).sum().item() for xb, yb in zip(x.split(bs), y.split(bs))
    )
    return correct / len(y)


def check_flags(args: Any) -> tuple[float, tuple[float, float, int, list[int]], int | None, int, int, int | None]:
    """(eps, (PGD eps, step, steps, report), max images, k, seed, batch size) from the flags; a bad one is a
    UsageError."""
    eps = parse_eps(args.eps)
    pgd = parse_pgd(args.pgd_eps, args.pgd_step_size, args.pgd_steps, args.pgd_report)
    max_images = positive_int(args.max_images, "--max-images", None)
    k = positive_int(args.knn_k, "--knn-k", KNN_K)
    seed = integer(args.seed, "--seed")
    batch_size = positive_int(args.batch_size, "--batch-size", None)
    return eps, pgd, max_images, k, seed, batch_size


def evaluate_run(args: Any) -> dict[str, Any]:
    """Everything the command reports, as the JSON-ready mapping."""
    eps, (pgd_eps, pgd_step, pgd_steps, pgd_report), max_images, k, seed, batch_size = check_flags(args)
    device = resolve_device(args.device)
    run = load_classifier(args.run, device, args.weights, args.data_dir)
    run_dir, ckpt, cfg, state, data, model = run.run_dir, run.ckpt, run.cfg, run.state, run.data, run.model
    bs = batch_size or cfg.eval_batch_size
    hook = Penultimate(model)

    n = len(data.test_labels) if max_images is None else min(max_images, len(data.test_labels))
    x = data.test[:n].float() / 255
    y = data.test_labels[:n]

    logits, test_feats = clean_pass(model, hook, data.preprocess, x, bs)
    probs = logits.softmax(1)
    clean_acc = (logits.argmax(1) == y).sum().item() / n  # counts / n: exact ratios
    nll = F.cross_entropy(logits, y).item()
    ece = expected_calibration_error(probs, y)

    adv_correct = 0
    for xb, yb in zip(x.split(bs), y.split(bs)):
        x_adv = fgsm(model, data.preprocess, xb, yb, eps)
        with torch.no_grad():
            adv_correct += (model(network_input(data.preprocess, x_adv)).argmax(1) == yb).sum().item()

    pgd_correct = dict.fromkeys(pgd_report, 0)
    for xb, yb in zip(x.split(bs), y.split(bs)) if pgd_steps else ():
        for t, c in pgd(
            model, data.preprocess, xb, yb, eps=pgd_eps, step_size=pgd_step, steps=pgd_steps, report=pgd_report
        ).items():
            pgd_correct[t] += c.sum().item()

    u = deformation_draws(n, seed)
    deformations = DEFORMATION_SETS[args.deformations]
    deformed = {}
    for d in deformations:
        xd = torch.cat([deform(xb, d, ub) for xb, ub in zip(x.split(bs), u.split(bs))])
        deformed[d.name] = accuracy(model, data.preprocess, xd, y, bs)

    ref = data.split.labelled if args.knn_train == "labelled" else data.split.unlabelled
    ref_idx = torch.as_tensor(ref, device=device)
    _, train_feats = clean_pass(model, hook, data.preprocess, data.train[ref_idx].float() / 255, bs)
    knn = knn_predict(train_feats, data.train_labels[ref_idx], test_feats, k, data.num_classes)
    knn_acc = (knn == y).sum().item() / n
    hook.handle.remove()

    return {
        "run": str(run_dir),
        "checkpoint": str(ckpt),
        "step": state.get("step"),
        "weights": args.weights,
        "dataset": cfg.dataset,
        "results": {
            "clean_error": 1 - clean_acc,
            "clean_acc": clean_acc,
            "nll": nll,
            "ece": ece,
            "fgsm_acc": adv_correct / n,
            "pgd_acc": {str(t): c / n for t, c in pgd_correct.items()},
            "knn_acc": knn_acc,
            "deformation_acc": deformed,
        },
        "protocol": {
            "test_images": n,
            "test_images_total": len(data.test_labels),
            "input_range": "pixels in [0, 1] before normalisation/ZCA; the run's preprocessing after",
            "fgsm": {
                "eps": eps,
                "eps_text": args.eps,
                "norm": "Linf",
                "steps": 1,
                "rule": "clip(x + eps*sign(grad_x CE), 0, 1), white-box, eval mode",
            },
            "pgd": {
                "eps": None if math.isinf(pgd_eps) else pgd_eps,
                "eps_text": args.pgd_eps,
                "step_size": pgd_step,
                "steps": pgd_steps,
                "report": pgd_report,
                "norm": "Linf",
                "rule": "x_{t+1} = clip(clip(x_t + step*sign(grad_x CE), x-eps, x+eps), 0, 1), x_0 = x, "
                "no random start; eps null = unbounded (pixel range only); accuracy on x_t",
            },
            "ece": {"bins": ECE_BINS, "binning": "equal-width on the top-class probability"},
            "deformations": {
                "set": args.deformations,
                "seed": seed,
                "sampling": "u ~ U(-1, 1) per image from torch.Generator(seed), the same u for every deformation",
                "interpolation": "bilinear, black outside the image",
                "list": [dataclasses.asdict(d) | {"name": d.name} for d in deformations],
            },
            "knn": {
                "k": min(k, len(ref)),
                "metric": "cosine",
                "features": "input of the last linear layer (penultimate)",
                "train": args.knn_train,
                "train_images": len(ref),
                "vote": "majority; ties to the nearest neighbour's class",
            },
            "batch_size": bs,
            "device": str(device),
        },
    }


def format_table(result: dict[str, Any]) -> str:
    r, p = result["results"], result["protocol"]
    knn = p["knn"]
    rows = [
        ("clean error", f"{100 * r['clean_error']:.2f}%"),
        ("clean NLL", f"{r['nll']:.4f}"),
        (f"ECE ({p['ece']['bins']} bins)", f"{100 * r['ece']:.2f}%"),
        (f"FGSM accuracy (eps {p['fgsm']['eps_text']} = {p['fgsm']['eps']:.4f})", f"{100 * r['fgsm_acc']:.2f}%"),
    ]
    pgd_p = p.get("pgd", {})
    bound = "unbounded" if pgd_p.get("eps") is None else f"eps {pgd_p.get('eps_text')}"
    rows += [
        (f"PGD accuracy ({bound}, step {pgd_p['step_size']:g}, {t} iterations)", f"{100 * acc:.2f}%")
        for t, acc in r.get("pgd_acc", {}).items()
    ]
    rows += [
        (f"{knn['k']}-NN accuracy (cosine, {knn['train_images']} {knn['train']})", f"{100 * r['knn_acc']:.2f}%"),
    ]
    rows += [(f"accuracy, {name}", f"{100 * acc:.2f}%") for name, acc in r["deformation_acc"].items()]
    width = max(len(a) for a, _ in rows)
    head = (
        f"{result['checkpoint']} (step {result['step']}, {result['weights']} weights), "
        f"{p['test_images']} {result['dataset']} test images"
    )
    return "\n".join([head, *(f"  {a:<{width}}  {b:>8}" for a, b in rows)])


def output_path(args: argparse.Namespace) -> Path:
    """Where the JSON goes, checked before any work: ``--out`` or RUN/evaluation.json (common/outputs.py)."""
    if args.out is not None:
        return check_output_file(args.out, overwrite=args.overwrite, suffixes=(".json",), inputs=(args.run,))
    run = Path(args.run)
    run_dir = run if run.is_dir() else run.parent
    return check_output_file(run_dir / RESULT, "the result file", overwrite=args.overwrite)


def saved_result(path: Path) -> dict[str, Any]:
    """The evaluation in a saved JSON: this command's own file, or a run's record of ``common.report --archive``."""
    try:
        saved = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UsageError(f"{path}: not a readable JSON file ({e})") from None
    if isinstance(saved, dict) and isinstance(saved.get("evaluation"), dict):  # an archived run's record
        saved = saved["evaluation"]
    if not (isinstance(saved, dict) and {"results", "protocol"} <= saved.keys()):
        raise UsageError(f"{path} holds no evaluation of python -m analyses.evaluate; evaluate the run first")
    return saved


def main(argv: Sequence[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    if args.run.endswith(".json") and Path(args.run).is_file():  # the table of a saved evaluation, nothing run
        print(format_table(saved_result(Path(args.run))))
        return 0
    check_flags(args)  # the flags, then a missing run, then the output path: before any work
    locate_run(args.run)
    out = output_path(args)
    result = evaluate_run(args)
    write_atomic(out, json.dumps(result, indent=2) + "\n")
    print(format_table(result))
    print(f"written: {out}")
    return 0


if __name__ == "__main__":
    run_main(main, prog="python -m analyses.evaluate")
