"""Summarise a grid of classifier runs as mean ± std over seeds: the tables of the README and docs/.

    python -m common.report runs/laptop/*-s[0-9]          # groups manifold-s0, manifold-s1, ... as "manifold"
    python -m common.report runs/digits-* --last 20 --json table.json
    python -m common.report runs/lowlabel/*-s[0-9] --archive docs/results/lowlabel   # keep the runs' records
    python -m common.report docs/results/lowlabel/{supervised,input,manifold}-s*.json  # the table, from them
    python -m common.report docs/results/lowlabel/manifold-s*.json --each   # and one row per run

Per run, from its ``metrics.jsonl`` evaluations: test error at the best validation accuracy (the
paper's protocol; the first of equal maxima), the median test error of the last ``--last`` test
evaluations (FixMatch/USB), the final test error, and the test NLL at the best validation
accuracy; the final error on the clean labelled training images when the run measured it (how well it
fits them); ECE and FGSM accuracy when ``python -m ssl.evaluate`` wrote ``evaluation.json`` into the run; the
wall time from a file ``<run_dir>.wall_s`` beside it (or ``wall_s`` in it), else from its summary.json. Runs are
grouped by their directory name with the seed suffix (``-s<N>``) removed; std is the sample standard
deviation. Runs still training (no ``summary.json``) are left out unless ``--unfinished``.

``--archive DIR`` writes one small JSON per run (config, summary with the commit it ran at, every
evaluation, the training-loss lines, evaluation.json, wall time): the committed record from which the same
command re-derives the table exactly, without the run directories.
"""

from __future__ import annotations

import json
import re
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from manifold_mixup.common.cli import ArgumentParser, run_main
from manifold_mixup.common.config import UsageError
from manifold_mixup.common.outputs import check_output_file, write_atomic

SEED_SUFFIX = re.compile(r"-s\d+$")
COLUMNS = {
    "test_error_at_best_val": "test error at best val. (%)",
    "median_test_error_last": "median of last {last} (%)",
    "final_test_error": "final (%)",
    "test_nll_at_best_val": "test NLL at best val.",
    "final_train_error": "train error, final (%)",
    "ece": "ECE, final (%)",
    "fgsm_error": "FGSM error, final (%)",
    "wall_min": "wall (min)",
}
ARCHIVE_FORMAT = 1  # the "format" of an --archive file


def metrics_path(run_dir: str | Path) -> Path:
    """The run's metrics.jsonl; a path that holds none is a UsageError."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        raise UsageError(f"{run_dir} holds no metrics.jsonl; pass run directories or --archive files (.json)")
    return path


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UsageError(f"{path}: not a readable JSON file ({e})") from None


def load_run(path: str | Path) -> dict[str, Any]:
    """One run's records: ``name``, ``metrics`` (every metrics.jsonl line), ``summary`` (None while training),
    ``evaluation`` (ssl.evaluate's result or None), ``config`` and ``wall_s``; from a run directory or from
    an ``--archive`` file."""
    path = Path(path)
    if path.suffix == ".json" and path.is_file():
        record = read_json(path)
        if not isinstance(record, dict) or record.get("format") != ARCHIVE_FORMAT:
            raise UsageError(f"{path} is not a result file of python -m common.report --archive")
        return record
    metrics = read_records(metrics_path(path))
    wall = None
    for candidate in (Path(f"{path}.wall_s"), path / "wall_s"):
        if candidate.is_file():
            try:
                wall = float(candidate.read_text())
            except (OSError, ValueError, UnicodeDecodeError):
                raise UsageError(f"{candidate} does not hold a number of seconds; fix or remove it") from None
            break
    optional = {name: read_json(path / f) if (path / f).is_file() else None for name, f in JSON_FILES.items()}
    if wall is None and optional["summary"]:  # the trainer's own wall time when no grid script timed the run
        wall = optional["summary"].get("wall_time_s")
    config = yaml.safe_load((path / "config.yaml").read_text()) if (path / "config.yaml").is_file() else None
    return {"format": ARCHIVE_FORMAT, "name": path.name, "metrics": metrics, "config": config, "wall_s": wall} | (
        optional
    )


JSON_FILES = {"summary": "summary.json", "evaluation": "evaluation.json"}


def read_records(path: Path) -> list[dict]:
    """The JSON objects of a metrics.jsonl. A last line cut short (a crash, a full disk) is left out with a
    note; a damaged line before the last is a UsageError naming it (its numbers would be missing silently)."""
    try:
        lines = [line for line in path.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
    except OSError as e:
        raise UsageError(f"{path} cannot be read ({e.strerror})") from None
    records = []
    for i, line in enumerate(lines):
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                raise ValueError
        except ValueError:
            if i < len(lines) - 1:
                raise UsageError(f"{path} line {i + 1} is not a JSON object; the file is damaged") from None
            print(f"note: {path}: left out its last line, cut short", file=sys.stderr)
            continue
        records.append(record)
    return records


def run_numbers(run: str | Path | dict[str, Any], last: int = 20) -> dict[str, float]:
    """The numbers of one run (errors as fractions). A run with no evaluation is a UsageError."""
    record = run if isinstance(run, dict) else load_run(run)
    evals = [r for r in record["metrics"] if r.get("val_acc") is not None and r.get("test_acc") is not None]
    if not evals:
        raise UsageError(f"{record['name']} has no evaluation yet (no val_acc/test_acc in metrics.jsonl)")
    best = max(evals, key=lambda r: r["val_acc"])
    numbers = {
        "test_error_at_best_val": 1 - best["test_acc"],
        "median_test_error_last": statistics.median(1 - r["test_acc"] for r in evals[-last:]),
        "final_test_error": 1 - evals[-1]["test_acc"],
        "test_nll_at_best_val": best.get("test_nll", float("nan")),
        "evaluations": len(evals),
    }
    if best.get("step") is not None:
        numbers["best_step"] = best["step"]
    fits = [r for r in record["metrics"] if r.get("train_acc") is not None]
    if fits:
        numbers["final_train_error"] = 1 - fits[-1]["train_acc"]
        if fits[-1].get("train_nll") is not None:
            numbers["final_train_nll"] = fits[-1]["train_nll"]
    if record.get("evaluation"):
        results = record["evaluation"]["results"]
        numbers |= {"ece": results["ece"], "fgsm_error": 1 - results["fgsm_acc"]}
    if record.get("wall_s") is not None:
        numbers["wall_min"] = record["wall_s"] / 60
    return numbers


def archive(run_dirs: Sequence[str | Path], out: Path, overwrite: bool = False) -> list[Path]:
    """Write each finished run's record to ``out/<name>.json`` (an existing file only with ``overwrite``)."""
    records = [load_run(r) for r in run_dirs]
    targets = [out / f"{r['name']}.json" for r in records]
    if same := sorted({str(t) for t in targets if targets.count(t) > 1}):
        raise UsageError(
            f"--archive: two runs are named {Path(same[0]).stem!r} and would both write {same[0]}; "
            "archive runs of different tiers into different folders"
        )
    clash = [str(t) for t in targets if t.exists()]
    if clash and not overwrite:
        raise UsageError(f"--archive would replace {', '.join(clash)}; pass --overwrite to replace them")
    if out.exists() and not out.is_dir():
        raise UsageError(f"--archive {out} is a file, not a folder; name a folder (it is created if missing)")
    if out.is_dir():  # the output rules of every command (common/outputs.py): a run's own file never, ...
        for target in targets:
            check_output_file(target, "--archive", overwrite=overwrite)
    out.mkdir(parents=True, exist_ok=True)
    for record, target in zip(records, targets):
        write_atomic(target, json.dumps(record, indent=None, separators=(",", ":")) + "\n")
    return targets


def group_name(name: str | Path) -> str:
    return SEED_SUFFIX.sub("", Path(name).name)


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def finished(run: str | Path | dict[str, Any]) -> bool:
    """A run that wrote its summary.json (a run still training, or stopped early, has none)."""
    if isinstance(run, dict):
        return run.get("summary") is not None
    if Path(run).suffix == ".json" and Path(run).is_file():
        return load_run(run).get("summary") is not None
    return (Path(run) / "summary.json").is_file()


def check_each_once(runs: Sequence[str | Path]) -> None:
    """Refuse a run given twice (also through a link): it would count twice in its group's mean and std."""
    seen: dict[Path, str | Path] = {}
    for run in runs:
        first = seen.setdefault(Path(run).resolve(), run)
        if first is not run:
            raise UsageError(f"{run} is the same run as {first}, given twice; pass each run once")


def finished_records(runs: Sequence[str | Path], unfinished: bool = False) -> list[dict[str, Any]]:
    """The records of ``runs`` (run directories or --archive files), each read once. Runs without a summary are
    left out (a note on stderr names them) unless ``unfinished``."""
    check_each_once(runs)
    records = [load_run(r) for r in runs]  # every argument must be a run, finished or not
    skipped = [r["name"] for r in records if not unfinished and not finished(r)]
    if len(skipped) == len(records):
        raise UsageError("no run has finished yet (none has a summary.json); pass --unfinished to include them")
    if skipped:
        print(f"note: left out {len(skipped)} unfinished run(s): {', '.join(skipped)}", file=sys.stderr)
    return [r for r in records if unfinished or finished(r)]


def summarize_records(records: Sequence[dict[str, Any]], last: int = 20) -> dict[str, dict]:
    """{group: {"runs": n, column: (mean, std), ...}} in the order groups first appear."""
    groups: dict[str, list[dict[str, float]]] = {}
    for record in records:
        groups.setdefault(group_name(record["name"]), []).append(run_numbers(record, last))
    table = {}
    for name, numbers in groups.items():
        row: dict = {"runs": len(numbers)}
        for column in COLUMNS:
            values = [n[column] for n in numbers if column in n]
            if len(values) == len(numbers):
                row[column] = mean_std(values)
        table[name] = row
    return table


def summarize_grid(runs: Sequence[str | Path], last: int = 20, unfinished: bool = False) -> dict[str, dict]:
    """:func:`summarize_records` of :func:`finished_records`: the table of run directories or --archive files."""
    return summarize_records(finished_records(runs, unfinished), last)


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
            scale, digits = (100, 1) if ("error" in c or c == "ece") else (1, 3 if "nll" in c else 1)
            cells.append(f"{mean * scale:.{digits}f} ± {std * scale:.{digits}f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def per_run_markdown(records: Sequence[dict[str, Any]]) -> str:
    """One row per run, in the order given: the numbers behind a group's mean ± std (:func:`run_numbers`), with
    the commit it ran at (ECE and FGSM error columns when a run has an evaluation.json)."""
    evaluated = any(r.get("evaluation") for r in records)
    head = ["run", "test error at best val. (%)", "test NLL at best val.", "train error, final (%)", "train NLL, final"]
    head += ["ECE, final (%)", "FGSM error, final (%)"] if evaluated else []
    head += ["best val. at update", "commit"]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 2) + "---|"]

    def cell(n: dict[str, float], key: str, fmt: str, scale: float = 1) -> str:
        value = n.get(key)
        return "—" if value is None or value != value else f"{scale * value:{fmt}}"  # value != value: NaN

    for record in records:
        n = run_numbers(record)
        cells = [f"`{record['name']}`", cell(n, "test_error_at_best_val", ".2f", 100)]
        cells += [cell(n, "test_nll_at_best_val", ".3f"), cell(n, "final_train_error", ".1f", 100)]
        cells += [cell(n, "final_train_nll", ".3f")]
        if evaluated:
            cells += [cell(n, "ece", ".1f", 100), cell(n, "fgsm_error", ".1f", 100)]
        commit = ((record.get("summary") or {}).get("provenance") or {}).get("commit") or "—"
        cells += [str(n.get("best_step", "—")), str(commit)[:7]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m common.report", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "runs", nargs="+", help="run directories or --archive files; '<name>-s<seed>' are grouped by <name>"
    )
    parser.add_argument("--last", type=int, default=20, help="evaluations in the median (default: 20)")
    parser.add_argument("--json", default=None, metavar="FILE", help="also write the table as JSON")
    parser.add_argument("--each", action="store_true", help="also print one row per run, with its commit")
    parser.add_argument("--unfinished", action="store_true", help="include runs that have no summary.json yet")
    parser.add_argument("--archive", default=None, metavar="DIR", help="write each run's record to DIR/<name>.json")
    parser.add_argument("--overwrite", action="store_true", help="let --archive/--json replace existing files")
    args = parser.parse_args(argv)
    if args.last < 1:
        raise UsageError(f"--last must be >= 1, got {args.last}")
    out = check_output_file(args.json, "--json", overwrite=args.overwrite) if args.json else None
    records = finished_records(args.runs, args.unfinished)
    table = summarize_records(records, args.last)
    print(markdown(table, args.last))
    if args.each:
        print("\n" + per_run_markdown(records))
    if out is not None:
        write_atomic(out, json.dumps(table, indent=1) + "\n")
    if args.archive:
        written = archive([r for r in args.runs if args.unfinished or finished(r)], Path(args.archive), args.overwrite)
        print(f"archived {len(written)} run(s) in {args.archive}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    run_main(main, prog="python -m common.report")
