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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from common.cli import progress, run_main, trainer_parser
from common.config import check
from common.dist import NO_DIST, Dist, shard, wrap
from common.guard import FLOAT_BYTES, check_memory, footprint
from common.layers import LayerMixup
from common.loop import LossMeter, Session, Throughput, hms, num_params, start_session, update_ema
from common.mixup import sample_point
from common.registry import build
from common.signals import StopSignal
from common.speed import PLAIN, Speed, configure, fused_kwargs, maybe_compile
from gan.config import CONFIGS, GANConfig, build_discriminator, build_generator, network_args
from gan.losses import apply_mixes, d_loss, g_loss, mixup_loss, sample_mixes
from gan.tasks import Task, make_task


def get_args_parser():
    return trainer_parser(GANConfig, "python -m gan.train", __doc__, str(CONFIGS / "sngan-cifar10.yaml"))


# ---------------------------------------------------------------------------------------------
# Networks


@dataclass
class Nets:
    """The plain networks ``G`` and ``D`` (checkpoints, sampling, EMA) and the callables that train them,
    ``G_train`` and ``D_train``: the same networks wrapped in DDP and/or compiled (``Nets.plain`` when
    neither); ``D_mix`` mixes ``D_train`` at the eligible layers (None: no mixup)."""

    G: nn.Module
    D: nn.Module
    G_train: Callable
    D_train: Callable
    D_mix: LayerMixup | None = None

    @classmethod
    def plain(cls, G: nn.Module, D: nn.Module, mix: Sequence[str] = ()) -> Nets:
        return cls(G, D, G, D, LayerMixup(D, mix) if mix else None)


def check_sizes(cfg: GANConfig, task: Task, device: torch.device) -> None:
    """Refuse, in one line, a real batch larger than the training set, more halvings of D than the image
    allows, and a run whose rough memory estimate (common/guard.py) exceeds all of ``device``'s memory."""
    shape, num_images = task.shape, task.num_images
    if num_images is not None:
        check_image_sizes(cfg, shape, num_images)
    g_params, g_values = footprint(lambda: build_generator(cfg, shape), (cfg.z_dim,))
    plain = dataclasses.replace(cfg, spectral_norm=False)  # the same parameter count, a faster estimate
    d_params, d_values = footprint(lambda: build_discriminator(plain, shape), shape)
    mixes = len(cfg.mix_pairs) if cfg.mix else 0
    d_update = (g_values + d_values * (2 + mixes)) * cfg.batch_size  # G's fakes, then D on real, fake and mixes
    g_update = (g_values + d_values) * cfg.g_batch_size
    evaluation = g_values * max(task.eval_samples, 64)
    weights = (g_params + d_params) * 4 + g_params * (cfg.g_ema_decay > 0)  # weights, grads, Adam's two moments
    values = weights + max(d_update, g_update, evaluation)
    resident = (num_images or 0) * math.prod(shape) + task.resident_bytes  # uint8
    check_memory(
        FLOAT_BYTES * values + resident,
        device,
        f"G ({g_params / 1e6:,.1f}M parameters) and D ({d_params / 1e6:,.1f}M) with batches of {cfg.batch_size} "
        f"(D) and {cfg.g_batch_size} (G)",
        "lower --batch-size, --g-batch-size, --z-dim, the channels or --eval-samples",
    )


def check_image_sizes(cfg: GANConfig, shape: Sequence[int], num_images: int) -> None:
    check(
        cfg.batch_size <= num_images,
        f"--batch-size {cfg.batch_size} is larger than the {num_images} training images; use at most {num_images}",
    )
    check(
        shape[1] >> cfg.d_down >= 1,
        f"--d-down {cfg.d_down}: D cannot halve {shape[1]}-pixel images that often; use at most "
        f"{shape[1].bit_length() - 1}",
    )


# ---------------------------------------------------------------------------------------------
# The objective


def d_step(G: nn.Module, D: Callable, x_real: Tensor, z: Tensor, cfg: GANConfig, mixer: LayerMixup | None = None):
    """Discriminator loss on a real batch, a fake batch and (with ``mixer``) their mixes at a random layer k.

    D runs once: its layers up to k on the real and fake batch together, the rest on the real, fake and
    mixed states together (the mixes are appended at k), so the mixup term costs D's layers after k on the
    mixes. ``mixer`` mixes ``D`` at the eligible layers; λ, the permutations and k are drawn before D runs.
    """
    with torch.no_grad():
        x_fake = G(z)
    b = len(x_real)
    x = torch.cat([x_real, x_fake])  # (2B, ...)
    if mixer is None:
        logits = D(x).float()  # float32 under autocast too
    else:
        k = sample_point(mixer.points)
        draws = sample_mixes(
            cfg.mix_pairs, cfg.mix_labels, cfg.mix_lam, cfg.mix_alpha, b, cfg.mix_per_example, x.device
        )
        append = lambda h: torch.cat([h, apply_mixes(h[:b], h[b:], draws)])  # noqa: E731 (states at k)
        logits = mixer.forward_with(x, k, append).float()  # of real, fake and mixes
    logits_real, logits_fake, logits_mixes = logits[:b], logits[b : 2 * b], logits[2 * b :]
    loss = d_loss(logits_real, logits_fake, cfg.loss)
    parts = {"d_loss": loss.detach(), "d_real": logits_real.detach().mean(), "d_fake": logits_fake.detach().mean()}
    if mixer is not None:
        term = mixup_loss(logits_mixes, [d.target for d in draws], cfg.loss)
        loss = loss + cfg.mix_weight * term
        parts["d_mix"] = term.detach()
    return loss, parts


def g_step(G: nn.Module, D: Callable, z: Tensor, cfg: GANConfig) -> tuple[Tensor, dict[str, Tensor]]:
    """Generator loss on a fresh fake batch: the ordinary GAN objective, no mixup."""
    loss = g_loss(D(G(z)).float(), cfg.loss)  # float32 logits under autocast too, as in d_step
    return loss, {"g_loss": loss.detach()}


def learning_rate(base: float, step: int, cfg: GANConfig) -> float:
    return base * (1 - step / cfg.steps) if cfg.lr_decay == "linear" else base


def train_iteration(
    nets: Nets,
    opt_g,
    opt_d,
    real: Task,
    step: int,
    cfg: GANConfig,
    device: torch.device,
    speed: Speed = PLAIN,
    dist: Dist = NO_DIST,
) -> dict[str, Tensor]:
    """n_dis discriminator updates, then one generator update. Returns the loss parts (on the device).

    Noise is drawn for the global batch on every rank and sharded, like the data.
    """
    parts: dict[str, Tensor] = {}
    for i in range(cfg.n_dis):
        x_real = real.batch(step * cfg.n_dis + i)
        z = shard(torch.randn(cfg.batch_size, nets.G.z_dim, device=device), dist)
        with speed.autocast(device):
            loss, parts = d_step(nets.G_train, nets.D_train, speed.images(x_real), z, cfg, nets.D_mix)
        opt_d.zero_grad(set_to_none=True)
        loss.backward()
        opt_d.step()
    nets.D.requires_grad_(False)  # the generator's update needs no gradients for D's weights
    z = shard(torch.randn(cfg.g_batch_size, nets.G.z_dim, device=device), dist)
    with speed.autocast(device):
        loss, g_parts = g_step(nets.G_train, nets.D_train, z, cfg)
    opt_g.zero_grad(set_to_none=True)
    loss.backward()
    opt_g.step()
    nets.D.requires_grad_(True)
    return parts | g_parts


# ---------------------------------------------------------------------------------------------
# The run


@dataclass
class Training:
    """The networks, their optimizers, G's EMA copy (None when off), the noise of the sample visuals, and
    the networks' model_args (what a checkpoint rebuilds them from)."""

    nets: Nets
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    G_ema: nn.Module | None
    fixed_z: Tensor
    model_args: dict[str, Any]

    def states(self) -> dict[str, Any]:
        """What a checkpoint keeps, by name (None: no EMA in this run)."""
        return {
            "generator": self.nets.G,
            "discriminator": self.nets.D,
            "opt_g": self.opt_g,
            "opt_d": self.opt_d,
            "generator_ema": self.G_ema,
        }


def build_training(s: Session, task: Task) -> Training:
    cfg, device, speed = s.cfg, s.device, s.speed
    model_args = network_args(cfg, task.shape)
    G = speed.module(build(model_args["generator"]).to(device))
    D = speed.module(build(model_args["discriminator"]).to(device))
    G_train, D_train = maybe_compile(wrap(G, s.dist, device), speed), maybe_compile(wrap(D, s.dist, device), speed)
    D_mix = LayerMixup(D_train, cfg.mix) if cfg.mix else None  # names checked, hooks installed before compiling
    nets = Nets(G, D, G_train, D_train, D_mix)
    opt_g = torch.optim.Adam(G.parameters(), lr=cfg.lr_g, betas=(cfg.beta1, cfg.beta2), **fused_kwargs(device))
    opt_d = torch.optim.Adam(D.parameters(), lr=cfg.lr_d, betas=(cfg.beta1, cfg.beta2), **fused_kwargs(device))
    G_ema = copy.deepcopy(G) if cfg.g_ema_decay > 0 else None
    fixed_z = torch.randn(task.visual_noise, cfg.z_dim, device=device)
    mixing = "mixing points: " + ", ".join(D_mix.labels) if D_mix else "no mixup"
    s.say(
        f"G {num_params(G):.2f}M, D {num_params(D):.2f}M parameters | loss {cfg.loss} | {mixing} | {speed.describe()}"
    )
    return Training(nets, opt_g, opt_d, G_ema, fixed_z, dict(model_args))


def main(argv: Sequence[str] | None = None) -> int:
    s = start_session(GANConfig, get_args_parser(), argv, "gan")
    configure(s.device)
    task = make_task(s.cfg, s.device, s.dist, s.say)
    check_sizes(s.cfg, task, s.device)
    t = build_training(s, task)
    s.begin()
    # The scorer is set up before the checkpoint's RNG state is restored: building its extractor draws from
    # torch's generator (a network's initial weights), which a new run does here too; after the restore it
    # would shift every later draw of a resumed run (exact resume).
    skipped = task.start_evaluation() if s.dist.main else None
    step, meter = 0, LossMeter()
    if s.resuming:
        state = s.restore(t.states(), extra=("fixed_z",))
        t.fixed_z, step, meter = state["fixed_z"], state["step"], LossMeter(state["meter"])
        s.say(f"resumed at generator update {step} of {s.cfg.steps}")
    if skipped:
        s.say(skipped)
        s.run.log(step=step, scoring=skipped)
    code = train(s, task, t, step, meter)
    if code is not None:
        return code
    final = [m for m in s.run.metrics() if m.get("step") == s.cfg.steps and "time" not in m]
    results = {k: v for m in final for k, v in m.items() if k != "step"}
    mixing = ", ".join(t.nets.D_mix.labels) if t.nets.D_mix else "none"
    speed = s.speed.describe(t.nets.G_train, t.nets.D_train)  # what ran: compiled, or eager and why
    extra = {"mixing_points": mixing, "speed": speed} | ({"scoring": skipped} if skipped else {})
    return s.finish(results, {"steps": s.cfg.steps}, [t.nets.G, t.nets.D], summary_line, extra)


def train(s: Session, task: Task, t: Training, step: int, meter: LossMeter) -> int | None:
    """The generator updates from ``step`` to the end: None when done, else the exit code of a stop."""
    cfg, device, dist, nets = s.cfg, s.device, s.dist, t.nets
    sampler = t.G_ema or nets.G  # what the visuals and the evaluations show
    s.keep(nets.G, nets.D, t.G_ema, hint=f"lower --lr-d/--lr-g (now {cfg.lr_d:g}/{cfg.lr_g:g})", count_key="steps")

    def save() -> None:
        s.save(
            t.states(),
            step=step,
            meter=meter,
            fixed_z=t.fixed_z,
            sample_shape=list(task.shape),
            model_args=t.model_args,
        )

    throughput = Throughput(step)
    with StopSignal() as stop, progress(cfg.steps if dist.main else 0, step, "gan") as bar:
        while step < cfg.steps:
            for group, base in ((t.opt_g.param_groups[0], cfg.lr_g), (t.opt_d.param_groups[0], cfg.lr_d)):
                group["lr"] = learning_rate(base, step, cfg)
            parts = train_iteration(nets, t.opt_g, t.opt_d, task, step, cfg, device, s.speed, dist)
            if t.G_ema is not None:
                update_ema(t.G_ema, nets.G, cfg.g_ema_decay)
            step += 1
            bar.update()

            meter.add(parts)
            if step % cfg.log_every == 0 or step == cfg.steps:  # the only host-device sync of an update
                logged = meter.flush(dist)
                rate = throughput.rate(step, cfg.n_dis * cfg.batch_size)
                times = {"real_per_s": rate, "wall_s": s.wall()}
                s.run.log(step=step, lr_g=t.opt_g.param_groups[0]["lr"], **logged, time=times)
                s.say(log_line(step, cfg, logged, rate))
                if (code := s.check_losses(logged, step)) is not None:
                    return code
            with throughput.paused():  # throughput counts training only
                if dist.main and (step % cfg.sample_every == 0 or step == cfg.steps):
                    path = s.run.out / "samples" / f"step{step:07d}.png"
                    path.parent.mkdir(exist_ok=True)
                    task.save_visual(sampler, t.fixed_z, path)
                if dist.main and ((task.eval_every and step % task.eval_every == 0) or step == cfg.steps):
                    evaluate(s, task, sampler, step)
                due = step % cfg.checkpoint_every == 0 or step == cfg.steps
                if due and (code := s.checkpoint(step, save)) is not None:
                    return code
            code = s.poll_stop(stop, step, save, sync_point=step % cfg.log_every == 0)
            if code is not None:
                return code
    return None


def evaluate(s: Session, task: Task, G: nn.Module, step: int) -> None:
    """The task's metrics of G (mode metrics, or FID/IS), logged and printed."""
    metrics = task.evaluate(G)
    if metrics:
        s.run.log(step=step, **metrics)
        s.say(f"step {step}: " + " | ".join(f"{k} {v:.4g}" for k, v in metrics.items()))


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
    return (
        f"summary: {' | '.join(shown)} | wall time {hms(summary['wall_time_s'])} | run directory {summary['run_dir']}"
    )


if __name__ == "__main__":
    run_main(main, prog="python -m gan.train")
