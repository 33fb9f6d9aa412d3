"""experiments/permute_bench.py: its "index" cases really run the old indexing, its "gather" cases the package's
op, and a tiny run prints and records one row per case."""

import importlib.util
import json
import sys

import pytest
import torch

from manifold_mixup.common import layers
from manifold_mixup.common.mixup import _PermuteBatch

from conftest import ROOT

spec = importlib.util.spec_from_file_location("permute_bench", ROOT / "experiments" / "permute_bench.py")
B = importlib.util.module_from_spec(spec)
sys.modules["permute_bench"] = B
spec.loader.exec_module(B)


def backward_calls(step, monkeypatch) -> int:
    calls = []
    backward = _PermuteBatch.backward
    monkeypatch.setattr(_PermuteBatch, "backward", staticmethod(lambda ctx, g: calls.append(1) or backward(ctx, g)))
    step()
    return len(calls)


def test_plain_indexing_swaps_the_mixers_op_and_puts_it_back(monkeypatch):
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    mixer = layers.LayerMixup(net, ["input", "1"])
    x, y = torch.randn(5, 3), torch.eye(2)[torch.tensor([0, 1, 0, 1, 1])]

    def step():
        out, _ = mixer(x, y, layers.Mix(point=1, lam=torch.tensor(0.4), perm=torch.randperm(5)))
        out.sum().backward()

    assert backward_calls(step, monkeypatch) == 1
    with B.plain_indexing():
        assert backward_calls(step, monkeypatch) == 0
    assert backward_calls(step, monkeypatch) == 1  # restored


@pytest.mark.parametrize("gather", [True, False])
def test_op_cases_run_the_op_they_name(gather, monkeypatch):
    assert backward_calls(B.op_case((4, 2, 3, 3), True, gather), monkeypatch) == int(gather)


def test_a_tiny_run_prints_and_records_every_case(tmp_path, capsys):
    out = tmp_path / "bench.json"
    B.main(["--depth", "10", "--width", "1", "--batch", "4", "--repeat", "1", "--json", str(out)])
    rows = json.loads(out.read_text())["rows"]
    assert len(rows) == 3 * 2 + len(B.STEPS)
    assert all(r["gather_ms"] > 0 and r["index_ms"] > 0 for r in rows)
    printed = capsys.readouterr().out
    assert all(f"| {r['case']} |" in printed for r in rows)


def test_bad_flags_are_one_line_errors():
    with pytest.raises(Exception, match="--batch"):
        B.main(["--batch", "0"])
