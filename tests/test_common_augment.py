import itertools

import pytest
import torch

from manifold_mixup.common.augment import ZCA, Preprocess, normalize, random_flip, random_translate
from manifold_mixup.common.data import load_dataset


def test_normalize_is_per_channel():
    images = torch.zeros(2, 3, 4, 4, dtype=torch.uint8)
    images[:, 1] = 255
    out = normalize(images, (0.5, 0.5, 0.0), (0.5, 0.25, 1.0))
    assert out.dtype == torch.float32
    assert out[:, 0].eq(-1).all() and out[:, 1].eq(2).all() and out[:, 2].eq(0).all()


def shifted(x, dy, dx):
    """x moved down by dy and right by dx, zero filled: the reference for one example."""
    out = torch.zeros_like(x)
    h, w = x.shape[-2:]
    out[..., max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = x[
        ..., max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
    ]
    return out


def test_translation_is_one_of_the_25_shifts_per_example_and_random_per_example():
    torch.manual_seed(0)
    x = torch.randn(64, 3, 8, 8)
    out = random_translate(x, 2)
    assert out.shape == x.shape and out.dtype == x.dtype
    used = set()
    for i in range(len(x)):
        matches = [s for s in itertools.product(range(-2, 3), repeat=2) if torch.equal(out[i], shifted(x[i], *s))]
        assert len(matches) == 1, f"example {i} is not a shift of at most 2 px"
        used.add(matches[0])
    assert len(used) > 10  # different shifts for different examples


def test_translation_moves_a_single_bright_pixel_at_most_two_pixels():
    torch.manual_seed(1)
    x = torch.zeros(200, 1, 9, 9)
    x[:, 0, 4, 4] = 1
    out = random_translate(x, 2)
    where = out.flatten(1).argmax(1)
    dy, dx = where // 9 - 4, where % 9 - 4
    assert dy.abs().max() == 2 and dx.abs().max() == 2
    assert out.sum() == 200  # nothing lost, nothing added


def test_zero_shift_is_the_identity_and_works_on_uint8():
    x = torch.randint(0, 255, (3, 1, 5, 5), dtype=torch.uint8)
    assert torch.equal(random_translate(x, 0), x)
    assert random_translate(x, 1).dtype == torch.uint8


def test_flip_mirrors_about_half_of_the_examples():
    torch.manual_seed(0)
    x = torch.randn(400, 2, 4, 4)
    out = random_flip(x)
    flipped = torch.tensor([torch.equal(o, xi.flip(2)) for o, xi in zip(out, x)])
    kept = torch.tensor([torch.equal(o, xi) for o, xi in zip(out, x)])
    assert (flipped | kept).all()
    assert 150 < int(flipped.sum()) < 250


def test_preprocess_flips_only_where_enabled():
    x = torch.zeros(300, 1, 4, 4, dtype=torch.uint8)
    x[..., 0] = 255  # a bright left column
    for flip in (False, True):
        torch.manual_seed(0)
        out = Preprocess(mean=(0.0,), std=(1.0,), flip=flip)(x, train=True)
        right = int((out[..., -1] > 0.5).all(-1).all(-1).sum())
        assert (right > 100) if flip else (right == 0)
    assert torch.equal(Preprocess((0.0,), (1.0,), flip=True, translate=2)(x, train=False), x.float() / 255)


def correlated_images(n=2000, seed=0):
    """Smooth random images whose channels have different scales and offsets."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(n, 3, 4, 4, generator=g)
    smooth = torch.nn.functional.avg_pool2d(torch.nn.functional.pad(base, (1, 1, 1, 1), mode="circular"), 3, 1)
    return smooth * torch.tensor([1.0, 3.0, 0.3]).view(1, 3, 1, 1) + torch.tensor([0.0, 2.0, -1.0]).view(1, 3, 1, 1)


def test_zca_whitens_training_data_to_identity_covariance():
    x = correlated_images()
    zca = ZCA.fit(x, eps=1e-6)
    white = zca(x).flatten(1).double()
    cov = torch.cov(white.T)
    torch.testing.assert_close(cov, torch.eye(cov.shape[0], dtype=torch.float64), atol=2e-3, rtol=0)
    raw = torch.cov(x.flatten(1).double().T)
    assert (raw - torch.diag(torch.diag(raw))).abs().max() > 0.1  # it had correlations to remove


def test_zca_in_the_wrong_layout_does_not_whiten():
    """The original code's bug: fitted on HWC-flattened images, applied to CHW ones."""
    x = correlated_images()
    wrong = ZCA.fit(x.permute(0, 2, 3, 1).contiguous().view(len(x), 4, 4, 3), eps=1e-6)
    applied = ((x.flatten(1) - wrong.mean) @ wrong.matrix).double()
    cov = torch.cov(applied.T)
    assert (cov - torch.eye(cov.shape[0], dtype=torch.float64)).abs().max() > 0.5


def test_zca_on_digits_and_state_round_trip():
    images = load_dataset("digits", None, "train").images
    x = normalize(images, (0.3053,), (0.3759,))
    zca = ZCA.fit(x, eps=1e-3)
    again = ZCA.from_state_dict(zca.state_dict())
    torch.testing.assert_close(again(x[:5]), zca(x[:5]))
    varying = x.flatten(1).std(0) > 0.05  # some border pixels are blank in every digit
    cov = torch.cov(zca(x).flatten(1).T.double())[varying][:, varying]
    assert torch.diag(cov).mean() == pytest.approx(1.0, abs=0.05)
