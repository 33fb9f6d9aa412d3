"""Test NLL along input-space and hidden-space interpolations (preprint Figure 1).

    python -m analyses.interpolation --train runs/interp --out docs/interpolation.png  # trains 3 digits models first
    python -m analyses.interpolation RUN_NONE RUN_INPUT RUN_MANIFOLD --out interp.png # any classifier runs of ssl.train

For pairs (a, b) of test images and λ on a grid in [0, 1], run the network to mixing point k, mix the two
states, h̃ = λ·h_k(a) + (1−λ)·h_k(b), run the rest of the network and take the cross-entropy against the
interpolated target ỹ = λ·y_a + (1−λ)·y_b: NLL(k, λ) = mean over pairs of −Σ ỹ log softmax(f_k(h̃)). k = pixel is
input-space interpolation (on the network input after the run's normalisation and ZCA, which are affine, so the
same as mixing pixels); k = h1, h2, ... are the hidden states of every mixing point of the network. The paper's
claim: Manifold Mixup lowers this NLL along hidden interpolations far more than Input Mixup does, and changes it
little along input interpolations.

``--train DIR`` first trains the three digits models with ``python -m ssl.train`` (configs/ssl/digits.yaml,
fully supervised: ``--labels all``; no mixup, Input Mixup α 1.0, Manifold Mixup α 2.0 at pixel, h1, h2;
``--epochs`` × 100 updates each, about a minute per model on one CPU thread) into DIR/none, DIR/input and
DIR/manifold, reusing those that already hold a checkpoint.pt. Writes the figure and a JSON of the curves beside it.
"""

from __future__ import annotations

import io
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from manifold_mixup.analyses.evaluate import LoadedRun, load_classifier, network_input
from manifold_mixup.common.cli import (
    ArgumentParser,
    command_line,
    integer,
    output_path,
    positive_int,
    run_main,
    write_json_beside,
)
from manifold_mixup.common.config import UsageError
from manifold_mixup.common.device import resolve_device
from manifold_mixup.common.layers import LayerMixup
from manifold_mixup.common.mixup import Mix
from manifold_mixup.common.rundir import CHECKPOINT

DIGITS_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "ssl" / "digits.yaml"
# name -> ssl.train flags of the three digits models (fully supervised, Appendix C.1's α for each method)
DIGITS_METHODS: dict[str, tuple[str, ...]] = {
    "none": ("--method", "supervised"),
    "input": ("--method", "input", "--alpha-sup", "1.0"),
    "manifold": ("--method", "manifold", "--alpha-sup", "2.0"),
}


def train_digits_runs(out: Path, *, epochs: int = 15, seed: int = 0, methods: Sequence[str] = tuple(DIGITS_METHODS)):
    """Train (or reuse) the digits models of ``DIGITS_METHODS`` with ssl.train; returns their run directories."""
    from manifold_mixup.ssl.train import main as train_main

    milestones = f"{max(1, round(epochs * 2 / 3))},{max(1, round(epochs * 5 / 6))}"
    runs = []
    for name in methods:
        run = out / name
        if not (run / CHECKPOINT).is_file():
            argv = ["--config", str(DIGITS_CONFIG), "--labels", "all", *DIGITS_METHODS[name], "--seed", str(seed)]
            argv += ["--epochs", str(epochs), "--lr-milestones", milestones, "--device", "cpu", "--out", str(run)]
            print(f"training {run}: python -m ssl.train {' '.join(argv)}", file=sys.stderr, flush=True)
            train_main(argv)
        runs.append(run)
    return runs


def mix_points(run: LoadedRun) -> list[str]:
    """Every mixing point of the network (a StagedNet's pixel, h1, ...), else the run's own --mix-points."""
    points = getattr(run.model, "mix_points", None)
    return list(points) if points else ["pixel", *[p for p in run.cfg.mix_points or () if p not in ("pixel", "input")]]


def pairs(n: int, count: int, seed: int) -> tuple[Tensor, Tensor]:
    """``count`` pairs (a, b) of distinct test indices from a generator seeded with ``seed``."""
    g = torch.Generator().manual_seed(seed)
    a = torch.randint(0, n, (count,), generator=g)
    b = (a + torch.randint(1, n, (count,), generator=g)) % n  # never a itself
    return a, b


@torch.no_grad()
def interpolation_nll(
    mixer: LayerMixup, inputs_a: Tensor, inputs_b: Tensor, y_a: Tensor, y_b: Tensor, num_classes: int, lams: Tensor
) -> Tensor:
    """(points, len(lams)) mean NLL against ỹ = λ·y_a + (1−λ)·y_b of the network at h̃ = λ·h_k(a) + (1−λ)·h_k(b).

    ``inputs_a``, ``inputs_b``: network inputs (B, ...) of the pairs; one batch of 2B per (point, λ).
    """
    b = len(inputs_a)
    x = torch.cat([inputs_a, inputs_b])
    onehot = F.one_hot(torch.cat([y_a, y_b]), num_classes).float()
    perm = torch.cat([torch.arange(b, 2 * b), torch.arange(b)]).to(x.device)
    out = torch.zeros(len(mixer.names), len(lams))
    for k in mixer.points:
        for i, lam in enumerate(lams.tolist()):
            logits, target = mixer(x, onehot, Mix(point=k, lam=torch.tensor(lam, dtype=torch.float64), perm=perm))
            nll = -(target[:b] * F.log_softmax(logits[:b].float(), 1)).sum(1)
            out[k, i] = nll.mean().item()
    return out


def study(run: LoadedRun, *, count: int, grid: int, seed: int, batch_size: int) -> dict:
    """The curves of one run: {"points": [...], "lams": [...], "nll": {point: [...]}, ...}."""
    data = run.data
    n = len(data.test_labels)
    a, b = pairs(n, count, seed)
    lams = torch.linspace(0, 1, grid, dtype=torch.float64)
    points = mix_points(run)
    mixer = LayerMixup(run.model, points)
    total = torch.zeros(len(points), grid)
    for ia, ib in zip(a.split(batch_size), b.split(batch_size)):
        xa = network_input(data.preprocess, data.test[ia.to(data.test.device)].float() / 255)
        xb = network_input(data.preprocess, data.test[ib.to(data.test.device)].float() / 255)
        ya, yb = data.test_labels[ia.to(data.test.device)], data.test_labels[ib.to(data.test.device)]
        total += len(ia) * interpolation_nll(mixer, xa, xb, ya, yb, data.num_classes, lams)
    nll = total / count
    inner = slice(1, grid - 1) if grid > 2 else slice(None)
    return {
        "run": str(run.run_dir),
        "method": run.cfg.method,
        "mix_points_trained": list(run.cfg.mix_points or ()) if run.cfg.method == "manifold" else [],
        "alpha": run.cfg.alpha_sup,
        "step": run.state.get("step"),
        "points": points,
        "lams": lams.tolist(),
        "nll": {p: nll[k].tolist() for k, p in enumerate(points)},
        "mean_inner_nll": {p: statistics.fmean(nll[k, inner].tolist()) for k, p in enumerate(points)},
        "same_class_pairs": int((data.test_labels.cpu()[a] == data.test_labels.cpu()[b]).sum()),
    }


def label(result: dict) -> str:
    """A legend name: the method (and trained points for manifold)."""
    if result["method"] == "manifold":
        return f"manifold ({','.join(result['mix_points_trained'])})"
    return {"supervised": "no mixup", "input": "input mixup"}.get(result["method"], result["method"])


def plot(results: list[dict], out: Path) -> None:
    """One panel per mixing point: NLL against λ, one curve per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [p for p in results[0]["points"] if all(p in r["nll"] for r in results)]
    fig, axes = plt.subplots(1, len(points), figsize=(3.0 * len(points), 3.0), sharey=True, squeeze=False)
    for ax, p in zip(axes[0], points):
        for r in results:
            ax.plot(r["lams"], r["nll"][p], marker="o", ms=2, label=label(r))
        ax.set_title("input space (pixel)" if p == "pixel" else f"hidden space ({p})", fontsize=10)
        ax.set_xlabel("λ")
        ax.tick_params(labelsize=8)
    axes[0][0].set_ylabel("test NLL vs. interpolated target")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80)
    plt.close(fig)
    Image.open(buffer).convert("RGB").quantize(colors=64).save(out, optimize=True)


def markdown_table(results: list[dict]) -> str:
    points = results[0]["points"]
    rows = ["| model | " + " | ".join(points) + " |", "|---|" + "---:|" * len(points)]
    for r in results:
        rows.append(f"| {label(r)} | " + " | ".join(f"{r['mean_inner_nll'].get(p, float('nan')):.3f}" for p in points))
        rows[-1] += " |"
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m analyses.interpolation", description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="*", metavar="RUN", help="run directories (or checkpoints) of ssl.train")
    parser.add_argument("--train", default=None, metavar="DIR", help="train (or reuse) the 3 digits models in DIR")
    parser.add_argument("--epochs", default="15", help="epochs of 100 updates for --train (default: 15)")
    parser.add_argument("--out", default="docs/interpolation.png", help="PNG to write; the JSON goes beside it")
    parser.add_argument("--pairs", default="500", help="test pairs (default: 500)")
    parser.add_argument("--grid", default="11", help="λ values on [0, 1] (default: 11: 0, 0.1, ..., 1)")
    parser.add_argument("--seed", default="0", help="seed of the pairs (and of --train) (default: 0)")
    parser.add_argument("--weights", choices=("model", "ema"), default="model", help="the trained or the EMA weights")
    parser.add_argument("--device", default="auto", help="auto (cuda when present), cpu or cuda[:N] (default: auto)")
    parser.add_argument("--batch-size", default="250", help="pairs per forward pass (default: 250)")
    args = parser.parse_args(argv)
    count = positive_int(args.pairs, "--pairs", 500)
    grid = positive_int(args.grid, "--grid", 11)
    if grid < 2:
        raise UsageError(f"--grid must be >= 2 (λ = 0 and 1 at least), got {grid}")
    epochs = positive_int(args.epochs, "--epochs", 15)
    batch_size = positive_int(args.batch_size, "--batch-size", 250)
    seed = integer(args.seed, "--seed")
    out = output_path(args.out, ".png")
    if bool(args.runs) == bool(args.train):
        raise UsageError("give either run directories of python -m ssl.train or --train DIR (not both, not neither)")
    device = resolve_device(args.device)
    paths = [str(p) for p in train_digits_runs(Path(args.train), epochs=epochs, seed=seed)] if args.train else args.runs
    loaded = [load_classifier(p, device, args.weights) for p in paths]
    results = [study(r, count=count, grid=grid, seed=seed, batch_size=batch_size) for r in loaded]
    table = markdown_table(results)
    print("mean test NLL against the interpolated target over λ in (0, 1), per mixing point")
    print(table)
    out.parent.mkdir(parents=True, exist_ok=True)
    plot(results, out)
    protocol = {
        "command": command_line("python -m analyses.interpolation", argv),
        "pairs": f"{count} pairs of distinct test images drawn uniformly (seed {seed})",
        "lams": f"{grid} values evenly spaced on [0, 1]; lambda weighs the first image of the pair",
        "nll": "mean over pairs of -sum(y_mix * log softmax(f_k(lam h_k(a) + (1-lam) h_k(b)))), eval mode",
        "mean_inner_nll": "the curve's mean over the lambdas strictly inside (0, 1)",
        "weights": args.weights,
    }
    json_path = write_json_beside(out, {"protocol": protocol, "results": results, "table": table})
    print(f"wrote {out} and {json_path}")
    return 0


if __name__ == "__main__":
    run_main(main, prog="python -m analyses.interpolation")
