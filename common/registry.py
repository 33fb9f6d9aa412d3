"""Architecture names -> constructors, so a checkpoint can rebuild its networks without the trainer.

A checkpoint stores, per network, ``{"arch": name, "args": {...}}`` (its ``model_args``); :func:`build`
turns that back into the module. Modules that define networks register them by name::

    @register("wrn")
    class WideResNet(StagedNet): ...

A name with a prefix, ``torchvision:resnet18``, is looked up by the resolver registered for the prefix
(:func:`register_prefix`): that is where a later ``--arch`` flag plugs in other libraries' networks.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

from common.config import UsageError
from common.trust import check_model_args

Constructor = Callable[..., nn.Module]
ARCHS: dict[str, Constructor] = {}
PREFIXES: dict[str, Callable[[str], Constructor | None]] = {}
PREFIX_MODULES = {"torchvision": "common.zoo"}  # imported on first use of their prefix, which they register


def register(name: str) -> Callable[[Constructor], Constructor]:
    """Class or function decorator: make ``name`` build this constructor."""

    def add(constructor: Constructor) -> Constructor:
        if ARCHS.get(name, constructor) is not constructor:
            raise ValueError(f"architecture {name!r} is registered twice")
        ARCHS[name] = constructor
        return constructor

    return add


def register_prefix(prefix: str, resolve: Callable[[str], Constructor | None]) -> None:
    """``prefix:NAME`` builds ``resolve(NAME)`` (None: no such network)."""
    PREFIXES[prefix] = resolve


def valid_names() -> list[str]:
    return sorted(ARCHS) + [f"{p}:NAME" for p in sorted(set(PREFIXES) | set(PREFIX_MODULES))]


def constructor(name: str) -> Constructor:
    """The constructor of an architecture name; an unknown one is a UsageError listing the valid names."""
    prefix, _, rest = name.partition(":")
    if rest and prefix not in PREFIXES and prefix in PREFIX_MODULES:
        importlib.import_module(PREFIX_MODULES[prefix])
    found = PREFIXES[prefix](rest) if rest and prefix in PREFIXES else ARCHS.get(name)
    if found is None:
        raise UsageError(f"unknown architecture {name!r} (valid: {', '.join(valid_names()) or 'none registered'})")
    return found


def spec(arch: str, **args: Any) -> dict[str, Any]:
    """The model_args of one network: its architecture name and constructor arguments."""
    return {"arch": arch, "args": args}


def build(model_args: Mapping[str, Any]) -> nn.Module:
    """The network that :func:`spec` describes; its arguments are checked first (common/trust.py: they may come
    from a checkpoint made elsewhere)."""
    if not isinstance(model_args, Mapping) or not isinstance(model_args.get("args"), Mapping):
        raise UsageError(f"model_args must be {{'arch': name, 'args': {{...}}}}, got {model_args!r:.200}")
    arch = str(model_args.get("arch"))
    make = constructor(arch)
    check_model_args(arch, make, model_args["args"])
    return make(**model_args["args"])
