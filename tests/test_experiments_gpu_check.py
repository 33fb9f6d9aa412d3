"""experiments/gpu_check.py: the tiny CPU mode runs every part (so the GPU command cannot rot), and the
full-size plan's trainer flags resolve to valid configs."""

import importlib.util
import json
import sys
from argparse import Namespace

import pytest
import torch

from manifold_mixup.common.config import UsageError, cli_overrides, resolve_config

from conftest import ROOT

spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "experiments" / "gpu_check.py")
gpu_check = importlib.util.module_from_spec(spec)
sys.modules["gpu_check"] = gpu_check  # dataclasses look their module up there
spec.loader.exec_module(gpu_check)


@pytest.mark.slow
def test_tiny_mode_runs_every_part_compiled_and_records_it(tmp_path):
    out = tmp_path / "check"
    assert gpu_check.main(["--device", "cpu", "--tiny", "--out", str(out)]) == 0
    record = json.loads((out / "gpu_check.json").read_text())
    parts = {p["name"]: p for p in record["parts"]}
    assert list(parts) == ["ssl-bench", "gan-bench", "ssl-run", "gan-run", "ssl-fp16"]
    for name in ("ssl-bench", "gan-bench", "ssl-run", "gan-run", "ssl-fp16"):
        assert parts[name]["status"] == "ok", parts[name]
    assert parts["ssl-bench"]["numbers"]["rows"] and parts["gan-bench"]["numbers"]["rows"]
    for name in ("ssl-run", "gan-run"):
        numbers = parts[name]["numbers"]
        assert numbers["rate"] > 0
        assert numbers["frames"] >= 1 and numbers["unique_graphs"] >= 1  # dynamo really compiled the networks
        assert numbers["graph_breaks"] == 0 and numbers["recompile_limit_hits"] == 0
        assert "compile" in numbers["speed"] and "eager" not in numbers["speed"]
    assert parts["ssl-fp16"]["status"] == "ok" and parts["ssl-fp16"]["numbers"]["rate"] > 0  # float16 + GradScaler
    assert "| ssl-run | ok |" in (out / "gpu_check.md").read_text()
    assert torch.compile is gpu_check.torch.compile  # the eager backend was scoped to the check


def test_a_folder_of_an_earlier_check_is_refused(tmp_path):
    (tmp_path / "gpu_check.json").write_text("{}")
    with pytest.raises(UsageError, match="not empty"):
        gpu_check.main(["--device", "cpu", "--tiny", "--out", str(tmp_path)])
    assert (tmp_path / "gpu_check.json").read_text() == "{}"


def test_full_size_plan_resolves_to_valid_configs(tmp_path):
    import manifold_mixup.gan.train
    import manifold_mixup.ssl.train
    from manifold_mixup.gan.config import GANConfig
    from manifold_mixup.ssl.config import SSLConfig

    args = Namespace(tiny=False, out=str(tmp_path), data_dir="data/cifar10-jpeg75")
    names = {}
    for part, _ in gpu_check.plan(args, torch.device("cpu")):
        names[part.name] = part
    assert list(names) == ["ssl-bench", "gan-bench", "ssl-run", "gan-run", "ssl-fp16"]
    ssl_argv, gan_argv = gpu_check.trainer_argv(args, torch.device("cpu"))
    for parser, cls, argv in (
        (manifold_mixup.ssl.train.get_args_parser(), SSLConfig, ssl_argv),
        (manifold_mixup.gan.train.get_args_parser(), GANConfig, gan_argv),
    ):
        parsed = parser.parse_args([*argv, "--out", str(tmp_path / "x")])
        cfg = resolve_config(cls, parsed.config, cli_overrides(parsed))
        assert cfg.compile is True and cfg.dataset == "cifar10"
