"""Overlay the curves of several runs, SSL or GAN, against the update step.

    python -m common.plot runs/digits-* --out curves.png
    python -m common.plot runs/a runs/b --metrics loss,val_acc --labels manifold,supervised --out ab.png
    python -m common.plot runs/ring-* --metrics d_loss,modes_covered --out ring.png
    python -m common.plot runs/digits-* --x epoch --out curves.png          # SSL runs: against epochs

Reads each run's ``metrics.jsonl`` and draws one panel per metric against the step every record holds
(or the epoch, ``--x epoch``), one line per run. Without ``--metrics`` it plots what the runs have: for an
SSL run the training loss, consistency weight, validation and test accuracy; for a GAN run D's and G's
losses, the mixup term, and its evaluations (FID/IS, or the ring's modes covered and high-quality fraction).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from manifold_mixup.common.cli import ArgumentParser, run_main
from manifold_mixup.common.config import UsageError
from manifold_mixup.common.outputs import check_output_file, write_atomic
from manifold_mixup.common.report import read_records

SSL_METRICS = ("loss", "w", "val_acc", "test_acc")
DEFAULT_METRICS = SSL_METRICS
# what gan.train logs: losses every --log-every updates, evaluations every --eval-every
GAN_METRICS = (
    "d_loss",
    "g_loss",
    "d_mix",
    "fid",
    "is",
    "digits-cnn_fid",
    "digits-cnn_is",
    "modes_covered",
    "high_quality",
)
TITLES = {
    "loss": "training loss",
    "w": "consistency weight w(t)",
    "val_acc": "validation accuracy",
    "test_acc": "test accuracy",
    "d_loss": "D loss (GAN term)",
    "g_loss": "G loss",
    "d_mix": "D mixup term",
    "fid": "FID (Inception)",
    "is": "IS (Inception)",
    "digits-cnn_fid": "FID (digits-cnn, not Inception)",
    "digits-cnn_is": "IS (digits-cnn, not Inception)",
    "modes_covered": "ring modes covered (of 8)",
    "high_quality": "high-quality fraction",
}
AXES = ("step", "epoch")
FORMATS = (".png", ".pdf", ".svg")  # what --out may be; the figure is written to exactly that path


def read_metrics(run_dir: str | Path) -> list[dict]:
    """The records of a run's metrics.jsonl (a damaged line before the last is a UsageError naming it)."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        raise UsageError(f"{run_dir} holds no metrics.jsonl; is it a run directory?")
    return read_records(path)


def curve(records: list[dict], metric: str, x: str = "epoch") -> tuple[list[float], list[float]]:
    """(x values, metric values) of every record that holds ``metric`` and ``x`` (``epoch`` or ``step``)."""
    points = [(r[x], r[metric]) for r in records if r.get(metric) is not None and x in r]
    return [p[0] for p in points], [p[1] for p in points]


def default_metrics(runs: Sequence[list[dict]]) -> tuple[str, ...]:
    """What the runs have: the GAN metrics for runs that log ``g_loss``, the SSL ones for the others."""
    gan = [any("g_loss" in r for r in records) for records in runs]
    return (GAN_METRICS if any(gan) else ()) + (SSL_METRICS if not all(gan) else ())


def panels(runs: Sequence[list[dict]], metrics: Sequence[str] | None = None, x: str = "step") -> list[str]:
    """The metrics to draw, in order: those of ``metrics`` (None: ``default_metrics``) that some run logged
    against ``x``; none is a UsageError."""
    if x not in AXES:
        raise UsageError(f"--x {x}: choose from {', '.join(AXES)}")
    metrics = default_metrics(runs) if metrics is None else metrics
    present = [m for m in metrics if any(curve(r, m, x)[0] for r in runs)]
    if not present:
        raise UsageError(f"none of the metrics {', '.join(metrics)} is in these runs' metrics.jsonl (against {x})")
    return present


def plot_runs(
    run_dirs: Sequence[str | Path],
    out: str | Path,
    metrics: Sequence[str] | None = None,
    labels: Sequence[str] | None = None,
    x: str = "step",
) -> Path:
    """Write a PNG with one panel per metric and one line per run against ``x`` (``step`` or ``epoch``);
    ``metrics`` None: what the runs have (``default_metrics``). Returns the PNG's path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(labels) if labels else [Path(d).name for d in run_dirs]
    if len(labels) != len(run_dirs):
        raise UsageError(f"--labels has {len(labels)} names for {len(run_dirs)} runs")
    runs = [read_metrics(d) for d in run_dirs]
    present = panels(runs, metrics, x)
    fig, axes = plt.subplots(1, len(present), figsize=(4.2 * len(present), 3.4), squeeze=False)
    for ax, metric in zip(axes[0], present):
        for records, label in zip(runs, labels):
            xs, ys = curve(records, metric, x)
            if xs:
                ax.plot(xs, ys, label=label, marker="." if len(xs) < 30 else None)
        ax.set_title(TITLES.get(metric, metric))
        ax.set_xlabel(x)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize="small")
    fig.tight_layout()
    out = Path(out)
    try:
        write_atomic(out, lambda f: fig.savefig(f, dpi=120, format=out.suffix.lower().lstrip(".") or "png"))
    finally:
        plt.close(fig)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m common.plot", description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="run directories")
    parser.add_argument("--out", required=True, help="the figure to write: a .png, .pdf or .svg file")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    parser.add_argument(
        "--metrics",
        default=None,
        help=f"comma-separated metric names (default: what the runs have; SSL {','.join(SSL_METRICS)}, "
        f"GAN {','.join(GAN_METRICS)})",
    )
    parser.add_argument("--x", default="step", choices=AXES, help="horizontal axis (default: step)")
    parser.add_argument("--labels", default=None, help="comma-separated legend names (default: folder names)")
    args = parser.parse_args(argv)
    out = check_output_file(args.out, overwrite=args.overwrite, suffixes=FORMATS, inputs=tuple(args.runs))
    labels = args.labels.split(",") if args.labels else None
    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()] if args.metrics else None
    print(plot_runs(args.runs, out, metrics, labels, args.x))
    return 0


if __name__ == "__main__":
    run_main(main, prog="python -m common.plot")
