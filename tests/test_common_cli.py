import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import manifold_mixup.ssl.train as S
from manifold_mixup.common.cli import (
    ArgumentParser,
    command_line,
    integer,
    output_path,
    positive_int,
    run_main,
    write_json_beside,
)
from manifold_mixup.common.config import UsageError
from manifold_mixup.common.device import resolve_device

from conftest import ROOT


def test_argparse_errors_are_one_line_with_exit_code_2(capsys):
    parser = ArgumentParser(prog="demo")
    parser.add_argument("--n", type=int)
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args(["--n", "x"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("demo: error: argument --n") and "(see --help)" in err


def test_usage_errors_become_one_line_and_exit_code_2(capsys):
    def main(argv):
        raise UsageError("--labels 45 does not divide into 10 classes")

    with pytest.raises(SystemExit) as exit_info:
        run_main(main, [], prog="python -m ssl.train")
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == "python -m ssl.train: error: --labels 45 does not divide into 10 classes\n"


def test_return_codes_pass_through():
    with pytest.raises(SystemExit) as exit_info:
        run_main(lambda argv: 130, [])
    assert exit_info.value.code == 130
    run_main(lambda argv: 0, [])  # success returns normally


def test_unknown_options_are_named_with_the_closest_valid_ones(capsys):
    parser = ArgumentParser(prog="demo")
    parser.add_argument("--mix-pairs")
    parser.add_argument("--lr-decay")
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args(["--mix-pair", "rf"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1
    assert "unknown option --mix-pair (did you mean --mix-pairs? valid: --help, --lr-decay, --mix-pairs)" in err


def test_abbreviated_options_are_refused(capsys):
    parser = ArgumentParser(prog="demo")
    parser.add_argument("--lr-decay")
    with pytest.raises(SystemExit):
        parser.parse_args(["--lr", "0.1"])  # must not silently set --lr-decay
    assert "unknown option --lr" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# Bad inputs to a trainer: one line, exit 2, no run folder, and nothing loaded before the check.

SSL = ["--config", str(ROOT / "configs" / "ssl" / "digits.yaml"), "--epochs", "1", "--depth", "10", "--width", "1"]


def cli(argv, capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        run_main(S.main, argv, prog="python -m ssl.train")
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


def assert_one_line_error(code: int, err: str, fragment: str) -> None:
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err and fragment in err, err


@pytest.fixture
def no_data(monkeypatch):
    """Fail the test if the trainer gets as far as loading data."""

    def build_data(*args, **kwargs):
        raise AssertionError("data was loaded before the bad input was noticed")

    monkeypatch.setattr(S, "build_data", build_data)


NO_MPS = [] if torch.backends.mps.is_available() else ["mps"]  # refused where there is no Apple GPU


@pytest.mark.parametrize(
    "device", [*NO_MPS, "meta", "nonsense", "cuda:99"] + ([] if torch.cuda.is_available() else ["cuda"])
)
def test_unsupported_devices_are_one_line_and_leave_no_run_folder(tmp_path, capsys, no_data, device):
    code, _, err = cli([*SSL, "--device", device, "--out", str(tmp_path / "run")], capsys)
    assert_one_line_error(code, err, f"{device}")
    assert list(tmp_path.iterdir()) == []


def test_resolve_device_accepts_only_cpu_and_visible_gpus():
    assert resolve_device("cpu").type == "cpu"
    for name in [*NO_MPS, "meta", "xla", "nonsense", "", "cuda:99"] + ([] if torch.cuda.is_available() else ["cuda"]):
        with pytest.raises(UsageError):
            resolve_device(name)


def test_an_out_under_a_regular_file_is_refused_before_loading_data(tmp_path, capsys, no_data):
    passwd = tmp_path / "passwd"
    passwd.write_text("root:x:0:0\n")
    code, _, err = cli([*SSL, "--device", "cpu", "--out", str(passwd / "x")], capsys)
    assert_one_line_error(code, err, "is a file")
    assert passwd.read_text() == "root:x:0:0\n" and list(tmp_path.iterdir()) == [passwd]


def test_a_read_only_out_is_refused_before_loading_data(tmp_path, capsys, monkeypatch, no_data):
    # root ignores permission bits, so the answer of access(2) for a read-only file system is simulated
    read_only = tmp_path / "mnt"
    read_only.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == read_only else real_access(p, mode))
    code, _, err = cli([*SSL, "--device", "cpu", "--out", str(read_only / "runs" / "x")], capsys)
    assert_one_line_error(code, err, "is not writable")
    assert list(read_only.iterdir()) == []


def test_the_run_line_is_printed_only_once_the_run_has_started(tmp_path, capsys):
    code, out, err = cli([*SSL, "--device", "cpu", "--labels", "15", "--out", str(tmp_path / "run")], capsys)
    assert_one_line_error(code, err, "--labels 15")
    assert "run:" not in out and not (tmp_path / "run").exists()


@pytest.mark.parametrize("text", [b"lr: 0.1\nmethod: manifold\xe9\n", b"lr: [0.1,\n"])
def test_a_config_file_that_is_not_utf8_or_not_yaml_is_one_line(tmp_path, capsys, no_data, text):
    config = tmp_path / "c.yaml"
    config.write_bytes(text)
    code, _, err = cli(["--config", str(config), "--device", "cpu", "--out", str(tmp_path / "run")], capsys)
    assert_one_line_error(code, err, str(config))
    assert config.read_bytes() == text and list(tmp_path.iterdir()) == [config]


def test_flag_values_parse_or_name_the_flag():
    assert positive_int(None, "--n", 7) == 7 and positive_int(" 12 ", "--n", 7) == 12
    assert integer("-3", "--seed") == -3 and integer(4, "--seed") == 4
    for bad in ("0", "-1", "2.5", "x", ""):
        with pytest.raises(UsageError, match="--n: expected a positive integer"):
            positive_int(bad, "--n", 7)
    for bad in ("1.0", "seed", "--", ""):
        with pytest.raises(UsageError, match="--seed: expected an integer"):
            integer(bad, "--seed")


def test_output_files_need_their_suffix_and_the_record_goes_beside(tmp_path):
    with pytest.raises(UsageError, match="--out must name a .png file, got 'fig.pdf'"):
        output_path("fig.pdf", ".png")
    out = output_path(str(tmp_path / "fig.png"), ".png")
    path = write_json_beside(out, {"table": [1, 2]})
    assert path == tmp_path / "fig.json" and json.loads(path.read_text()) == {"table": [1, 2]}
    assert command_line("python -m analyses.spiral", ["--seed", "3"]) == "python -m analyses.spiral --seed 3"


def test_a_closed_pipe_ends_the_command_quietly(tmp_path):
    """`python -m common.report ... | head`: the reader goes away; no traceback, exit 1 as a shell tool."""
    script = "import sys\nfor i in range(100000):\n    print('row', i)\n"
    code = (
        "from manifold_mixup.common.cli import run_main\n"
        f"def main(argv):\n    exec({script!r})\n    return 0\n"
        "run_main(main, [], prog='p')\n"
    )
    result = subprocess.run(
        f"{sys.executable} -c {shlex.quote(code)} | head -1; exit ${{PIPESTATUS[0]}}",
        shell=True,
        executable="/bin/bash",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.stdout == "row 0\n" and result.returncode == 1
    assert "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr, result.stderr
