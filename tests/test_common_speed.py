import torch
import torch.nn.functional as F
from torch import nn

import gan.train as GAN
import ssl.train as SSL
from common.config import resolve_config
from common.speed import Compiled, Speed
from common.staged import StagedNet
from ssl.wrn import WideResNet


def test_defaults_are_fast_on_cuda_and_plain_on_cpu():
    assert Speed.resolve(None, None, None, torch.device("cpu")) == Speed(False, False, False)
    assert Speed.resolve(None, None, None, torch.device("cuda")) == Speed(True, True, True)
    assert Speed.resolve(False, None, True, torch.device("cuda")) == Speed(False, True, True)


def ssl_step_and_grads(speed: Speed):
    torch.manual_seed(0)
    net = speed.module(WideResNet(num_classes=10, depth=10, width=2, in_channels=3, bn_momentum=0.1))
    x_l = speed.images(torch.randn(16, 3, 16, 16))
    x_u = speed.images(torch.randn(16, 3, 16, 16))
    y_l = torch.arange(16) % 10
    cfg = resolve_config(SSL.SSLConfig, None, {"dataset": "digits"})
    torch.manual_seed(1)
    with speed.autocast(torch.device("cpu")):
        loss, _ = SSL.train_step(net, net, x_l, y_l, x_u, 1.0, cfg, (0, 1, 2), 10)
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

    monkeypatch.setattr(torch, "compile", lambda module: broken)
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
        d_loss, _ = GAN.d_step(G, D, x_real, z_d, cfg, GAN.mixing_points(cfg, D))
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
    """torch.compile on the real network, called in two pieces as manifold mixup calls it."""
    torch.manual_seed(0)
    net = WideResNet(num_classes=10, depth=10, width=1, in_channels=1, bn_momentum=0.1).eval()
    compiled = Compiled(net)
    x = torch.randn(8, 1, 8, 8)
    out = compiled(compiled(x, 0, 2), 2)
    grads = torch.autograd.grad(out.square().sum(), list(net.parameters()))
    ref = net(x)
    ref_grads = torch.autograd.grad(ref.square().sum(), list(net.parameters()))
    assert compiled.compiled is not None  # it really ran compiled
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)
    flat, ref_flat = (torch.cat([g.flatten() for g in gs]) for gs in (grads, ref_grads))
    torch.testing.assert_close(flat, ref_flat, rtol=1e-3, atol=1e-4)
