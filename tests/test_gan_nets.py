import math

import torch

from manifold_mixup.gan.nets import Discriminator, Generator


def test_sngan_shapes_for_cifar10():
    G, D = Generator(), Discriminator()
    x = G(torch.randn(3, 128))
    assert x.shape == (3, 3, 32, 32) and x.min() >= -1 and x.max() <= 1
    assert D(x).shape == (3,)
    assert D.mix_points == ("pixel", "h1", "h2", "h3", "h4")
    assert D(x, 0, 1).shape == (3, 128, 16, 16) and D(x, 0, 2).shape == (3, 128, 8, 8)


def test_small_nets_for_digits():
    G = Generator(z_dim=16, channels=32, bottom=2, blocks=2, out_channels=1)
    D = Discriminator(in_channels=1, channels=32, down=2, plain=1)
    x = G(torch.randn(5, 16))
    assert x.shape == (5, 1, 8, 8) and D(x).shape == (5,)


def test_discriminator_stages_compose_to_the_full_forward():
    D = Discriminator(channels=16).eval()
    x = torch.randn(2, 3, 32, 32)
    for k in range(len(D.mix_points)):
        torch.testing.assert_close(D(D(x, 0, k), k), D(x))


def test_spectral_norm_keeps_every_layer_near_one():
    torch.manual_seed(0)
    D = Discriminator(channels=16)
    with torch.no_grad():
        for p in D.parameters():
            p.mul_(5)  # far from normalised to begin with
        for _ in range(50):  # power iterations run in training-mode forwards
            D(torch.randn(4, 3, 32, 32))
    layers = [m for m in D.modules() if hasattr(m, "parametrizations")]
    assert len(layers) == 11  # 3 (optimized block) + 3 (down block) + 2 x 2 (plain) + 1 (head): every layer
    for m in layers:
        sigma = torch.linalg.matrix_norm(m.weight.detach().flatten(1), ord=2)
        assert abs(float(sigma) - 1) < 0.05


def test_sngan_initialisation_gain_root2_on_residual_convolutions_only():
    """Miyato et al.'s reference: Xavier-uniform with gain √2 on residual 3x3 convs, gain 1 elsewhere."""
    torch.manual_seed(0)
    for net in (Generator(z_dim=16, channels=32, blocks=2), Discriminator(channels=32)):
        residual = {id(m) for b in net.modules() if hasattr(b, "residual") for m in b.residual.modules()}
        seen = set()
        for m in net.modules():
            if not isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
                continue
            w = m.parametrizations.weight.original if hasattr(m, "parametrizations") else m.weight
            fan_in, fan_out = w[0].numel(), w.shape[0] * w[0, 0].numel()
            gain = math.sqrt(2) if id(m) in residual else 1.0
            bound = gain * math.sqrt(6 / (fan_in + fan_out))
            assert w.abs().max() <= bound + 1e-6 and w.abs().max() > 0.9 * bound, (type(net).__name__, w.shape)
            seen.add(gain)
        assert seen == {1.0, math.sqrt(2)}


def test_spectral_norm_power_iteration_runs_in_float32_with_autocast_off(monkeypatch):
    """CUDA's autocast runs torch.mv in bfloat16 (the CPU's does not, so a dtype check alone cannot fail
    here): the check is that every torch.mv of the power iteration and of σ runs with autocast off and on
    float32 inputs, which keeps it float32 under any device's autocast policy."""
    mv, seen = torch.mv, []

    def recording_mv(a, b, *args, **kwargs):
        seen.append((torch.is_autocast_enabled("cpu"), a.dtype, b.dtype))
        return mv(a, b, *args, **kwargs)

    monkeypatch.setattr(torch, "mv", recording_mv)
    torch.manual_seed(0)
    D = Discriminator(in_channels=1, channels=8, down=1, plain=0)
    seen.clear()  # construction runs power iterations outside autocast
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = D(torch.randn(2, 1, 8, 8))
    assert len(seen) == 3 * 4  # 4 layers: two power-iteration products and σ's each
    assert all(not autocast and a == b == torch.float32 for autocast, a, b in seen), seen
    assert logits.dtype == torch.bfloat16  # the layers themselves still run in bf16
    state = D.state_dict()  # torch's keys: checkpoints written before still load
    assert "stages.0.residual.0.parametrizations.weight.0._u" in state
    assert all(v.dtype == torch.float32 for k, v in state.items() if k.endswith(("_u", "_v")))


def test_a_first_convolution_is_mixing_point_conv1_and_block_points_keep_their_names():
    D = Discriminator(in_channels=1, channels=16, down=2, plain=1, stem=8)
    assert D.mix_points == ("pixel", "conv1", "h1", "h2", "h3")
    assert D.mix_point_layers["conv1"] == "stages.0" and D.mix_point_layers["h1"] == "stages.1"
    x = torch.randn(3, 1, 8, 8)
    assert D(x, 0, 1).shape == (3, 8, 8, 8)  # conv1: the stem's output, full resolution
    assert D(x, 0, 2).shape == (3, 16, 4, 4)  # h1: block 1's output, as without a stem
    plain = Discriminator(in_channels=1, channels=16, down=2, plain=1)
    assert plain.mix_points == ("pixel", "h1", "h2", "h3") and len(D.stages) == len(plain.stages) + 1
