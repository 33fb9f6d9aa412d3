"""How much of a tier run goes to evaluation: measured on finished runs, or projected from a short real run.

    python experiments/eval_share.py --tiers ssl,supervised,lowlabel [--epochs 3]   # project each tier's schedule
    python experiments/eval_share.py --runs runs/lowlabel/manifold-s0 ...           # finished runs, as they ran
    python experiments/eval_share.py --runs docs/results/lowlabel/set-*.json        # or their archived records

Projection: one trainer per tier runs ``--epochs`` epochs of the tier's config (data pipeline, augmentation,
mixing) with a full evaluation (validation + test) after every epoch, and the script reads back the training
seconds per update (from the first logged epoch on: data loading and warm-up left out) and the seconds of one full
evaluation (``eval_s``), and the once-only pass over the labelled training images (the fit) that the last
evaluation adds. A validation-only evaluation is charged its share of the images (5,000 of 15,000: both sets go
through the same eval-mode pass). The tier's full
schedule is then priced before (every epoch, test every time, evaluation batch ``--before-batch``: the old
configs) and after (the config's cadence and batch), the latter twice: with the test set at every evaluation
(the worst case of ``--eval-test best``: validation improves every time) and only at the first and the last
(the best case). Each tier runs twice back to back (the before batch, then the config's), so that machine load
shifts both alike; the ratios are what to read.

Finished runs: the sum of their ``eval_s`` records against their wall time (``<run>.wall_s`` beside the
directory, else the summary's, else the last logged ``wall_s``).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the package, also where it was not pip-installed

from manifold_mixup.common.cli import ArgumentParser, run_main  # noqa: E402
from manifold_mixup.common.config import UsageError  # noqa: E402
from manifold_mixup.common.metrics_file import read_metrics  # noqa: E402
from manifold_mixup.common.report import load_run  # noqa: E402

TIERS = {
    "ssl": "configs/ssl/cifar10-4k-laptop.yaml",
    "supervised": "configs/ssl/cifar10-supervised-laptop.yaml",
    "lowlabel": "configs/ssl/cifar10-4k-supervised.yaml",
}
BEFORE = {  # each tier's evaluation cadence before 2026-12-03 (every N epochs, test set), at batch 1,000
    "ssl": (1, "every"),
    "supervised": (1, "every"),
    "lowlabel": (2, "best"),
}
VAL_IMAGES, TEST_IMAGES = 5000, 10000  # every tier holds out 5,000 validation images; CIFAR-10's test set


def run_share(run: Path) -> tuple[float, float, int, int]:
    """(evaluation seconds, wall seconds, evaluations, evaluations with the test set) of a finished run: a run
    directory or an --archive record, read by common.report (wall time from ``<run>.wall_s``, else the summary's;
    without either, the last logged ``wall_s`` plus the evaluation after it)."""
    record = load_run(run)
    rows = record["metrics"]
    evals = [r for r in rows if "eval_s" in r.get("time", {})]
    eval_s = sum(r["time"]["eval_s"] for r in evals)
    wall = record["wall_s"]
    if wall is None:
        walls = [r["time"]["wall_s"] for r in rows if "wall_s" in r.get("time", {})]
        wall = walls[-1] + evals[-1]["time"]["eval_s"]
    return eval_s, wall, len(evals), sum("test_acc" in r for r in evals)


def measure(tier: str, data: str, epochs: int, out: Path, eval_batch: int | None) -> tuple[float, float, float, dict]:
    """(training seconds per update, seconds of one validation + test evaluation, seconds of the fit pass over
    the labelled training images that the last evaluation adds once, the tier's config)."""
    config = yaml.safe_load((ROOT / TIERS[tier]).read_text())
    ipe = config["iterations_per_epoch"]
    cmd = [sys.executable, "-m", "ssl.train", "--config", TIERS[tier], "--data-dir", data, "--out", str(out)]
    cmd += ["--device", "cpu", "--epochs", str(epochs), "--lr-milestones", "none", "--eval-every", "1"]
    cmd += ["--eval-test", "every", "--log-every", str(ipe), "--checkpoint-every", "1000", "--seed", "0"]
    if eval_batch:
        cmd += ["--eval-batch-size", str(eval_batch)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{tier}: trainer failed: {(proc.stderr.strip().splitlines() or ['?'])[-1]}")
    rows, _ = read_metrics(out / "metrics.jsonl")
    evals = [r for r in rows if "eval_s" in r.get("time", {})]
    logs = [r for r in rows if "wall_s" in r.get("time", {})]
    if len(logs) < 2:
        raise SystemExit(f"{tier}: fewer than 2 logged epochs; raise --epochs")
    # from the first log line on (data loading, ZCA and the first epoch's warm-up left out), minus evaluations
    first, last = logs[0], logs[-1]
    between = sum(r["time"]["eval_s"] for r in evals if first["step"] <= r["step"] < last["step"])
    train_s = last["time"]["wall_s"] - first["time"]["wall_s"] - between
    plain = [r["time"]["eval_s"] for r in evals if "train_acc" not in r]  # validation + test
    full_eval = sum(plain) / len(plain)
    last_eval = max(r["time"]["eval_s"] for r in evals if "train_acc" in r)
    fit = max(0.0, last_eval - full_eval)  # the last evaluation's fit pass (below timing noise: 0)
    return train_s / (last["step"] - first["step"]), full_eval, fit, config


def cadence_share(
    train: float, full_eval: float, fit: float, epochs: int, every: int, eval_test: str
) -> tuple[int, float, float]:
    """(evaluations, worst share, best share) of a schedule: the validation set every ``every`` epochs and at
    the end; the test set every time (``eval_test`` "every"), or, under "best", at worst every time (validation
    improves every time) and at best at the first and the last only; the fit pass once, at the end."""
    val_only = full_eval * VAL_IMAGES / (VAL_IMAGES + TEST_IMAGES)
    points = len({e for e in range(1, epochs + 1) if e % every == 0} | {epochs})
    tests_best = points if eval_test == "every" else min(points, 2)
    worst = points * full_eval + fit
    best = tests_best * full_eval + (points - tests_best) * val_only + fit
    return points, worst / (train + worst), best / (train + best)


def projected(
    per_update: float,
    old_eval: float,
    new_eval: float,
    config: dict,
    before: tuple[int, str],
    old_fit: float = 0.0,
    new_fit: float = 0.0,
) -> dict[str, float]:
    """Evaluation shares of the tier's whole schedule, before (cadence ``before`` = (every, eval_test),
    ``old_eval`` seconds a validation + test evaluation) and after (the config's cadence, ``new_eval``)."""
    epochs = config["epochs"]
    train = per_update * epochs * config["iterations_per_epoch"]
    _, before_worst, before_best = cadence_share(train, old_eval, old_fit, epochs, *before)
    after = (config.get("eval_every", 1), config.get("eval_test", "every"))
    points, after_worst, after_best = cadence_share(train, new_eval, new_fit, epochs, *after)
    return {
        "evaluations": points,
        "before, worst": before_worst,
        "before, best": before_best,
        "after, worst": after_worst,
        "after, best": after_best,
    }


def main(argv: list[str] | None = None) -> int:
    p = ArgumentParser(prog="python experiments/eval_share.py", description=__doc__.splitlines()[0])
    p.add_argument("--tiers", default="", help="comma-separated: " + ", ".join(TIERS))
    p.add_argument("--runs", nargs="*", type=Path, default=[], help="finished run directories or --archive records")
    p.add_argument("--data-dir", default="data/cifar10-jpeg75")
    p.add_argument("--before-batch", type=int, default=1000, help="evaluation batch size before (the old configs')")
    p.add_argument("--json", type=Path, help="also write the measured numbers here")
    p.add_argument("--table", type=Path, help="print the table from a --json file written earlier; measure nothing")
    p.add_argument("--epochs", type=int, default=3, help="epochs of each short measuring run (>= 2)")
    args = p.parse_args(argv)
    if args.table:
        saved = json.loads(args.table.read_text())
        configs = {t: yaml.safe_load((ROOT / TIERS[t]).read_text()) for t in saved["tiers"]}
        print_table([(t, configs[t], m) for t, m in saved["tiers"].items()], saved["before_batch"])
        return 0
    tiers = [t for t in args.tiers.split(",") if t]
    if [t for t in tiers if t not in TIERS] or not (tiers or args.runs):
        raise UsageError(f"give --tiers from {', '.join(TIERS)} and/or --runs DIR...; got --tiers {args.tiers!r}")
    if args.epochs < 2:
        raise UsageError(f"--epochs must be >= 2 (the training time is read between logged epochs), got {args.epochs}")
    if args.runs:
        shares = [(run, *run_share(run)) for run in args.runs]  # every run read before the table starts
        print("| run | evaluations (with test) | evaluation s | wall s | share |\n|---|---|---|---|---|")
        for run, eval_s, wall, n, tests in shares:
            print(f"| {run.name} | {n} ({tests}) | {eval_s:.0f} | {wall:.0f} | {100 * eval_s / wall:.1f} % |")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for tier in tiers:  # before and after of a tier back to back, so that load drifts hit both alike
            before_update, old_eval, old_fit, config = measure(
                tier, args.data_dir, args.epochs, Path(tmp) / f"{tier}-before", args.before_batch
            )
            after_update, new_eval, new_fit, _ = measure(
                tier, args.data_dir, args.epochs, Path(tmp) / f"{tier}-after", None
            )
            measured = {
                "ms_per_update": 1000 * (before_update + after_update) / 2,  # the same training, sampled twice
                "eval_s_before": old_eval,
                "eval_s_after": new_eval,
                "fit_s_before": old_fit,
                "fit_s_after": new_fit,
            }
            rows.append((tier, config, measured))
            print(f"{tier}: " + ", ".join(f"{k} {v:.1f}" for k, v in measured.items()), flush=True)
    if args.json:
        args.json.write_text(
            json.dumps({"before_batch": args.before_batch, "tiers": dict((t, m) for t, _, m in rows)}, indent=1) + "\n"
        )
    if rows:
        print_table(rows, args.before_batch)
    return 0


def print_table(rows: list[tuple[str, dict, dict]], before_batch: int) -> None:
    """The evaluation-share table of BENCHMARKS.md from each tier's measured numbers."""
    print(
        "\n| tier | ms per update | validation + test, s (batch before / after) | cadence before / after | "
        "share before | share after |\n|---|---:|---|---|---:|---:|"
    )

    def pct(worst: float, best: float) -> str:
        return f"{100 * worst:.1f} %" if abs(worst - best) < 5e-4 else f"{100 * best:.1f}–{100 * worst:.1f} %"

    for tier, config, m in rows:
        shares = projected(
            m["ms_per_update"] / 1000,
            m["eval_s_before"],
            m["eval_s_after"],
            config,
            BEFORE[tier],
            m["fit_s_before"],
            m["fit_s_after"],
        )
        every, test = BEFORE[tier]
        print(
            f"| {tier} | {m['ms_per_update']:.0f} | {m['eval_s_before']:.1f} / {m['eval_s_after']:.1f} "
            f"({before_batch} / {config.get('eval_batch_size', 500)}) | every {every} epoch(s), test {test} / every "
            f"{config.get('eval_every', 1)}, test {config.get('eval_test', 'every')} ({shares['evaluations']} "
            f"evaluations) | {pct(shares['before, worst'], shares['before, best'])} | "
            f"{pct(shares['after, worst'], shares['after, best'])} |"
        )


if __name__ == "__main__":
    run_main(main, prog="python experiments/eval_share.py")
