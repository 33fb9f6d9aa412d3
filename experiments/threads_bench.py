"""One run on both cores, or two runs on one core each? Real training runs of a tier, timed in turns.

    python experiments/threads_bench.py [--tiers lowlabel,ssl] [--updates 200] [--rounds 1] [--out DIR]

For each tier config, in turns (round-robin, so that a drifting machine load hits every case alike):
  - ``1 run x 2 threads``: one trainer with OMP_NUM_THREADS=2, alone;
  - ``2 runs x 1 thread``: two trainers with OMP_NUM_THREADS=1 at once (what the tier scripts do);
  - ``1 run x 1 thread``: one trainer with OMP_NUM_THREADS=1, alone (the reference).
Each trainer runs ``--updates`` updates of the tier (its data pipeline, augmentation and mixing included;
evaluation off) and logs images/s every 50 updates to its metrics file; the first logged interval (warm-up,
oneDNN's kernel selection) is dropped. Printed: images/s per run and per machine, and each case's ratio to
the one-thread reference. The machine must be otherwise idle, or the table measures the other jobs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the package, also where it was not pip-installed

from manifold_mixup.common.metrics_file import read_metrics  # noqa: E402

TIERS = {
    "lowlabel": "configs/ssl/cifar10-4k-supervised.yaml",
    "ssl": "configs/ssl/cifar10-4k-laptop.yaml",
}
CASES = {"1 run x 2 threads": (1, 2), "2 runs x 1 thread": (2, 1), "1 run x 1 thread": (1, 1)}


def start(config: str, data: str, out: Path, updates: int, threads: int) -> subprocess.Popen:
    """One trainer process: ``updates`` updates of the tier config, evaluation off, ``threads`` threads."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    cmd = [
        sys.executable,
        "-m",
        "ssl.train",
        "--config",
        config,
        "--data-dir",
        data,
        "--out",
        str(out),
        "--device",
        "cpu",
        "--epochs",
        "1",
        "--iterations-per-epoch",
        str(updates),
        "--lr-milestones",
        "none",
        "--eval-every",
        "1000",
        "--log-every",
        "50",
        "--checkpoint-every",
        "1000",
        "--seed",
        "0",
    ]
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def images_per_s(out: Path) -> float:
    """Median images/s over the logged intervals after the first."""
    rows, _ = read_metrics(out / "metrics.jsonl")
    rates = [r["time"]["img_per_s"] for r in rows if "img_per_s" in r.get("time", {})]
    if len(rates) < 2:
        raise SystemExit(f"{out}: fewer than 2 logged intervals; raise --updates")
    return statistics.median(rates[1:])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tiers", default="lowlabel,ssl", help="comma-separated: " + ", ".join(TIERS))
    p.add_argument("--data-dir", default="data/cifar10-jpeg75")
    p.add_argument("--updates", type=int, default=200)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--json", type=Path, help="also write the results here")
    args = p.parse_args()
    results: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for tier in args.tiers.split(","):
                for case, (runs, threads) in CASES.items():
                    outs = [Path(tmp) / f"{tier}-{r}-{case.replace(' ', '')}-{i}" for i in range(runs)]
                    procs = [start(TIERS[tier], args.data_dir, o, args.updates, threads) for o in outs]
                    for proc in procs:
                        if proc.wait() != 0:
                            raise SystemExit(f"trainer failed: {proc.stderr.read().strip().splitlines()[-1]}")
                    rates = [images_per_s(o) for o in outs]
                    results.setdefault(tier, {}).setdefault(case, []).extend(rates)
                    print(f"{tier} {case}: " + ", ".join(f"{x:.0f}" for x in rates) + " img/s per run", flush=True)
    print("\n| tier | case | img/s per run | img/s per machine | per machine vs 1 run x 1 thread |")
    print("|---|---|---|---|---|")
    for tier, cases in results.items():
        ref = statistics.mean(cases["1 run x 1 thread"])
        for case, rates in cases.items():
            per_run = statistics.mean(rates)
            per_machine = per_run * CASES[case][0]
            print(f"| {tier} | {case} | {per_run:.0f} | {per_machine:.0f} | {per_machine / ref:.2f}x |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
