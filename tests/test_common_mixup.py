import pytest
import torch
from scipy import stats

from manifold_mixup.common.mixup import _PermuteBatch, mix, permute_batch, sample_lam, sample_mix


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


def test_mixed_targets_are_convex_combinations():
    x, y = batch()
    for seed in range(5):
        torch.manual_seed(seed)
        m = sample_mix(len(x), (0, 1), alpha=0.5, per_example=seed % 2 == 1)
        y_mix = mix(y, y[m.perm], m.lam)
        torch.testing.assert_close(y_mix.sum(1), torch.ones(len(x)))
        assert (y_mix >= 0).all() and (y_mix <= 1).all()
        lam = m.lam.expand(len(x)).unsqueeze(1).float()
        torch.testing.assert_close(y_mix, lam * y + (1 - lam) * y[m.perm])


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


@pytest.mark.parametrize("channels_last", [False, True])
def test_permute_batch_gives_indexings_values_and_gradients_exactly_through_the_gather(channels_last, monkeypatch):
    """Forward h[perm]; backward the gradient autograd's scatter would give, bit for bit, through our op."""
    torch.manual_seed(0)
    h0 = torch.randn(6, 3, 4, 4, dtype=torch.bfloat16)
    if channels_last:
        h0 = h0.contiguous(memory_format=torch.channels_last)
    perm, lam, w = torch.randperm(6), torch.tensor(0.3), torch.randn(6, 3, 4, 4)
    calls = []
    backward = _PermuteBatch.backward
    monkeypatch.setattr(_PermuteBatch, "backward", staticmethod(lambda ctx, g: calls.append(1) or backward(ctx, g)))
    grads = []
    for permute in (lambda h: h[perm], lambda h: permute_batch(h, perm)):
        h = h0.clone().requires_grad_()
        out = mix(h, permute(h), lam)
        (out.float() * w).sum().backward()
        grads.append((out, h.grad))
    assert calls == [1], "permute_batch did not run its own backward"
    assert torch.equal(grads[0][0], grads[1][0]) and torch.equal(grads[0][1], grads[1][1])


def test_permute_batch_is_twice_differentiable_like_indexing():
    """A gradient penalty differentiates through the mixes again (create_graph)."""
    perm = torch.tensor([2, 0, 1])
    results = []
    for permute in (lambda h: h[perm], lambda h: permute_batch(h, perm)):
        h = torch.tensor([[1.0], [2.0], [3.0]], requires_grad=True)
        y = (permute(h) ** 3 * torch.tensor([[1.0], [2.0], [3.0]])).sum()
        (g,) = torch.autograd.grad(y, h, create_graph=True)
        (gg,) = torch.autograd.grad(g.sum(), h)
        results.append((g.detach(), gg))
    assert torch.equal(results[0][0], results[1][0]) and torch.equal(results[0][1], results[1][1])


@pytest.mark.parametrize("perm", [torch.tensor([0, 0, 1]), torch.tensor([0, 1]), torch.tensor([0, 1, 3])])
def test_permute_batch_refuses_what_is_not_a_permutation_of_the_batch(perm):
    with pytest.raises((ValueError, RuntimeError)):
        permute_batch(torch.zeros(3, 2, requires_grad=True), perm)
