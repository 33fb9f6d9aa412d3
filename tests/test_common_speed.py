import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch._dynamo.utils import counters

import manifold_mixup.common.speed as speed_module
import manifold_mixup.gan.train as GAN
import manifold_mixup.ssl.train as SSL
from manifold_mixup.classifiers.wrn import WideResNet
from manifold_mixup.common.config import resolve_config
from manifold_mixup.common.layers import LayerMixup
from manifold_mixup.common.mixup import Mix
from manifold_mixup.common.speed import Compiled, Speed, backward_step, configure, fused_kwargs, graph_budget, no_tf32
from manifold_mixup.common.staged import StagedNet


@pytest.mark.parametrize("native_bf16", [True, False])
def test_defaults_are_fast_on_cuda_and_bf16_on_a_cpu_only_where_it_is_native(monkeypatch, native_bf16):
    monkeypatch.setattr(speed_module, "cpu_has_native_bf16", lambda: native_bf16)
    monkeypatch.setattr(speed_module, "native_bf16", lambda device: native_bf16)
    cpu = Speed.resolve(None, None, None, torch.device("cpu"))
    assert cpu == Speed(native_bf16, native_bf16, False, "bfloat16" if native_bf16 else None)  # no compile on CPUs
    assert ("native bf16" if native_bf16 else "no native bf16") in cpu.describe()
    assert Speed.resolve(False, False, None, torch.device("cpu")) == Speed(False, False, False)
    dtype = "bfloat16" if native_bf16 else "float16"  # a T4 or V100: float16 with a gradient scaler
    assert Speed.resolve(None, None, None, torch.device("cuda")) == Speed(True, True, True, dtype)
    assert Speed.resolve(False, None, True, torch.device("cuda")) == Speed(False, True, True)
    assert Speed.resolve(None, None, None, torch.device("cuda")).scaled == (not native_bf16)


@pytest.mark.parametrize("native_bf16", [True, False])
def test_amp_dtype_forces_autocast_in_that_dtype_and_float16_brings_a_scaler(monkeypatch, native_bf16):
    monkeypatch.setattr(speed_module, "native_bf16", lambda device: native_bf16)
    cpu = torch.device("cpu")
    for forced in ("bfloat16", "float16"):
        for amp in (None, False, True):  # a forced dtype turns autocast on, even over a config file's amp: false
            speed = Speed.resolve(amp, False, None, cpu, forced)
            assert speed.amp and speed.dtype == forced and speed.scaled == (forced == "float16")
    fp16 = Speed.resolve(None, False, None, cpu, "float16")
    assert isinstance(fp16.grad_scaler(cpu), torch.amp.GradScaler) and Speed(amp=True).grad_scaler(cpu) is None
    assert "amp float16 with a gradient scaler" in fp16.describe()
    with fp16.autocast(cpu):
        assert torch.get_autocast_dtype("cpu") == torch.float16 and torch.is_autocast_enabled("cpu")
    assert Speed.resolve(True, False, None, cpu).dtype == ("bfloat16" if native_bf16 else "float16")


def test_fp16_steps_match_the_fp32_steps():
    """The float16 path on the CPU, against fp32: spectral norm's power iteration and the losses stay in fp32."""
    fp16 = Speed(amp=True, amp_dtype="float16")
    loss32, grad32 = ssl_step_and_grads(Speed(), size=8)
    loss16, grad16 = ssl_step_and_grads(fp16, size=8)
    assert abs(loss16 - loss32) < 0.02 * abs(loss32) and torch.isfinite(grad16).all()
    assert F.cosine_similarity(grad16, grad32, dim=0) > 0.99
    losses32, d32, g32 = gan_steps_and_grads(Speed())
    losses16, d16, g16 = gan_steps_and_grads(fp16)
    torch.testing.assert_close(losses16, losses32, rtol=0.02, atol=0.01)
    assert F.cosine_similarity(d16, d32, dim=0) > 0.99 and F.cosine_similarity(g16, g32, dim=0) > 0.99


def test_backward_step_with_a_scaler_makes_the_fp32_update_and_skips_an_overflow():
    cpu = torch.device("cpu")
    x, y = torch.randn(32, 20), torch.randn(32, 1)

    def updated(speed, scale=2.0**12):
        torch.manual_seed(0)
        net = nn.Sequential(nn.Linear(20, 64), nn.Tanh(), nn.Linear(64, 1))  # as _init_params
        opt = torch.optim.SGD(net.parameters(), lr=0.1)
        scaler = speed.grad_scaler(cpu)
        if scaler is not None:
            scaler = torch.amp.GradScaler("cpu", init_scale=scale)
        with speed.autocast(cpu):
            loss = F.mse_loss(net(x).float(), y)
        backward_step(loss, opt, scaler)
        return torch.cat([p.detach().flatten() for p in net.parameters()]), scaler

    before = _init_params()
    p32, _ = updated(Speed())
    p16, scaler = updated(Speed(amp=True, amp_dtype="float16"))
    assert scaler.get_scale() == 2.0**12  # a clean step keeps the scale
    torch.testing.assert_close(p16 - before, p32 - before, rtol=0.02, atol=2e-4)  # the unscaled gradient's step
    p_inf, scaler = updated(Speed(amp=True, amp_dtype="float16"), scale=2.0**120)  # overflows float16 in the backward
    torch.testing.assert_close(p_inf, before, rtol=0, atol=0)  # the step was skipped
    assert scaler.get_scale() == 2.0**119  # and the scale halved


def _init_params():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(20, 64), nn.Tanh(), nn.Linear(64, 1))
    return torch.cat([p.detach().flatten() for p in net.parameters()])


def ssl_step_and_grads(speed: Speed, size: int = 16):
    torch.manual_seed(0)
    net = speed.module(WideResNet(num_classes=10, depth=10, width=2, in_channels=3, bn_momentum=0.1))
    x_l = speed.images(torch.randn(16, 3, size, size))
    x_u = speed.images(torch.randn(16, 3, size, size))
    y_l = torch.arange(16) % 10
    cfg = resolve_config(SSL.SSLConfig, None, {"dataset": "digits"})
    torch.manual_seed(1)
    with speed.autocast(torch.device("cpu")):
        loss, _ = SSL.train_step(LayerMixup(net, "pixel,h1,h2"), net, x_l, y_l, x_u, 1.0, cfg, 10)
    loss.backward()
    return loss.detach(), torch.cat([p.grad.flatten() for p in net.parameters()])


def test_bf16_channels_last_step_matches_the_fp32_step():
    loss32, grad32 = ssl_step_and_grads(Speed())
    loss16, grad16 = ssl_step_and_grads(Speed(amp=True, channels_last=True))
    assert abs(loss16 - loss32) < 0.03 * abs(loss32)
    assert F.cosine_similarity(grad16, grad32, dim=0) > 0.99


def test_channels_last_alone_is_exact_to_float_precision():
    loss_a, grad_a = ssl_step_and_grads(Speed())
    loss_b, grad_b = ssl_step_and_grads(Speed(channels_last=True))
    torch.testing.assert_close(loss_b, loss_a, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(grad_b, grad_a, rtol=1e-3, atol=1e-4)


def test_compiled_staged_net_matches_eager():
    torch.manual_seed(0)
    net = StagedNet([nn.Sequential(nn.Linear(6, 16), nn.ReLU()), nn.Linear(16, 3)])
    compiled = Compiled(net)
    x = torch.randn(5, 6)
    h = compiled(x, 0, 1)
    torch.testing.assert_close(compiled(h, 1), net(x), rtol=1e-5, atol=1e-6)
    assert compiled.compiled is not None  # it really ran compiled


def test_compile_failure_falls_back_to_eager(monkeypatch, capsys):
    net = nn.Linear(3, 2)

    def broken(*args, **kwargs):
        raise RuntimeError("no C++ compiler")

    monkeypatch.setattr(torch, "compile", lambda module, **kw: broken)
    wrapped = Compiled(net)
    x = torch.randn(4, 3)
    torch.testing.assert_close(wrapped(x), net(x))
    assert wrapped.compiled is None and "continuing in eager mode" in capsys.readouterr().err


def gan_steps_and_grads(speed: Speed):
    """One discriminator loss with mixup at h1 and one generator loss, under ``speed``; D's and G's grads."""
    torch.manual_seed(0)
    overrides = {"g_channels": "32", "d_channels": "32", "mix": "h1", "mix_pairs": "rf,fr,ff"}
    cfg = resolve_config(GAN.GANConfig, GAN.CONFIGS / "digits.yaml", overrides)
    G = speed.module(GAN.build_generator(cfg, (1, 8, 8)))
    D = speed.module(GAN.build_discriminator(cfg, (1, 8, 8)))
    x_real = speed.images(torch.rand(16, 1, 8, 8) * 2 - 1)
    z_d, z_g = torch.randn(16, cfg.z_dim), torch.randn(32, cfg.z_dim)
    torch.manual_seed(1)
    with speed.autocast(torch.device("cpu")):
        d_loss, _ = GAN.d_step(G, D, x_real, z_d, cfg, LayerMixup(D, cfg.mix))
    d_loss.backward()
    d_grad = torch.cat([p.grad.flatten() for p in D.parameters()])
    with speed.autocast(torch.device("cpu")):
        g_loss, _ = GAN.g_step(G, D, z_g, cfg)
    g_grad = torch.cat([g.flatten() for g in torch.autograd.grad(g_loss, list(G.parameters()))])
    return torch.stack([d_loss.detach(), g_loss.detach()]), d_grad, g_grad


def test_bf16_channels_last_gan_steps_match_the_fp32_steps():
    losses32, d32, g32 = gan_steps_and_grads(Speed())
    losses16, d16, g16 = gan_steps_and_grads(Speed(amp=True, channels_last=True))
    torch.testing.assert_close(losses16, losses32, rtol=0.03, atol=0.01)
    assert F.cosine_similarity(d16, d32, dim=0) > 0.99
    assert F.cosine_similarity(g16, g32, dim=0) > 0.99


def test_compiled_wrn_matches_eager_through_a_mixing_point():
    """torch.compile on the real network, mixed at h2 by the hooks as manifold mixup runs it."""
    torch.manual_seed(0)
    net = WideResNet(num_classes=10, depth=10, width=1, in_channels=1, bn_momentum=0.1).eval()
    backend = CountingBackend()
    compiled = Compiled(net, backend=backend)
    x, y = torch.randn(8, 1, 8, 8), torch.eye(8)
    m = Mix(point=0, lam=torch.tensor(0.3, dtype=torch.float64), perm=torch.roll(torch.arange(8), 1))
    out, _ = LayerMixup(compiled, "h2")(x, y, m)
    grads = torch.autograd.grad(out.square().sum(), list(net.parameters()))
    ref, _ = LayerMixup(net, "h2")(x, y, m)
    ref_grads = torch.autograd.grad(ref.square().sum(), list(net.parameters()))
    assert compiled.compiled is not None and backend.runs == 1  # it really ran compiled, as one graph
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)
    flat, ref_flat = (torch.cat([g.flatten() for g in gs]) for gs in (grads, ref_grads))
    torch.testing.assert_close(flat, ref_flat, rtol=1e-3, atol=1e-4)


# ---------------------------------------------------------------------------------------------
# Compile that compiles: every call of a compiled staged network runs exactly one captured graph


class CountingBackend:
    """A torch.compile backend that counts the graphs dynamo captures and the runs of those graphs."""

    def __init__(self):
        self.graphs = 0
        self.runs = 0

    def __call__(self, gm: torch.fx.GraphModule, example_inputs):
        self.graphs += 1

        def run(*args):
            self.runs += 1
            return gm.forward(*args)

        return run


def counted(net: nn.Module, backend: CountingBackend) -> tuple[Compiled, list]:
    """``Compiled(net)`` on the counting backend, and the list of its calls that reached dynamo."""
    wrapped = Compiled(net, backend=backend)
    inner, calls = wrapped.compiled, []

    def call(*args, **kwargs):
        calls.append(tuple(a.shape if isinstance(a, torch.Tensor) else a for a in args))
        return inner(*args, **kwargs)

    wrapped.compiled = call
    return wrapped, calls


def assert_no_fallback(backend: CountingBackend, calls: list) -> None:
    """Each call ran one compiled graph: no frame skipped, no graph break, no recompile limit hit."""
    assert backend.runs == len(calls), f"{len(calls)} compiled calls ran {backend.runs} graphs"
    assert not counters["graph_break"], dict(counters["graph_break"])
    assert not counters["unimplemented"], list(counters["unimplemented"])


@pytest.fixture
def fresh_dynamo():
    torch._dynamo.reset()
    counters.clear()
    limit = torch._dynamo.config.recompile_limit
    yield
    torch._dynamo.config.recompile_limit = limit
    torch._dynamo.reset()
    counters.clear()


def ssl_sequence(mixers: list[LayerMixup], teacher: Compiled, net: nn.Module, cfg) -> None:
    """Algorithm 1 at every mixing point (pixel included), with the teacher's no-grad call, then an evaluation."""
    for mixer in mixers:  # one mixer per point, so each step mixes at that point
        x_l, x_u = torch.randn(4, 3, 8, 8), torch.randn(4, 3, 8, 8)
        loss, _ = SSL.train_step(mixer, teacher, x_l, torch.arange(4), x_u, 1.0, cfg, 10, net=net)
        loss.backward()
    model = mixers[0].model
    net.eval()
    with torch.no_grad():
        model(torch.randn(4, 3, 8, 8))
    net.train()


def test_ssl_steps_at_every_mixing_point_stay_compiled(fresh_dynamo):
    torch.manual_seed(0)
    net = WideResNet(num_classes=10, depth=10, width=1, in_channels=3, bn_momentum=0.1)
    backend = CountingBackend()
    model, calls = counted(net, backend)
    mixers = [LayerMixup(model, (point,)) for point in net.mix_points]  # hooks installed before compiling
    cfg = resolve_config(SSL.SSLConfig, None, {"dataset": "digits"})
    ssl_sequence(mixers, model, net, cfg)
    assert_no_fallback(backend, calls)
    # one graph mixed at each of h1..h3, and the idle net with grad (pixel), without (teacher), in eval mode
    assert backend.graphs <= 3 + 3 <= graph_budget(len(net.mix_points))
    first = backend.graphs
    ssl_sequence(mixers, model, net, cfg)  # steady state: nothing new to compile
    assert backend.graphs == first
    assert_no_fallback(backend, calls)
    assert model.fallback is None and Speed(compile=True).describe(model) == "fast path: compile"


def test_gan_iterations_with_and_without_mixup_stay_compiled(fresh_dynamo):
    torch.manual_seed(0)
    overrides = {"g_channels": "16", "d_channels": "16", "mix": "pixel,h1", "n_dis": "1", "batch_size": "4"}
    cfg = resolve_config(GAN.GANConfig, GAN.CONFIGS / "digits.yaml", overrides | {"g_batch_size": "8"})
    G, D = GAN.build_generator(cfg, (1, 8, 8)), GAN.build_discriminator(cfg, (1, 8, 8))
    backend = CountingBackend()
    (G_train, g_calls), (D_train, d_calls) = counted(G, backend), counted(D, backend)
    # pixel, h1, no mixup (D unmixed), either: every mixer made before the first compiled call
    mixers = [LayerMixup(D_train, "pixel"), LayerMixup(D_train, "h1"), None, LayerMixup(D_train, "pixel,h1")]
    opt_g, opt_d = torch.optim.Adam(G.parameters()), torch.optim.Adam(D.parameters())

    class Real:
        def batch(self, i):
            return torch.rand(4, 1, 8, 8) * 2 - 1

    def iterations(step):
        for mixer in mixers:
            nets = GAN.Nets(G, D, G_train, D_train, mixer)
            GAN.train_iteration(nets, opt_g, opt_d, Real(), step, cfg, torch.device("cpu"))

    iterations(0)
    assert len(d_calls) > 0 and len(g_calls) > 0  # both steps train through the compiled networks
    assert_no_fallback(backend, g_calls + d_calls)
    first = backend.graphs
    assert first <= graph_budget(len(D.mix_points)) + 8
    iterations(4)
    assert backend.graphs == first
    assert_no_fallback(backend, g_calls + d_calls)


def test_the_raised_recompile_limit_holds_inside_the_compiled_call_only(fresh_dynamo):
    net = StagedNet([nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 2)])
    seen = []

    def backend(gm, example_inputs):
        seen.append(torch._dynamo.config.recompile_limit)
        return gm.forward

    before = torch._dynamo.config.recompile_limit
    wrapped = Compiled(net, backend=backend)
    assert torch._dynamo.config.recompile_limit == before  # building it changes nothing process-wide
    wrapped(torch.randn(3, 4))
    assert seen == [graph_budget(len(net.mix_points))] and graph_budget(3) > before
    assert torch._dynamo.config.recompile_limit == before  # nor does calling it
    plain = Compiled(nn.Linear(4, 2), backend=backend)  # no mixing points: dynamo's own limit
    plain(torch.randn(3, 4))
    assert seen[-1] == before


def test_the_summary_says_when_compile_fell_back(monkeypatch, fresh_dynamo):
    def broken(*args, **kwargs):
        raise RuntimeError("no C++ compiler")

    monkeypatch.setattr(torch, "compile", lambda module, **kw: broken)
    wrapped = Compiled(nn.Linear(3, 2))
    wrapped(torch.randn(4, 3))
    described = Speed(compile=True).describe(wrapped)
    assert "ran eager: torch.compile failed (RuntimeError: no C++ compiler)" in described
    counters["unimplemented"]["Dynamo recompile limit exceeded"] += 1
    assert "recompile limit" in Speed(compile=True).describe(nn.Linear(3, 2))


# ---------------------------------------------------------------------------------------------
# CUDA hygiene, checked without a GPU


def test_configure_turns_on_cudnn_autotuning_for_cuda_only(monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    configure(torch.device("cpu"))
    assert torch.backends.cudnn.benchmark is False
    configure(torch.device("cuda"))
    assert torch.backends.cudnn.benchmark is True


def test_no_tf32_turns_tf32_off_inside_and_restores_it():
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    try:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        with pytest.raises(ValueError), no_tf32():
            assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
            raise ValueError  # restored on the way out of an error too
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def test_fused_optimizers_match_the_default_update():
    """CUDA's ``fused=True`` (fused_kwargs) Adam and SGD: the same fused kernels run on the CPU too."""
    assert fused_kwargs(torch.device("cuda")) == {"fused": True} and fused_kwargs(torch.device("cpu")) == {}
    for cls, kw in ((torch.optim.Adam, {"betas": (0.0, 0.9)}), (torch.optim.SGD, {"momentum": 0.9, "nesterov": True})):
        torch.manual_seed(0)
        a = torch.randn(20, 20, requires_grad=True)
        b = a.detach().clone().requires_grad_()
        opts = cls([a], lr=1e-2, fused=True, **kw), cls([b], lr=1e-2, **kw)
        for _ in range(3):
            for p, opt in zip((a, b), opts):
                opt.zero_grad()
                p.pow(3).sum().backward()
                opt.step()
        assert not torch.equal(a, torch.zeros_like(a))
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
