"""The package's public face from outside the repository: ``import manifold_mixup`` and the ``manifold-mixup``
console command (manifold_mixup/__init__.py, manifold_mixup/cli.py)."""

import json
import subprocess
import sys
from pathlib import Path

from test_ssl_train import TINY

import manifold_mixup
from manifold_mixup.cli import COMMANDS

COMMAND = Path(sys.executable).parent / "manifold-mixup"  # installed by pip install -e . ([project.scripts])


def outside(tmp_path, *args):
    """Run a command in an empty folder outside the repository (no repository folder on sys.path)."""
    return subprocess.run([str(a) for a in args], cwd=tmp_path, capture_output=True, text=True, timeout=600)


def test_the_api_imports_from_any_directory_and_only_under_the_package_name(tmp_path):
    code = (
        "import importlib.util, manifold_mixup as m; "
        "from manifold_mixup import LayerMixup, sample_mix, soft_cross_entropy, SSLConfig, GANConfig; "
        "print(m.__file__); "
        "print([n for n in ('common', 'gan', 'analyses', 'classifiers') if importlib.util.find_spec(n)])"
    )
    result = outside(tmp_path, sys.executable, "-c", code)
    assert result.returncode == 0, result.stderr
    where, generic = result.stdout.splitlines()
    assert Path(where).parent == Path(manifold_mixup.__file__).parent
    assert generic == "[]"  # the repository's generic top-level names are not installed


def test_every_command_names_a_module_with_a_main():
    import importlib

    for name, (module, _) in COMMANDS.items():
        assert callable(importlib.import_module(module).main), name


def test_the_console_command_trains_the_digits_from_outside_the_repository(tmp_path):
    result = outside(tmp_path, COMMAND, "ssl-train", *TINY, "--out", "run")
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["final_test_error"] < 0.8  # 40 updates on the digits: better than chance (0.9)


def test_errors_name_the_console_command_in_one_line(tmp_path):
    result = outside(tmp_path, COMMAND, "ssl-train", "--epochs", "x")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stderr.startswith("manifold-mixup ssl-train: error:")
    unknown = outside(tmp_path, COMMAND, "sl-train")
    assert unknown.returncode == 2 and "unknown command 'sl-train'" in unknown.stderr
    listing = outside(tmp_path, COMMAND, "--help")
    assert listing.returncode == 0 and all(name in listing.stdout for name in COMMANDS)
