"""A GAN grid's final scores, every seed's value and mean ± std: the ring and digits tables of docs/gan.md.

    python -m gan.report runs/ring/{none,pixel,h1_pixel}-s1?                 # modes covered, high-quality points
    python -m gan.report runs/dgan/*-s? --archive docs/results/dgan          # keep each run's record
    python -m gan.report docs/results/dgan/{none,pixel,h1_pixel}-s?.json     # the table, from the records

A run's scores are the numbers of the final evaluation in its ``summary.json``: ``modes_covered`` and
``high_quality`` on the ring, ``<extractor>_fid`` and ``<extractor>_is`` on images (``digits-cnn_fid``). Runs
are grouped by their name without the seed suffix (``-s<N>``), in the order the groups first appear; a group's
row lists each seed's value in seed order, then mean ± std (sample std), the wall time and the commits its runs
ran at. Runs still training (no summary.json) are left out with a note. ``--archive DIR`` writes each run's
record in the format of ``python -m common.report --archive`` (config, summary, every metrics line, wall time).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from manifold_mixup.common.cli import ArgumentParser, run_main
from manifold_mixup.common.config import UsageError
from manifold_mixup.common.report import archive, finished, finished_records, group_name, mean_std

# score key (or key suffix) -> (column title, decimals)
SCORES = {
    "modes_covered": ("modes covered (of 8)", 0),
    "high_quality": ("high-quality fraction", 2),
    "_fid": ("FID", 2),
    "_is": ("IS", 2),
}


def score_key(key: str) -> str | None:
    """The entry of :data:`SCORES` a summary key is a score of (``digits-cnn_fid`` -> ``_fid``), else None."""
    if key in SCORES:
        return key
    return next((suffix for suffix in SCORES if suffix.startswith("_") and key.endswith(suffix)), None)


def run_scores(record: dict[str, Any]) -> dict[str, float]:
    """{summary key: value} of the scores in a finished run's summary; a run without any is a UsageError."""
    summary = record.get("summary") or {}
    scores = {
        k: float(v)
        for k, v in summary.items()
        if score_key(k) and isinstance(v, (int, float)) and not isinstance(v, bool)
    }
    if not scores:
        raise UsageError(f"{record['name']}: its summary.json holds no scores; train it with --eval-samples > 0")
    return scores


def seed_of(name: str) -> int:
    suffix = name.rsplit("-s", 1)
    return int(suffix[1]) if len(suffix) == 2 and suffix[1].isdigit() else -1


def summarize(records: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """{group: {"runs": n, "seeds": [...], "scores": {key: [value per seed]}, "wall_min": [...], "commits": [...]}},
    groups in the order they first appear, runs in seed order. Runs of one group must report the same scores."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        groups.setdefault(group_name(record["name"]), []).append(record)
    table = {}
    for group, members in groups.items():
        members = sorted(members, key=lambda r: seed_of(r["name"]))
        scores = [run_scores(r) for r in members]
        keys = list(scores[0])
        if odd := [r["name"] for r, s in zip(members, scores) if list(s) != keys]:
            raise UsageError(f"{', '.join(odd)} report other scores than {members[0]['name']} ({', '.join(keys)})")
        walls = [r.get("wall_s") for r in members]
        commits = sorted({((r["summary"].get("provenance") or {}).get("commit") or "—")[:7] for r in members})
        table[group] = {
            "runs": len(members),
            "seeds": [seed_of(r["name"]) for r in members],
            "scores": {k: [s[k] for s in scores] for k in keys},
            "wall_min": [w / 60 for w in walls] if all(w is not None for w in walls) else None,
            "commits": commits,
        }
    return table


def markdown(table: dict[str, dict[str, Any]]) -> str:
    """One row per group: for each score, the values per seed and their mean ± std; wall time; commits."""
    keys = list(next(iter(table.values()))["scores"])
    for group, row in table.items():
        if list(row["scores"]) != keys:
            raise UsageError(f"group {group!r} reports other scores than the first group; report them separately")
    head = ["run", "seeds"]
    for key in keys:
        title = SCORES[score_key(key) or key][0]
        head += [f"{title}, per seed", f"{title}, mean ± std"]
    head += ["wall (min)", "commit"]
    lines = ["| " + " | ".join(head) + " |", "|---|---|" + "---|" * (len(head) - 2)]
    for group, row in table.items():
        cells = [f"`{group}`", ", ".join(map(str, row["seeds"]))]
        for key, values in row["scores"].items():
            digits = SCORES[score_key(key) or key][1]
            mean, std = mean_std(values)
            cells += [", ".join(f"{v:.{digits}f}" for v in values), f"{mean:.{digits + 1}f} ± {std:.{digits + 1}f}"]
        wall = row["wall_min"]
        cells += ["—" if wall is None else "{:.1f} ± {:.1f}".format(*mean_std(wall)), ", ".join(row["commits"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m gan.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="GAN run directories or --archive files, named <name>-s<seed>")
    parser.add_argument("--archive", default=None, metavar="DIR", help="write each run's record to DIR/<name>.json")
    parser.add_argument("--overwrite", action="store_true", help="let --archive replace existing files")
    args = parser.parse_args(argv)
    print(markdown(summarize(finished_records(args.runs))))
    if args.archive:
        written = archive([r for r in args.runs if finished(r)], Path(args.archive), args.overwrite)
        print(f"archived {len(written)} run record(s) in {args.archive}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    run_main(main, prog="python -m gan.report")
