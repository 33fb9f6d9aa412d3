import json

import pytest

from manifold_mixup.common.config import UsageError
from manifold_mixup.common.plot import curve, plot_runs


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
    from manifold_mixup.common.plot import read_metrics

    epochs, values = curve(read_metrics(run), "val_acc")
    assert epochs == list(range(1, 11)) and values[-1] == pytest.approx(1.0)


def test_plot_writes_a_png_with_every_run(tmp_path):
    a, b = fake_run(tmp_path / "a", 1.0), fake_run(tmp_path / "b", 0.5)
    out = plot_runs([a, b], tmp_path / "curves.png", labels=["manifold", "supervised"])
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000


def test_missing_runs_and_metrics_are_clear_errors(tmp_path, in_process):
    with pytest.raises(UsageError, match="holds no metrics.jsonl"):
        plot_runs([tmp_path], tmp_path / "x.png")
    run = fake_run(tmp_path / "a", 1.0)
    with pytest.raises(UsageError, match="none of the metrics fid"):
        plot_runs([run], tmp_path / "x.png", metrics=["fid"])
    result = in_process("common.plot", str(tmp_path / "nope"), "--out", str(tmp_path / "x.png"))
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1


def fake_gan_run(path, evaluation, mix=True):
    """A metrics.jsonl as gan.train writes it: losses every 10 updates, evaluations every 20, no epochs."""
    path.mkdir()
    lines = [{"step": 0, "scoring": "scoring skipped: Inception weights not found"}] if "fid" not in evaluation else []
    for s in range(10, 61, 10):
        losses = {"d_loss": 1.4 - s / 100, "d_real": 0.1, "d_fake": -0.1, "g_loss": 0.7 + s / 100}
        lines.append({"step": s, "lr_g": 2e-4, **losses, **({"d_mix": 0.6} if mix else {}), "time": {"wall_s": s}})
        if s % 20 == 0:
            lines.append({"step": s, **{k: v * s for k, v in evaluation.items()}})
    (path / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in lines))
    return path


def test_a_gan_run_is_plotted_against_steps_with_the_keys_it_logged(tmp_path):
    from manifold_mixup.common.plot import panels, read_metrics

    ring = read_metrics(fake_gan_run(tmp_path / "ring", {"modes_covered": 0.1, "high_quality": 0.01}))
    assert panels([ring]) == ["d_loss", "g_loss", "d_mix", "modes_covered", "high_quality"]
    assert curve(ring, "modes_covered", "step")[0] == [20, 40, 60]
    images = read_metrics(fake_gan_run(tmp_path / "images", {"fid": 1.0, "is": 0.1, "is_std": 0.01}, mix=False))
    assert panels([images]) == ["d_loss", "g_loss", "fid", "is"]
    assert panels([images], ["g_loss", "is_std"]) == ["g_loss", "is_std"]
    with pytest.raises(UsageError, match=r"none of the metrics val_acc .*\(against step\)"):
        panels([images], ["val_acc"])
    ssl = read_metrics(fake_run(tmp_path / "ssl", 1.0))
    assert panels([ssl]) == ["loss", "w", "val_acc", "test_acc"]
    both = panels([ring, ssl])  # runs of both trainers: the GAN's keys, then the SSL ones
    assert both == ["d_loss", "g_loss", "d_mix", "modes_covered", "high_quality", "loss", "w", "val_acc", "test_acc"]


def test_the_command_plots_a_gan_run_by_default_and_by_flag(tmp_path, main_in_process):
    from manifold_mixup.common.plot import main

    run = fake_gan_run(tmp_path / "ring", {"modes_covered": 0.1, "high_quality": 0.01})
    for extra in ([], ["--metrics", "d_loss,modes_covered"]):
        out = tmp_path / f"gan{len(extra)}.png"
        code, stdout, err = main_in_process(main, run, "--out", out, *extra)
        assert code == 0 and stdout.strip() == str(out), err
        assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    code, _, err = main_in_process(main, run, "--x", "epoch", "--out", tmp_path / "x.png")  # a GAN has no epochs
    assert code == 2 and len(err.strip().splitlines()) == 1 and "against epoch" in err
    assert not (tmp_path / "x.png").exists()
