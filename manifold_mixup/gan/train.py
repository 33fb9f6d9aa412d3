"""A spectral-norm ResNet GAN whose discriminator also learns on mixes (Manifold Mixup for GANs).

    python -m gan.train                                          # SNGAN on CIFAR-10, no mixup
    python -m gan.train --mix h1,pixel                           # + mixes at the input or after D's block 1
    python -m gan.train --mix pixel --mix-pairs rf,ff --mix-labels fake --mix-lam beta --mix-alpha 0.2
    python -m gan.train --config configs/gan/ring.yaml --mix pixel     # 8-Gaussian ring: a CPU minute
    python -m gan.train --config configs/gan/digits.yaml               # sklearn digits: CPU minutes
    python -m gan.train --config configs/gan/table6-digits-gangp.yaml --mix pixel --mix-pairs fr,ff  # GAN-GP
    python -m gan.train --config configs/gan/gangp-conv1-fr-cifar10.yaml      # conv1 FR, γ 0.5 (FID 20.7)
    python -m gan.train --out runs/x --resume

One generator step (Miyato et al. 2018, plus ICML 2019 eq. 7): n_dis discriminator steps, each on a
real and a fake batch and, with --mix, on mixes of their hidden states at a point k drawn from the
eligible set (the states up to k are computed once and shared), plus γ times D's gradient penalty with
--gp; then one generator step on the ordinary loss, minus D's mixup term with --g-mix (ICML eq. 6).
docs/gan.md describes the options, docs/gan-departures.md where each default comes from.
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

from manifold_mixup.common.cli import progress, run_main, trainer_parser
from manifold_mixup.common.config import UsageError, check
from manifold_mixup.common.dist import NO_DIST, Dist, shard, wrap
from manifold_mixup.common.guard import FLOAT_BYTES, check_memory, footprint
from manifold_mixup.common.layers import LayerMixup
from manifold_mixup.common.loop import LossMeter, Session, Throughput, hms, num_params, start_session, update_ema
from manifold_mixup.common.mixup import sample_point
from manifold_mixup.common.registry import build
from manifold_mixup.common.signals import StopSignal
from manifold_mixup.common.speed import PLAIN, Speed, backward_step, configure, fused_kwargs, maybe_compile
from manifold_mixup.gan.config import (
    CONFIGS,
    GANConfig,
    build_discriminator,
    build_generator,
    check_combinations,
    network_args,
)
from manifold_mixup.gan.losses import PairMix, apply_mixes, d_loss, g_loss, gradient_penalty, mixup_loss, sample_mixes
from manifold_mixup.gan.tasks import Task, make_task


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
    penalty = 2 * (cfg.gp > 0)  # the penalty's double backward keeps about two more copies of D's states
    d_update = (g_values + d_values * (2 + mixes + penalty)) * cfg.batch_size  # G's fakes, D on real, fake, mixes
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


def d_logits(
    D: Callable, x_real: Tensor, x_fake: Tensor, cfg: GANConfig, mixer: LayerMixup | None = None
) -> tuple[Tensor, Tensor, Tensor | None, list[PairMix]]:
    """D's float32 logits on the real batch (B,), the fakes (F,) and, with ``mixer``, on mixes of the real
    batch with the first B fakes at a layer k drawn from the eligible set ((P·B,), else None), and the draws.

    D runs once: its layers up to k on the real and fake batch together, the rest on the real, fake and
    mixed states together (the mixes are appended at k), so the mixup term costs D's layers after k on the
    mixes. λ, the permutations and k are drawn before D runs.
    """
    b, f = len(x_real), len(x_fake)
    x = torch.cat([x_real, x_fake])  # (B + F, ...)
    if mixer is None:
        logits = D(x).float()  # float32 under autocast too
        return logits[:b], logits[b:], None, []
    k = sample_point(mixer.points)
    draws = sample_mixes(cfg.mix_pairs, cfg.mix_labels, cfg.mix_lam, cfg.mix_alpha, b, cfg.mix_per_example, x.device)
    append = lambda h: torch.cat([h, apply_mixes(h[:b], h[b : 2 * b], draws)])  # noqa: E731 (states at k)
    logits = mixer.forward_with(x, k, append).float()  # of real, fake and mixes
    return logits[:b], logits[b : b + f], logits[b + f :], draws


def d_step(G: nn.Module, D: Callable, x_real: Tensor, z: Tensor, cfg: GANConfig, mixer: LayerMixup | None = None):
    """Discriminator loss on a real batch, a fake batch and (with ``mixer``) their mixes at a random layer k
    (:func:`d_logits`), plus γ times the gradient penalty when ``cfg.gp`` > 0 (:func:`d_penalty`)."""
    with torch.no_grad():
        x_fake = G(z)
    if cfg.gp > 0 and cfg.gp_on == "real":
        x_real = x_real.detach().requires_grad_(True)  # R1: D's gradient at the real batch
    logits_real, logits_fake, logits_mixes, draws = d_logits(D, x_real, x_fake, cfg, mixer)
    loss = d_loss(logits_real, logits_fake, cfg.loss)
    parts = {"d_loss": loss.detach(), "d_real": logits_real.detach().mean(), "d_fake": logits_fake.detach().mean()}
    if logits_mixes is not None:
        term = mixup_loss(logits_mixes, [d.target for d in draws], cfg.loss)
        loss = loss + cfg.mix_weight * term
        parts["d_mix"] = term.detach()
    if cfg.gp > 0:
        penalty = d_penalty(D, x_real, x_fake, logits_real, cfg)
        loss = loss + cfg.gp * penalty
        parts["d_gp"] = penalty.detach()
    return loss, parts


def d_penalty(D: Callable, x_real: Tensor, x_fake: Tensor, logits_real: Tensor, cfg: GANConfig) -> Tensor:
    """The gradient penalty of D without γ (gan.losses.gradient_penalty), of D's logit or its sigmoid.

    real: at the real batch, whose logits D already computed (``x_real`` requires grad); interp: at
    x̂ = ε·real + (1−ε)·fake, ε ~ U(0, 1) per example (Gulrajani et al. 2017), one more forward of D.
    """
    if cfg.gp_on == "real":
        x, out = x_real, logits_real
    else:
        eps = torch.rand(len(x_real), *[1] * (x_real.dim() - 1), device=x_real.device)
        x = (eps * x_real + (1 - eps) * x_fake).detach().requires_grad_(True)
        out = D(x).float()
    return gradient_penalty(torch.sigmoid(out) if cfg.gp_of == "prob" else out, x, cfg.gp_on)


def g_step(
    G: nn.Module,
    D: Callable,
    z: Tensor,
    cfg: GANConfig,
    mixer: LayerMixup | None = None,
    x_real: Tensor | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Generator loss on a fresh fake batch: the ordinary GAN objective; with ``cfg.g_mix`` (and ``mixer``
    and a real batch ``x_real``) minus D's mixup term on mixes of ``x_real`` with the first B fakes
    (ICML eq. 6: G maximises the term that D minimises; the released code's hidden-mix GAN does the same)."""
    if not cfg.g_mix or mixer is None:
        loss = g_loss(D(G(z)).float(), cfg.loss)  # float32 logits under autocast too, as in d_step
        return loss, {"g_loss": loss.detach()}
    if x_real is None:
        raise ValueError("g_step with cfg.g_mix needs the real batch x_real to mix with")
    _, logits_fake, logits_mixes, draws = d_logits(D, x_real, G(z), cfg, mixer)
    gan = g_loss(logits_fake, cfg.loss)
    term = mixup_loss(logits_mixes, [d.target for d in draws], cfg.loss)
    return gan - cfg.mix_weight * term, {"g_loss": gan.detach(), "g_mix": term.detach()}


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
    scalers: tuple[torch.amp.GradScaler | None, torch.amp.GradScaler | None] = (None, None),
) -> dict[str, Tensor]:
    """n_dis discriminator updates, then one generator update (with --g-mix on mixes with the last real
    batch too). Returns the loss parts (on the device).

    Noise is drawn for the global batch on every rank and sharded, like the data. ``scalers`` are the
    gradient scalers of D and G under float16 autocast (one per network: their losses differ in scale).
    """
    scaler_d, scaler_g = scalers
    parts: dict[str, Tensor] = {}
    for i in range(cfg.n_dis):
        x_real = speed.images(real.batch(step * cfg.n_dis + i))
        z = shard(torch.randn(cfg.batch_size, nets.G.z_dim, device=device), dist)
        with speed.autocast(device):
            loss, parts = d_step(nets.G_train, nets.D_train, x_real, z, cfg, nets.D_mix)
        opt_d.zero_grad(set_to_none=True)
        backward_step(loss, opt_d, scaler_d)
    nets.D.requires_grad_(False)  # the generator's update needs no gradients for D's weights
    z = shard(torch.randn(cfg.g_batch_size, nets.G.z_dim, device=device), dist)
    with speed.autocast(device):
        loss, g_parts = g_step(
            nets.G_train, nets.D_train, z, cfg, nets.D_mix, x_real
        )  # with --g-mix: the last real batch
    opt_g.zero_grad(set_to_none=True)
    backward_step(loss, opt_g, scaler_g)
    nets.D.requires_grad_(True)
    return parts | g_parts


# ---------------------------------------------------------------------------------------------
# The run


@dataclass
class Training:
    """The networks, their optimizers, G's EMA copy (None when off), the noise of the sample visuals, the
    networks' model_args (what a checkpoint rebuilds them from) and, under float16 autocast, the gradient
    scalers of D and G (else None)."""

    nets: Nets
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    G_ema: nn.Module | None
    fixed_z: Tensor
    model_args: dict[str, Any]
    scaler_d: torch.amp.GradScaler | None = None
    scaler_g: torch.amp.GradScaler | None = None

    def states(self) -> dict[str, Any]:
        """What a checkpoint keeps, by name (None: no EMA in this run)."""
        return {
            "generator": self.nets.G,
            "discriminator": self.nets.D,
            "opt_g": self.opt_g,
            "opt_d": self.opt_d,
            "generator_ema": self.G_ema,
            "scaler_d": self.scaler_d,
            "scaler_g": self.scaler_g,
        }


def build_training(s: Session, task: Task) -> Training:
    cfg, device, speed = s.cfg, s.device, s.speed
    model_args = network_args(cfg, task.shape)
    G = speed.module(build(model_args["generator"]).to(device))
    D = speed.module(build(model_args["discriminator"]).to(device))
    check(
        cfg.gp == 0 or not s.dist.enabled,
        "--gp: the gradient penalty (a double backward) is not supported across processes; run one process",
    )
    # The penalty differentiates D's gradient, which torch.compile's backward graphs do not: D runs eager.
    D_speed = dataclasses.replace(speed, compile=False) if cfg.gp > 0 else speed
    G_train, D_train = maybe_compile(wrap(G, s.dist, device), speed), maybe_compile(wrap(D, s.dist, device), D_speed)
    D_mix = LayerMixup(D_train, cfg.mix) if cfg.mix else None  # names checked, hooks installed before compiling
    if D_mix is not None:
        check_mixing_layers(D, D_mix, task.shape)
    nets = Nets(G, D, G_train, D_train, D_mix)
    opt_g = torch.optim.Adam(G.parameters(), lr=cfg.lr_g, betas=(cfg.beta1, cfg.beta2), **fused_kwargs(device))
    opt_d = torch.optim.Adam(D.parameters(), lr=cfg.lr_d, betas=(cfg.beta1, cfg.beta2), **fused_kwargs(device))
    G_ema = copy.deepcopy(G) if cfg.g_ema_decay > 0 else None
    fixed_z = torch.randn(task.visual_noise, cfg.z_dim, device=device)
    mixing = "mixing points: " + ", ".join(D_mix.labels) if D_mix else "no mixup"
    s.say(
        f"G {num_params(G):.2f}M, D {num_params(D):.2f}M parameters | loss {cfg.loss} | {mixing} | {speed.describe()}"
    )
    scalers = speed.grad_scaler(device), speed.grad_scaler(device)
    return Training(nets, opt_g, opt_d, G_ema, fixed_z, dict(model_args), *scalers)


def check_mixing_layers(D: nn.Module, mixer: LayerMixup, shape: Sequence[int]) -> None:
    """Refuse, in one line, a mixing layer after which D fails when the batch grows by the mixes: a module on
    one branch of a residual block (``stages.0.residual.0``), whose sibling branch still carries the old
    batch. One forward per layer on two blank examples, in eval mode (spectral norm's power iteration and
    the random generators are left as they were)."""
    x = torch.zeros(2, *shape, device=next(D.parameters()).device)
    was_training = D.training
    D.eval()
    try:
        with torch.no_grad():
            for label in mixer.names:
                try:
                    LayerMixup(D, [label]).forward_with(x, 0, lambda h: torch.cat([h, h[:1]]))
                except RuntimeError as e:
                    reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                    points = ", ".join(getattr(D, "mix_points", ()))
                    raise UsageError(
                        f"--mix: D fails when the mixes are appended at layer {label!r} ({reason}): it is not D's "
                        f"only path onward (one branch of a residual block?); mix at one of D's points ({points})"
                    ) from None
    finally:
        D.train(was_training)


def main(argv: Sequence[str] | None = None) -> int:
    s = start_session(GANConfig, get_args_parser(), argv, "gan")
    configure(s.device)
    check_combinations(s.cfg)
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
            scalers = (t.scaler_d, t.scaler_g)
            parts = train_iteration(nets, t.opt_g, t.opt_d, task, step, cfg, device, s.speed, dist, scalers)
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
                    s.run.log_image("samples", path, step)
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
    """Every term of D's loss (the mixup term and the penalty raw and weighted) and G's, and D's mean logits."""
    d_terms = f"D loss {losses['d_loss']:.4f}"
    terms = (("mix", "d_mix", cfg.mix_weight), ("gp", "d_gp", cfg.gp))
    extra = [(name, losses[key], w) for name, key, w in terms if key in losses]
    if extra:
        total = losses["d_loss"] + sum(w * value for _, value, w in extra)
        shown = ", ".join(f"{name} {value:.4f} × {w:g} = {w * value:.4f}" for name, value, w in extra)
        d_terms = f"D loss {total:.4f} (gan {losses['d_loss']:.4f}, {shown})"
    g_terms = f"G loss {losses['g_loss']:.4f}"
    if "g_mix" in losses:
        weighted = cfg.mix_weight * losses["g_mix"]
        g_terms = f"G loss {losses['g_loss'] - weighted:.4f} (gan {losses['g_loss']:.4f}, − mix {weighted:.4f})"
    return (
        f"step {step}/{cfg.steps} | {d_terms} | {g_terms} | "
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
