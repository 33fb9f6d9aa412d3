"""Summarise a grid of classifier runs as mean ± std over seeds: the tables of the README.

    python -m common.report runs/laptop/*-s[0-9]          # groups manifold-s0, manifold-s1, ... as "manifold"
    python -m common.report runs/digits-* --last 20 --json table.json

Per run, from its ``metrics.jsonl`` evaluations: test error at the best validation accuracy (the
paper's protocol; the first of equal maxima), the median test error of the last ``--last``
evaluations (FixMatch/USB), the final test error, and the test NLL at the best validation
accuracy; the wall time when a file ``<run_dir>.wall_s`` beside it (or ``wall_s`` in it) holds its
seconds. Runs are grouped by their directory name with the seed suffix (``-s<N>``) removed; std is
the sample standard deviation. Runs still training (no ``summary.json``) are left out unless
``--unfinished``.
"""

from __future__ import annotations

import json
import re
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path

from common.cli import ArgumentParser, run_main
from common.config import UsageError

SEED_SUFFIX = re.compile(r"-s\d+$")
COLUMNS = {
    "test_error_at_best_val": "test error at best val. (%)",
    "median_test_error_last": "median of last {last} (%)",
    "final_test_error": "final (%)",
    "test_nll_at_best_val": "test NLL at best val.",
    "wall_min": "wall (min)",
}


def metrics_path(run_dir: str | Path) -> Path:
    """The run's metrics.jsonl; a path that holds none is a UsageError."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        raise UsageError(f"{run_dir} holds no metrics.jsonl; pass run directories")
    return path


def run_numbers(run_dir: str | Path, last: int = 20) -> dict[str, float]:
    """The numbers of one run (errors as fractions). A run with no evaluation is a UsageError."""
    path = metrics_path(run_dir)
    evals = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by a crash
        if record.get("val_acc") is not None and record.get("test_acc") is not None:
            evals.append(record)
    if not evals:
        raise UsageError(f"{run_dir} has no evaluation yet (no val_acc/test_acc in metrics.jsonl)")
    best = max(evals, key=lambda r: r["val_acc"])
    numbers = {
        "test_error_at_best_val": 1 - best["test_acc"],
        "median_test_error_last": statistics.median(1 - r["test_acc"] for r in evals[-last:]),
        "final_test_error": 1 - evals[-1]["test_acc"],
        "test_nll_at_best_val": best.get("test_nll", float("nan")),
        "evaluations": len(evals),
    }
    for wall in (Path(f"{Path(run_dir)}.wall_s"), Path(run_dir) / "wall_s"):
        if wall.is_file():
            numbers["wall_min"] = float(wall.read_text()) / 60
            break
    return numbers


def group_name(run_dir: str | Path) -> str:
    return SEED_SUFFIX.sub("", Path(run_dir).name)


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def finished(run_dir: str | Path) -> bool:
    """A run that wrote its summary.json (a run still training, or stopped early, has none)."""
    return (Path(run_dir) / "summary.json").is_file()


def summarize_grid(run_dirs: Sequence[str | Path], last: int = 20, unfinished: bool = False) -> dict[str, dict]:
    """{group: {"runs": n, column: (mean, std), ...}} in the order groups first appear. Runs without a
    summary.json are left out (a note on stderr names them) unless ``unfinished``."""
    for run_dir in run_dirs:
        metrics_path(run_dir)  # every argument must be a run directory, finished or not
    skipped = [str(r) for r in run_dirs if not unfinished and not finished(r)]
    if len(skipped) == len(run_dirs):
        raise UsageError("no run has finished yet (none has a summary.json); pass --unfinished to include them")
    if skipped:
        print(f"note: left out {len(skipped)} unfinished run(s): {', '.join(skipped)}", file=sys.stderr)
    groups: dict[str, list[dict[str, float]]] = {}
    for run_dir in run_dirs:
        if unfinished or finished(run_dir):
            groups.setdefault(group_name(run_dir), []).append(run_numbers(run_dir, last))
    table = {}
    for name, runs in groups.items():
        row: dict = {"runs": len(runs)}
        for column in COLUMNS:
            values = [r[column] for r in runs if column in r]
            if len(values) == len(runs):
                row[column] = mean_std(values)
        table[name] = row
    return table


def markdown(table: dict[str, dict], last: int = 20) -> str:
    """Errors in %, NLL with 3 decimals, mean ± std."""
    columns = [c for c in COLUMNS if any(c in row for row in table.values())]
    head = ["method", "runs", *(COLUMNS[c].format(last=last) for c in columns)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, row in table.items():
        cells = [f"`{name}`", str(row["runs"])]
        for c in columns:
            if c not in row:
                cells.append("—")
                continue
            mean, std = row[c]
            scale, digits = (100, 1) if "error" in c else (1, 3 if "nll" in c else 1)
            cells.append(f"{mean * scale:.{digits}f} ± {std * scale:.{digits}f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m common.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="run directories; '<name>-s<seed>' are grouped by <name>")
    parser.add_argument("--last", type=int, default=20, help="evaluations in the median (default: 20)")
    parser.add_argument("--json", default=None, metavar="FILE", help="also write the table as JSON")
    parser.add_argument("--unfinished", action="store_true", help="include runs that have no summary.json yet")
    args = parser.parse_args(argv)
    if args.last < 1:
        raise UsageError(f"--last must be >= 1, got {args.last}")
    table = summarize_grid(args.runs, args.last, args.unfinished)
    print(markdown(table, args.last))
    if args.json:
        Path(args.json).write_text(json.dumps(table, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    run_main(main, prog="python -m common.report")
