"""The configuration of ``python -m gan.train``, and the networks a configuration describes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from torch import nn

from manifold_mixup.common.config import UsageError, check, check_number, from_dict, opt
from manifold_mixup.common.registry import build
from manifold_mixup.common.staged import StagedNet
from manifold_mixup.gan.losses import PAIRS
from manifold_mixup.gan.nets import image_network_args
from manifold_mixup.gan.toy import ring_network_args

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "gan"


@dataclass(frozen=True)
class GANConfig:
    # Old key names, still read from YAML files, saved configs and the command line (common.config.upgrade).
    RENAMED: ClassVar[dict[str, str]] = {"score_every": "eval_every", "score_samples": "eval_samples"}

    @staticmethod
    def prefer_renamed(values: Mapping[str, Any]) -> bool:
        """A config saved before the rename holds both pairs: the ring used eval_*, images score_*."""
        return values.get("dataset", "cifar10") != "ring"

    # data
    dataset: Literal["cifar10", "digits", "ring"] = opt("cifar10", "training data")
    data_dir: str = opt("data/cifar10", "folder with the dataset's files (README: Data)")
    download: bool = opt(False, "download CIFAR-10 with torchvision when its files are absent")
    ring_sigma: float = opt(0.02, "standard deviation of each ring mode")
    # networks (SNGAN ResNet for images, MLPs for the ring)
    z_dim: int = opt(128, "noise dimension")
    g_channels: int = opt(256, "generator channels")
    g_blocks: int = opt(3, "upsampling blocks; image size = g_bottom * 2**g_blocks")
    g_bottom: int = opt(4, "spatial size of the generator's first feature map")
    d_channels: int = opt(128, "discriminator channels")
    d_down: int = opt(2, "downsampling blocks of D (the first is the optimized block)")
    d_plain: int = opt(2, "resolution-keeping blocks of D")
    spectral_norm: bool = opt(True, "spectral norm on every D layer (false: Table 6's GAN-GP rows)")
    d_stem: int = opt(
        0,
        "channels of a 3x3 convolution before D's first block, whose output is mixing point conv1 (0 = none; "
        "16: the released code's 'preproc' D of the preprint's FID 20.7 result)",
    )
    mlp_hidden: int = opt(128, "ring: hidden units of the MLPs")
    mlp_layers: int = opt(3, "ring: hidden layers of the MLPs")
    # objective
    loss: Literal["ns", "hinge"] = opt("ns", "non-saturating JS (the paper's baseline) or hinge")
    mix: tuple[str, ...] = opt((), "eligible mixing points of D, e.g. h1,pixel or conv1 (none = no mixup)")
    mix_pairs: tuple[str, ...] = opt(
        ("rf", "ff"),
        "mixes: rf real-fake, fr fake-real, ff fake-fake (default rf,ff: ours, the ring hint of DESIGN §5; "
        "preprint Table 6: fr and fr,ff; released code: rf,fr,ff; docs/gan-departures.md)",
    )
    mix_labels: Literal["soft", "fake"] = opt(
        "soft", "soft: the real fraction (default: ICML eq. 5, released code); fake: all fake (preprint eq. 2-3)"
    )
    mix_lam: Literal["uniform", "beta"] = opt(
        "uniform", "λ ~ Uniform(0, α) (default: ICML eq. 4, released code) or Beta(α, α) (preprint)"
    )
    mix_alpha: float = opt(0.5, "α of the λ distribution (default 0.5: ICML Appendix E's best; Table 6: 0.2)")
    mix_per_example: bool = opt(
        False, "one λ per mixed example (released code) instead of one per pair type per step (default: ours)"
    )
    mix_weight: float = opt(1.0, "weight of the mixup term in D's loss (1: ICML eq. 6)")
    g_mix: bool = opt(
        False,
        "G also maximises D's mixup term on mixes of its fakes (ICML eq. 6, released code's hidden-mix GAN); "
        "default off: the preprint's G never sees a mix",
    )
    gp: float = opt(0.0, "γ of D's gradient penalty, added to D's loss (0 = off; Table 6's GAN-GP: 10)")
    gp_on: Literal["real", "interp"] = opt(
        "real",
        "real: γ·E‖∇ₓD(x)‖² on the real batch (default: the released code's --dnorm, the source of Table 6's "
        "GAN-GP rows; R1 of Mescheder et al. 2018); interp: γ·E(‖∇D(x̂)‖−1)² on real-fake interpolates "
        "(WGAN-GP, Gulrajani et al. 2017)",
    )
    gp_of: Literal["prob", "logit"] = opt(
        "prob", "the D output the penalty differentiates: prob = sigmoid(logit) (default: the released code) or logit"
    )
    # optimisation (SNGAN: Adam 2e-4, β (0, 0.9), n_dis 5, linear decay)
    steps: int = opt(100_000, "generator updates")
    n_dis: int = opt(5, "discriminator updates per generator update")
    batch_size: int = opt(64, "real (and fake) images per discriminator update")
    g_batch_size: int = opt(128, "fake images per generator update")
    lr_d: float = opt(2e-4, "discriminator learning rate")
    lr_g: float = opt(2e-4, "generator learning rate")
    beta1: float = opt(0.0, "Adam β1")
    beta2: float = opt(0.9, "Adam β2")
    lr_decay: Literal["linear", "none"] = opt("linear", "decay both learning rates linearly to 0")
    g_ema_decay: float = opt(0.0, "EMA of the generator's weights for sampling (0 = off)")
    # outputs
    log_every: int = opt(100, "log losses every N generator updates")
    sample_every: int = opt(2000, "write a fixed-noise sample grid (ring: scatter plot) every N updates")
    checkpoint_every: int = opt(2000, "checkpoint every N generator updates")
    eval_every: int = opt(0, "evaluate G every N updates: ring mode metrics, images FID/IS (0 = only at the end)")
    eval_samples: int | None = opt(
        None, "samples per evaluation (none = ring 2500 points; images 5000, 0 = never score; FID/IS need weights)"
    )
    score_ref: str | None = opt(None, "FID reference (default: the training set, e.g. cifar10-train)")
    seed: int = opt(0, "seed of the networks, noise and every random draw")
    # speed: None = on for CUDA, off on the CPU (README: Speed)
    amp: bool | None = opt(
        None, "mixed-precision autocast: bfloat16 where the device has it natively, else float16 with a gradient scaler"
    )
    amp_dtype: Literal["bfloat16", "float16"] | None = opt(
        None, "autocast's dtype, forced (turns --amp on; float16 trains with a gradient scaler) (default: as --amp)"
    )
    channels_last: bool | None = opt(None, "channels-last memory format")
    compile: bool | None = opt(None, "torch.compile both networks (falls back to eager if it fails)")

    def __post_init__(self) -> None:
        # Every number is checked here, before any data is read: finite (nan and inf never pass) and in range.
        # Sizes that depend on the data or on memory are checked in check_sizes, before anything is written.
        check_number("--ring-sigma", self.ring_sigma, gt=0)
        check(all(p in PAIRS for p in self.mix_pairs), f"--mix-pairs: use some of {', '.join(PAIRS)}")
        check(len(self.mix_pairs) > 0 or not self.mix, "--mix-pairs must name at least one pair type")
        check_number("--mix-alpha", self.mix_alpha, gt=0)
        check(self.mix_lam == "beta" or self.mix_alpha <= 1, "--mix-lam uniform draws λ from (0, α): needs α <= 1")
        check_number("--mix-weight", self.mix_weight, ge=0)
        check_number("--gp", self.gp, ge=0)
        check(self.d_stem >= 0, f"--d-stem must be >= 0 (0 = no first convolution), got {self.d_stem}")
        check(self.steps > 0 and self.n_dis > 0, "--steps and --n-dis must be positive")
        check(self.batch_size > 0 and self.g_batch_size > 0, "batch sizes must be positive")
        check_number("--lr-d", self.lr_d, gt=0)
        check_number("--lr-g", self.lr_g, gt=0)
        check_number("--beta1", self.beta1, ge=0, lt=1)
        check_number("--beta2", self.beta2, ge=0, lt=1)
        check(0 <= self.g_ema_decay < 1, "--g-ema-decay must be in [0, 1)")
        check(min(self.log_every, self.sample_every, self.checkpoint_every) > 0, "intervals must be positive")
        check(self.eval_every >= 0, "--eval-every must be >= 0 (0 = only at the end)")
        n = self.eval_samples
        if self.dataset == "ring":
            check(n is None or n >= 1, f"--eval-samples must be >= 1 for the ring, got {n}")
        else:
            check(n is None or n == 0 or n >= 10, f"--eval-samples: 0 (off) or >= 10 (10 IS splits), got {n}")
        check(
            min(self.z_dim, self.g_channels, self.g_blocks, self.g_bottom, self.d_channels, self.d_down) >= 1,
            "--z-dim, --g-channels, --g-blocks, --g-bottom, --d-channels and --d-down must be >= 1",
        )
        check(self.d_plain >= 0, f"--d-plain must be >= 0, got {self.d_plain}")
        check(self.mlp_hidden >= 1 and self.mlp_layers >= 1, "--mlp-hidden and --mlp-layers must be >= 1")
        # Caps that keep the up-front memory estimate instant; no useful network comes near them.
        check(max(self.g_blocks, self.d_down) <= 16, "--g-blocks and --d-down double or halve the size: at most 16")
        check(max(self.d_plain, self.mlp_layers) <= 1000, "--d-plain and --mlp-layers must be at most 1000")
        check_number("--seed", self.seed, ge=0, lt=2**63)


def check_combinations(cfg: GANConfig) -> None:
    """Options that need another option (checked on the whole config: one flag alone is checked against the
    defaults of the others)."""
    check(not cfg.g_mix or bool(cfg.mix), "--g-mix gives G the mixup term: it needs --mix (e.g. --mix pixel)")
    check(
        not cfg.g_mix or cfg.g_batch_size >= cfg.batch_size,
        f"--g-mix mixes the real batch with G's first {cfg.batch_size} fakes: --g-batch-size must be >= --batch-size",
    )
    check(
        "conv1" not in cfg.mix or cfg.d_stem > 0 or cfg.dataset == "ring",
        "--mix conv1 is the output of D's first convolution: add one with --d-stem (16 in the released code)",
    )


def network_args(cfg: GANConfig, shape: Sequence[int]) -> dict[str, dict[str, Any]]:
    """The model_args of G and D (common/registry.py) for a config and a sample shape (C, H, W) or (2,)."""
    return (ring_network_args if cfg.dataset == "ring" else image_network_args)(cfg, shape)


def saved_config(values: Mapping[str, Any], source: str) -> GANConfig:
    """The GANConfig of a checkpoint's saved config; a field it lacks or no longer has is a one-line UsageError."""
    try:
        return from_dict(GANConfig, dict(values), source)
    except (UsageError, TypeError) as e:
        raise UsageError(f"{e}; it was written by another version of gan.train") from None


def build_generator(cfg: GANConfig, shape: Sequence[int]) -> nn.Module:
    """G for a config and a sample shape (C, H, W) or (2,)."""
    return build(network_args(cfg, shape)["generator"])


def build_discriminator(cfg: GANConfig, shape: Sequence[int]) -> StagedNet:
    return build(network_args(cfg, shape)["discriminator"])
