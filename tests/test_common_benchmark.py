import argparse
import re

import pytest
import torch

from manifold_mixup.common.benchmark import (
    Timing,
    check_timing_args,
    markdown_table,
    same_draws,
    time_paths,
    time_steps,
)
from manifold_mixup.common.config import UsageError


def test_cases_are_warmed_up_then_timed_in_turns():
    calls = []
    cases = [(name, lambda name=name: calls.append(name), 10) for name in ("a", "b")]
    timings = time_steps(cases, torch.device("cpu"), warmup=2, repeat=3)
    assert calls == ["a", "a", "b", "b"] + ["a", "b"] * 3
    assert [t.name for t in timings] == ["a", "b"] and all(t.ms >= 0 for t in timings)


def test_same_draws_gives_every_case_the_same_random_sequence():
    seen = {"a": [], "b": []}
    cases = {name: same_draws(lambda name=name: seen[name].append(float(torch.rand(())))) for name in seen}
    for _ in range(3):
        cases["a"]()
        torch.rand(5)  # anything drawn between the calls does not shift the next draw
        cases["b"]()
    assert seen["a"] == seen["b"] and len(set(seen["a"])) == 3


def test_time_paths_counts_flops_on_the_first_path_only_and_shares_them_by_kind():
    x = torch.randn(8, 8)
    calls = []

    def matmul(path):
        return lambda: calls.append(path) or x @ x

    cases = [(f"{p}: mm", matmul(p), 8) for p in ("plain", "amp")]
    rows = time_paths(cases, "plain", torch.device("cpu"), warmup=0, repeat=2)
    assert [r.name for r in rows] == ["plain: mm", "amp: mm"]
    assert rows[0].flops == rows[1].flops == 2 * 8**3  # counted once, on plain
    assert calls == ["plain", "amp"] * 2 + ["plain"]  # in turns, then one counting call of the first path


def test_median_and_throughput():
    import time

    durations = iter([0.0, 0.03, 0.01, 0.02])  # warm-up, then three timed calls
    timing = time_steps([("sleep", lambda: time.sleep(next(durations)), 50)], torch.device("cpu"), 1, 3)[0]
    assert 15 < timing.ms < 40  # the median of 30, 10, 20 ms (plus overhead)
    assert Timing("x", 100.0, 50, None).images_per_s == 500


def test_table_reports_ratios_to_the_first_row():
    table = markdown_table([Timing("plain", 10.0, 100, None), Timing("mixup", 10.5, 100, 12.0, flops=2e9)])
    assert "| mixup | 10.5 | 9524 | 1.050× | 12 | 0.19 |" in table


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"repeat": 0}, "--repeat >= 1"),
        ({"warmup": -1}, "--warmup must be >= 0"),
        ({"threads": 0}, "--threads must be >= 1"),
        ({"paths": "plain,turbo"}, "unknown path 'turbo'"),
    ],
)
def test_bad_timing_arguments_are_usage_errors(changes, message):
    good = {"warmup": 1, "repeat": 3, "threads": None, "paths": "plain,amp"}
    assert check_timing_args(argparse.Namespace(**good), ["plain", "amp"]) == ["plain", "amp"]
    with pytest.raises(UsageError, match=re.escape(message)):
        check_timing_args(argparse.Namespace(**{**good, **changes}), ["plain", "amp"])
