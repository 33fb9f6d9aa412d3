import json
import statistics
from pathlib import Path

import pytest

from manifold_mixup.common.config import UsageError
from manifold_mixup.common.report import markdown, run_numbers, summarize_grid

from conftest import run_module


def fake_run(path, val, test, nll=None, wall=None):
    """A run directory whose evaluations have the given validation and test accuracies."""
    path.mkdir(parents=True)
    lines = [{"step": 10, "loss": 1.0}]
    lines += [
        {"step": 10 * (i + 1), "val_acc": v, "test_acc": t, "test_nll": (nll or [0.5] * len(val))[i]}
        for i, (v, t) in enumerate(zip(val, test))
    ]
    (path / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in lines) + '{"step": 99, "val_')
    (path / "summary.json").write_text("{}")
    if wall is not None:
        Path(f"{path}.wall_s").write_text(str(wall))
    return path


def test_one_run_uses_best_validation_median_of_last_and_final(tmp_path):
    run = fake_run(tmp_path / "m-s0", [0.5, 0.9, 0.9, 0.7], [0.4, 0.8, 0.6, 0.7], nll=[3, 2, 1, 4], wall=120)
    n = run_numbers(run, last=3)
    assert n["test_error_at_best_val"] == pytest.approx(0.2)  # first of the equal maxima
    assert n["test_nll_at_best_val"] == 2
    assert n["median_test_error_last"] == pytest.approx(0.3)  # median of 0.2, 0.4, 0.3
    assert n["final_test_error"] == pytest.approx(0.3) and n["wall_min"] == 2 and n["evaluations"] == 4


def test_grid_groups_seeds_and_reports_mean_and_sample_std(tmp_path):
    tests = [0.70, 0.74, 0.78]
    runs = [fake_run(tmp_path / f"manifold-s{s}", [0.5, 0.6], [0.5, t]) for s, t in enumerate(tests)]
    runs.append(fake_run(tmp_path / "supervised-s0", [0.5], [0.5]))
    table = summarize_grid(runs)
    assert list(table) == ["manifold", "supervised"] and table["manifold"]["runs"] == 3
    mean, std = table["manifold"]["test_error_at_best_val"]
    assert mean == pytest.approx(1 - statistics.fmean(tests)) and std == pytest.approx(statistics.stdev(tests))
    text = markdown(table)
    assert "| `manifold` | 3 | 26.0 ± 4.0 |" in text and "| `supervised` | 1 | 50.0 ± 0.0 |" in text


def test_a_run_without_evaluations_is_a_usage_error(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "metrics.jsonl").write_text('{"step": 1, "loss": 2.0}\n')
    with pytest.raises(UsageError, match="no evaluation"):
        run_numbers(tmp_path / "x")


def test_cli_prints_the_table_and_refuses_a_non_run_in_one_line(tmp_path, in_process):
    fake_run(tmp_path / "input-s0", [0.5], [0.6])
    out = run_module("common.report", str(tmp_path / "input-s0"), "--json", str(tmp_path / "t.json"))
    assert out.returncode == 0 and "| `input` | 1 | 40.0 ± 0.0 |" in out.stdout
    assert json.loads((tmp_path / "t.json").read_text())["input"]["runs"] == 1
    bad = in_process("common.report", str(tmp_path))
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "Traceback" not in bad.stderr


def test_a_run_still_training_is_left_out_unless_asked(tmp_path, capsys):
    done = fake_run(tmp_path / "manifold-s0", [0.5], [0.6])
    running = fake_run(tmp_path / "manifold-s1", [0.5], [0.2])
    (running / "summary.json").unlink()
    assert summarize_grid([done, running])["manifold"]["runs"] == 1
    assert "manifold-s1" in capsys.readouterr().err
    assert summarize_grid([done, running], unfinished=True)["manifold"]["runs"] == 2


def test_archive_files_re_derive_the_table_exactly(tmp_path, capsys):
    from manifold_mixup.common.report import main

    for seed, test in enumerate([0.70, 0.74]):
        run = fake_run(tmp_path / "runs" / f"manifold-s{seed}", [0.5, 0.6], [0.5, test], wall=60)
        (run / "config.yaml").write_text(f"method: manifold\nseed: {seed}\n")
        (run / "summary.json").write_text(json.dumps({"provenance": {"commit": "abc1234"}}))
        lines = (run / "metrics.jsonl").read_text().splitlines()[:-1]  # drop the torn line, add a fit record
        lines.append(json.dumps({"step": 30, "val_acc": 0.55, "train_acc": 0.99, "test_acc": test}))
        (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")
        (run / "evaluation.json").write_text(json.dumps({"results": {"ece": 0.05, "fgsm_acc": 0.25}}))
    runs = sorted(str(p) for p in (tmp_path / "runs").iterdir() if p.is_dir())
    assert main([*runs, "--archive", str(tmp_path / "results")]) == 0
    from_runs = capsys.readouterr().out
    files = sorted(str(p) for p in (tmp_path / "results").glob("*.json"))
    assert [Path(f).name for f in files] == ["manifold-s0.json", "manifold-s1.json"]
    assert json.loads(Path(files[0]).read_text())["summary"]["provenance"]["commit"] == "abc1234"
    assert main(files) == 0
    assert capsys.readouterr().out == from_runs  # the committed records give the same table
    assert "| 1.0 ± 0.0 | 5.0 ± 0.0 | 75.0 ± 0.0 | 1.0 ± 0.0 |" in from_runs  # train error, ECE, FGSM, wall
    with pytest.raises(UsageError, match="--overwrite"):
        main([*runs, "--archive", str(tmp_path / "results")])  # never replaced without being told


def test_each_prints_one_row_per_run_with_its_commit(tmp_path, capsys):
    from manifold_mixup.common.report import main

    run = fake_run(tmp_path / "manifold-s0", [0.5, 0.9, 0.7], [0.4, 0.8, 0.7], nll=[3, 2, 1])
    (run / "summary.json").write_text(json.dumps({"provenance": {"commit": "0123456789abcdef"}}))
    with (run / "metrics.jsonl").open("a") as f:  # complete the torn line as a fit record
        f.write('acc": 0.1}\n{"step": 30, "train_acc": 0.97, "train_nll": 0.25}\n')
    other = fake_run(tmp_path / "supervised-s0", [0.6], [0.65])
    assert main([str(run), str(other), "--each"]) == 0
    rows = capsys.readouterr().out.splitlines()[-2:]
    assert rows[0] == "| `manifold-s0` | 20.00 | 2.000 | 3.0 | 0.250 | 20 | 0123456 |"  # the best val. at step 20
    assert rows[1] == "| `supervised-s0` | 35.00 | 0.500 | — | — | 10 | — |"
    (run / "evaluation.json").write_text(json.dumps({"results": {"ece": 0.05, "fgsm_acc": 0.25}}))
    assert main([str(run), str(other), "--each"]) == 0
    rows = capsys.readouterr().out.splitlines()[-2:]
    assert rows[0] == "| `manifold-s0` | 20.00 | 2.000 | 3.0 | 0.250 | 5.0 | 75.0 | 20 | 0123456 |"
    assert rows[1] == "| `supervised-s0` | 35.00 | 0.500 | — | — | — | — | 10 | — |"


def test_two_runs_of_one_name_are_not_archived_over_each_other(tmp_path):
    from manifold_mixup.common.report import main

    short = fake_run(tmp_path / "laptop" / "manifold-s0", [0.5], [0.6])
    long = fake_run(tmp_path / "laptop-long" / "manifold-s0", [0.5], [0.7])
    with pytest.raises(UsageError, match="two runs are named 'manifold-s0'"):
        main([str(short), str(long), "--archive", str(tmp_path / "results"), "--overwrite"])
    assert not (tmp_path / "results").exists()  # nothing written, not even the first


def test_json_output_is_never_replaced_without_overwrite(tmp_path):
    from manifold_mixup.common.report import main

    fake_run(tmp_path / "input-s0", [0.5], [0.6])
    (tmp_path / "config.yaml").write_text("keep: me\n")
    with pytest.raises(UsageError, match="exists"):
        main([str(tmp_path / "input-s0"), "--json", str(tmp_path / "config.yaml")])
    assert (tmp_path / "config.yaml").read_text() == "keep: me\n"


def test_a_json_file_that_is_not_an_archive_is_refused(tmp_path):
    (tmp_path / "x.json").write_text('{"a": 1}')
    with pytest.raises(UsageError, match="not a result file"):
        run_numbers(tmp_path / "x.json")
