import pytest
import torch
from scipy import stats
from torch import nn

from common.config import UsageError
from common.mixup import Mix, mix, mixup_forward, resolve_points, sample_lam, sample_mix
from common.staged import StagedNet


def tiny_net() -> StagedNet:
    torch.manual_seed(0)
    return StagedNet(
        [nn.Sequential(nn.Linear(4, 8), nn.ReLU()), nn.Sequential(nn.Linear(8, 8), nn.ReLU()), nn.Linear(8, 3)]
    )


def batch(n: int = 6):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, 4, generator=g)
    y = torch.nn.functional.one_hot(torch.arange(n) % 3, 3).float()
    return x, y


@pytest.mark.parametrize("alpha", [0.1, 0.5, 2.0])
def test_lam_follows_beta_alpha_alpha_and_the_test_rejects_a_wrong_alpha(alpha):
    torch.manual_seed(0)
    lam = sample_lam(alpha, (5000,)).numpy()
    assert stats.kstest(lam, stats.beta(alpha, alpha).cdf).pvalue > 1e-3
    # The same test has the power to notice a different alpha.
    assert stats.kstest(lam, stats.beta(2 * alpha, 2 * alpha).cdf).pvalue < 1e-3


def test_uniform_lam_stays_in_zero_alpha():
    torch.manual_seed(0)
    lam = sample_lam(0.3, (5000,), dist="uniform")
    assert lam.min() >= 0 and lam.max() <= 0.3
    assert stats.kstest(lam.numpy(), stats.uniform(0, 0.3).cdf).pvalue > 1e-3


def test_bad_alpha_is_rejected():
    with pytest.raises(ValueError):
        sample_lam(0.0)
    with pytest.raises(ValueError):
        sample_lam(1.5, dist="uniform")


def test_input_point_only_is_exactly_input_mixup():
    net, (x, y) = tiny_net(), batch()
    torch.manual_seed(3)
    m = sample_mix(len(x), resolve_points("pixel", net.mix_points), alpha=1.0)
    assert m.point == 0
    logits, y_mix = mixup_forward(net, x, y, m)
    lam = float(m.lam)
    torch.testing.assert_close(logits, net(lam * x + (1 - lam) * x[m.perm]))
    torch.testing.assert_close(y_mix, lam * y + (1 - lam) * y[m.perm])


@pytest.mark.parametrize("point", [0, 1, 2])
def test_lam_one_is_the_identity(point):
    net, (x, y) = tiny_net(), batch()
    m = Mix(point=point, lam=torch.tensor(1.0), perm=torch.randperm(len(x)))
    logits, y_mix = mixup_forward(net, x, y, m)
    torch.testing.assert_close(logits, net(x))
    torch.testing.assert_close(y_mix, y)


def test_mixing_at_a_hidden_point_mixes_hidden_states_not_inputs():
    net, (x, y) = tiny_net(), batch()
    m = Mix(point=2, lam=torch.tensor(0.3), perm=torch.roll(torch.arange(len(x)), 1))
    logits, _ = mixup_forward(net, x, y, m)
    h = net(x, 0, 2)
    torch.testing.assert_close(logits, net(0.3 * h + 0.7 * h[m.perm], 2))
    assert not torch.allclose(logits, net(0.3 * x + 0.7 * x[m.perm]))


def test_mixed_targets_are_convex_combinations():
    _, (x, y) = tiny_net(), batch()
    for seed in range(5):
        torch.manual_seed(seed)
        m = sample_mix(len(x), (0, 1), alpha=0.5, per_example=seed % 2 == 1)
        y_mix = mix(y, y[m.perm], m.lam)
        torch.testing.assert_close(y_mix.sum(1), torch.ones(len(x)))
        assert (y_mix >= 0).all() and (y_mix <= 1).all()
        lam = m.lam.expand(len(x)).unsqueeze(1).float()
        torch.testing.assert_close(y_mix, lam * y + (1 - lam) * y[m.perm])


@pytest.mark.parametrize("point", [1, 2])
def test_gradients_reach_stages_before_the_mixing_point(point):
    net, (x, y) = tiny_net(), batch()
    m = Mix(point=point, lam=torch.tensor(0.4), perm=torch.randperm(len(x)))
    logits, y_mix = mixup_forward(net, x, y, m)
    (-(y_mix * logits.log_softmax(1)).sum(1).mean()).backward()
    for stage in net.stages[:point]:
        for p in stage.parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0


def test_per_example_lam_mixes_each_row_with_its_own_weight():
    net, (x, y) = tiny_net(), batch()
    torch.manual_seed(0)
    m = sample_mix(len(x), (1,), alpha=1.0, per_example=True)
    assert m.lam.shape == (len(x),) and len(set(m.lam.tolist())) == len(x)
    logits, y_mix = mixup_forward(net, x, y, m)
    h = net(x, 0, 1)
    for i in range(len(x)):
        lam = m.lam[i]
        expected = net((lam * h[i] + (1 - lam) * h[m.perm[i]])[None], 1)[0]
        torch.testing.assert_close(logits[i], expected)
        torch.testing.assert_close(y_mix[i], lam * y[i] + (1 - lam) * y[m.perm[i]])


def test_two_batch_mixing_combines_different_batches():
    a, b = torch.randn(5, 3, 4, 4), torch.randn(5, 3, 4, 4)
    torch.testing.assert_close(mix(a, b, torch.tensor(0.25)), 0.25 * a + 0.75 * b)
    lam = torch.linspace(0, 1, 5)
    out = mix(a, b, lam)
    torch.testing.assert_close(out[0], b[0])
    torch.testing.assert_close(out[-1], a[-1])


def test_sample_mix_draws_every_eligible_point_and_only_those():
    torch.manual_seed(0)
    drawn = {sample_mix(4, (0, 2), alpha=1.0).point for _ in range(200)}
    assert drawn == {0, 2}


def test_resolve_points_accepts_names_and_the_input_alias():
    points = ("pixel", "h1", "h2", "h3")
    assert resolve_points("h1,pixel", points) == (1, 0)
    assert resolve_points(["input", "h2"], points) == (0, 2)
    assert resolve_points("h1,h1", points) == (1,)


def test_unknown_mixing_point_lists_the_valid_ones():
    with pytest.raises(UsageError, match=r"unknown mixing point 'h7' \(valid: pixel, h1, h2"):
        resolve_points("h7", ("pixel", "h1", "h2"))
