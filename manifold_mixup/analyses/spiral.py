"""The 2-D spiral of ICML 2019 Figures 1-2: a network with a 2-D bottleneck, without and with mixup.

    python -m analyses.spiral --out docs/spiral.png

Two interleaved spirals (small data), an MLP 2-64-64-2 (linear bottleneck)-64-64-2 trained three ways:
no mixup, input mixup (α 1.0) and manifold mixup at the input and every hidden layer including the
bottleneck (α 2.0; the α of Table 1, as the paper gives none for the figure). Per method the figure shows
(a) the decision boundary over the input plane with the training data, (b) the bottleneck states of the
training data over the classifier's confidence in the bottleneck plane, (c) the bottleneck states of inputs
drawn uniformly over the input square (black). A JSON of numbers that capture the paper's claim goes
beside the figure.
"""

from __future__ import annotations

import io
import math
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor, nn

from manifold_mixup.analyses.flattening import fit, singular_value_summary
from manifold_mixup.common.cli import ArgumentParser, command_line, output_path, run_main, write_json_beside
from manifold_mixup.common.config import UsageError
from manifold_mixup.common.staged import StagedNet

# method -> (mixing points, α)
METHODS: dict[str, tuple[str | None, float]] = {
    "none": (None, 1.0),
    "input": ("pixel", 1.0),
    "manifold": ("pixel,h1,h2,h3", 2.0),
}
BOTTLENECK = 3  # mixing point h3 is the 2-D bottleneck
BOX = 1.5  # inputs drawn uniformly from [-BOX, BOX]²; the spirals lie within radius ~1.1
CONFIDENT = 0.9


def make_spirals(
    n_per_class: int = 100, noise: float = 0.05, turns: float = 1.5, seed: int = 0
) -> tuple[Tensor, Tensor]:
    """Two interleaved spirals: x (2n, 2) float32, y (2n,) int64 with n examples of class 0 then of class 1.

    Class c follows r = t, angle 2π·turns·t + c·π for t ~ U(0.1, 1), plus Gaussian noise of std ``noise``.
    Deterministic given ``seed`` (its own generator; torch's global one is untouched).
    """
    if n_per_class < 1:
        raise ValueError(f"n_per_class must be >= 1, got {n_per_class}")
    g = torch.Generator().manual_seed(seed)
    xs, ys = [], []
    for c in (0, 1):
        t = 0.1 + 0.9 * torch.rand(n_per_class, generator=g)
        angle = 2 * math.pi * turns * t + c * math.pi
        points = torch.stack([t * torch.cos(angle), t * torch.sin(angle)], 1)
        xs.append(points + noise * torch.randn(n_per_class, 2, generator=g))
        ys.append(torch.full((n_per_class,), c, dtype=torch.int64))
    return torch.cat(xs).float(), torch.cat(ys)


def spiral_net(width: int = 64) -> StagedNet:
    """Stages 2→w, w→w, w→2 (the linear bottleneck, point h3), 2→w, w→w→2 logits."""

    def hidden(a: int, b: int) -> nn.Sequential:
        return nn.Sequential(nn.Linear(a, b), nn.LeakyReLU(0.01))

    return StagedNet(
        [
            hidden(2, width),
            hidden(width, width),
            nn.Linear(width, 2),
            hidden(2, width),
            nn.Sequential(hidden(width, width), nn.Linear(width, 2)),
        ]
    )


def grid(lo: Tensor, hi: Tensor, n: int) -> Tensor:
    """(n*n, 2) points of a regular grid over the box [lo, hi] (row-major, y slowest)."""
    xs, ys = torch.linspace(lo[0], hi[0], n), torch.linspace(lo[1], hi[1], n)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx.reshape(-1), gy.reshape(-1)], 1)


def hidden_box(h: Tensor, margin: float = 0.25) -> tuple[Tensor, Tensor]:
    """The bounding box of the training states, widened by ``margin`` of its size on every side."""
    lo, hi = h.min(0).values, h.max(0).values
    pad = margin * (hi - lo)
    return lo - pad, hi + pad


@torch.no_grad()
def analyse(net: StagedNet, x: Tensor, y: Tensor, xt: Tensor, yt: Tensor, uniform: Tensor, n_grid: int = 120) -> dict:
    """Numbers for one trained network, and the arrays the figure needs."""
    p_uniform = net(uniform).softmax(1)
    h_train, h_uniform = net(x, 0, BOTTLENECK), net(uniform, 0, BOTTLENECK)
    lo, hi = hidden_box(h_train)
    hgrid = grid(lo, hi, n_grid)
    p_hgrid = net(hgrid, BOTTLENECK).softmax(1)
    xgrid = grid(torch.tensor([-BOX, -BOX]), torch.tensor([BOX, BOX]), n_grid)
    p_xgrid = net(xgrid).softmax(1)
    centred = singular_value_summary(h_train, y, center=True)
    numbers = {
        "train_acc": (net(x).argmax(1) == y).float().mean().item(),
        "test_acc": (net(xt).argmax(1) == yt).float().mean().item(),
        "uniform_mean_confidence": p_uniform.max(1).values.mean().item(),
        "input_plane_confident_fraction": (p_xgrid.max(1).values > CONFIDENT).float().mean().item(),
        "hidden_plane_confident_fraction": (p_hgrid.max(1).values > CONFIDENT).float().mean().item(),
        "hidden_plane_mean_confidence": p_hgrid.max(1).values.mean().item(),
        "hidden_second_over_first_sv": statistics.fmean(c["rest"] / c["top"] for c in centred["classes"]),
    }
    arrays = {
        "p_xgrid": p_xgrid[:, 1].reshape(n_grid, n_grid).numpy(),
        "p_hgrid": p_hgrid[:, 1].reshape(n_grid, n_grid).numpy(),
        "hbox": (lo.tolist(), hi.tolist()),
        "h_train": h_train.numpy(),
        "h_uniform": h_uniform.numpy(),
    }
    return {"numbers": numbers, "arrays": arrays}


def corner_note(ax, text: str) -> None:
    """A small boxed note in the lower-left corner of a panel."""
    ax.text(0.02, 0.02, text, transform=ax.transAxes, fontsize=8, bbox={"facecolor": "white", "alpha": 0.7})


def plot(results: dict[str, dict], x: Tensor, y: Tensor, out: Path) -> None:
    """One row per method: input plane, bottleneck states of the data, bottleneck states of uniform inputs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = ["tab:red", "tab:blue"]
    x, y = x.numpy(), y.tolist()
    fig, axes = plt.subplots(len(results), 3, figsize=(10.5, 3.3 * len(results)), squeeze=False)
    for row, (method, r) in zip(axes, results.items()):
        a, n = r["arrays"], r["numbers"]
        (lo0, lo1), (hi0, hi1) = a["hbox"]
        style = {"origin": "lower", "cmap": "RdBu", "vmin": 0, "vmax": 1, "aspect": "auto"}
        row[0].imshow(a["p_xgrid"], extent=(-BOX, BOX, -BOX, BOX), **style)
        axis = torch.linspace(-BOX, BOX, a["p_xgrid"].shape[0]).numpy()
        row[0].contour(axis, axis, a["p_xgrid"], [0.5], colors="k", linewidths=0.8)
        row[0].scatter(x[:, 0], x[:, 1], c=[colours[i] for i in y], s=6, edgecolors="white", linewidths=0.3)
        row[0].set_title(f"{method}: input plane (test acc {100 * n['test_acc']:.0f}%)", fontsize=9)
        for ax, title in ((row[1], "bottleneck: training data"), (row[2], "bottleneck: uniform inputs (black)")):
            ax.imshow(a["p_hgrid"], extent=(lo0, hi0, lo1, hi1), **style)
            ax.set_xlim(lo0, hi0)
            ax.set_ylim(lo1, hi1)
            ax.set_title(f"{method}: {title}", fontsize=9)
        h = a["h_train"]
        row[1].scatter(h[:, 0], h[:, 1], c=[colours[i] for i in y], s=6, edgecolors="white", linewidths=0.3)
        corner_note(row[1], f"area conf>{CONFIDENT}: {100 * n['hidden_plane_confident_fraction']:.0f}%")
        u = a["h_uniform"]
        row[2].scatter(u[:, 0], u[:, 1], c="k", s=2)
        row[2].scatter(h[:, 0], h[:, 1], c=[colours[i] for i in y], s=3, alpha=0.4)
        corner_note(row[2], f"mean conf. uniform inputs: {n['uniform_mean_confidence']:.2f}")
        for ax in row:
            ax.tick_params(labelsize=7)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=72)
    plt.close(fig)
    # a 256-colour palette keeps the smooth confidence maps and makes the file a third of the size
    Image.open(buffer).convert("RGB").quantize(colors=256).save(out, optimize=True)


def run(seed: int, steps: int, n_per_class: int = 100, n_uniform: int = 1000) -> tuple[dict, Tensor, Tensor]:
    """Train the three networks from the same initialisation and analyse them."""
    x, y = make_spirals(n_per_class, seed=seed)
    xt, yt = make_spirals(500, seed=seed + 10_000)
    uniform = (torch.rand(n_uniform, 2, generator=torch.Generator().manual_seed(seed + 20_000)) * 2 - 1) * BOX
    results = {}
    for method, (names, alpha) in METHODS.items():
        torch.manual_seed(seed)
        net = spiral_net()
        t0 = time.perf_counter()
        losses = fit(net, x, y, steps=steps, layers=names or None, alpha=alpha, lr=3e-3)
        r = analyse(net, x, y, xt, yt, uniform)
        r["numbers"]["final_loss"] = statistics.fmean(losses[-50:])
        r["numbers"]["seconds"] = time.perf_counter() - t0
        results[method] = r
    return results, x, y


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m analyses.spiral", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="docs/spiral.png", help="PNG to write; the JSON goes beside it")
    parser.add_argument("--seed", type=int, default=0, help="data and initialisation seed (default: 0)")
    parser.add_argument("--steps", type=int, default=3000, help="full-batch Adam updates per method (default: 3000)")
    args = parser.parse_args(argv)
    if args.steps < 1:
        raise UsageError(f"--steps must be >= 1, got {args.steps}")
    out = output_path(args.out, ".png")

    results, x, y = run(args.seed, args.steps)
    print(
        "| method | train acc. | test acc. | mean conf. on uniform inputs | input plane conf>0.9 | "
        "bottleneck plane conf>0.9 | bottleneck σ₂/σ₁ (centred, per class) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for method, r in results.items():
        n = r["numbers"]
        print(
            f"| `{method}` | {100 * n['train_acc']:.1f}% | {100 * n['test_acc']:.1f}% | "
            f"{n['uniform_mean_confidence']:.3f} | {100 * n['input_plane_confident_fraction']:.0f}% | "
            f"{100 * n['hidden_plane_confident_fraction']:.0f}% | {n['hidden_second_over_first_sv']:.3f} |"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    plot(results, x, y, out)
    protocol = {
        "command": command_line("python -m analyses.spiral", argv),
        "data": "two interleaved spirals, 1.5 turns, noise 0.05: 100 per class to train, 500 per class to test",
        "network": "2-64-64-2 (linear bottleneck, point h3)-64-64-2, LeakyReLU 0.01",
        "training": f"Adam lr 3e-3, full batch, {args.steps} updates, same initialisation for every method",
        "methods": {m: {"points": p, "alpha": a} for m, (p, a) in METHODS.items()},
        "uniform": f"1000 inputs uniform on [-{BOX}, {BOX}]²",
        "hidden_plane": "bounding box of the training states widened by 25% of its size on every side",
    }
    numbers = {m: r["numbers"] for m, r in results.items()}
    print(f"wrote {out} and {write_json_beside(out, {'protocol': protocol, 'results': numbers})}")
    return 0


if __name__ == "__main__":
    run_main(main, prog="python -m analyses.spiral")
