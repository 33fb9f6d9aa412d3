"""Preprint Table 6 on the digits: FID and IS mean ± std over seeds, with the preprint's CIFAR-10 numbers beside.

    python -m gan.table6 runs/table6                  # the run directories of experiments/gan_table6.sh
    python -m gan.table6 runs/table6 --json docs/gan-table6.json --samples docs/gan-table6-samples.png
    python -m gan.table6 docs/results/table6 --paired  # + each mixup row minus its baseline, seed by seed

Run directories are named ``<row>-s<seed>`` (``gangp-frff-s2``); the rows are :data:`ROWS`, in Table 6's
order, each with the preprint's Inception Score and FID (CIFAR-10, 3 runs; its Table 6 gives IS ± std and
FID without std). Each run's scores are the final evaluation in its ``summary.json`` (keys ending in
``fid`` and ``is``: digits-cnn features, comparable with each other only). A row with no finished run shows
"—"; runs still training (no summary.json) are left out and named on stderr. ``--samples`` writes a figure
of each row's last sample grid (``samples/step*.png``) for one seed.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

from manifold_mixup.common.cli import ArgumentParser, run_main
from manifold_mixup.common.config import UsageError
from manifold_mixup.common.report import group_name, mean_std

# row name -> (label, preprint IS mean, IS std, FID); None: no such row in the preprint
ROWS: dict[str, tuple[str, tuple[float, float, float] | None]] = {
    "gangp-none": ("GAN-GP (γ 10)", (7.30, 0.09, 30.2)),
    "gangp-fr": ("+ mixup FR (α 0.2)", (7.34, 0.09, 28.0)),
    "gangp-frff": ("+ mixup FR+FF (α 0.2)", (7.55, 0.08, 25.6)),
    "gangp-fr-gmix": ("+ mixup FR, G's mixup term (ICML eq. 6)", None),
    "gangp-frff-gmix": ("+ mixup FR+FF, G's mixup term (ICML eq. 6)", None),
    "gangp-frff-soft": ("+ mixup FR+FF, mixes labelled by their real share (ICML eq. 5)", None),
    "gangp-frff-perstep": ("+ mixup FR+FF, one λ per pair type and step", None),
    "gangp-frff-uniform": ("+ mixup FR+FF, λ ~ U(0, 0.5) (ICML eq. 4, the default)", None),
    "sngan-none": ("SN-GAN", (7.94, 0.08, 21.7)),
    "sngan-fr": ("+ mixup FR (α 0.2)", (8.00, 0.08, 21.5)),
    "sngan-frff": ("+ mixup FR+FF (α 0.2)", (8.13, 0.10, 20.6)),
}


def run_scores(run_dir: Path) -> dict[str, float] | None:
    """{"fid", "is", "wall_min"?} of a finished run (None: no summary.json yet). A summary without scores
    is a UsageError: the run was trained with --eval-samples 0 or without its extractor."""
    path = run_dir / "summary.json"
    if not path.is_file():
        return None
    summary = json.loads(path.read_text())
    fid = [v for k, v in summary.items() if k.endswith("fid") and isinstance(v, (int, float))]
    inception = [v for k, v in summary.items() if (k == "is" or k.endswith("_is")) and isinstance(v, (int, float))]
    if not fid or not inception:
        raise UsageError(f"{path} holds no FID/IS: the run was not scored (train with --eval-samples > 0)")
    scores = {"fid": float(fid[0]), "is": float(inception[0])}
    wall = Path(f"{run_dir}.wall_s")
    if wall.is_file():
        scores["wall_min"] = float(wall.read_text()) / 60
    return scores


def collect(root: Path) -> dict[str, list[dict[str, float]]]:
    """{row: [scores of each finished seed]} for the run directories ``<row>-s<seed>`` under ``root``."""
    if not root.is_dir():
        raise UsageError(f"{root} is not a directory; pass the grid's output folder (OUT of gan_table6.sh)")
    runs: dict[str, list[dict[str, float]]] = {row: [] for row in ROWS}
    unfinished = []
    for run_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        row = group_name(run_dir)
        if row not in ROWS or row == run_dir.name:  # not a <row>-s<seed> directory of this grid
            continue
        scores = run_scores(run_dir)
        if scores is None:
            unfinished.append(run_dir.name)
        else:
            runs[row].append(scores | {"seed": int(run_dir.name.rsplit("-s", 1)[1])})
    if unfinished:
        print(f"note: left out {len(unfinished)} unfinished run(s): {', '.join(unfinished)}", file=sys.stderr)
    if not any(runs.values()):
        raise UsageError(f"{root} holds no finished run named <row>-s<seed> with <row> one of {', '.join(ROWS)}")
    return runs


def summarize(runs: dict[str, list[dict[str, float]]]) -> dict[str, dict]:
    """{row: {"runs": n, "fid": (mean, std), "is": (mean, std), "wall_min": ...}} for rows with runs."""
    table = {}
    for row, scores in runs.items():
        if not scores:
            continue
        entry: dict = {"runs": len(scores)}
        for key in ("fid", "is", "wall_min"):
            values = [s[key] for s in scores if key in s]
            if len(values) == len(scores):
                entry[key] = mean_std(values)
        table[row] = entry
    return table


def markdown(table: dict[str, dict]) -> str:
    """One line per row of :data:`ROWS` (— where no run finished), digits first, the preprint beside."""
    lines = [
        "| row | runs | digits FID | digits IS | preprint IS (CIFAR-10) | preprint FID (CIFAR-10) | wall (min) |",
        "|---|---|---|---|---|---|---|",
    ]
    for row, (label, paper) in ROWS.items():
        entry = table.get(row, {})
        preprint = (f"{paper[0]:.2f} ± {paper[1]:.2f}", f"{paper[2]:.1f}") if paper else ("—", "—")
        lines.append(
            f"| {label} (`{row}`) | {entry.get('runs', 0)} | {_cell(entry, 'fid', 2)} | {_cell(entry, 'is', 2)} | "
            f"{preprint[0]} | {preprint[1]} | {_cell(entry, 'wall_min', 1)} |"
        )
    return "\n".join(lines)


def paired(runs: dict[str, list[dict[str, float]]]) -> str:
    """Each mixup row's FID minus its baseline's (``gangp-none`` / ``sngan-none``) on the same seed (same
    initialisation and data order), as a markdown table: the per-seed differences, their mean ± std, and in
    how many seeds the row's FID is lower. Seeds without both runs are left out."""
    lines = ["| row | seeds | FID − baseline, per seed | mean ± std | lower in |", "|---|---|---|---|---|"]
    for row, (label, _) in ROWS.items():
        base = f"{row.split('-')[0]}-none"
        if row == base:
            continue
        baseline = {s["seed"]: s["fid"] for s in runs.get(base, [])}
        diffs = sorted((s["seed"], s["fid"] - baseline[s["seed"]]) for s in runs.get(row, []) if s["seed"] in baseline)
        if not diffs:
            continue
        values = [d for _, d in diffs]
        per_seed = ", ".join(f"s{seed} {d:+.2f}" for seed, d in diffs)
        m, sd = mean_std(values)
        lower = sum(d < 0 for d in values)
        n = len(values)
        lines.append(f"| {label} (`{row}`) | {n} | {per_seed} | {m:+.2f} ± {sd:.2f} | {lower} of {n} |")
    return "\n".join(lines)


def _cell(entry: dict, key: str, digits: int) -> str:
    return f"{entry[key][0]:.{digits}f} ± {entry[key][1]:.{digits}f}" if key in entry else "—"


def sample_panels(root: Path, seed: int = 0) -> list[tuple[str, Path]]:
    """(title, last sample grid) of each row, in :data:`ROWS` order, whose seed-``seed`` run finished."""
    panels = []
    for row, (label, _) in ROWS.items():
        run_dir = root / f"{row}-s{seed}"
        grids = sorted((run_dir / "samples").glob("step*.png"))
        if (run_dir / "summary.json").is_file() and grids:
            panels.append((f"{label}\n{row}, seed {seed}, {grids[-1].stem}", grids[-1]))
    if not panels:
        raise UsageError(f"{root} holds no finished seed-{seed} run with a sample grid; pick --seed of a finished run")
    return panels


def sample_figure(root: Path, out: Path, seed: int = 0) -> Path:
    """A PNG with one panel per row whose seed-``seed`` run finished: its last sample grid, titled by row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = sample_panels(root, seed)
    columns = min(4, len(panels))
    rows = -(-len(panels) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 3.5 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (title, path) in zip(axes.flat, panels):
        ax.imshow(plt.imread(path))
        ax.set_title(title, fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m gan.table6", description=__doc__.split("\n\n")[0])
    parser.add_argument("root", help="the grid's output folder: run directories <row>-s<seed>")
    parser.add_argument("--json", default=None, metavar="FILE", help="also write the table as JSON")
    parser.add_argument("--samples", default=None, metavar="PNG", help="also write each row's last sample grid")
    parser.add_argument("--seed", type=int, default=0, help="the seed whose sample grids --samples shows (default: 0)")
    parser.add_argument(
        "--paired", action="store_true", help="also print each mixup row's FID minus its baseline's on the same seed"
    )
    args = parser.parse_args(argv)
    runs = collect(Path(args.root))
    table = summarize(runs)
    print(markdown(table))
    if args.paired:
        print("\n" + paired(runs))
    if args.json:
        Path(args.json).write_text(json.dumps(table, indent=1) + "\n")
    if args.samples:
        print(f"sample grids: {sample_figure(Path(args.root), Path(args.samples), args.seed)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    run_main(main, prog="python -m gan.table6")
