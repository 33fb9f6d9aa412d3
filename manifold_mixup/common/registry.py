"""The one architecture registry: names -> constructors and the recipe data of each name.

An entry (:class:`Arch`) is a constructor with the default arguments of its recipe and the paper's
eligible mixing points. A checkpoint stores, per network, ``{"arch": name, "args": {...}}`` (its
``model_args``, the constructor's name and every argument); :func:`build` turns that back into the
module. Modules that define networks register them by name::

    @register("wrn", kwargs={"depth": 28, "width": 2}, mix_points=("pixel", "h1", "h2"), classifier=True)
    class WideResNet(StagedNet): ...

and a named configuration of a registered constructor with :func:`register_recipe` (``wrn28_10``,
``preactresnet18``, ...: classifiers/recipes.py). ``classifier`` names are what ``ssl.train --arch`` accepts.
A name with a prefix, ``torchvision:resnet18``, is looked up by the resolver registered for the prefix
(:func:`register_prefix`): that is where other libraries' networks plug in.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from torch import nn

from manifold_mixup.common.config import UsageError
from manifold_mixup.common.trust import check_model_args

Constructor = Callable[..., nn.Module]


@dataclass(frozen=True)
class Arch:
    """One registered name: what builds it and what its recipe sets."""

    constructor: Constructor
    model: str  # the constructor's registered name, as checkpoints' model_args store it
    kwargs: Mapping[str, object] = field(default_factory=lambda: MappingProxyType({}))  # besides the data's sizes
    paper_mix_points: tuple[str, ...] = ()  # the paper's eligible set S for Manifold Mixup
    classifier: bool = False  # a name ssl.train --arch accepts

    def build(self, **args: Any) -> nn.Module:
        """The network with the recipe's arguments, overridden by ``args``."""
        return self.constructor(**{**self.kwargs, **args})


ARCHS: dict[str, Arch] = {}
PREFIXES: dict[str, Callable[[str], Constructor | None]] = {}
# imported on first use of their prefix, which they register
PREFIX_MODULES = {"torchvision": "manifold_mixup.common.zoo", "timm": "manifold_mixup.common.zoo"}


def _add(name: str, arch: Arch) -> None:
    if name in ARCHS and ARCHS[name] != arch:
        raise ValueError(f"architecture {name!r} is registered twice")
    ARCHS[name] = arch


def register(
    name: str,
    *,
    kwargs: Mapping[str, object] | None = None,
    mix_points: tuple[str, ...] = (),
    classifier: bool = False,
) -> Callable[[Constructor], Constructor]:
    """Class or function decorator: make ``name`` build this constructor (with the recipe's ``kwargs``)."""

    def add(constructor: Constructor) -> Constructor:
        _add(name, Arch(constructor, name, MappingProxyType(dict(kwargs or {})), tuple(mix_points), classifier))
        return constructor

    return add


def register_recipe(name: str, model: str, kwargs: Mapping[str, object], mix_points: tuple[str, ...]) -> None:
    """A classifier ``name``: the registered constructor ``model`` with the recipe's ``kwargs`` and the
    paper's eligible mixing points; its checkpoints store ``model`` and the full arguments."""
    base = ARCHS[model]
    _add(name, Arch(base.constructor, model, MappingProxyType(dict(kwargs)), tuple(mix_points), classifier=True))


def register_prefix(prefix: str, resolve: Callable[[str], Constructor | None]) -> None:
    """``prefix:NAME`` builds ``resolve(NAME)`` (None: no such network)."""
    PREFIXES[prefix] = resolve


def classifiers() -> list[str]:
    """The names ``--arch`` accepts (besides ``torchvision:NAME`` and ``timm:NAME``), in registration order."""
    return [name for name, arch in ARCHS.items() if arch.classifier]


def valid_names() -> list[str]:
    return sorted(ARCHS) + [f"{p}:NAME" for p in sorted(set(PREFIXES) | set(PREFIX_MODULES))]


def get_arch(name: str) -> Arch:
    """The registry entry of a (prefix-free) classifier name; an unknown one is a UsageError listing the valid ones."""
    if name not in ARCHS or not ARCHS[name].classifier:
        raise UsageError(f"unknown architecture {name!r} (valid: {', '.join(classifiers())})")
    return ARCHS[name]


def constructor(name: str) -> Constructor:
    """The constructor of an architecture name; an unknown one is a UsageError listing the valid names."""
    prefix, _, rest = name.partition(":")
    if rest and prefix not in PREFIXES and prefix in PREFIX_MODULES:
        importlib.import_module(PREFIX_MODULES[prefix])
    if rest and prefix in PREFIXES:
        found = PREFIXES[prefix](rest)
    else:
        found = ARCHS[name].constructor if name in ARCHS else None
    if found is None:
        raise UsageError(f"unknown architecture {name!r} (valid: {', '.join(valid_names()) or 'none registered'})")
    return found


def spec(arch: str, **args: Any) -> dict[str, Any]:
    """The model_args of one network: its architecture name and constructor arguments."""
    return {"arch": arch, "args": args}


def recipe_spec(name: str, **args: Any) -> dict[str, Any]:
    """The model_args of classifier ``name`` for the data's ``args`` (num_classes, in_channels): its
    constructor's name and the recipe's arguments, so the checkpoint rebuilds it without the recipe."""
    arch = get_arch(name)
    return spec(arch.model, **{**args, **arch.kwargs})


def build(model_args: Mapping[str, Any]) -> nn.Module:
    """The network that :func:`spec` describes; its arguments are checked first (common/trust.py: they may come
    from a checkpoint made elsewhere)."""
    if not isinstance(model_args, Mapping) or not isinstance(model_args.get("args"), Mapping):
        raise UsageError(f"model_args must be {{'arch': name, 'args': {{...}}}}, got {model_args!r:.200}")
    arch = str(model_args.get("arch"))
    make = constructor(arch)
    check_model_args(arch, make, model_args["args"])
    return make(**model_args["args"])
