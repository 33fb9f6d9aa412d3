import pytest

from common.cli import ArgumentParser, run_main
from common.config import UsageError


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
