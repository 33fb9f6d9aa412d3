import json

import pytest

from manifold_mixup.common.config import UsageError
from manifold_mixup.gan.table6 import ROWS, collect, main, markdown, sample_panels, summarize


def fake_run(root, name, fid, inception, wall=None):
    run = root / name
    run.mkdir(parents=True)
    (run / "metrics.jsonl").write_text("{}\n")
    summary = {"status": "finished", "digits-cnn_fid": fid, "digits-cnn_is": inception, "digits-cnn_is_std": 0.3}
    (run / "summary.json").write_text(json.dumps(summary))
    if wall is not None:
        (root / f"{name}.wall_s").write_text(str(wall))


def test_rows_are_mean_and_sample_std_over_seeds_with_the_preprint_beside(tmp_path, capsys):
    for seed, (fid, inception) in enumerate([(2.0, 7.0), (3.0, 8.0), (4.0, 9.0)]):
        fake_run(tmp_path, f"gangp-frff-s{seed}", fid, inception, wall=600)
    fake_run(tmp_path, "sngan-none-s0", 1.5, 8.5)
    (tmp_path / "sngan-fr-s0").mkdir()  # still training: no summary.json
    (tmp_path / "notes").mkdir()  # not a run of this grid
    assert main([str(tmp_path), "--json", str(tmp_path / "t.json")]) == 0
    out, err = capsys.readouterr()
    lines = out.strip().splitlines()
    assert len(lines) == 2 + len(ROWS)
    row = next(line for line in lines if "`gangp-frff`" in line)
    assert "| 3 | 3.00 ± 1.00 | 8.00 ± 1.00 | 7.55 ± 0.08 | 25.6 | 10.0 ± 0.0 |" in row
    assert "| 1 | 1.50 ± 0.00 | 8.50 ± 0.00 | 7.94 ± 0.08 | 21.7 | — |" in next(l for l in lines if "`sngan-none`" in l)
    assert "| 0 | — | — | 7.30 ± 0.09 | 30.2 |" in next(l for l in lines if "`gangp-none`" in l)
    assert "sngan-fr-s0" in err
    saved = json.loads((tmp_path / "t.json").read_text())
    assert saved["gangp-frff"]["fid"] == [3.0, 1.0] and saved["gangp-frff"]["runs"] == 3


def test_generator_term_rows_have_no_preprint_numbers():
    table = summarize({"gangp-fr-gmix": [{"fid": 1.0, "is": 2.0}]} | {r: [] for r in ROWS if r != "gangp-fr-gmix"})
    row = next(line for line in markdown(table).splitlines() if "`gangp-fr-gmix`" in line)
    assert row.endswith("| — | — | — |") and "1.00 ± 0.00" in row


def test_an_empty_or_unscored_grid_is_a_one_line_error(tmp_path):
    with pytest.raises(UsageError, match="no finished run"):
        collect(tmp_path)
    run = tmp_path / "sngan-fr-s0"
    run.mkdir()
    (run / "summary.json").write_text(json.dumps({"status": "finished"}))
    with pytest.raises(UsageError, match="not scored"):
        collect(tmp_path)
    with pytest.raises(UsageError, match="not a directory"):
        collect(tmp_path / "missing")


def test_the_sample_figure_shows_each_finished_rows_last_grid(tmp_path):
    import matplotlib.pyplot as plt
    import numpy as np

    fake_run(tmp_path, "gangp-none-s0", 2.0, 7.0)
    fake_run(tmp_path, "sngan-fr-s0", 2.0, 7.0)
    for name in ("gangp-none-s0", "sngan-fr-s0"):
        (tmp_path / name / "samples").mkdir()
        for step in (1, 2):
            plt.imsave(tmp_path / name / "samples" / f"step{step:07d}.png", np.full((8, 8), step / 2.0), cmap="gray")
    panels = sample_panels(tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for _, p in panels] == [
        "gangp-none-s0/samples/step0000002.png",
        "sngan-fr-s0/samples/step0000002.png",
    ]
    out = tmp_path / "fig" / "samples.png"
    assert main([str(tmp_path), "--samples", str(out)]) == 0
    assert out.is_file() and plt.imread(out).shape[1] > 300
    with pytest.raises(UsageError, match="no finished seed-1 run"):
        main([str(tmp_path), "--samples", str(out), "--seed", "1"])


def test_paired_differences_are_taken_seed_by_seed_against_the_rows_own_baseline(tmp_path, capsys):
    for seed, fid in enumerate([5.0, 4.0, 6.0]):
        fake_run(tmp_path, f"gangp-none-s{seed}", fid, 5.0)
    for seed, fid in [(0, 4.5), (1, 4.25), (2, 6.5)]:  # -0.5, +0.25, +0.5
        fake_run(tmp_path, f"gangp-fr-s{seed}", fid, 5.0)
    fake_run(tmp_path, "sngan-fr-s0", 1.0, 5.0)  # no sngan-none: no paired row
    assert main([str(tmp_path), "--paired"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    row = next(line for line in lines if "`gangp-fr`" in line and "s0 " in line)
    assert "| 3 | s0 -0.50, s1 +0.25, s2 +0.50 | +0.08 ± 0.52 | 1 of 3 |" in row
    assert not any("`sngan-fr`" in line and "s0 " in line for line in lines)
