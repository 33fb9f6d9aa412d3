import json

import pytest

from common.config import UsageError
from common.plot import curve, plot_runs

from conftest import run_module


def fake_run(path, slope):
    path.mkdir()
    lines = [{"step": s, "epoch": s / 10, "loss": 2 - slope * s / 100, "w": min(s / 50, 1)} for s in range(10, 101, 10)]
    lines += [
        {"step": s, "epoch": s // 10, "val_acc": slope * s / 100, "test_acc": slope * s / 110}
        for s in range(10, 101, 10)
    ]
    (path / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in lines))
    return path


def test_curve_reads_one_metric_against_epochs(tmp_path):
    run = fake_run(tmp_path / "a", 1.0)
    from common.plot import read_metrics

    epochs, values = curve(read_metrics(run), "val_acc")
    assert epochs == list(range(1, 11)) and values[-1] == pytest.approx(1.0)


def test_plot_writes_a_png_with_every_run(tmp_path):
    a, b = fake_run(tmp_path / "a", 1.0), fake_run(tmp_path / "b", 0.5)
    out = plot_runs([a, b], tmp_path / "curves.png", labels=["manifold", "supervised"])
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000


def test_missing_runs_and_metrics_are_clear_errors(tmp_path):
    with pytest.raises(UsageError, match="holds no metrics.jsonl"):
        plot_runs([tmp_path], tmp_path / "x.png")
    run = fake_run(tmp_path / "a", 1.0)
    with pytest.raises(UsageError, match="none of the metrics fid"):
        plot_runs([run], tmp_path / "x.png", metrics=["fid"])
    result = run_module("common.plot", str(tmp_path / "nope"), "--out", str(tmp_path / "x.png"))
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
