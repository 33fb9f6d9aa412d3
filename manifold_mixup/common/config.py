"""Typed configs: dataclass defaults <- YAML file <- command line (the command line wins).

A trainer's config is a frozen dataclass whose fields are declared with :func:`opt`, which keeps
the help text next to the default. :func:`add_config_args` turns every field into a ``--field-name``
flag, :func:`resolve_config` merges the three layers, and every bad key or value raises
:class:`UsageError`, which the command-line entry points turn into one line on stderr and exit 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import operator
import sys
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin, get_type_hints

import yaml

C = TypeVar("C")


class UsageError(Exception):
    """A user mistake (bad flag, key, value, path): reported as one line, exit code 2."""


def opt(default: Any, help: str) -> Any:
    """A config field with its help text, e.g. ``lr: float = opt(0.1, "peak learning rate")``."""
    if isinstance(default, list):
        raise TypeError("use a tuple, not a list, as a field default")
    return dataclasses.field(default=default, metadata={"help": help})


def _type_name(tp: Any) -> str:
    """The metavar of a field in --help, as the value is typed: ``{manifold,input}`` (choices as
    accepted), ``INT``, ``STR,...`` (a comma-separated list), ``INT|none`` (optional)."""
    origin = get_origin(tp)
    if origin is Literal:
        return "{" + ",".join(str(a) for a in get_args(tp)) + "}"
    if origin is tuple:
        return f"{_type_name(get_args(tp)[0])},..."
    if origin in (typing.Union, types.UnionType):
        names = [_type_name(a) for a in get_args(tp) if a is not type(None)]
        return "|".join(names + (["none"] if type(None) in get_args(tp) else []))
    return getattr(tp, "__name__", str(tp)).upper()


_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def coerce(value: Any, tp: Any, name: str) -> Any:
    """Convert a YAML value or a command-line string to the field type ``tp``, or raise UsageError."""
    origin = get_origin(tp)
    if origin in (typing.Union, types.UnionType):  # only `X | None` is used
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "")):
            return None
        (inner,) = [a for a in get_args(tp) if a is not type(None)]
        return coerce(value, inner, name)
    if origin is Literal:
        choices = get_args(tp)
        if value not in choices:
            raise UsageError(f"{name}: invalid value {value!r} (choose from {', '.join(map(str, choices))})")
        return value
    if origin is tuple:
        (inner, _) = get_args(tp)
        if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none")):
            return ()
        if isinstance(value, str):
            items = [v.strip() for v in value.split(",") if v.strip()]
        elif isinstance(value, (list, tuple)):
            items = list(value)
        else:
            items = [value]
        return tuple(coerce(v, inner, name) for v in items)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
            return value.lower() in _TRUE
        raise UsageError(f"{name}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
            return int(value)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise UsageError(f"{name}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, bool):
            raise UsageError(f"{name}: expected a number, got {value!r}")
        try:  # YAML reads 1e-3 (no dot) as a string
            return float(value)
        except (TypeError, ValueError):
            raise UsageError(f"{name}: expected a number, got {value!r}") from None
    if tp is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise UsageError(f"{name}: expected a string, got {value!r}")
        return str(value)
    raise TypeError(f"unsupported config type {tp!r} for {name}")


def _fields(cls: type) -> dict[str, tuple[dataclasses.Field, Any]]:
    hints = get_type_hints(cls)
    return {f.name: (f, hints[f.name]) for f in dataclasses.fields(cls)}


def add_config_args(parser: argparse.ArgumentParser, cls: type) -> None:
    """Add ``--field-name VALUE`` for every field of the dataclass ``cls`` (default: not given); a field's
    old name (``cls.RENAMED``) stays a flag, an alias of the new one."""
    group = parser.add_argument_group(f"{cls.__name__} fields (override the YAML file)")
    aliases: dict[str, list[str]] = {}
    for old, new in getattr(cls, "RENAMED", {}).items():
        aliases.setdefault(new, []).append("--" + old.replace("_", "-"))
    for name, (field, tp) in _fields(cls).items():
        default = field.default
        if isinstance(default, tuple):
            default = ",".join(map(str, default))
        kwargs: dict[str, Any] = dict(
            dest=f"cfg.{name}",
            default=argparse.SUPPRESS,
            metavar=_type_name(tp),
            help=f"{field.metadata.get('help', '')} (default: {default})",
        )
        if tp is bool:  # `--ema` alone means true; `--ema false` also works
            kwargs.update(nargs="?", const="true")
        group.add_argument("--" + name.replace("_", "-"), *aliases.get(name, []), **kwargs)


def cli_overrides(args: argparse.Namespace) -> dict[str, str]:
    """The config fields given on the command line, as raw strings."""
    return {k[4:]: v for k, v in vars(args).items() if k.startswith("cfg.")}


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a mapping with a key given twice (the last value would win silently)."""


def _unique_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} is given twice (lines {seen[key] + 1} and {key_node.start_mark.line + 1})"
            )
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)


def safe_load(text: str) -> Any:
    """``yaml.safe_load`` that also refuses a key given twice in a mapping (a yaml.YAMLError)."""
    return yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass: no arbitrary objects


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping with ``yaml.safe_load`` (a key given twice refused); a missing file or a non-mapping
    is a UsageError."""
    path = Path(path)
    if not path.is_file():
        if path.exists():
            raise UsageError(f"config file {path} is not a regular file (a folder, FIFO or device); name a YAML file")
        raise UsageError(f"config file {path} does not exist")
    try:
        data = safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise UsageError(f"config file {path} is not UTF-8 text (byte {e.start}); save it as UTF-8") from None
    except OSError as e:
        raise UsageError(f"config file {path} cannot be read ({e.strerror})") from None
    except yaml.constructor.ConstructorError as e:
        if e.problem and "given twice" in e.problem:
            raise UsageError(f"config file {path}: {e.problem}; keep one") from None
        raise UsageError(f"config file {path} is not valid YAML") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise UsageError(f"config file {path} is not valid YAML{where}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UsageError(f"config file {path} must hold a mapping of field: value")
    return data


def upgrade(cls: type, values: Mapping[str, Any], source: str, note: bool = True) -> dict[str, Any]:
    """``values`` with the old key names of ``cls.RENAMED`` (old -> new) under their new names, with a one-line
    note on stderr. A mapping that holds both names (a whole config saved before the rename) keeps the old
    name's value where ``cls.prefer_renamed(values)`` says so (default: always), else the new name's."""
    renamed: dict[str, str] = getattr(cls, "RENAMED", {})
    old = {k: str(k).replace("-", "_") for k in values if str(k).replace("-", "_") in renamed}
    if not old:
        return dict(values)
    prefer = getattr(cls, "prefer_renamed", lambda v: True)(values)
    out = {k: v for k, v in values.items() if k not in old}
    for key, name in old.items():
        new = renamed[name]
        present = [k for k in out if str(k).replace("-", "_") == new]
        if prefer or not present:
            out = {k: v for k, v in out.items() if k not in present} | {new: values[key]}
    if note:
        print(f"note: {source}: " + ", ".join(f"{n} is now {renamed[n]}" for n in old.values()), file=sys.stderr)
    return out


def from_dict(cls: type[C], values: Mapping[str, Any], source: str) -> C:
    """Build ``cls`` from a partial mapping (YAML keys may use - or _, old names are upgraded); unknown keys
    are errors."""
    fields = _fields(cls)
    kwargs = {}
    for key, value in upgrade(cls, values, source).items():
        name = str(key).replace("-", "_")
        if name not in fields:
            raise UsageError(f"{source}: unknown key {key!r} (valid keys: {', '.join(fields)})")
        label = source if source.startswith("--") else f"{source}: {name}"
        kwargs[name] = coerce(value, fields[name][1], label)
    try:
        return cls(**kwargs)
    except UsageError as e:  # a range check in __post_init__; name the flag or file unless it already does
        raise UsageError(str(e) if str(e).startswith(source) else f"{source}: {e}") from None


def to_dict(cfg: Any) -> dict[str, Any]:
    """A plain mapping (tuples as lists) for YAML and JSON."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(cfg).items()}


def resolve_config(
    cls: type[C],
    yaml_path: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    base: dict[str, Any] | None = None,
) -> C:
    """Merge ``base`` (e.g. a saved run's config) <- YAML file <- command-line ``overrides``; old key names
    (``cls.RENAMED``) in ``base`` or the YAML file are read under their new names.

    A class may define ``settle_files(files, command_line, source) -> files``: it sees the values the files
    set (base and YAML) beside those typed on the command line, and may set aside file values that the
    command line makes moot (e.g. the default network's fields when ``--arch`` names another network), so
    that only typed flags can conflict."""
    values: dict[str, Any] = upgrade(cls, base or {}, "the saved config")
    sources = ["the saved config"] if base else []
    if yaml_path is not None:
        layer = upgrade(cls, load_yaml(yaml_path), str(yaml_path))
        from_dict(cls, layer, str(yaml_path))  # report errors against the file
        values.update({str(k).replace("-", "_"): v for k, v in layer.items()})
        sources.append(str(yaml_path))
    command_line: dict[str, Any] = {}
    for key, value in (overrides or {}).items():
        from_dict(cls, {key: value}, "--" + key.replace("_", "-"))
        command_line[key] = value
    settle = getattr(cls, "settle_files", None)
    if settle is not None and values:
        values = settle(values, command_line, " and ".join(sources))
    return from_dict(cls, values | command_line, "config")


def field_defaults(cls: type) -> dict[str, Any]:
    """Every field's default as :func:`to_dict` writes it: how a run saved before a field existed ran."""
    out = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            value = f.default
        elif f.default_factory is not dataclasses.MISSING:
            value = f.default_factory()
        else:
            continue  # a required field: every saved config has it
        out[f.name] = list(value) if isinstance(value, tuple) else value
    return out


def diff(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Fields whose values differ, as ``name: old -> new``."""
    keys = list(old) + [k for k in new if k not in old]
    return [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys if old.get(k) != new.get(k)]


def check(condition: bool, message: str) -> None:
    """Raise UsageError(message) unless condition; for range checks in ``__post_init__``."""
    if not condition:
        raise UsageError(message)


_BOUNDS = {"gt": (">", operator.gt), "ge": (">=", operator.ge), "lt": ("<", operator.lt), "le": ("<=", operator.le)}


def check_number(flag: str, value: float, **bounds: float) -> None:
    """Raise UsageError unless ``value`` is finite (nan and inf never pass) and meets every bound:
    ``check_number("--momentum", m, ge=0, lt=1)`` -> "--momentum must be a finite number >= 0 and < 1, got nan"."""
    unknown = set(bounds) - set(_BOUNDS)
    if unknown:
        raise TypeError(f"unknown bounds {sorted(unknown)}; use gt, ge, lt, le")
    finite = isinstance(value, int) or math.isfinite(value)
    if finite and all(_BOUNDS[k][1](value, b) for k, b in bounds.items()):
        return
    want = " and ".join(f"{_BOUNDS[k][0]} {b:g}" for k, b in bounds.items())
    kind = "an integer" if isinstance(value, int) else "a finite number"
    raise UsageError(f"{flag} must be {kind} {want}, got {value}".replace("  ", " ").replace(" ,", ","))
