import os
import shlex
import subprocess

import manifold_mixup.gan.train as T
from manifold_mixup.common.config import cli_overrides, resolve_config

from conftest import ROOT


def dry_run(out, seeds="0 1 2"):
    env = os.environ | {"DRY": "1", "OUT": str(out), "SEEDS": seeds, "STEPS": "7"}
    result = subprocess.run(
        ["bash", str(ROOT / "experiments" / "gan_table6.sh")], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    return [shlex.split(line) for line in result.stdout.splitlines()]


def test_the_grid_has_eight_rows_per_seed_and_every_command_is_a_valid_config(tmp_path):
    commands = dry_run(tmp_path)
    assert len(commands) == 8 * 3
    names = {c[c.index("--out") + 1].rsplit("/", 1)[1] for c in commands}
    assert {"gangp-none-s0", "gangp-frff-gmix-s2", "sngan-fr-s1"} <= names and len(names) == 24
    parser = T.get_args_parser()
    for command in commands:
        assert command[:3] == ["python", "-m", "gan.train"]
        args = parser.parse_args(command[3:])
        cfg = resolve_config(T.GANConfig, args.config, cli_overrides(args))
        T.check_combinations(cfg)
        name = args.out.rsplit("/", 1)[1]
        assert cfg.steps == 7 and cfg.mix == (() if "-none-" in name else ("pixel",))
        assert cfg.g_mix == ("gmix" in name) and (cfg.gp > 0) == name.startswith("gangp")
        if "-frff" in name:
            assert cfg.mix_pairs == ("fr", "ff")


def test_the_grid_skips_finished_runs_and_resumes_interrupted_ones(tmp_path):
    (tmp_path / "sngan-fr-s0").mkdir()
    (tmp_path / "sngan-fr-s0" / "summary.json").write_text("{}")
    (tmp_path / "gangp-frff-s0").mkdir()
    (tmp_path / "gangp-frff-s0" / "checkpoint.pt").write_text("")
    commands = {c[c.index("--out") + 1].rsplit("/", 1)[1]: c for c in dry_run(tmp_path, "0")}
    assert len(commands) == 7 and "sngan-fr-s0" not in commands
    assert commands["gangp-frff-s0"][-1] == "--resume" and "--resume" not in commands["gangp-none-s0"]
