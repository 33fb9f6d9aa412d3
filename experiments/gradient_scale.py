"""How hard each term of the SSL objective pulls on the weights, measured on a run's checkpoint.

    python experiments/gradient_scale.py runs/laptop/manifold-s0 [--batches 5] [--init]

For a few real training batches of the run (same data, split, preprocessing), the norm of the
gradient over all parameters of: the supervised mixup loss L_S; the consistency loss L_US at weight
1 as MSE between logits and as MSE between softmax outputs (the same draws of k, λ and permutation);
and the L1 term 1e-3·Σ|θ| over the first tensor or over every parameter. Ratios to |∇L_S| say
whether a term can matter at the weights the configs use (README: Recipes). ``--init`` measures a
freshly initialised network of the same config instead of the checkpoint.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # before anything imports the stdlib's ssl

import argparse
import dataclasses
import statistics

import torch
import yaml

import manifold_mixup.ssl.train as T
from manifold_mixup.common.checkpoint import load_checkpoint
from manifold_mixup.common.config import resolve_config
from manifold_mixup.common.registry import build
from manifold_mixup.common.rundir import SPLIT
from manifold_mixup.ssl.config import network_args
from manifold_mixup.ssl.data import build_data


def gradient(loss: torch.Tensor, model: torch.nn.Module) -> torch.Tensor:
    """The gradient of ``loss`` over every parameter, flattened into one vector."""
    model.zero_grad(set_to_none=True)
    loss.backward()
    return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--batches", type=int, default=5)
    parser.add_argument("--init", action="store_true", help="a fresh network instead of the checkpoint")
    args = parser.parse_args()

    saved = yaml.safe_load((args.run / "config.yaml").read_text())
    cfg = resolve_config(T.SSLConfig, None, {}, base=saved)
    cfg = dataclasses.replace(cfg, method="manifold")  # a supervised run's batches have no unlabelled part
    data = build_data(cfg, torch.device("cpu"), args.run / SPLIT, say=print)
    model = build(network_args(cfg, data.num_classes, data.channels))
    state = load_checkpoint(args.run / "checkpoint.pt")
    if not args.init:
        model.load_state_dict(state["model"])
    model.train()
    mixer = T.eligible_layers(cfg, model)
    ratios: dict[str, list[float]] = {"cons_logit": [], "cons_prob": [], "l1_first": [], "l1_all": []}
    sup_norms = []
    for b in range(args.batches):
        idx_l, idx_u = data.batches.indices(b)
        x_l = data.preprocess(data.train[idx_l], train=True)
        x_u = data.preprocess(data.train[idx_u], train=True)
        y_l = data.train_labels[idx_l]
        for consistency in ("logit", "prob"):
            c = dataclasses.replace(cfg, consistency=consistency, method="manifold")
            grads = []
            for w in (0.0, 1.0):  # identical draws: L_S alone, then L_S + 1·L_US
                torch.manual_seed(1000 + b)
                grads.append(gradient(T.train_step(mixer, model, x_l, y_l, x_u, w, c, 10)[0], model))
            g_sup = grads[0].norm()
            ratios[f"cons_{consistency}"].append(float((grads[1] - grads[0]).norm() / g_sup))
        sup_norms.append(float(g_sup))
        for scope in ("first", "all"):
            g_l1 = gradient(1e-3 * T.l1_penalty(model, scope), model).norm()
            ratios[f"l1_{scope}"].append(float(g_l1 / g_sup))
    where = "a fresh network" if args.init else f"the checkpoint at update {state['step']}"
    print(f"\n{args.run} ({where}), {args.batches} batches: |∇θ L_S| = {statistics.fmean(sup_norms):.3f}")
    print("| term | gradient norm / supervised gradient norm (mean, min–max) |\n|---|---|")
    names = {
        "cons_logit": "L_US, MSE of logits, weight 1",
        "cons_prob": "L_US, MSE of softmax outputs, weight 1",
        "l1_first": "L1 1e-3, first tensor",
        "l1_all": "L1 1e-3, every parameter",
    }
    for key, values in ratios.items():
        print(f"| {names[key]} | {statistics.fmean(values):.4f} ({min(values):.4f}–{max(values):.4f}) |")


if __name__ == "__main__":
    main()
