"""Overlay the learning curves of several runs.

    python -m common.plot runs/digits-* --out curves.png
    python -m common.plot runs/a runs/b --metrics loss,val_acc --labels manifold,supervised --out ab.png

Reads each run's ``metrics.jsonl`` and draws one panel per metric against epochs (default: training
loss, consistency weight, validation and test accuracy), one line per run.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from common.cli import ArgumentParser, run_main
from common.config import UsageError

DEFAULT_METRICS = ("loss", "w", "val_acc", "test_acc")
TITLES = {
    "loss": "training loss",
    "w": "consistency weight w(t)",
    "val_acc": "validation accuracy",
    "test_acc": "test accuracy",
}


def read_metrics(run_dir: str | Path) -> list[dict]:
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        raise UsageError(f"{run_dir} holds no metrics.jsonl; is it a run directory?")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def curve(records: list[dict], metric: str) -> tuple[list[float], list[float]]:
    """(epochs, values) of every record that holds ``metric``."""
    points = [(r["epoch"], r[metric]) for r in records if r.get(metric) is not None and "epoch" in r]
    return [p[0] for p in points], [p[1] for p in points]


def plot_runs(
    run_dirs: Sequence[str | Path],
    out: str | Path,
    metrics: Sequence[str] = DEFAULT_METRICS,
    labels: Sequence[str] | None = None,
) -> Path:
    """Write a PNG with one panel per metric and one line per run; returns its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(labels) if labels else [Path(d).name for d in run_dirs]
    if len(labels) != len(run_dirs):
        raise UsageError(f"--labels has {len(labels)} names for {len(run_dirs)} runs")
    runs = [read_metrics(d) for d in run_dirs]
    present = [m for m in metrics if any(curve(r, m)[0] for r in runs)]
    if not present:
        raise UsageError(f"none of the metrics {', '.join(metrics)} is in these runs' metrics.jsonl")
    fig, axes = plt.subplots(1, len(present), figsize=(4.2 * len(present), 3.4), squeeze=False)
    for ax, metric in zip(axes[0], present):
        for records, label in zip(runs, labels):
            x, y = curve(records, metric)
            if x:
                ax.plot(x, y, label=label, marker="." if len(x) < 30 else None)
        ax.set_title(TITLES.get(metric, metric))
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize="small")
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m common.plot", description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="run directories")
    parser.add_argument("--out", required=True, help="PNG file to write")
    parser.add_argument("--metrics", default=",".join(DEFAULT_METRICS), help="comma-separated metric names")
    parser.add_argument("--labels", default=None, help="comma-separated legend names (default: folder names)")
    args = parser.parse_args(argv)
    labels = args.labels.split(",") if args.labels else None
    print(plot_runs(args.runs, args.out, args.metrics.split(","), labels))
    return 0


if __name__ == "__main__":
    run_main(main, prog="python -m common.plot")
