"""The synthetic factor task of the preprint (§5) and ICML Appendix A (Table 8, Figure 4).

    python -m analyses.factors --out docs/factors.png        # tasks A, B, C x 3 methods x 3 seeds, ~2 min of CPU

Images are rendered deterministically from independent factors, so mixup can be done "in exactly the space of
those factors": an idealised Manifold Mixup. Three trainings per task: no mixup, Input Mixup (pixels, α 1.0) and
ground-truth factor mixup (α 1.0): mix the factor vectors of a pair with λ, render the mixed factors, and train
on the rendered image with the target λ·y_i + (1−λ)·y_j. The test set's factor marginals differ from training.

**The renderer** (:func:`render`, 16×16 grey, anti-aliased strokes). A glyph is a vertical stem with a bar going
left from its top: ``bar`` 0 is a "1", ``bar`` 1 a "7". Six independent factors per image:

- ``angle`` θ (degrees): rotation about the image centre, clockwise-positive (the task's factor);
- ``bar`` b in [0, 1]: length of the top bar as a fraction of the stem's height ("1" b = 0, "7" b = 1);
- ``scale`` s ~ U(0.8, 1.1): the stem's half-height is 5·s pixels;
- ``dx``, ``dy`` ~ U(−1.5, 1.5): translation in pixels;
- ``width`` w ~ U(0.6, 1.0): half the stroke width in pixels.

**The tasks** (Appendix A; the angle ranges are the paper's, the renderer and the nuisance factors are ours):

- A: label = the angle's side. Train θ ~ U(−70, −50) (label 0) or U(50, 80) (label 1), 50% each; test θ ~
  U(−30, −10) (0) or U(10, 30) (1). The glyph is a "1" or a "7" at random (b ∈ {0, 1}), a nuisance.
- B: train as A; test θ ~ U(−30, −20) (label 0) or U(−10, 30) (label 1).
- C: label = the glyph, "1" (b = 0) or "7" (b = 1); train θ as in A (the side independent of the label),
  test θ ~ U(−30, 30).

The network is an MLP on the 256 pixels with three hidden layers of 256 (ReLU), Adam lr 1e-3, batch 64,
``--steps`` updates on a fixed training set of 2,000 images; 2,000 test images. The paper gives no network,
training set size or optimiser for this task.
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

from manifold_mixup.analyses.flattening import parse_seeds
from manifold_mixup.common.cli import ArgumentParser, command_line, output_path, run_main, write_json_beside
from manifold_mixup.common.config import UsageError
from manifold_mixup.common.mixup import mix, sample_lam
from manifold_mixup.common.report import mean_std

SIZE = 16
FACTORS = ("angle", "bar", "scale", "dx", "dy", "width")
METHODS = ("none", "input", "factor")
ALPHA = 1.0  # Table 8's "(1.0)" for both mixups
TRAIN_SIZE = TEST_SIZE = 2000
# ICML Appendix A, Table 8: (test accuracy %, test NLL)
PAPER = {
    "A": {"none": (1.6, 8.8310), "input": (0.0, 6.0601), "factor": (94.77, 0.4940)},
    "B": {"none": (21.25, 7.0026), "input": (18.40, 4.3149), "factor": (84.02, 0.4572)},
    "C": {"none": (63.05, 4.2871), "input": (66.09, 1.4181), "factor": (99.06, 0.1279)},
}

Ranges = tuple[tuple[float, float], tuple[float, float]]


@dataclass(frozen=True)
class Task:
    """Angle ranges (degrees) of the two halves of a set, and what the label is."""

    label: str  # "side": the half the angle came from; "glyph": "1" (bar 0) or "7" (bar 1)
    train: Ranges  # (range of half 0, range of half 1)
    test: Ranges


TASKS = {
    "A": Task("side", ((-70, -50), (50, 80)), ((-30, -10), (10, 30))),
    "B": Task("side", ((-70, -50), (50, 80)), ((-30, -20), (-10, 30))),
    "C": Task("glyph", ((-70, -50), (50, 80)), ((-30, 30), (-30, 30))),
}


def sample_factors(task: Task, n: int, split: str, seed: int) -> tuple[Tensor, Tensor]:
    """(factors (n, 6) float32 in the order of FACTORS, labels (n,) int64) drawn independently; deterministic."""
    g = torch.Generator().manual_seed(seed)

    def u(lo: float, hi: float) -> Tensor:
        return lo + (hi - lo) * torch.rand(n, generator=g)

    half = torch.randint(0, 2, (n,), generator=g)
    ranges = torch.tensor(task.train if split == "train" else task.test, dtype=torch.float32)  # (2, 2)
    lo, hi = ranges[half, 0], ranges[half, 1]
    angle = lo + (hi - lo) * torch.rand(n, generator=g)
    glyph = torch.randint(0, 2, (n,), generator=g)
    factors = torch.stack([angle, glyph.float(), u(0.8, 1.1), u(-1.5, 1.5), u(-1.5, 1.5), u(0.6, 1.0)], 1)
    return factors, (half if task.label == "side" else glyph)


def _segment_distance(px: Tensor, py: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """Distance of pixel centres (H, W) to segments a->b ((n, 2) each), shape (n, H, W)."""
    ax, ay, bx, by = (t.view(-1, 1, 1) for t in (a[:, 0], a[:, 1], b[:, 0], b[:, 1]))
    dx, dy = bx - ax, by - ay
    t = (((px - ax) * dx + (py - ay) * dy) / (dx * dx + dy * dy).clamp_min(1e-6)).clamp(0, 1)
    return torch.hypot(px - ax - t * dx, py - ay - t * dy)


def render(factors: Tensor, size: int = SIZE) -> Tensor:
    """Factors (n, 6) -> images (n, 1, size, size) in [0, 1]: a deterministic, differentiable-in-factors render.

    Glyph coordinates (x right, y down, stem half-height L = 5·scale): stem (0, −L)-(0, L), bar (0, −L)-(−2L·bar, −L)
    (a "7" has a bar as long as the stem: the glyph fills a square), rotated by ``angle`` clockwise, shifted by
    (dx, dy) from the centre. Intensity clamp(width + 0.5 − distance, 0, 1), the brighter of the two strokes.
    """
    angle, bar, scale, dx, dy, width = factors.T
    half = 5.0 * scale
    zero = torch.zeros_like(half)
    top, bottom, bar_end = (torch.stack(p, 1) for p in ((zero, -half), (zero, half), (-2 * half * bar, -half)))
    phi = torch.deg2rad(angle)
    rot = torch.stack([torch.stack([phi.cos(), -phi.sin()], 1), torch.stack([phi.sin(), phi.cos()], 1)], 1)
    centre = torch.stack([dx, dy], 1) + (size - 1) / 2

    def place(p: Tensor) -> Tensor:
        return (rot @ p.unsqueeze(2)).squeeze(2) + centre

    coords = torch.arange(size, dtype=factors.dtype)
    py, px = torch.meshgrid(coords, coords, indexing="ij")
    d = torch.minimum(
        _segment_distance(px, py, place(top), place(bottom)), _segment_distance(px, py, place(top), place(bar_end))
    )
    return (width.view(-1, 1, 1) + 0.5 - d).clamp(0, 1).unsqueeze(1)


def mlp(hidden: int = 256, classes: int = 2) -> nn.Sequential:
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(SIZE * SIZE, hidden),
        nn.ReLU(),
        nn.Linear(hidden, hidden),
        nn.ReLU(),
        nn.Linear(hidden, hidden),
        nn.ReLU(),
        nn.Linear(hidden, classes),
    )


def training_batch(method: str, factors: Tensor, images: Tensor, onehot: Tensor) -> tuple[Tensor, Tensor]:
    """(images, soft targets) of one step: plain, mixed in pixels, or rendered from mixed factors (same λ, perm)."""
    if method == "none":
        return images, onehot
    lam, perm = sample_lam(ALPHA).float(), torch.randperm(len(images))
    target = mix(onehot, onehot[perm], lam)
    if method == "input":
        return mix(images, images[perm], lam), target
    if method == "factor":
        return render(mix(factors, factors[perm], lam)), target
    raise ValueError(f"unknown method {method!r} (valid: {', '.join(METHODS)})")


def run_one(task_name: str, method: str, seed: int, *, steps: int, batch_size: int = 64) -> dict:
    """Train one network on task ``task_name`` with ``method``; its test accuracy and NLL."""
    task = TASKS[task_name]
    f, y = sample_factors(task, TRAIN_SIZE, "train", seed=seed)
    ft, yt = sample_factors(task, TEST_SIZE, "test", seed=seed + 10_000)
    x, xt = render(f), render(ft)
    onehot = F.one_hot(y, 2).float()
    torch.manual_seed(seed)
    net = mlp()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    t0 = time.perf_counter()
    for _ in range(steps):
        idx = torch.randint(0, len(x), (batch_size,))
        xb, tb = training_batch(method, f[idx], x[idx], onehot[idx])
        loss = -(tb * F.log_softmax(net(xb), 1)).sum(1).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    net.eval()
    with torch.no_grad():
        logits, train_logits = net(xt), net(x)
    return {
        "task": task_name,
        "method": method,
        "seed": seed,
        "test_acc": (logits.argmax(1) == yt).float().mean().item(),
        "test_nll": F.cross_entropy(logits, yt).item(),
        "train_acc": (train_logits.argmax(1) == y).float().mean().item(),
        "seconds": time.perf_counter() - t0,
    }


def summarise(runs: list[dict]) -> dict:
    """{task: {method: {"test_acc": (mean, std), "test_nll": ..., "paper": (acc %, nll)}}}."""
    out: dict = {}
    for r in runs:
        out.setdefault(r["task"], {}).setdefault(r["method"], [])
    for task, methods in out.items():
        for method in methods:
            rs = [r for r in runs if r["task"] == task and r["method"] == method]
            methods[method] = {
                "test_acc": mean_std([r["test_acc"] for r in rs]),
                "test_nll": mean_std([r["test_nll"] for r in rs]),
                "train_acc": mean_std([r["train_acc"] for r in rs]),
                "seeds": len(rs),
                "paper": PAPER[task][method],
            }
    return out


def markdown_table(summary: dict) -> str:
    names = {"none": "No Mixup", "input": "Input Mixup (1.0)", "factor": "Ground Truth Factor Mixup (1.0)"}
    rows = [
        "| task | method | test acc. (%) | test NLL | paper test acc. (%) | paper test NLL |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for task, methods in summary.items():
        for method, e in methods.items():
            (a, sa), (n, sn) = e["test_acc"], e["test_nll"]
            rows.append(
                f"| {task} | {names[method]} | {100 * a:.1f} ± {100 * sa:.1f} | {n:.3f} ± {sn:.3f} | "
                f"{e['paper'][0]} | {e['paper'][1]} |"
            )
    return "\n".join(rows)


def figure_images(seed: int = 0, n: int = 16) -> dict[str, Tensor]:
    """Figure 4's three panels for task A: training images, their input mixes, their factor mixes (same pairs, λ)."""
    f, _ = sample_factors(TASKS["A"], n, "train", seed=seed)
    g = torch.Generator().manual_seed(seed + 1)
    perm = torch.randperm(n, generator=g)
    lam = torch.rand(n, generator=g).view(-1, 1)
    x = render(f)
    return {
        "training images": x,
        "input mixup": mix(x, x[perm], lam.view(-1)),
        "factor mixup": render(f * lam + f[perm] * (1 - lam)),
    }


def plot(panels: dict[str, Tensor], out: Path, cols: int = 4) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(3.0 * len(panels), 3.2))
    for ax, (title, x) in zip(axes, panels.items()):
        rows = math.ceil(len(x) / cols)
        pad = torch.ones(rows * cols, 1, SIZE + 2, SIZE + 2) * 0.5
        pad[: len(x), :, 1:-1, 1:-1] = x
        grid = pad.view(rows, cols, SIZE + 2, SIZE + 2).permute(0, 2, 1, 3).reshape(rows * (SIZE + 2), -1)
        ax.imshow(grid.numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(title, fontsize=10)
        ax.axis("off")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80)
    plt.close(fig)
    Image.open(buffer).convert("L").save(out, optimize=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m analyses.factors", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="docs/factors.png", help="PNG of Figure 4; the JSON goes beside it")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default: 0,1,2)")
    parser.add_argument("--steps", type=int, default=1000, help="Adam updates of batch 64 per network (default: 1000)")
    parser.add_argument("--tasks", default="A,B,C", help="subset of A,B,C (default: all)")
    parser.add_argument("--methods", default=",".join(METHODS), help=f"subset of {','.join(METHODS)}")
    args = parser.parse_args(argv)
    seeds = parse_seeds(args.seeds)
    if args.steps < 1:
        raise UsageError(f"--steps must be >= 1, got {args.steps}")
    tasks = [t.strip() for t in args.tasks.split(",")]
    if unknown := [t for t in tasks if t not in TASKS]:
        raise UsageError(f"unknown task {unknown[0]!r} (valid: {', '.join(TASKS)})")
    methods = [m.strip() for m in args.methods.split(",")]
    if unknown := [m for m in methods if m not in METHODS]:
        raise UsageError(f"unknown method {unknown[0]!r} (valid: {', '.join(METHODS)})")
    out = output_path(args.out, ".png")

    runs = []
    for task in tasks:
        for seed in seeds:
            for method in methods:
                r = run_one(task, method, seed, steps=args.steps)
                runs.append(r)
                print(
                    f"task {task} seed {seed} {method:>6}: test acc {100 * r['test_acc']:5.1f}%, "
                    f"NLL {r['test_nll']:.3f} (train acc {100 * r['train_acc']:.1f}%, {r['seconds']:.1f} s)",
                    flush=True,
                )
    summary = summarise(runs)
    table = markdown_table(summary)
    print(table)
    out.parent.mkdir(parents=True, exist_ok=True)
    plot(figure_images(), out)
    protocol = {
        "command": command_line("python -m analyses.factors", argv),
        "renderer": f"{SIZE}x{SIZE} grey; factors {', '.join(FACTORS)} (see analyses/factors.py)",
        "tasks": {k: {"label": t.label, "train_angles": t.train, "test_angles": t.test} for k, t in TASKS.items()},
        "data": f"{TRAIN_SIZE} training and {TEST_SIZE} test images per task and seed (seed, seed + 10000)",
        "network": "MLP 256-256-256-256-2, ReLU",
        "training": f"Adam lr 1e-3, batch 64 drawn with replacement, {args.steps} updates; alpha {ALPHA}",
        "paper": "ICML 2019 Appendix A Table 8 (network and training not given there)",
    }
    result = {"protocol": protocol, "summary": summary, "runs": runs, "table": table}
    print(f"wrote {out} and {write_json_beside(out, result)}")
    return 0


if __name__ == "__main__":
    run_main(main, prog="python -m analyses.factors")
