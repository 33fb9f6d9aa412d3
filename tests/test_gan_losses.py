import pytest
import torch
import torch.nn.functional as F

from manifold_mixup.common.staged import StagedNet
from manifold_mixup.gan.losses import (
    apply_mixes,
    d_loss,
    g_loss,
    gradient_penalty,
    mix_real_fraction,
    mixup_loss,
    sample_mixes,
    soft_label_loss,
)


@pytest.mark.parametrize(
    ("pair", "labels", "lam", "expected_lam", "expected_real"),
    [
        ("rf", "soft", 0.3, 0.3, 0.3),  # λ·real + (1−λ)·fake is λ real
        ("fr", "soft", 0.3, 0.3, 0.7),  # λ·fake + (1−λ)·real is 1−λ real
        ("ff", "soft", 0.3, 0.3, 0.0),
        ("rf", "fake", 0.8, 0.2, 0.0),  # folded to min(λ, 1−λ), labelled fake
        ("fr", "fake", 0.2, 0.8, 0.0),  # the real batch (second) keeps a share <= 1/2
        ("ff", "fake", 0.8, 0.2, 0.0),
    ],
)
def test_label_convention_of_every_pair_type(pair, labels, lam, expected_lam, expected_real):
    used, real = mix_real_fraction(pair, torch.tensor(lam, dtype=torch.float64), labels)
    assert float(used) == pytest.approx(expected_lam) and float(real) == pytest.approx(expected_real)


def test_fake_labels_keep_every_real_share_at_most_one_half():
    for lam in torch.linspace(0, 1, 21, dtype=torch.float64):
        rf, _ = mix_real_fraction("rf", lam, "fake")
        fr, _ = mix_real_fraction("fr", lam, "fake")
        assert rf <= 0.5 and 1 - fr <= 0.5


def test_soft_labels_are_bce_for_ns_and_weighted_hinge_for_hinge():
    d = torch.randn(50)
    for t in (0.0, 0.25, 1.0):
        torch.testing.assert_close(
            soft_label_loss(d, t, "ns"), F.binary_cross_entropy_with_logits(d, torch.full_like(d, t))
        )
        torch.testing.assert_close(soft_label_loss(d, t, "hinge"), (t * F.relu(1 - d) + (1 - t) * F.relu(1 + d)).mean())


def test_ordinary_losses():
    d_real, d_fake = torch.randn(10), torch.randn(10)
    torch.testing.assert_close(d_loss(d_real, d_fake, "ns"), F.softplus(-d_real).mean() + F.softplus(d_fake).mean())
    torch.testing.assert_close(d_loss(d_real, d_fake, "hinge"), F.relu(1 - d_real).mean() + F.relu(1 + d_fake).mean())
    torch.testing.assert_close(g_loss(d_fake, "ns"), F.softplus(-d_fake).mean())
    torch.testing.assert_close(g_loss(d_fake, "hinge"), -d_fake.mean())


def linear_d():
    torch.manual_seed(0)
    return StagedNet([torch.nn.Linear(4, 6), torch.nn.Sequential(torch.nn.Linear(6, 1), torch.nn.Flatten(0))])


def make_mixes(h_real, h_fake, pairs, labels, lam_dist, alpha, per_example=False):
    """What d_step does at the mixing layer: draw every pair type's λ (and ff permutation), then mix."""
    draws = sample_mixes(pairs, labels, lam_dist, alpha, len(h_fake), per_example, h_fake.device)
    return apply_mixes(h_real, h_fake, draws), [d.target for d in draws]


def test_fake_fake_mixes_never_touch_real_states():
    D = linear_d()
    h_real = torch.full((8, 4), float("nan"))
    mixes, targets = make_mixes(h_real, torch.randn(8, 4), ["ff"], "soft", "uniform", 0.5)
    assert torch.isfinite(mixes).all() and float(targets[0]) == 0
    assert torch.isfinite(mixup_loss(D(mixes), targets, "ns"))


def test_mixes_and_their_loss_match_the_formula():
    D = linear_d()
    h_real, h_fake = torch.randn(8, 6), torch.randn(8, 6)
    torch.manual_seed(3)
    mixes, targets = make_mixes(h_real, h_fake, ["rf", "fr"], "soft", "beta", 1.0)
    term = mixup_loss(D(mixes, 1), targets, "ns")
    torch.manual_seed(3)
    beta = torch.distributions.Beta(torch.tensor(1.0, dtype=torch.float64), torch.tensor(1.0, dtype=torch.float64))
    lam1, lam2 = float(beta.sample()), float(beta.sample())
    d1, d2 = D(lam1 * h_real + (1 - lam1) * h_fake, 1), D(lam2 * h_fake + (1 - lam2) * h_real, 1)
    expected = F.binary_cross_entropy_with_logits(d1, torch.full_like(d1, lam1)) + F.binary_cross_entropy_with_logits(
        d2, torch.full_like(d2, 1 - lam2)
    )
    torch.testing.assert_close(term, expected / 2)  # one mean over all 16 mixes, not a sum over pair types
    assert mixes.shape == (16, 6)


@pytest.mark.parametrize("labels", ["soft", "fake"])
@pytest.mark.parametrize("loss", ["ns", "hinge"])
def test_mixup_term_is_one_expectation_over_every_mix(labels, loss):
    """ICML eq. 6: rf, fr and ff mixes with per-example λ, against a hand computation example by example."""
    D = linear_d()
    h_real, h_fake = torch.randn(5, 6), torch.randn(5, 6)
    torch.manual_seed(7)
    mixes, targets = make_mixes(h_real, h_fake, ["rf", "fr", "ff"], labels, "uniform", 0.9, per_example=True)
    term = mixup_loss(D(mixes, 1), targets, loss)

    torch.manual_seed(7)  # replay the draws: λ for rf, λ for fr, then λ and the permutation for ff
    lam_rf, lam_fr = torch.rand(5, dtype=torch.float64) * 0.9, torch.rand(5, dtype=torch.float64) * 0.9
    lam_ff = torch.rand(5, dtype=torch.float64) * 0.9
    perm = torch.randperm(5)
    per_example = []
    for i in range(5):
        for pair, lam in (("rf", float(lam_rf[i])), ("fr", float(lam_fr[i])), ("ff", float(lam_ff[i]))):
            if labels == "fake":
                lam = min(lam, 1 - lam) if pair != "fr" else 1 - min(lam, 1 - lam)
                real = 0.0
            else:
                real = {"rf": lam, "fr": 1 - lam, "ff": 0.0}[pair]
            a, b = {"rf": (h_real[i], h_fake[i]), "fr": (h_fake[i], h_real[i]), "ff": (h_fake[i], h_fake[perm[i]])}[
                pair
            ]
            d = D((lam * a + (1 - lam) * b)[None], 1)[0]
            if loss == "ns":
                ell = real * F.softplus(-d) + (1 - real) * F.softplus(d)
            else:
                ell = real * F.relu(1 - d) + (1 - real) * F.relu(1 + d)
            per_example.append(ell)
    torch.testing.assert_close(term, torch.stack(per_example).mean())
    assert targets[0].shape == (5,)


class Linear2(torch.nn.Module):
    """D(x) = w·x + b on (B, 2) inputs: ∇ₓ D = w everywhere, so the penalties are known by hand."""

    def __init__(self, w=(3.0, 4.0), b=0.0):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(w))
        self.b = torch.nn.Parameter(torch.tensor(b))

    def forward(self, x):
        return x @ self.w + self.b


def test_gradient_penalty_values_by_hand():
    D, x = Linear2(), torch.zeros(4, 2, requires_grad=True)
    assert gradient_penalty(D(x), x, "real").item() == pytest.approx(25.0)  # ‖(3, 4)‖² = 25
    assert gradient_penalty(D(x), x, "interp").item() == pytest.approx(16.0)  # (‖(3, 4)‖ − 1)² = 16
    # of the sigmoid at logit 0: σ' = 1/4, so ‖∇‖² = 25/16 (the released code's --dnorm on D's probability)
    assert gradient_penalty(torch.sigmoid(D(x)), x, "real").item() == pytest.approx(25 / 16)


def test_gradient_penalty_trains_the_weights_by_hand():
    D, x = Linear2(), torch.randn(4, 2, requires_grad=True)
    gradient_penalty(D(x), x, "real").backward()
    torch.testing.assert_close(D.w.grad, 2 * D.w.detach())  # d‖w‖²/dw = 2w
    D.zero_grad()
    gradient_penalty(D(x), x, "interp").backward()
    torch.testing.assert_close(D.w.grad, 2 * (1 - 1 / 5) * D.w.detach())  # d(‖w‖ − 1)²/dw = 2(‖w‖ − 1)·w/‖w‖
