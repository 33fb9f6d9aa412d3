import torch
import torch.nn.functional as F
from torch import nn

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
