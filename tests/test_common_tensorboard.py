"""--tensorboard: the logged numbers as TensorBoard scalars, GAN samples as images, one line without the extra."""

import importlib.util
import json

import pytest
from test_gan_train import TINY_DIGITS
from test_ssl_train import TINY

from manifold_mixup.common.tensorboard import FOLDER, scalars


def read_events(run_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / FOLDER), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    return events


def test_scalars_flatten_nested_keys_and_drop_what_is_not_a_finite_number():
    row = {"step": 5, "loss": 1.5, "time": {"img_per_s": 10, "wall_s": 2.0}, "nan": float("nan"), "ok": True}
    assert dict(scalars(row)) == {"loss": 1.5, "time/img_per_s": 10.0, "time/wall_s": 2.0}


def test_ssl_run_writes_every_logged_number_as_a_scalar(tmp_path, in_process):
    out = tmp_path / "run"
    result = in_process("ssl.train", *TINY, "--out", str(out), "--tensorboard")
    assert result.returncode == 0, result.stderr
    logged = {}  # (tag, step) -> value, from metrics.jsonl
    for line in (out / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        logged.update({(name, row["step"]): value for name, value in scalars(row)})
    events = read_events(out)
    written = {(tag, e.step): e.value for tag in events.Tags()["scalars"] for e in events.Scalars(tag)}
    assert set(written) == set(logged)
    assert {tag for tag, _ in written} >= {"loss", "val_acc", "test_nll", "time/img_per_s"}
    assert all(written[k] == pytest.approx(v, rel=1e-6) for k, v in logged.items())


def test_gan_run_writes_its_sample_grids_as_images(tmp_path, in_process):
    out = tmp_path / "gan"
    result = in_process("gan.train", *TINY_DIGITS, "--out", str(out), "--tensorboard")
    assert result.returncode == 0, result.stderr
    events = read_events(out)
    assert [e.step for e in events.Images("samples")] == [3, 6]  # --sample-every 3, --steps 6
    assert "d_loss" in events.Tags()["scalars"]


def test_without_the_package_the_flag_is_one_line_and_nothing_is_written(tmp_path, in_process, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a))
    out = tmp_path / "run"
    result = in_process("ssl.train", *TINY, "--out", str(out), "--tensorboard")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "pip install" in result.stderr and "tensorboard" in result.stderr
    assert not out.exists()
