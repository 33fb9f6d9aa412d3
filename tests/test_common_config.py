from dataclasses import dataclass
from typing import ClassVar, Literal

import pytest

from manifold_mixup.common.cli import trainer_parser
from manifold_mixup.common.config import UsageError, check, cli_overrides, coerce, diff, opt, resolve_config, to_dict


@dataclass(frozen=True)
class Demo:
    lr: float = opt(0.1, "learning rate")
    epochs: int = opt(10, "epochs")
    method: Literal["manifold", "input", "supervised"] = opt("manifold", "method")
    points: tuple[str, ...] = opt(("pixel", "h1"), "mixing points")
    milestones: tuple[int, ...] = opt((5, 8), "lr drops")
    ema: bool = opt(False, "keep an EMA")
    split: str | None = opt(None, "split file")

    def __post_init__(self):
        check(self.lr > 0, f"lr must be positive, got {self.lr}")


def parse(argv, tmp_path=None):
    parser = trainer_parser(Demo, "demo", "demo trainer", default_config=None)
    return parser.parse_args(argv)


def test_defaults_then_yaml_then_command_line(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("lr: 0.5\nepochs: 3\nmilestones: [1, 2]\n")
    args = parse(["--epochs", "7", "--points", "h1,pixel", "--ema"])
    cfg = resolve_config(Demo, path, cli_overrides(args))
    assert cfg == Demo(lr=0.5, epochs=7, points=("h1", "pixel"), milestones=(1, 2), ema=True)


def test_yaml_accepts_dashes_and_exponents_without_a_dot(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("lr: 1e-3\nsplit: runs/x/split.npz\n")  # YAML 1.1 reads 1e-3 as a string
    cfg = resolve_config(Demo, path)
    assert cfg.lr == 1e-3 and cfg.split == "runs/x/split.npz"


def test_unknown_yaml_key_names_it_and_lists_valid_keys(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("learning_rate: 0.5\n")
    with pytest.raises(UsageError, match=r"unknown key 'learning_rate' \(valid keys: lr, epochs, method"):
        resolve_config(Demo, path)


def test_bad_choice_lists_the_choices():
    with pytest.raises(
        UsageError, match=r"--method: invalid value 'mixup' \(choose from manifold, input, supervised\)"
    ):
        resolve_config(Demo, None, {"method": "mixup"})


@pytest.mark.parametrize(
    ("value", "tp", "message"),
    [
        ("x", int, "expected an integer"),
        ("1.5", int, "expected an integer"),
        ("fast", float, "expected a number"),
        ("maybe", bool, "expected true or false"),
        (True, float, "expected a number"),
    ],
)
def test_bad_types_are_usage_errors(value, tp, message):
    with pytest.raises(UsageError, match=message):
        coerce(value, tp, "field")


def test_range_checks_in_post_init_become_usage_errors():
    with pytest.raises(UsageError, match="lr must be positive"):
        resolve_config(Demo, None, {"lr": "-1"})


def test_optional_fields_accept_none():
    assert resolve_config(Demo, None, {"split": "none"}).split is None


def test_missing_and_malformed_yaml_files(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        resolve_config(Demo, tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("lr: [1,\n")
    with pytest.raises(UsageError, match="not valid YAML"):
        resolve_config(Demo, bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(UsageError, match="must hold a mapping"):
        resolve_config(Demo, listy)


def test_to_dict_round_trips_through_resolve():
    cfg = Demo(points=("h2",), ema=True)
    assert resolve_config(Demo, None, base=to_dict(cfg)) == cfg


def test_diff_lists_changed_fields():
    assert diff({"a": 1, "b": 2}, {"a": 1, "b": 3, "c": 4}) == ["b: 2 -> 3", "c: None -> 4"]


def test_help_shows_choices_as_accepted_and_readable_metavars():
    from manifold_mixup.ssl.train import SSLConfig

    text = trainer_parser(SSLConfig, "python -m ssl.train", "", None).format_help()
    assert "--method {manifold,input,supervised}" in text and "--consistency {logit,prob}" in text
    assert "--val-size INT|none" in text and "--flip BOOL|none" in text and "--mix-points STR,..." in text
    assert "--lr FLOAT" in text and "NONETYPE" not in text and "MANIFOLD" not in text


def test_a_config_file_that_is_not_utf8_is_a_usage_error(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_bytes(b"lr: 0.5 # \xff\xfe\n")
    with pytest.raises(UsageError, match=r"c.yaml is not UTF-8 text"):
        resolve_config(Demo, path)


@pytest.mark.parametrize(
    "value, bounds, message",
    [
        (float("nan"), {"gt": 0}, "--x must be a finite number > 0, got nan"),
        (float("inf"), {}, "--x must be a finite number, got inf"),
        (-1.0, {"ge": 0, "lt": 1}, "--x must be a finite number >= 0 and < 1, got -1.0"),
        (1.0, {"ge": 0, "lt": 1}, "--x must be a finite number >= 0 and < 1, got 1.0"),
        (0, {"ge": 1}, "--x must be an integer >= 1, got 0"),
    ],
)
def test_check_number_refuses_non_finite_and_out_of_range_values(value, bounds, message):
    from manifold_mixup.common.config import check_number

    with pytest.raises(UsageError) as e:
        check_number("--x", value, **bounds)
    assert str(e.value) == message


def test_check_number_accepts_values_in_range():
    from manifold_mixup.common.config import check_number

    check_number("--x", 0.5, gt=0, le=1)
    check_number("--x", 1.0, gt=0, le=1)
    check_number("--x", 10**30, ge=0)  # a huge int is finite
    with pytest.raises(TypeError):
        check_number("--x", 1.0, above=0)


@dataclass(frozen=True)
class Renamed:
    RENAMED: ClassVar[dict[str, str]] = {"epochs_total": "epochs"}  # not a field
    epochs: int = opt(10, "epochs")
    lr: float = opt(0.1, "learning rate")


def test_an_old_key_name_is_read_as_the_new_one_with_a_one_line_note(tmp_path, capsys):
    path = tmp_path / "old.yaml"
    path.write_text("epochs-total: 3\nlr: 0.5\n")
    assert resolve_config(Renamed, path) == Renamed(epochs=3, lr=0.5)
    assert resolve_config(Renamed, None, base={"epochs_total": 4}) == Renamed(epochs=4)
    assert resolve_config(Renamed, None, {"epochs": "6"}, base={"epochs_total": 4}) == Renamed(epochs=6)
    err = capsys.readouterr().err.strip().splitlines()
    saved_note = "note: the saved config: epochs_total is now epochs"
    assert err == [f"note: {path}: epochs_total is now epochs", saved_note, saved_note]
    parser = trainer_parser(Renamed, "demo", "demo trainer", default_config=None)
    assert cli_overrides(parser.parse_args(["--epochs-total", "5"])) == {"epochs": "5"}
    assert "--epochs-total" in parser.format_help()
    with pytest.raises(UsageError, match="unknown key 'epoch_total'"):
        resolve_config(Renamed, None, base={"epoch_total": 4})


def test_field_defaults_are_written_as_to_dict_writes_them():
    from manifold_mixup.common.config import field_defaults

    @dataclass(frozen=True)
    class Small:
        steps: int = opt(3, "steps")
        pairs: tuple[str, ...] = opt(("rf", "ff"), "pairs")

    assert field_defaults(Small) == {"steps": 3, "pairs": ["rf", "ff"]} == to_dict(Small())
