"""Manifold Mixup flattens class representations (ICML 2019 §3.2 and Appendix G), on the bundled digits.

    python -m analyses.flattening --out docs/flattening.json --seeds 0,1,2

Trains the fully connected network of Appendix G (LeakyReLU layers, a 12-unit bottleneck after the third
hidden layer, four more hidden layers) five ways: no regularisation, weight decay, dropout, input mixup and
manifold mixup at the bottleneck only. For the bottleneck representation of the training images it takes,
per class, the SVD and reports the largest singular value and the sum of the others (mean over classes),
beside the paper's MNIST numbers. Writes the JSON, a Markdown table on stdout and a PNG of the mean
per-class spectra beside the JSON.

CPU scale (the paper's MNIST setup cannot be had here): scikit-learn's 1,797 8×8 digits instead of MNIST,
hidden layers of 256 units instead of 1024, 1,500 Adam updates of batch 100 (the paper gives no optimiser or
training length for this experiment).
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from manifold_mixup.common.cli import ArgumentParser, command_line, output_path, run_main
from manifold_mixup.common.config import UsageError
from manifold_mixup.common.layers import LayerMixup
from manifold_mixup.common.mixup import sample_mix, soft_cross_entropy
from manifold_mixup.common.report import mean_std
from manifold_mixup.common.staged import StagedNet

METHODS = ("none", "weight_decay", "dropout", "input", "manifold")
# ICML 2019 §3.2: per class, the largest singular value and the sum of the others, mean over classes,
# "at the first hidden layer" of fully connected MNIST networks (Appendix G describes the setup).
PAPER = {
    "none": (51.73, 78.67),
    "weight_decay": (33.76, 73.36),
    "dropout": (28.83, 77.47),
    "input": (33.46, 66.89),
    "manifold": (31.65, 40.98),
}


@dataclass(frozen=True)
class Recipe:
    """How one method trains: mixing points (names) and α, L2 weight decay, dropout rate."""

    points: str | None = None
    alpha: float = 1.0
    weight_decay: float = 0.0
    dropout: float = 0.0


RECIPES = {
    "none": Recipe(),
    "weight_decay": Recipe(weight_decay=1e-4),  # the paper's supervised value (Appendix C)
    "dropout": Recipe(dropout=0.5),  # 50% in every hidden layer but the bottleneck (Figure 2's caption)
    "input": Recipe(points="pixel", alpha=1.0),  # α of Input Mixup in Table 1
    "manifold": Recipe(points="h3", alpha=2.0),  # the bottleneck only, α 2.0 (Appendix G)
}


def singular_value_summary(h: Tensor, labels: Tensor, center: bool = False) -> dict:
    """Per class c, the singular values of the (n_c, d) matrix of the representations of class c.

    Returns ``{"classes": [{"label", "n", "top", "rest", "singular_values"}...], "top": mean of the largest
    singular values over classes, "rest": mean of the sums of the others}``. ``center=True`` subtracts each
    class's mean first (spread around the class mean; the paper does not say it centres).
    """
    if h.dim() != 2 or labels.shape != h.shape[:1]:
        raise ValueError(f"need h (N, d) and labels (N,), got {tuple(h.shape)} and {tuple(labels.shape)}")
    classes = []
    for c in labels.unique(sorted=True).tolist():
        hc = h[labels == c].double()
        if center:
            hc = hc - hc.mean(0, keepdim=True)
        s = torch.linalg.svdvals(hc)
        classes.append(
            {"label": c, "n": len(hc), "top": s[0].item(), "rest": s[1:].sum().item(), "singular_values": s.tolist()}
        )
    return {
        "classes": classes,
        "top": statistics.fmean(c["top"] for c in classes),
        "rest": statistics.fmean(c["rest"] for c in classes),
    }


def fit(
    net: StagedNet,
    x: Tensor,
    y: Tensor,
    *,
    steps: int,
    layers: str | Sequence[str] | None = None,
    alpha: float = 1.0,
    batch_size: int | None = None,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
) -> list[float]:
    """Train ``net`` with Adam on (x, y); mixup at a layer drawn from ``layers`` each step (None: plain CE).

    ``batch_size=None`` uses the whole set every step. Returns the loss of each step. Draws from torch's
    global generator, so seed it first.
    """
    n_classes = int(y.max()) + 1
    onehot = F.one_hot(y, n_classes).float()
    opt = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=weight_decay)
    net.train()
    losses = []
    mixer = LayerMixup(net, layers) if layers else None
    for _ in range(steps):
        idx = torch.randperm(len(x))[:batch_size] if batch_size else torch.arange(len(x))
        xb, yb = x[idx], onehot[idx]
        if mixer:
            logits, target = mixer(xb, yb, sample_mix(len(xb), mixer.points, alpha))
        else:
            logits, target = net(xb), yb
        loss = soft_cross_entropy(logits, target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    net.eval()
    return losses


def digits_net(width: int = 256, bottleneck: int = 12, dropout: float = 0.0, n_in: int = 64, n_out: int = 10):
    """Appendix G's network: 3 hidden layers, a linear ``bottleneck``, 4 hidden layers, the classifier.

    Stages: h1, h2, h3 = the bottleneck (mixing point ``h3``), h4..h7, logits.
    """

    def hidden(a: int, b: int) -> nn.Sequential:
        return nn.Sequential(nn.Linear(a, b), nn.LeakyReLU(0.01), nn.Dropout(dropout))

    stages = [
        hidden(n_in, width),
        hidden(width, width),
        nn.Sequential(hidden(width, width), nn.Linear(width, bottleneck)),
    ]
    stages += [hidden(bottleneck, width), hidden(width, width), hidden(width, width)]
    stages += [nn.Sequential(hidden(width, width), nn.Linear(width, n_out))]
    return StagedNet(stages)


BOTTLENECK = 3  # the mixing point whose representation is analysed


def load_digits_split(test_size: int = 497, seed: int = 0) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """scikit-learn's digits scaled to [0, 1], split class-balanced into train/test (fixed by ``seed``)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = torch.tensor(d.data, dtype=torch.float32) / 16
    y = torch.tensor(d.target, dtype=torch.int64)
    tr, te = train_test_split(range(len(y)), test_size=test_size, stratify=d.target, random_state=seed)
    return x[tr], y[tr], x[te], y[te]


def run_method(method: str, seed: int, data: tuple, *, steps: int, width: int, batch_size: int = 100) -> dict:
    """Train one network with ``method`` and measure its test accuracy and bottleneck spectra."""
    r = RECIPES[method]
    x, y, xt, yt = data
    torch.manual_seed(seed)
    net = digits_net(width, dropout=r.dropout)
    t0 = time.perf_counter()
    losses = fit(
        net, x, y, steps=steps, layers=r.points, alpha=r.alpha, batch_size=batch_size, weight_decay=r.weight_decay
    )
    with torch.no_grad():
        acc = (net(xt).argmax(1) == yt).float().mean().item()
        h = net(x, 0, BOTTLENECK)
    raw, centred = singular_value_summary(h, y), singular_value_summary(h, y, center=True)
    return {
        "method": method,
        "seed": seed,
        "test_acc": acc,
        "final_loss": statistics.fmean(losses[-50:]),
        "top": raw["top"],
        "rest": raw["rest"],
        "centred_top": centred["top"],
        "centred_rest": centred["rest"],
        "mean_spectrum": [statistics.fmean(col) for col in zip(*(c["singular_values"] for c in raw["classes"]))],
        "seconds": time.perf_counter() - t0,
    }


def summarise(runs: list[dict]) -> dict:
    """Mean ± std over seeds of every number, per method, with the paper's values beside them."""
    out = {}
    for method in METHODS:
        rs = [r for r in runs if r["method"] == method]
        if not rs:
            continue
        entry = {k: mean_std([r[k] for r in rs]) for k in ("test_acc", "top", "rest", "centred_top", "centred_rest")}
        entry["rest_over_top"] = mean_std([r["rest"] / r["top"] for r in rs])
        entry["paper_top"], entry["paper_rest"] = PAPER[method]
        out[method] = entry
    return out


def markdown_table(summary: dict) -> str:
    """The summary as a Markdown table (mean ± std over seeds)."""

    def pm(v: tuple[float, float], digits: int = 2) -> str:
        return f"{v[0]:.{digits}f} ± {v[1]:.{digits}f}"

    base = summary.get("none")
    rows = [
        "| method | test acc. (%) | σ₁ | Σ other σ | Σ other / σ₁ | centred σ₁ | centred Σ other | "
        "Σ other vs none | paper σ₁ | paper Σ other | paper Σ other vs none |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for method, e in summary.items():
        acc = (100 * e["test_acc"][0], 100 * e["test_acc"][1])
        rel = f"{e['rest'][0] / base['rest'][0]:.2f}×" if base else "–"
        paper_rel = f"{e['paper_rest'] / PAPER['none'][1]:.2f}×"
        rows.append(
            f"| `{method}` | {pm(acc, 1)} | {pm(e['top'])} | {pm(e['rest'])} | {pm(e['rest_over_top'])} | "
            f"{pm(e['centred_top'])} | {pm(e['centred_rest'])} | {rel} | {e['paper_top']} | {e['paper_rest']} | "
            f"{paper_rel} |"
        )
    return "\n".join(rows)


def plot_spectra(runs: list[dict], out: Path) -> None:
    """Mean per-class singular values (sorted, averaged over classes and seeds), one line per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for method in METHODS:
        spectra = [r["mean_spectrum"] for r in runs if r["method"] == method]
        if spectra:
            mean = [statistics.fmean(col) for col in zip(*spectra)]
            ax.plot(range(1, len(mean) + 1), mean, marker="o", ms=3, label=method)
    ax.set_yscale("log")
    ax.set_xlabel("singular value index (per class, sorted)")
    ax.set_ylabel("singular value (mean over classes, seeds)")
    ax.set_title("bottleneck representation of the training digits")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def parse_seeds(text: str) -> list[int]:
    """``"0,1,2"`` -> [0, 1, 2]; anything else is a UsageError."""
    try:
        seeds = [int(s) for s in text.split(",")]
    except ValueError:
        raise UsageError(f"--seeds must be comma-separated integers like 0,1,2, got {text!r}") from None
    if len(set(seeds)) != len(seeds):
        raise UsageError(f"--seeds repeats a seed: {text!r}")
    return seeds


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m analyses.flattening", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="docs/flattening.json", help="JSON to write; the PNG goes beside it")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated training seeds (default: 0,1,2)")
    parser.add_argument("--steps", type=int, default=1500, help="Adam updates per network, batch 100 (default: 1500)")
    parser.add_argument("--width", type=int, default=256, help="units per hidden layer (paper: 1024; default: 256)")
    parser.add_argument("--methods", default=",".join(METHODS), help=f"subset of {','.join(METHODS)}")
    args = parser.parse_args(argv)
    seeds = parse_seeds(args.seeds)
    if args.steps < 1:
        raise UsageError(f"--steps must be >= 1, got {args.steps}")
    if args.width < 1:
        raise UsageError(f"--width must be >= 1, got {args.width}")
    methods = [m.strip() for m in args.methods.split(",")]
    if unknown := [m for m in methods if m not in METHODS]:
        raise UsageError(f"unknown method {unknown[0]!r} (valid: {', '.join(METHODS)})")
    out = output_path(args.out, ".json")

    data = load_digits_split()
    runs = []
    for seed in seeds:
        for method in methods:
            r = run_method(method, seed, data, steps=args.steps, width=args.width)
            runs.append(r)
            print(
                f"seed {seed} {method:>12}: test acc {100 * r['test_acc']:.1f}%, σ₁ {r['top']:.2f}, "
                f"Σ other {r['rest']:.2f} ({r['seconds']:.0f} s)",
                flush=True,
            )
    summary = summarise(runs)
    table = markdown_table(summary)
    print(table)
    out.parent.mkdir(parents=True, exist_ok=True)
    protocol = {
        "command": command_line("python -m analyses.flattening", argv),
        "data": f"sklearn load_digits /16, {len(data[1])} train / {len(data[3])} test (stratified, split seed 0)",
        "network": f"64-{args.width}x3-12 (linear bottleneck)-{args.width}x4-10, LeakyReLU 0.01",
        "training": f"Adam lr 1e-3, batch 100, {args.steps} updates",
        "recipes": {m: vars(RECIPES[m]) for m in methods},
        "representation": "bottleneck (mixing point h3) of the training images, eval mode",
        "statistics": "per class SVD of the raw (uncentred) matrix; centred_* subtract the class mean; "
        "mean over classes, then mean ± sample std over seeds",
        "paper": "ICML 2019 §3.2 (MNIST, 1024-unit layers); absolute values depend on n per class and scale",
    }
    result = {"protocol": protocol, "summary": summary, "runs": runs, "table": table}
    out.write_text(json.dumps(result, indent=1) + "\n")
    plot_spectra(runs, out.with_suffix(".png"))
    print(f"wrote {out} and {out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    run_main(main, prog="python -m analyses.flattening")
