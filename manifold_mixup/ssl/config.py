"""The configuration of ``python -m ssl.train``: every field a flag and a YAML key, checked on creation."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Literal

import manifold_mixup.classifiers.recipes  # noqa: F401  registers the papers' named networks (--arch preactresnet18, ...)
from manifold_mixup.classifiers.wrn import ARCH as WRN
from manifold_mixup.common.config import UsageError, check, check_number, coerce, opt
from manifold_mixup.common.registry import ARCHS, classifiers, constructor, recipe_spec, spec

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "ssl"
MAX_DEPTH = 1000  # deeper WRNs are not meant; the cap keeps the up-front memory estimate instant
DEFAULT_MIX_POINTS = ARCHS[WRN].paper_mix_points  # of the WRN given by --depth/--width: pixel, h1, h2
TORCHVISION = "torchvision:"  # --arch torchvision:NAME, common/zoo.py
TIMM = "timm:"  # --arch timm:NAME (the optional extra .[timm]), common/zoo.py
ALL = "all"  # --labels all: supervised training on every non-validation image
# The fields of --arch wrn (the WRN of --depth/--width) with their defaults; a named --arch fixes them itself.
WRN_FIELDS = dict(ARCHS[WRN].kwargs)


@dataclass(frozen=True)
class Method:
    """What a ``--method`` does; config.yaml keeps its name (``SSLConfig.method``)."""

    name: str
    mixes: bool  # trains on mixed examples (False: plain supervised training, no mixup)
    hidden_layers: bool  # mixes at the eligible hidden layers (``mix_points``), not the input alone
    unlabelled: bool  # draws an unlabelled batch (the consistency term of Algorithm 1)
    alpha_labels_only: float  # α of the labelled batch without unlabelled images (ICML Appendix C.1)


METHODS = {
    m.name: m
    for m in (
        Method("manifold", mixes=True, hidden_layers=True, unlabelled=True, alpha_labels_only=2.0),  # Algorithm 1
        Method("input", mixes=True, hidden_layers=False, unlabelled=True, alpha_labels_only=1.0),  # Algorithm 3
        Method("supervised", mixes=False, hidden_layers=False, unlabelled=False, alpha_labels_only=2.0),
    )
}


@dataclass(frozen=True)
class SSLConfig:
    # data: the protocol of Oliver et al. 2018
    dataset: Literal["cifar10", "cifar100", "svhn", "digits"] = opt("cifar10", "dataset")
    data_dir: str = opt("data/cifar10", "folder with the dataset's files (README: Data); ignored for digits")
    download: bool = opt(False, "download missing dataset files (needs internet)")
    svhn_extra: bool = opt(False, "append SVHN's extra_32x32.mat to the training images")
    # A number, or 'all'; normalised to an int or "all" (an int keeps the saved config.yaml of earlier runs equal).
    labels: str = opt(
        "4000",
        "labelled training images, the same number per class; 'all': every non-validation image is labelled "
        "(supervised training: no unlabelled batch, an epoch is one pass over the training set)",
    )
    labelled_only: bool = opt(
        False,
        "train on the --labels labelled images alone (no unlabelled batch; the other training images are unused): "
        "the low-label supervised tier (preprint §4.2); implied by --labels all",
    )
    val_size: int | None = opt(None, "validation images held out of training (default: the dataset's protocol)")
    split: str | None = opt(None, "reuse the split.npz of another run, to compare methods on the same labels")
    zca: bool = opt(True, "ZCA-whiten inputs, fitted on the non-validation training images")
    translate: int = opt(2, "random translation in pixels, zero padded (0 = off)")
    flip: bool | None = opt(None, "random horizontal flips (default: the dataset's convention)")
    # model: a named network, or (default) WRN-depth-width. None, not "wrn", is the default so that the
    # config.yaml of runs saved before this field existed still matches on --resume.
    arch: str | None = opt(
        None,
        f"network: wrn (WRN-depth-width of the flags below), {', '.join(n for n in classifiers() if n != WRN)}, "
        "torchvision:NAME, e.g. torchvision:resnet18 (any torchvision classifier), or timm:NAME, e.g. "
        "timm:resnet10t (any timm model; pip install -e '.[timm]'); name a library network's layers with "
        "--mix-points (default none: wrn)",
    )
    depth: int = opt(28, "WRN depth, 6n+4")
    width: int = opt(2, "WRN widening factor")
    leaky_slope: float = opt(0.1, "LeakyReLU slope (Oliver et al.: 0.1; original code: 0.01)")
    bn_momentum: float = opt(0.001, "BatchNorm momentum, PyTorch convention (Oliver et al.: 0.001)")
    dropout: float = opt(0.0, "dropout inside residual blocks (original code: 0.3)")
    # method: a name of METHODS (what each does is there)
    method: Literal["manifold", "input", "supervised"] = opt("manifold", "Algorithm 1, Algorithm 3, or no mixup")
    mix_points: tuple[str, ...] | None = opt(
        None,
        "eligible mixing points for method=manifold: point names (pixel, h1, ...) or module names (layer1, "
        "features.4, ...) (default: the network's recipe; pixel,h1,h2 for wrn)",
    )
    alpha_sup: float | None = opt(
        None, "α of λ ~ Beta(α, α) for the labelled batch (default: 0.1; with --labels all 2.0, or 1.0 for input)"
    )
    alpha_unsup: float = opt(2.0, "α of λ ~ Beta(α, α) for the unlabelled batch")
    loss: Literal["ce", "bce"] = opt(
        "ce",
        "supervised loss: cross-entropy with the (mixed) one-hot targets, or the released supervised code's "
        "BCELoss(softmax(logits), targets), averaged over batch and classes: its gradient is 1/(C-1) of "
        "cross-entropy's at a uniform prediction (docs/departures.md)",
    )
    per_example_lam: bool = opt(False, "one λ per example instead of one per batch")
    consistency: Literal["logit", "prob"] = opt(
        "logit", "MSE between logits (the code behind the paper's numbers) or softmax outputs (README: Recipes)"
    )
    pseudolabels: Literal["model", "ema"] = opt("model", "pseudolabels from the current model (paper) or an EMA")
    w_max: float = opt(1.0, "maximum consistency weight (CIFAR-10: 1.0, SVHN: 2.0)")
    rampup: float = opt(0.4, "fraction of all updates over which the weight ramps up to w_max")
    ema_decay: float = opt(0.999, "decay of the EMA weights (used by pseudolabels=ema and eval_ema)")
    eval_ema: bool = opt(False, "also evaluate the EMA weights")
    # optimisation: SGD, preprint Appendix C
    epochs: int = opt(1000, "epochs; an epoch is one pass over the unlabelled set")
    iterations_per_epoch: int | None = opt(None, "updates per epoch (default: unlabelled images / batch)")
    batch_size: int = opt(100, "labelled images per update")
    unlabelled_batch_size: int = opt(100, "unlabelled images per update")
    lr: float = opt(0.1, "initial learning rate")
    lr_milestones: tuple[int, ...] = opt((500, 750, 875), "epochs at which the learning rate drops")
    lr_gamma: float = opt(0.1, "learning-rate factor at each milestone")
    momentum: float = opt(0.9, "SGD momentum")
    nesterov: bool = opt(True, "Nesterov momentum (as the original code)")
    weight_decay: float = opt(5e-4, "L2 coefficient (SGD weight decay, all parameters)")
    l1: float = opt(1e-3, "L1 coefficient")
    l1_scope: Literal["first", "all"] = opt(
        "first", "L1 on the first tensor only (the code behind the paper's numbers) or on every parameter"
    )
    # evaluation and bookkeeping
    eval_every: int = opt(1, "evaluate every N epochs")
    eval_test: Literal["every", "best"] = opt(
        "every",
        "evaluate the test set at every evaluation, or only when the validation accuracy improves and at the end "
        "(best: the same best-validation result at a fraction of the cost)",
    )
    eval_batch_size: int = opt(500, "batch size for evaluation")
    log_every: int = opt(50, "log training losses every N updates")
    checkpoint_every: int = opt(1, "checkpoint every N epochs")
    seed: int = opt(0, "seed for the split, initialisation and every random draw")
    # speed: None = on for CUDA, off on the CPU (README: Speed)
    amp: bool | None = opt(
        None, "mixed-precision autocast: bfloat16 where the device has it natively, else float16 with a gradient scaler"
    )
    amp_dtype: Literal["bfloat16", "float16"] | None = opt(
        None, "autocast's dtype, forced (turns --amp on; float16 trains with a gradient scaler) (default: as --amp)"
    )
    channels_last: bool | None = opt(None, "channels-last memory format")
    compile: bool | None = opt(None, "torch.compile the network (falls back to eager if it fails)")

    @staticmethod
    def settle_files(files: dict[str, Any], command_line: Mapping[str, Any], source: str) -> dict[str, Any]:
        """The config files' values without the WRN fields they set when the network is not the WRN (a config
        file describes its default network; ``--arch`` on the command line picks another): those fields are
        set aside, with a note when they differ from the defaults. Typed flags stay, and conflict in
        :meth:`_resolve_defaults` (common.config.resolve_config calls this hook)."""
        arch = coerce(command_line.get("arch", files.get("arch")), str | None, "--arch")
        if arch in (None, WRN):
            return files
        aside = {k: files[k] for k in WRN_FIELDS if k in files and k not in command_line}
        changed = [k for k, v in aside.items() if coerce(v, float, k) != WRN_FIELDS[k]]
        if changed:
            print(
                f"note: {source}: {', '.join(changed)} set the WRN of --arch wrn; --arch {arch} fixes its own "
                "network, so they are not used",
                file=sys.stderr,
            )
        return {k: v for k, v in files.items() if k not in aside}

    def __post_init__(self) -> None:
        # Every number is checked here, before any data is read: finite (nan and inf never pass) and in range.
        # Sizes that depend on the data or on memory are checked in check_sizes, before anything is written.
        self._resolve_defaults()
        check(self.val_size is None or self.val_size >= 0, f"--val-size must be >= 0, got {self.val_size}")
        check(self.batch_size > 0, f"--batch-size must be positive, got {self.batch_size}")
        check(self.unlabelled_batch_size >= 0, "--unlabelled-batch-size must be >= 0")
        check(
            not self.method_spec.unlabelled or self.labels_only or self.unlabelled_batch_size > 0,
            f"--method {self.method} needs --unlabelled-batch-size > 0",
        )
        check_number("--alpha-sup", self.alpha_sup, gt=0)
        check_number("--alpha-unsup", self.alpha_unsup, gt=0)
        check_number("--w-max", self.w_max, ge=0)
        check(0 < self.rampup <= 1, f"--rampup is a fraction of training in (0, 1], got {self.rampup}")
        check(0 <= self.ema_decay < 1, f"--ema-decay must be in [0, 1), got {self.ema_decay}")
        check(self.epochs > 0, "--epochs must be positive")
        check(self.iterations_per_epoch is None or self.iterations_per_epoch > 0, "--iterations-per-epoch must be > 0")
        check_number("--lr", self.lr, gt=0)
        check(all(m >= 0 for m in self.lr_milestones), f"--lr-milestones are epochs >= 0, got {self.lr_milestones}")
        check_number("--lr-gamma", self.lr_gamma, gt=0, le=1)
        check_number("--momentum", self.momentum, ge=0, lt=1)
        check(not self.nesterov or self.momentum > 0, "--nesterov needs --momentum > 0 (or pass --nesterov false)")
        check_number("--weight-decay", self.weight_decay, ge=0)
        check_number("--l1", self.l1, ge=0)
        check(
            min(self.eval_every, self.log_every, self.checkpoint_every, self.eval_batch_size) > 0,
            "--eval-every, --log-every, --checkpoint-every and --eval-batch-size must be positive",
        )
        check(self.translate >= 0, "--translate must be >= 0")
        check(
            10 <= self.depth <= MAX_DEPTH and (self.depth - 4) % 6 == 0,
            f"--depth: a WRN is 6n+4 layers deep, from 10 to {MAX_DEPTH} (10, 16, 22, 28, ...), got {self.depth}",
        )
        check(self.width >= 1, f"--width must be >= 1, got {self.width}")
        check(0 <= self.dropout < 1, f"--dropout must be in [0, 1), got {self.dropout}")
        check(0 < self.bn_momentum <= 1, f"--bn-momentum must be in (0, 1], got {self.bn_momentum}")
        check_number("--leaky-slope", self.leaky_slope, ge=0, le=1)
        check_number("--seed", self.seed, ge=0, lt=2**63)

    def _resolve_defaults(self) -> None:
        """Normalise --labels and fill the defaults that depend on other fields, so that config.yaml records
        the values the run uses: the network's mixing points, α of the labelled batch and, under
        --labels all, no unlabelled batch."""
        set_ = partial(object.__setattr__, self)
        labels = self.labels
        if isinstance(labels, str) and labels.strip().lower() == ALL:
            set_("labels", ALL)
        elif isinstance(labels, str) and labels.strip().isdigit():
            set_("labels", int(labels))
        elif not isinstance(labels, int) or isinstance(labels, bool):
            raise UsageError(f"--labels: expected a number of labelled images or 'all', got {labels!r}")
        check(self.labels == ALL or self.labels > 0, f"--labels must be positive or 'all', got {self.labels}")
        valid = ", ".join([*classifiers(), f"{TORCHVISION}NAME", f"{TIMM}NAME"])
        check(
            self.arch is None or self.arch in classifiers() or self.from_library,
            f"unknown --arch {self.arch!r} (valid: {valid})",
        )
        if self.from_library:
            constructor(self.arch)  # an unknown name or a missing library is a one-line error here, before any data
        if self.arch_name != WRN:
            changed = [
                f"--{k.replace('_', '-')} {getattr(self, k)}" for k, v in WRN_FIELDS.items() if getattr(self, k) != v
            ]
            check(
                not changed,
                f"{', '.join(changed)} set(s) the WRN of --arch wrn, but --arch {self.arch} fixes its own network; "
                "drop them or use --arch wrn",
            )
        if self.mix_points is None and not self.from_library:  # a library's network: no recipe, see check_method
            set_("mix_points", default_mix_points(self))
        if self.alpha_sup is None:  # ICML Appendix C.1: 1.0 for Input Mixup, 2.0 for Manifold Mixup on CIFAR
            set_("alpha_sup", self.method_spec.alpha_labels_only if self.labels_only else 0.1)
        if self.labels_only:
            how = "--labels all" if self.all_labels else "--labelled-only"
            check(
                self.pseudolabels == "model",
                f"--pseudolabels ema needs unlabelled images, but {how} trains on labels only; drop it",
            )
            set_("unlabelled_batch_size", 0)  # every image is labelled: Algorithm 1 without its unlabelled batch

    @property
    def method_spec(self) -> Method:
        """What ``method`` does (:data:`METHODS`)."""
        return METHODS[self.method]

    @property
    def all_labels(self) -> bool:
        """--labels all: supervised training (no mixup, or supervised Input/Manifold Mixup)."""
        return self.labels == ALL

    @property
    def labels_only(self) -> bool:
        """No unlabelled batch: --labels all or --labelled-only (supervised training on the labelled images)."""
        return self.all_labels or self.labelled_only

    @property
    def from_library(self) -> bool:
        """--arch torchvision:NAME or timm:NAME (:mod:`common.zoo`)."""
        return (self.arch or "").startswith((TORCHVISION, TIMM))

    @property
    def arch_name(self) -> str:
        """The network's name: ``wrn`` (WRN-depth-width) or another classifier of :data:`common.registry.ARCHS`."""
        return self.arch or WRN

    def network_name(self) -> str:
        """How logs name the network: WRN-28-2, preactresnet18, ..."""
        return f"WRN-{self.depth}-{self.width}" if self.arch_name == WRN else self.arch_name


def default_mix_points(cfg: SSLConfig) -> tuple[str, ...]:
    """The eligible set of the network's recipe: what --mix-points means when it is not given."""
    if cfg.from_library:
        return ("input",)  # no recipe: Input Mixup's point, the one layer every network has
    return ARCHS[cfg.arch_name].paper_mix_points


def check_method(cfg: SSLConfig) -> None:
    """Input Mixup (Algorithm 3) mixes at the input only: refuse mixing points that would be ignored
    (the network's default set and the WRN's, which the shipped SSL configs spell out, are not refused).
    A torchvision or timm network has no recipe: Manifold Mixup on it needs its layers named."""
    wrn_points = cfg.mix_points is not None and tuple(cfg.mix_points) == DEFAULT_MIX_POINTS  # e.g. from a config
    check(
        not (cfg.from_library and cfg.method_spec.hidden_layers and (cfg.mix_points is None or wrn_points)),
        f"--arch {cfg.arch} has no recipe for its mixing layers (pixel, h1, h2 name a WRN's): name them, e.g. "
        "--mix-points input,layer1,layer2 (a ResNet's modules; print(dict(model.named_modules())) lists all)",
    )
    if cfg.mix_points is None:
        return
    accepted = (default_mix_points(cfg), DEFAULT_MIX_POINTS, ("pixel",), ("input",))
    check(
        cfg.method_spec.hidden_layers or not cfg.method_spec.mixes or tuple(cfg.mix_points) in accepted,
        f"--method input mixes at the input only, so --mix-points {','.join(cfg.mix_points)} would be ignored; "
        "drop --mix-points or use --method manifold",
    )


def network_args(cfg: SSLConfig, num_classes: int, channels: int) -> dict[str, Any]:
    """The checkpoint's model_args of the network (common/registry.py)."""
    if cfg.from_library:
        return spec(cfg.arch_name, num_classes=num_classes, in_channels=channels)
    if cfg.arch_name != WRN:
        return recipe_spec(cfg.arch_name, num_classes=num_classes, in_channels=channels)
    return spec(
        WRN,
        num_classes=num_classes,
        depth=cfg.depth,
        width=cfg.width,
        in_channels=channels,
        leaky_slope=cfg.leaky_slope,
        bn_momentum=cfg.bn_momentum,
        dropout=cfg.dropout,
    )
