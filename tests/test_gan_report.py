import json

import pytest

from manifold_mixup.common.config import UsageError
from manifold_mixup.gan.report import main, markdown, run_scores, summarize


def fake_run(root, name, scores, commit="abc1234def", wall=None, metrics="{}\n"):
    run = root / name
    run.mkdir(parents=True)
    (run / "metrics.jsonl").write_text(metrics)
    summary = {"status": "completed", "steps": 3000, "wall_time_s": 61.0, "provenance": {"commit": commit}} | scores
    (run / "summary.json").write_text(json.dumps(summary))
    if wall is not None:
        (root / f"{name}.wall_s").write_text(str(wall))
    return run


def ring(modes, good):
    return {"modes_covered": modes, "high_quality": good}


def test_each_seed_in_seed_order_then_mean_and_sample_std(tmp_path, capsys):
    runs = [
        fake_run(tmp_path, "h1_pixel-s12", ring(8, 0.9), wall=120),
        fake_run(tmp_path, "h1_pixel-s10", ring(6, 0.5), wall=60),
        fake_run(tmp_path, "none-s10", ring(3, 0.25), commit="fedcba9876"),
    ]
    (tmp_path / "none-s11").mkdir()  # still training: no summary.json, left out with a note
    (tmp_path / "none-s11" / "metrics.jsonl").write_text("{}\n")
    assert main([str(r) for r in runs] + [str(tmp_path / "none-s11")]) == 0
    out, err = capsys.readouterr()
    lines = out.strip().splitlines()
    assert lines[0].startswith("| run | seeds | modes covered (of 8), per seed | modes covered (of 8), mean ± std |")
    assert lines[2] == "| `h1_pixel` | 10, 12 | 6, 8 | 7.0 ± 1.4 | 0.50, 0.90 | 0.700 ± 0.283 | 1.5 ± 0.7 | abc1234 |"
    assert lines[3] == "| `none` | 10 | 3 | 3.0 ± 0.0 | 0.25 | 0.250 ± 0.000 | 1.0 ± 0.0 | fedcba9 |"
    assert "none-s11" in err


def test_image_scores_are_found_by_suffix_and_the_is_std_is_not_a_score(tmp_path):
    run = fake_run(tmp_path, "pixel-s0", {"digits-cnn_fid": 2.5, "digits-cnn_is": 7.0, "digits-cnn_is_std": 0.2})
    from manifold_mixup.common.report import load_run

    assert run_scores(load_run(run)) == {"digits-cnn_fid": 2.5, "digits-cnn_is": 7.0}
    row = markdown(summarize([load_run(run)])).splitlines()
    assert "FID, per seed" in row[0] and "IS, mean ± std" in row[0]
    assert row[2].startswith("| `pixel` | 0 | 2.50 | 2.500 ± 0.000 | 7.00 | 7.000 ± 0.000 |")


def test_archived_records_give_the_same_table(tmp_path, capsys):
    runs = [fake_run(tmp_path / "runs", f"none-s{s}", ring(s + 5, 0.1 * s), wall=30 * (s + 1)) for s in range(3)]
    assert main([str(r) for r in runs] + ["--archive", str(tmp_path / "records")]) == 0
    from_runs = capsys.readouterr().out
    assert main([str(tmp_path / "records" / f"none-s{s}.json") for s in range(3)]) == 0
    assert capsys.readouterr().out == from_runs
    with pytest.raises(UsageError, match="--overwrite"):  # an existing record is never replaced by mistake
        main([str(r) for r in runs] + ["--archive", str(tmp_path / "records")])


def test_runs_without_scores_or_with_other_scores_are_one_line_errors(tmp_path):
    unscored = fake_run(tmp_path, "none-s0", {})
    with pytest.raises(UsageError, match="--eval-samples"):
        main([str(unscored)])
    a = fake_run(tmp_path, "pixel-s0", ring(8, 0.9))
    b = fake_run(tmp_path, "pixel-s1", {"digits-cnn_fid": 2.0, "digits-cnn_is": 7.0})
    with pytest.raises(UsageError, match="other scores"):
        main([str(a), str(b)])
    c = fake_run(tmp_path, "dgan-s0", {"digits-cnn_fid": 2.0, "digits-cnn_is": 7.0})
    with pytest.raises(UsageError, match="report them separately"):
        main([str(a), str(c)])
