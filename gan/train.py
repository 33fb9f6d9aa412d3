"""A spectral-norm ResNet GAN whose discriminator also learns on mixes (Manifold Mixup for GANs).

    python -m gan.train                                          # SNGAN on CIFAR-10, no mixup
    python -m gan.train --mix h1,pixel                           # + mixes at the input or after D's block 1
    python -m gan.train --mix pixel --mix-pairs rf,ff --mix-labels fake --mix-lam beta --mix-alpha 0.2
    python -m gan.train --config configs/gan/ring.yaml --mix pixel     # 8-Gaussian ring: a CPU minute
    python -m gan.train --config configs/gan/digits.yaml               # sklearn digits: CPU minutes
    python -m gan.train --out runs/x --resume

One generator step (Miyato et al. 2018, plus ICML 2019 eq. 7): n_dis discriminator steps, each on a
real and a fake batch and, with --mix, on mixes of their hidden states at a point k drawn from the
eligible set (the states up to k are computed once and shared); then one generator step on the
ordinary loss, which never sees a mix.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor, nn
from tqdm import tqdm

from common.cli import run_main, start_run, trainer_parser
from common.config import UsageError, check, check_number, opt, to_dict
from common.data import load_dataset
from common.dist import NO_DIST, Dist, agree_to_stop, barrier, init_distributed, mean_over_ranks, shard, shutdown, wrap
from common.dist import in_sync as ranks_in_sync
from common.guard import FLOAT_BYTES, check_memory, footprint, non_finite, weights_finite
from common.mixup import resolve_points
from common.run import Run, StopSignal, progress, provenance, rng_state, seed_everything, set_rng_state
from common.sampler import BatchStream
from common.speed import PLAIN, Speed, fused_kwargs, maybe_compile
from common.staged import StagedNet
from gan.losses import PAIRS, d_loss, g_loss, make_mixes, mixup_loss
from gan.nets import Discriminator, Generator
from gan.toy import MLPDiscriminator, MLPGenerator, mode_metrics, ring_modes, sample_ring

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "gan"
NON_FINITE_EXIT = 3  # exit code of a run stopped because its losses or weights turned nan/inf


@dataclass(frozen=True)
class GANConfig:
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
    spectral_norm: bool = opt(True, "spectral norm on every D layer")
    mlp_hidden: int = opt(128, "ring: hidden units of the MLPs")
    mlp_layers: int = opt(3, "ring: hidden layers of the MLPs")
    # objective
    loss: Literal["ns", "hinge"] = opt("ns", "non-saturating JS (the paper's baseline) or hinge")
    mix: tuple[str, ...] = opt((), "eligible mixing points of D, e.g. h1,pixel (none = no mixup)")
    mix_pairs: tuple[str, ...] = opt(("rf", "ff"), "mixes: rf real-fake, fr fake-real, ff fake-fake")
    mix_labels: Literal["soft", "fake"] = opt("soft", "soft: the real fraction (ICML eq. 5); fake: all fake")
    mix_lam: Literal["uniform", "beta"] = opt("uniform", "λ ~ Uniform(0, α) (ICML) or Beta(α, α) (preprint)")
    mix_alpha: float = opt(0.5, "α of the λ distribution")
    mix_per_example: bool = opt(False, "one λ per mixed example (original code) instead of one per pair type")
    mix_weight: float = opt(1.0, "weight of the mixup term in D's loss")
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
    eval_every: int = opt(0, "ring: mode metrics every N updates (0 = only at the end)")
    eval_samples: int = opt(2500, "ring: generated points for the mode metrics")
    score_every: int = opt(0, "images: FID/IS every N updates (0 = only at the end; needs Inception weights)")
    score_samples: int = opt(5000, "images: generated samples per FID/IS evaluation (0 = never score)")
    score_ref: str | None = opt(None, "FID reference (default: the training set, e.g. cifar10-train)")
    seed: int = opt(0, "seed of the networks, noise and every random draw")
    # speed: None = on for CUDA, off on the CPU (README: Speed)
    amp: bool | None = opt(None, "bfloat16 autocast")
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
        check(self.steps > 0 and self.n_dis > 0, "--steps and --n-dis must be positive")
        check(self.batch_size > 0 and self.g_batch_size > 0, "batch sizes must be positive")
        check_number("--lr-d", self.lr_d, gt=0)
        check_number("--lr-g", self.lr_g, gt=0)
        check_number("--beta1", self.beta1, ge=0, lt=1)
        check_number("--beta2", self.beta2, ge=0, lt=1)
        check(0 <= self.g_ema_decay < 1, "--g-ema-decay must be in [0, 1)")
        check(min(self.log_every, self.sample_every, self.checkpoint_every) > 0, "intervals must be positive")
        check(self.eval_every >= 0, "--eval-every must be >= 0 (0 = only at the end)")
        check(self.eval_samples >= 1, f"--eval-samples must be >= 1, got {self.eval_samples}")
        check(self.score_every >= 0, "--score-every must be >= 0 (0 = only at the end)")
        check(self.score_samples == 0 or self.score_samples >= 10, "--score-samples: 0 (off) or >= 10 (10 IS splits)")
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


def get_args_parser():
    return trainer_parser(GANConfig, "python -m gan.train", __doc__, str(CONFIGS / "sngan-cifar10.yaml"))


# ---------------------------------------------------------------------------------------------
# Data and networks


class RealBatches:
    """batch(i) -> this rank's part of the real batch of discriminator update i: images in [-1, 1]
    (uint8 resident on the device, indexed there) or ring points."""

    def __init__(self, cfg: GANConfig, device: torch.device, d: Dist = NO_DIST, say: Callable = print):
        self.cfg, self.device, self.d = cfg, device, d
        self.num_images: int | None = None  # the ring's points are drawn afresh: no finite set
        if cfg.dataset == "ring":
            self.shape: tuple[int, ...] = (2,)
            return
        train = load_dataset(cfg.dataset, cfg.data_dir, "train", download=cfg.download)
        self.num_images = len(train)
        self.images = train.images.to(device)
        self.shape = tuple(train.images.shape[1:])
        self.stream = BatchStream(torch.arange(len(train)), cfg.batch_size, cfg.seed, stream=2, device=device)
        say(f"data: {cfg.dataset} train, {len(train)} images of {self.shape}")

    def batch(self, i: int) -> Tensor:
        if self.cfg.dataset == "ring":  # drawn for the global batch on every rank, then sharded
            return shard(sample_ring(self.cfg.batch_size, self.cfg.ring_sigma, self.device), self.d)
        return self.images[shard(self.stream.batch(i), self.d)].float() / 127.5 - 1


@dataclass
class Nets:
    """The plain networks (checkpoints, sampling, EMA) and the callables that train them
    (the same networks wrapped in DDP and/or compiled; ``Nets.plain`` when neither)."""

    G: nn.Module
    D: StagedNet
    g: Callable
    d: Callable

    @classmethod
    def plain(cls, G: nn.Module, D: StagedNet) -> Nets:
        return cls(G, D, G, D)


def build_generator(cfg: GANConfig | dict, shape: Sequence[int]) -> nn.Module:
    """G for a config (or its dict, as stored in checkpoints) and a sample shape (C, H, W) or (2,)."""
    c = (
        cfg
        if isinstance(cfg, GANConfig)
        else GANConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in cfg.items()})
    )
    if c.dataset == "ring":
        return MLPGenerator(c.z_dim, c.mlp_hidden, c.mlp_layers)
    size = c.g_bottom * 2**c.g_blocks
    if size != shape[1]:
        raise UsageError(
            f"the generator makes {size}x{size} images (g_bottom·2^g_blocks) but the data is "
            f"{shape[1]}x{shape[2]}; adjust --g-bottom / --g-blocks"
        )
    return Generator(c.z_dim, c.g_channels, c.g_bottom, c.g_blocks, shape[0])


def build_discriminator(cfg: GANConfig, shape: Sequence[int]) -> StagedNet:
    if cfg.dataset == "ring":
        return MLPDiscriminator(cfg.mlp_hidden, cfg.mlp_layers, cfg.spectral_norm)
    return Discriminator(shape[0], cfg.d_channels, cfg.d_down, cfg.d_plain, cfg.spectral_norm)


def check_sizes(cfg: GANConfig, shape: Sequence[int], num_images: int | None, device: torch.device) -> None:
    """Refuse, in one line, a real batch larger than the training set, more halvings of D than the image
    allows, and a run whose rough memory estimate (common/guard.py) exceeds all of ``device``'s memory."""
    if num_images is not None:
        check(
            cfg.batch_size <= num_images,
            f"--batch-size {cfg.batch_size} is larger than the {num_images} training images; use at most {num_images}",
        )
        check(
            shape[1] >> cfg.d_down >= 1,
            f"--d-down {cfg.d_down}: D cannot halve {shape[1]}-pixel images that often; use at most "
            f"{shape[1].bit_length() - 1}",
        )
    g_params, g_values = footprint(lambda: build_generator(cfg, shape), (cfg.z_dim,))
    plain = dataclasses.replace(cfg, spectral_norm=False)  # the same parameter count, a faster estimate
    d_params, d_values = footprint(lambda: build_discriminator(plain, shape), shape)
    mixes = len(cfg.mix_pairs) if cfg.mix else 0
    d_update = (g_values + d_values * (2 + mixes)) * cfg.batch_size  # G's fakes, then D on real, fake and mixes
    g_update = (g_values + d_values) * cfg.g_batch_size
    evaluation = g_values * max(cfg.eval_samples if cfg.dataset == "ring" else 0, 64)
    weights = (g_params + d_params) * 4 + g_params * (cfg.g_ema_decay > 0)  # weights, grads, Adam's two moments
    values = weights + max(d_update, g_update, evaluation)
    size = math.prod(shape)
    resident = (num_images or 0) * size + (cfg.score_samples * size if cfg.dataset != "ring" else 0)  # uint8
    check_memory(
        FLOAT_BYTES * values + resident,
        device,
        f"G ({g_params / 1e6:,.1f}M parameters) and D ({d_params / 1e6:,.1f}M) with batches of {cfg.batch_size} "
        f"(D) and {cfg.g_batch_size} (G)",
        "lower --batch-size, --g-batch-size, --z-dim, the channels or --eval-samples/--score-samples",
    )


def mixing_points(cfg: GANConfig, D: StagedNet) -> tuple[int, ...]:
    """The eligible set S of D's mixing points; empty for no mixup."""
    return resolve_points(cfg.mix, D.mix_points) if cfg.mix else ()


# ---------------------------------------------------------------------------------------------
# The objective


def d_step(G: nn.Module, D: StagedNet, x_real: Tensor, z: Tensor, cfg: GANConfig, points: Sequence[int]):
    """Discriminator loss on a real batch, a fake batch and (with mixup) their mixes at a random point k.

    The states up to k are computed once, for real and fake together, and the rest of D runs once on
    the real, fake and mixed states together: the mixup term costs D's layers after k on the mixes.
    """
    with torch.no_grad():
        x_fake = G(z)
    b = len(x_real)
    k = points[int(torch.randint(len(points), ()))] if points else 0
    h = D(torch.cat([x_real, x_fake]), 0, k)  # (2B, ...) states at point k
    mixes, targets = (
        make_mixes(h[:b], h[b:], cfg.mix_pairs, cfg.mix_labels, cfg.mix_lam, cfg.mix_alpha, cfg.mix_per_example)
        if points
        else (h[:0], [])
    )
    d = D(torch.cat([h, mixes]), k).float()  # logits of real, fake and mixes (float32 under autocast too)
    d_real, d_fake, d_mixes = d[:b], d[b : 2 * b], d[2 * b :]
    loss = d_loss(d_real, d_fake, cfg.loss)
    parts = {"d_loss": loss.detach(), "d_real": d_real.detach().mean(), "d_fake": d_fake.detach().mean()}
    if points:
        term = mixup_loss(d_mixes, targets, cfg.loss)
        loss = loss + cfg.mix_weight * term
        parts["d_mix"] = term.detach()
    return loss, parts


def g_step(G: nn.Module, D: StagedNet, z: Tensor, cfg: GANConfig) -> tuple[Tensor, dict[str, Tensor]]:
    """Generator loss on a fresh fake batch: the ordinary GAN objective, no mixup."""
    loss = g_loss(D(G(z)).float(), cfg.loss)  # float32 logits under autocast too, as in d_step
    return loss, {"g_loss": loss.detach()}


def learning_rate(base: float, step: int, cfg: GANConfig) -> float:
    return base * (1 - step / cfg.steps) if cfg.lr_decay == "linear" else base


def train_iteration(
    nets: Nets,
    opt_g,
    opt_d,
    real: RealBatches,
    step: int,
    cfg: GANConfig,
    points: Sequence[int],
    device: torch.device,
    speed: Speed = PLAIN,
    d: Dist = NO_DIST,
) -> dict[str, Tensor]:
    """n_dis discriminator updates, then one generator update. Returns the loss parts (on the device).

    Noise is drawn for the global batch on every rank and sharded, like the data.
    """
    parts: dict[str, Tensor] = {}
    for i in range(cfg.n_dis):
        x_real = real.batch(step * cfg.n_dis + i)
        z = shard(torch.randn(cfg.batch_size, nets.G.z_dim, device=device), d)
        with speed.autocast(device):
            loss, parts = d_step(nets.G, nets.d, speed.images(x_real), z, cfg, points)
        opt_d.zero_grad(set_to_none=True)
        loss.backward()
        opt_d.step()
    nets.D.requires_grad_(False)  # the generator's update needs no gradients for D's weights
    z = shard(torch.randn(cfg.g_batch_size, nets.G.z_dim, device=device), d)
    with speed.autocast(device):
        loss, g_parts = g_step(nets.g, nets.D, z, cfg)
    opt_g.zero_grad(set_to_none=True)
    loss.backward()
    opt_g.step()
    nets.D.requires_grad_(True)
    return parts | g_parts


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, decay: float) -> None:
    torch._foreach_lerp_(list(ema.parameters()), list(model.parameters()), 1.0 - decay)
    for b_ema, b in zip(ema.buffers(), model.buffers()):
        b_ema.copy_(b)


# ---------------------------------------------------------------------------------------------
# Outputs


@torch.no_grad()
def sample(G: nn.Module, z: Tensor) -> Tensor:
    """G(z) in eval mode (BatchNorm running statistics), then G's mode restored."""
    was_training = G.training
    G.eval()
    out = G(z)
    G.train(was_training)
    return out


def save_visual(G: nn.Module, z: Tensor, cfg: GANConfig, path: Path) -> None:
    """A sample grid (images) or a scatter plot over the ring's modes (ring)."""
    path.parent.mkdir(exist_ok=True)
    x = sample(G, z).float().cpu()
    if cfg.dataset != "ring":
        from torchvision.utils import save_image

        if x.shape[-1] < 32:  # small images: enlarge (nearest) so the grid can be read
            x = torch.nn.functional.interpolate(x, scale_factor=32 // x.shape[-1], mode="nearest")
        save_image(x * 0.5 + 0.5, path, nrow=int(len(x) ** 0.5), padding=2, pad_value=0.5)
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 4))
    ax.scatter(x[:, 0], x[:, 1], s=2, alpha=0.4, label="generated")
    modes = ring_modes()
    ax.scatter(modes[:, 0], modes[:, 1], s=30, c="red", marker="x", label="modes")
    ax.set_xlim(-3, 3)
    ax.set_ylim(-3, 3)
    ax.set_aspect("equal")
    ax.set_title(path.stem)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def evaluate(G: nn.Module, cfg: GANConfig, device: torch.device, scorer=None) -> dict[str, float]:
    """Ring: modes covered and high-quality fraction. Images: FID/IS when a scorer is configured."""
    if cfg.dataset == "ring":  # own generator: how often we evaluate must not change training
        g = torch.Generator().manual_seed(cfg.seed)
        z = torch.randn(cfg.eval_samples, G.z_dim, generator=g).to(device)
        return mode_metrics(sample(G, z), cfg.ring_sigma)
    return scorer(G) if scorer is not None else {}


# ---------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    t_start = time.perf_counter()
    args = get_args_parser().parse_args(argv)
    d, device = init_distributed(args.device)
    cfg, run, resuming = start_run(GANConfig, args, "gan", rank=d.rank, world=d.world, barrier=lambda: barrier(d))
    say = tqdm.write if d.main else lambda *a, **k: None  # prints beside progress bars; rank 0 only
    seed_everything(cfg.seed)  # the same on every rank: one RNG stream (common/dist.py)
    speed = Speed.resolve(cfg.amp, cfg.channels_last, cfg.compile, device)

    real = RealBatches(cfg, device, d, say)
    check_sizes(cfg, real.shape, real.num_images, device)
    reference = explicit_reference(cfg)  # every rank: a bad --score-ref stops them all before anything is written
    G = speed.module(build_generator(cfg, real.shape).to(device))
    D = speed.module(build_discriminator(cfg, real.shape).to(device))
    nets = Nets(G, D, maybe_compile(wrap(G, d, device), speed), maybe_compile(wrap(D, d, device), speed))
    points = mixing_points(cfg, D)
    opt_g = torch.optim.Adam(G.parameters(), lr=cfg.lr_g, betas=(cfg.beta1, cfg.beta2), **fused_kwargs(device))
    opt_d = torch.optim.Adam(D.parameters(), lr=cfg.lr_d, betas=(cfg.beta1, cfg.beta2), **fused_kwargs(device))
    G_ema = copy.deepcopy(G) if cfg.g_ema_decay > 0 else None
    sampler = G_ema or G
    fixed_z = torch.randn(64 if cfg.dataset != "ring" else 1000, cfg.z_dim, device=device)
    mixing = ", ".join(D.mix_points[k] for k in points) or "none"
    say(
        f"G {sum(p.numel() for p in G.parameters()) / 1e6:.2f}M, D {sum(p.numel() for p in D.parameters()) / 1e6:.2f}M "
        f"parameters | loss {cfg.loss} | {'mixing points: ' + mixing if points else 'no mixup'} | {speed.describe()}"
    )

    run.begin()  # setup worked: only now is --out created (or an old run there replaced)
    say(
        f"run: {run.out} ({'resuming' if resuming else 'new'}) on {device}"
        + (f" x {d.world} ranks" if d.enabled else "")
    )

    step, meter = 0, {}
    if resuming:
        state = run.load_checkpoint(
            device, keys=("generator", "discriminator", "opt_g", "opt_d", "fixed_z", "meter", "step", "rng")
        )
        G.load_state_dict(state["generator"])
        D.load_state_dict(state["discriminator"])
        opt_g.load_state_dict(state["opt_g"])
        opt_d.load_state_dict(state["opt_d"])
        if G_ema is not None:
            G_ema.load_state_dict(state["generator_ema"])
        fixed_z, meter, step = state["fixed_z"], state["meter"], state["step"]
        set_rng_state(state["rng"])
        run.truncate_metrics(step)
        say(f"resumed at generator update {step} of {cfg.steps}")

    def checkpoint() -> None:
        state = {
            "generator": G.state_dict(),
            "discriminator": D.state_dict(),
            "opt_g": opt_g.state_dict(),
            "opt_d": opt_d.state_dict(),
            "fixed_z": fixed_z,
            "meter": meter,
            "step": step,
            "rng": rng_state(),
            "config": to_dict(cfg),
            "sample_shape": list(real.shape),
        }
        if G_ema is not None:
            state["generator_ema"] = G_ema.state_dict()
        run.save_checkpoint(state)

    scorer, skipped = make_scorer(cfg, device, reference) if d.main else (None, None)
    if skipped:
        say(skipped)
        run.log(step=step, scoring=skipped)
    last_good = step if resuming else None  # the update of the checkpoint on disk that has finite weights
    wall_before = previous_wall_time(run)  # wall time of earlier sessions of a resumed run

    def save_if_finite() -> bool:
        """Write a checkpoint unless the weights turned non-finite (then keep the last good one)."""
        nonlocal last_good
        if not weights_finite(G, D, G_ema):  # one sync, beside the many of writing a checkpoint
            return False
        checkpoint()
        last_good = step
        return True

    def stop_non_finite(what: str) -> int:
        """Stop a run whose losses or weights are nan/inf: say so, mark the summary failed, exit 3."""
        kept = (
            f"the last good checkpoint is update {last_good}'s ({run.checkpoint_path})"
            if last_good is not None
            else "no checkpoint was written before it"
        )
        message = (
            f"stopped: {what} at update {step}; {kept}; lower --lr-d/--lr-g (now {cfg.lr_d:g}/{cfg.lr_g:g}) "
            "and start over with --overwrite"
        )
        run.write_summary(
            {
                "status": "failed",
                "reason": message,
                "steps": step,
                "last_good_checkpoint_update": last_good,
                "run_dir": str(run.out),
                "wall_time_s": wall_before + time.perf_counter() - t_start,
            }
        )
        if d.main:
            tqdm.write(f"python -m gan.train: {message}", file=sys.stderr)
        shutdown(d)
        return NON_FINITE_EXIT

    t_log, step_log = time.perf_counter(), step
    with StopSignal() as stop, progress(cfg.steps if d.main else 0, step, "gan") as bar:
        while step < cfg.steps:
            for group, base in ((opt_g.param_groups[0], cfg.lr_g), (opt_d.param_groups[0], cfg.lr_d)):
                group["lr"] = learning_rate(base, step, cfg)
            parts = train_iteration(nets, opt_g, opt_d, real, step, cfg, points, device, speed, d)
            if G_ema is not None:
                update_ema(G_ema, G, cfg.g_ema_decay)
            step += 1
            bar.update()

            for k, v in parts.items():
                meter[k] = meter.get(k, 0) + v
            meter["steps"] = meter.get("steps", 0) + 1
            if step % cfg.log_every == 0 or step == cfg.steps:  # the only host-device sync of an update
                averaged = mean_over_ranks({k: v / meter["steps"] for k, v in meter.items() if k != "steps"}, d)
                logged = {k: v.item() for k, v in averaged.items()}
                meter = {}
                rate = (step - step_log) * cfg.n_dis * cfg.batch_size / (time.perf_counter() - t_log)
                t_log, step_log = time.perf_counter(), step
                times = {"real_per_s": rate, "wall_s": wall_before + time.perf_counter() - t_start}
                run.log(step=step, lr_g=opt_g.param_groups[0]["lr"], **logged, time=times)
                say(log_line(step, cfg, logged, rate))
                bad = non_finite(logged)  # already on the host: no extra sync
                if bad:
                    return stop_non_finite("a non-finite loss (" + ", ".join(f"{k} {logged[k]}" for k in bad) + ")")
            t_other = time.perf_counter()
            if d.main and (step % cfg.sample_every == 0 or step == cfg.steps):
                save_visual(sampler, fixed_z, cfg, run.out / "samples" / f"step{step:07d}.png")
            due = cfg.eval_every if cfg.dataset == "ring" else cfg.score_every
            if d.main and ((due and step % due == 0) or step == cfg.steps):
                metrics = evaluate(sampler, cfg, device, scorer)
                if metrics:
                    run.log(step=step, **metrics)
                    say(f"step {step}: " + " | ".join(f"{k} {v:.4g}" for k, v in metrics.items()))
            if (step % cfg.checkpoint_every == 0 or step == cfg.steps) and not save_if_finite():
                return stop_non_finite("the weights are not finite")
            t_log += time.perf_counter() - t_other  # throughput counts training only
            if agree_to_stop(stop.signum is not None, d, device, sync_point=step % cfg.log_every == 0):
                if not save_if_finite():
                    return stop_non_finite("the weights are not finite")
                say(f"stopped at update {step}; continue with: {run.resume_command()}")
                shutdown(d)
                return stop.exit_code

    in_sync = ranks_in_sync(G, d, device) and ranks_in_sync(D, d, device)
    final = [m for m in run.metrics() if m.get("step") == step and "time" not in m]
    summary = {k: v for m in final for k, v in m.items() if k != "step"}
    summary |= {
        "status": "completed",
        "steps": step,
        "run_dir": str(run.out),
        "wall_time_s": round(wall_before + time.perf_counter() - t_start, 1),
        "mixing_points": mixing,
        "ranks": d.world,
        "ranks_in_sync": in_sync,
        "speed": speed.describe(),
        "provenance": provenance(device),
    }
    if skipped:
        summary["scoring"] = skipped
    run.write_summary(summary)
    say(summary_line(summary))
    shutdown(d)
    return 0


def log_line(step: int, cfg: GANConfig, losses: dict[str, float], rate: float) -> str:
    """Every term of D's loss (the mixup term raw and weighted) and G's, and D's mean logits."""
    d_terms = f"D loss {losses['d_loss']:.4f}"
    if "d_mix" in losses:
        weighted = cfg.mix_weight * losses["d_mix"]
        d_terms = (
            f"D loss {losses['d_loss'] + weighted:.4f} (gan {losses['d_loss']:.4f}, "
            f"mix {losses['d_mix']:.4f} × {cfg.mix_weight:g} = {weighted:.4f})"
        )
    return (
        f"step {step}/{cfg.steps} | {d_terms} | G loss {losses['g_loss']:.4f} | "
        f"D(real) {losses['d_real']:.3f}, D(fake) {losses['d_fake']:.3f} (mean logits) | {rate:.0f} real/s"
    )


def summary_line(summary: dict) -> str:
    """The final numbers, then the wall time and the run directory."""
    skip = ("status", "run_dir", "wall_time_s")
    shown = [
        f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
        for k, v in summary.items()
        if k not in skip and not isinstance(v, dict)
    ]
    m, s = divmod(round(summary["wall_time_s"]), 60)
    wall = f"{m // 60}:{m % 60:02d}:{s:02d}"
    return f"summary: {' | '.join(shown)} | wall time {wall} | run directory {summary['run_dir']}"


def previous_wall_time(run: Run) -> float:
    """Wall time, in seconds, that earlier sessions of a resumed run logged (0 for a new run)."""
    times = [m["time"].get("wall_s", 0.0) for m in run.metrics() if isinstance(m.get("time"), dict)]
    return float(times[-1]) if times else 0.0


def explicit_reference(cfg: GANConfig):
    """The samples of an explicit ``--score-ref``, loaded up front (None without one, or when nothing is
    scored): a reference that cannot be read stops the start. The default reference, the training set, may
    still be unavailable: then scoring is skipped with a message (make_scorer)."""
    if cfg.score_ref is None or cfg.dataset == "ring" or cfg.score_samples == 0:
        return None
    from gan.score import load_samples

    try:
        return load_samples(cfg.score_ref, data_dir=cfg.data_dir)
    except UsageError as e:
        raise UsageError(f"--score-ref {cfg.score_ref}: {e}") from None


def make_scorer(cfg: GANConfig, device: torch.device, reference=None) -> tuple[Callable | None, str | None]:
    """A function G -> {fid, is, is_std} on ``score_samples`` samples, or (None, why not).

    Digits use the ``digits-cnn`` domain extractor (trained on first use; its keys are prefixed
    ``digits-cnn_`` because they are not Inception numbers); other images use Inception, whose
    weights must be found locally (gan.score.find_inception_weights) or downloadable. The
    reference statistics are computed once and cached (gan.score.reference_statistics).
    """
    from common.features import DIGITS_EXTRACTOR
    from gan.sample import generate
    from gan.score import INCEPTION, load_samples, make_extractor, score

    if cfg.dataset == "ring" or cfg.score_samples == 0:
        return None, None
    try:
        extractor = make_extractor(DIGITS_EXTRACTOR if cfg.dataset == "digits" else INCEPTION, device=device)
        if reference is None:
            reference = load_samples(cfg.score_ref or f"{cfg.dataset}-train", data_dir=cfg.data_dir)
    except UsageError as e:
        return None, f"scoring skipped: {e}"
    prefix = "" if extractor.name == INCEPTION else f"{extractor.name}_"

    def scorer(G: nn.Module) -> dict[str, float]:
        images = generate(G, cfg.score_samples, device=device, seed=cfg.seed)  # the same noise every time
        r = score(images, reference, extractor=extractor)
        return {
            f"{prefix}fid": r["frechet_inception_distance"],
            f"{prefix}is": r["inception_score_mean"],
            f"{prefix}is_std": r["inception_score_std"],
        }

    return scorer, None


if __name__ == "__main__":
    run_main(main, prog="python -m gan.train")
