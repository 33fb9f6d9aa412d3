"""Manifold Mixup at named layers of any ``nn.Module``, with no change to the model.

The user names the eligible layers by their ``named_modules()`` names (``layer1``, ``layer2.1``,
``features.4``) plus ``input`` (alias ``pixel``). One forward pass runs the model; at the drawn layer a
forward hook replaces that module's output ``h`` by ``λ·h + (1−λ)·h[perm]`` (:func:`common.mixup.mix`),
so gradients flow through the layers before the mix (preprint Algorithm 2)::

    mixer = LayerMixup(model, ["input", "layer1", "layer2"])   # names are checked here
    m = sample_mix(len(x), mixer.points, alpha=2.0)              # m.point indexes mixer.names
    logits, y_mixed = mixer(x, F.one_hot(y, 10).float(), m)      # eq. 1: loss = CE(logits, y_mixed)

:func:`replace_output` is the lower-level tool: any ``Tensor -> Tensor`` at a named layer for one
forward, which may change the batch size (a GAN discriminator appends real–fake mixes there).

A name is refused in one line (:class:`~common.config.UsageError`) when it is unknown (the closest valid
names are listed), when its module runs twice in one forward (torchvision's ``BasicBlock`` calls its one
``relu`` twice) or never, or when its output is not a tensor whose first dimension is the batch.
Each named layer gets one forward hook, installed once and idle (it returns nothing) except inside a
:func:`replace_output` block, which disarms it however the forward ends: ``torch.compile`` does not see hooks
added after a model's first compiled call, but it does follow the state of hooks it has seen, so a compiled
model gives one graph per layer and no graph break. ``torch.compile``'d and DDP-wrapped models are accepted
as they are: names refer to the wrapped model, the forward runs through the wrapper.
"""

from __future__ import annotations

import difflib
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from torch import Tensor, nn

from manifold_mixup.common.config import UsageError
from manifold_mixup.common.mixup import Mix, mix, permute_batch

INPUT = "input"
_ALIASES = {"pixel": INPUT}


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside ``torch.compile``'s and DDP's wrappers, whose ``named_modules()`` names the layers."""
    while True:
        inner = getattr(model, "_orig_mod", None)  # torch.compile's OptimizedModule
        if inner is None and isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            inner = model.module
        if not isinstance(inner, nn.Module):
            return model
        model = inner


def layer_names(model: nn.Module) -> list[str]:
    """Every name a layer can be given: ``input``, the model's own point names (:func:`point_layers`) and the
    ``named_modules()`` names of the (unwrapped) model."""
    modules = [name for name, _ in unwrap(model).named_modules(remove_duplicate=False) if name]
    return [INPUT, *point_layers(model), *modules]


def point_layers(model: nn.Module) -> dict[str, str]:
    """Names a model gives its mixing points, mapped to layer names: a model may define
    ``mix_point_layers`` (:class:`common.staged.StagedNet` maps ``pixel``, ``h1`` .. to ``input``, ``stages.0`` ..)."""
    return dict(getattr(unwrap(model), "mix_point_layers", {}))


def check_layers(model: nn.Module, names: str | Sequence[str]) -> tuple[str, ...]:
    """Validate layer names (a list or ``"input,layer1"``) and return their layer names: ``pixel`` becomes
    ``input``, a model's point names (``h1``) its layers (``stages.0``); repeats are dropped.

    An unknown name is a UsageError that lists the closest valid names.
    """
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    valid = layer_names(model)
    known = set(valid)
    aliases = _ALIASES | point_layers(model)
    out: list[str] = []
    for name in names:
        if name not in known and name not in aliases:
            raise UsageError(f"unknown layer {name!r}: {_suggest(model, name, valid)}")
        name = aliases.get(name, name)
        if name not in out:
            out.append(name)
    if not out:
        raise UsageError(f"no mixing layer given: name 'input' and/or modules such as {_top_level(model)}")
    return tuple(out)


def _top_level(model: nn.Module) -> str:
    return ", ".join(name for name, _ in unwrap(model).named_children()) or "(the model has no submodules)"


def _suggest(model: nn.Module, name: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(name, valid, n=4, cutoff=0.6)
    if points := point_layers(model):
        hint = f"the model's points: {', '.join(points)}" + (f"; closest: {', '.join(close)}" if close else "")
    elif close:
        hint = f"closest: {', '.join(close)}"
    else:
        hint = f"top-level modules: {_top_level(model)}"
    return f"{hint} ('input' mixes the model input; print(dict(model.named_modules())) lists all names)"


class _Tap:
    """A forward hook that stays on one module and does nothing until a :func:`replace_output` block arms it.

    The hook is installed once and never swapped, because ``torch.compile`` does not notice hooks added to a
    module after its first compiled call (dynamo skips hook guards); it does guard on the tap's state, so an
    idle tap and a tap armed for each layer give one graph each and no graph break.
    """

    def __init__(self) -> None:
        self.fn: Callable[[Tensor], Tensor] | None = None
        self.name, self.batch_size, self.calls = "", None, 0

    def _replace(self, h: object) -> Tensor | None:
        if self.fn is None:
            return None
        self.calls += 1
        if self.calls > 1:
            raise UsageError(_twice(self.name))
        what = "input" if self.name == INPUT else "output"
        if not isinstance(h, Tensor):
            raise UsageError(
                f"layer {self.name!r} gives a {type(h).__name__}, not a tensor, as its {what}: "
                "name a module whose output is one tensor with the batch first"
            )
        if h.dim() == 0 or (self.batch_size is not None and h.shape[0] != self.batch_size):
            raise UsageError(
                f"layer {self.name!r} gives an {what} of shape {tuple(h.shape)} whose first dimension is not the "
                f"batch ({self.batch_size}): name a module whose output has the batch first"
            )
        return self.fn(h)

    def forward_hook(self, module: nn.Module, args: tuple, out: object) -> Tensor | None:
        return self._replace(out)

    def input_hook(self, module: nn.Module, args: tuple) -> tuple | None:
        if self.fn is None:
            return None
        if not args:
            raise UsageError("mixing at 'input' needs the model's input as its first positional argument")
        return (self._replace(args[0]), *args[1:])


def _twice(name: str) -> str:
    if name == INPUT:
        return "the model ran more than once in one replace_output block: run one forward per block"
    parent = name.rpartition(".")[0]
    fix = f"mix at its parent {parent!r} or another layer" if parent else "name another layer"
    return (
        f"layer {name!r} runs more than once in one forward (a module reused by its parent, like the relu of "
        f"torchvision's BasicBlock), so it has no single output to mix: {fix}"
    )


_OUTPUT_TAPS: weakref.WeakKeyDictionary[nn.Module, _Tap] = weakref.WeakKeyDictionary()
_INPUT_TAPS: weakref.WeakKeyDictionary[nn.Module, _Tap] = weakref.WeakKeyDictionary()


def _tap(model: nn.Module, name: str) -> _Tap:
    """The tap of layer ``name`` of the unwrapped ``model``, installed on first use."""
    module = unwrap(model)
    taps = _INPUT_TAPS if name == INPUT else _OUTPUT_TAPS
    if name != INPUT:
        module = module.get_submodule(name)
    if module not in taps:
        taps[module] = tap = _Tap()
        if name == INPUT:
            module.register_forward_pre_hook(tap.input_hook)
        else:
            module.register_forward_hook(tap.forward_hook)
    return taps[module]


def tap_layers(model: nn.Module, names: str | Sequence[str]) -> tuple[str, ...]:
    """Check layer names and install their idle hooks; returns the names (``pixel`` -> ``input``).

    Call it before the first forward of a ``torch.compile``'d model (:class:`LayerMixup` does): a compiled
    model that already ran does not see hooks added later.
    """
    names = check_layers(model, names)
    for name in names:
        _tap(model, name)
    return names


def _compiled(model: nn.Module) -> bool:
    """Whether ``model`` runs through torch.compile (``torch.compile(model)`` or ``model.compile()``)."""
    return hasattr(model, "_orig_mod") or getattr(unwrap(model), "_compiled_call_impl", None) is not None


@contextmanager
def replace_output(
    model: nn.Module, name: str, fn: Callable[[Tensor], Tensor], *, batch_size: int | None = None
) -> Iterator[None]:
    """Within the block, the layer ``name`` of ``model`` outputs ``fn(h)`` instead of its output ``h``.

    ``name`` is a ``named_modules()`` name or ``input`` (then ``fn`` transforms the model's first argument).
    Run exactly one forward of ``model`` in the block: a layer that runs twice is refused during the forward,
    one that never ran on leaving the block. ``batch_size``, when given, is checked against ``h.shape[0]``.
    ``fn`` may change the batch size, e.g. ``lambda h: torch.cat([h, mixes(h)])``.
    """
    (name,) = tap_layers(model, [name])
    tap = _tap(model, name)
    if tap.fn is not None:
        raise UsageError(f"layer {name!r} is already being replaced (nested replace_output blocks on one layer)")
    tap.fn, tap.name, tap.batch_size, tap.calls = fn, name, batch_size, 0
    try:
        yield
    finally:
        tap.fn, calls = None, tap.calls
    if calls == 0:
        late = "; a compiled model sees only layers named before its first forward" if _compiled(model) else ""
        mode = "training" if unwrap(model).training else "eval"
        raise UsageError(f"layer {name!r} did not run in the forward ({mode} mode): name a layer on its path{late}")


class LayerMixup:
    """Manifold Mixup at the named layers of ``model``: ``mixer(x, y, m)`` runs one mixed forward.

    ``names`` are ``named_modules()`` names, ``input``/``pixel`` or the model's point names; ``m.point``
    indexes them (draw it with ``sample_mix(len(x), mixer.points, alpha)``). ``mixer.model(x)`` is the
    ordinary forward: the hooks are idle outside a mixed one.
    """

    def __init__(self, model: nn.Module, names: str | Sequence[str]):
        self.model = model
        self.names = tap_layers(model, names)
        spelled = [n.strip() for n in names.split(",")] if isinstance(names, str) else list(names)
        self.labels = tuple(dict.fromkeys(n for n in spelled if n))  # as the user spelled them, for logs

    @property
    def points(self) -> tuple[int, ...]:
        """The indices to draw the mixing point from: ``0 .. len(names) - 1``."""
        return tuple(range(len(self.names)))

    def forward_with(self, x: Tensor, point: int, fn: Callable[[Tensor], Tensor]) -> Tensor:
        """The model's output on ``x`` with the state ``h`` at layer ``names[point]`` replaced by ``fn(h)``.

        ``fn`` may change the batch size (a GAN discriminator appends real–fake mixes to ``h``); the layers
        before the point run once on ``x``, the rest on ``fn(h)``. At ``input`` the model runs on ``fn(x)``.
        """
        if not 0 <= point < len(self.names):
            raise ValueError(f"mixing point {point} out of range for layers {self.names}")
        name = self.names[point]
        if name == INPUT:
            return self.model(fn(x))
        with replace_output(self.model, name, fn, batch_size=len(x)):
            return self.model(x)

    def __call__(self, x: Tensor, y: Tensor, m: Mix) -> tuple[Tensor, Tensor]:
        """Eq. 1 (preprint Algorithm 2): the model's output for the batch mixed at layer ``names[m.point]``
        with ``λ·h + (1−λ)·h[perm]``, and the targets mixed the same way.

        x: (B, ...) inputs; y: (B, C) soft targets. Returns (output (B, ...), λ·y + (1−λ)·y[perm]).
        """
        out = self.forward_with(x, m.point, lambda h: mix(h, permute_batch(h, m.perm), m.lam))
        return out, mix(y, permute_batch(y, m.perm), m.lam)
