import torch
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

from manifold_mixup.common.features import (
    DIGITS_EXTRACTOR,
    RECIPE,
    DigitsFeatureExtractor,
    digits_extractor_weights,
    train_digits_classifier,
)
from manifold_mixup.gan.score import Samples, load_samples, score


def test_training_is_deterministic():
    quick = {**RECIPE, "epochs": 1}
    a, _ = train_digits_classifier(quick)
    b, _ = train_digits_classifier(quick)
    for name, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[name]), name


def test_training_leaves_the_callers_random_stream_alone():
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    train_digits_classifier({**RECIPE, "epochs": 0})
    torch.testing.assert_close(torch.rand(3), expected)  # a trainer scoring with it stays reproducible


def test_trained_once_cached_and_accurate():
    path = digits_extractor_weights()
    assert digits_extractor_weights() == path and path.is_file()
    state = torch.load(path, weights_only=True)
    assert state["test_accuracy"] > 0.95 and state["recipe"] == RECIPE


def test_registered_with_torch_fidelity_and_gives_features():
    assert FEATURE_EXTRACTORS_REGISTRY[DIGITS_EXTRACTOR] is DigitsFeatureExtractor
    extractor = DigitsFeatureExtractor(DIGITS_EXTRACTOR, ["features", "logits"])
    images = load_samples("digits-test").images[:16]
    features, logits = extractor(images)
    assert features.shape == (16, 64) and logits.shape == (16, 10)
    rgb_features, _ = extractor(images.expand(-1, 3, -1, -1))  # RGB-saved samples read the same
    torch.testing.assert_close(rgb_features, features)


def test_real_digits_score_far_better_than_noise():
    train, test = load_samples("digits-train"), load_samples("digits-test")
    noise = torch.randint(0, 256, (500, 1, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    kwargs = dict(feature_extractor=DIGITS_EXTRACTOR, cache=None)
    real = score(test, train, **kwargs)
    fake = score(Samples(noise, "noise", ""), train, **kwargs)
    assert fake["frechet_inception_distance"] > 20 * real["frechet_inception_distance"]
    assert real["inception_score_mean"] > 5 > fake["inception_score_mean"]
    assert real["protocol"]["comparable_to_inception_scores"] is False
