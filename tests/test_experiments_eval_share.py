"""experiments/eval_share.py: the schedule arithmetic behind BENCHMARKS.md's evaluation-cost table, and the share
of a finished run read from its own records."""

import importlib.util
import json
import sys

import pytest

from manifold_mixup.common.report import main as report

from conftest import ROOT

spec = importlib.util.spec_from_file_location("eval_share", ROOT / "experiments" / "eval_share.py")
E = importlib.util.module_from_spec(spec)
sys.modules["eval_share"] = E
spec.loader.exec_module(E)


def test_projection_prices_every_evaluation_of_the_schedule():
    config = {"epochs": 15, "iterations_per_epoch": 100, "eval_every": 3, "eval_test": "best"}
    shares = E.projected(0.4, old_eval=30.0, new_eval=12.0, config=config, before=(1, "every"))
    train = 0.4 * 1500
    assert shares["evaluations"] == 5  # epochs 3, 6, 9, 12, 15
    assert shares["before, worst"] == shares["before, best"] == pytest.approx(15 * 30 / (train + 15 * 30))
    assert shares["after, worst"] == pytest.approx(5 * 12 / (train + 5 * 12))
    best = 2 * 12 + 3 * 12 / 3  # the test set at the first and the last; validation (a third) at the other 3
    assert shares["after, best"] == pytest.approx(best / (train + best))
    # --eval-test every has no best case; a last epoch off the cadence is evaluated too
    every = E.projected(0.4, 30.0, 12.0, {**config, "eval_test": "every", "epochs": 16}, before=(2, "best"))
    assert every["evaluations"] == 6 and every["after, best"] == every["after, worst"]
    assert every["before, best"] < every["before, worst"]  # 8 evaluations, the test set at 2 to 8 of them
    fit = E.projected(0.4, 30.0, 12.0, config, (1, "every"), old_fit=9.0, new_fit=3.0)  # the fit pass, once
    assert fit["before, worst"] == pytest.approx((15 * 30 + 9) / (train + 15 * 30 + 9))
    assert fit["after, worst"] == pytest.approx((5 * 12 + 3) / (train + 5 * 12 + 3))


def test_the_table_reads_back_a_saved_measurement(tmp_path, capsys):
    saved = tmp_path / "share.json"
    numbers = {"ms_per_update": 400, "eval_s_before": 30.0, "eval_s_after": 12.0, "fit_s_before": 0, "fit_s_after": 0}
    saved.write_text(json.dumps({"before_batch": 1000, "tiers": {"ssl": numbers}}))
    assert E.main(["--table", str(saved)]) == 0
    row = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ssl ")]
    config = E.yaml.safe_load((ROOT / E.TIERS["ssl"]).read_text())
    shares = E.projected(0.4, 30.0, 12.0, config, E.BEFORE["ssl"])
    assert row and f"{100 * shares['before, worst']:.1f} %" in row[0]


def test_a_finished_runs_share_is_its_evaluation_seconds_over_its_wall_time(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    rows = [
        {"step": 100, "loss": 1.0, "time": {"img_per_s": 500.0, "wall_s": 40.0}},
        {"step": 100, "val_acc": 0.5, "test_acc": 0.5, "time": {"eval_s": 6.0}},
        {"step": 200, "loss": 0.9, "time": {"img_per_s": 500.0, "wall_s": 86.0}},
        {"step": 200, "val_acc": 0.4, "time": {"eval_s": 2.0}},
    ]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert E.run_share(run) == (8.0, 88.0, 2, 1)  # wall: the last log line plus the evaluation after it
    (tmp_path / "run.wall_s").write_text("100\n")
    assert E.run_share(run)[1] == 100.0  # the grid script's own wall time wins
    archived = tmp_path / "records"
    assert report([str(run), "--archive", str(archived), "--unfinished"]) == 0
    assert E.run_share(archived / "run.json") == (8.0, 100.0, 2, 1)  # an --archive record reads the same


@pytest.mark.parametrize("argv", [[], ["--tiers", "gpu"], ["--tiers", "ssl", "--epochs", "1"], ["--runs", "nowhere"]])
def test_bad_input_is_a_usage_error(argv):
    with pytest.raises(E.UsageError):
        E.main(argv)
