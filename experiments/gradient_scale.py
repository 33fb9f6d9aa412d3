"""How hard each term of the SSL objective pulls on the weights, measured on a run's checkpoint.

    python experiments/gradient_scale.py runs/laptop/manifold-s0 [--batches 5] [--init] [--json FILE]
    python experiments/gradient_scale.py --show docs/results/gradient-scale/*.json   # the table, from saved runs

For a few real training batches of the run (same data, split, preprocessing), the norm of the
gradient over all parameters of: the supervised mixup loss L_S; the consistency loss L_US at weight
1 as MSE between logits and as MSE between softmax outputs (the same draws of k, λ and permutation);
the L1 term 1e-3·Σ|θ| over the first tensor or over every parameter; and L_S computed as the released
supervised code's BCE of the softmax against the mixed one-hot (issue #24, item 3). Ratios to |∇L_S| say
whether a term can matter at the weights the configs use (README: Recipes). ``--init`` measures a
freshly initialised network of the same config instead of the checkpoint.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # before anything imports the stdlib's ssl

import argparse
import dataclasses
import json
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


NAMES = {
    "cons_logit": "consistency, MSE of logits, weight 1",
    "cons_prob": "consistency, MSE of softmax outputs, weight 1",
    "l1_first": "L1 1e-3, first tensor",
    "l1_all": "L1 1e-3, every parameter",
    "bce": "L_S as the released code's BCE(softmax, mixed one-hot), relative to soft cross-entropy",
}


def measure(run: Path, batches: int = 5, init: bool = False) -> dict:
    """The record of one measurement: per batch, |∇θ L_S| and each term's |∇θ term| / |∇θ L_S| (:data:`NAMES`;
    ``bce`` is |∇θ L_S,BCE| / |∇θ L_S,CE| at the same draws), with the run, its update and commit."""
    saved = yaml.safe_load((run / "config.yaml").read_text())
    cfg = resolve_config(T.SSLConfig, None, {}, base=saved)
    cfg = dataclasses.replace(cfg, method="manifold", loss="ce")  # a supervised run's batches have no unlabelled part
    data = build_data(cfg, torch.device("cpu"), run / SPLIT, say=print)
    model = build(network_args(cfg, data.num_classes, data.channels))
    state = load_checkpoint(run / "checkpoint.pt")
    if not init:
        model.load_state_dict(state["model"])
    model.train()
    mixer = T.eligible_layers(cfg, model)
    ratios: dict[str, list[float]] = {key: [] for key in NAMES}
    sup_norms = []

    def step_gradient(c: T.SSLConfig, w: float, b: int) -> torch.Tensor:
        torch.manual_seed(1000 + b)  # identical draws of k, λ and the permutation for every variant
        return gradient(T.train_step(mixer, model, x_l, y_l, x_u, w, c, data.num_classes)[0], model)

    for b in range(batches):
        idx_l, idx_u = data.batches.indices(b)
        x_l = data.preprocess(data.train[idx_l], train=True)
        x_u = data.preprocess(data.train[idx_u], train=True)
        y_l = data.train_labels[idx_l]
        g_sup = step_gradient(cfg, 0.0, b)
        for consistency in ("logit", "prob"):  # L_S + 1·L_US minus L_S alone
            g_both = step_gradient(dataclasses.replace(cfg, consistency=consistency), 1.0, b)
            ratios[f"cons_{consistency}"].append(float((g_both - g_sup).norm() / g_sup.norm()))
        ratios["bce"].append(float(step_gradient(dataclasses.replace(cfg, loss="bce"), 0.0, b).norm() / g_sup.norm()))
        sup_norms.append(float(g_sup.norm()))
        for scope in ("first", "all"):
            g_l1 = gradient(1e-3 * T.l1_penalty(model, scope), model).norm()
            ratios[f"l1_{scope}"].append(float(g_l1 / g_sup.norm()))
    summary = json.loads((run / "summary.json").read_text()) if (run / "summary.json").is_file() else {}
    return {
        "run": str(run),
        "where": "a fresh network" if init else f"the checkpoint at update {state['step']}",
        "commit": (summary.get("provenance") or {}).get("commit"),
        "batches": batches,
        "sup_norm": sup_norms,
        "ratios": ratios,
    }


def table(records: list[dict]) -> str:
    """Rows: the terms; one column per record: mean (min–max) over its batches."""
    head = ["term", *(f"{Path(r['run']).name}, {r['where']}" for r in records)]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---|" * len(records)]
    for key, name in NAMES.items():
        cells = []
        for r in records:
            values = r["ratios"].get(key)
            cells.append(f"{statistics.fmean(values):.4f} ({min(values):.4f}–{max(values):.4f})" if values else "—")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    norms = [f"{statistics.fmean(r['sup_norm']):.3f}" for r in records]
    lines.append("| (‖∇θ L_S‖, the denominator) | " + " | ".join(norms) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, nargs="?", help="a run directory with config.yaml, split.npz, checkpoint.pt")
    parser.add_argument("--batches", type=int, default=5)
    parser.add_argument("--init", action="store_true", help="a fresh network instead of the checkpoint")
    parser.add_argument("--json", type=Path, default=None, help="also write the measurement to this file")
    parser.add_argument("--show", type=Path, nargs="+", default=None, help="print the table of saved --json files")
    args = parser.parse_args(argv)
    if args.show:
        print(table([json.loads(p.read_text()) for p in args.show]))
        return
    if args.run is None:
        parser.error("name a run directory, or --show saved measurements")
    if args.json is not None and args.json.exists():
        parser.error(f"--json {args.json} exists; remove it or name another file")
    record = measure(args.run, args.batches, args.init)
    print(table([record]))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
