import json
from unittest import mock

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import linalg
from torch import nn
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.registry import register_feature_extractor

import gan.score as S
import gan.train as T
from common.config import UsageError
from common.features import DIGITS_EXTRACTOR

from conftest import ROOT, run_module


def write_random_inception(path, seed):
    """torch-fidelity's InceptionV3 with random weights that give non-vanishing features."""
    import torch_fidelity.feature_extractor_inceptionv3 as fi

    with (
        mock.patch.object(fi, "load_state_dict_from_url", lambda *a, **k: {}),
        mock.patch.object(fi.FeatureExtractorInceptionV3, "load_state_dict", lambda *a, **k: None),
    ):
        net = fi.FeatureExtractorInceptionV3(S.INCEPTION, ["2048"])
    torch.manual_seed(seed)
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight)
    nn.init.normal_(net.fc.weight, std=1.0)
    nn.init.zeros_(net.fc.bias)
    torch.save(net.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    folder = tmp_path_factory.mktemp("inception")
    return write_random_inception(folder / "a.pth", 0), write_random_inception(folder / "b.pth", 1)


@pytest.fixture(scope="module")
def extractor(weights):
    return S.Extractor(S.INCEPTION, weights[0], torch.device("cpu"))


def images(kind, n=30, seed=0):
    g = torch.Generator().manual_seed(seed)
    if kind == "smooth":  # low-frequency colour fields
        small = torch.rand(n, 3, 4, 4, generator=g)
        x = nn.functional.interpolate(small, size=32, mode="bilinear", align_corners=False)
    else:  # white noise
        x = torch.rand(n, 3, 32, 32, generator=g)
    return (x * 255).to(torch.uint8)


def samples(kind, n=30, seed=0):
    x = images(kind, n, seed)
    return S.Samples(x, kind, S._fingerprint(x))


def test_fid_of_a_set_with_itself_is_zero_and_of_different_sets_positive(extractor):
    a, b = samples("smooth"), samples("noise")
    same = S.score(a, a, extractor=extractor, cache=None, isc_splits=3)
    different = S.score(a, b, extractor=extractor, cache=None, isc_splits=3)
    assert different["frechet_inception_distance"] > 0
    assert abs(same["frechet_inception_distance"]) < 1e-6 * different["frechet_inception_distance"]
    assert same["inception_score_mean"] > 1 and same["protocol"]["samples"]["count"] == 30


def test_npz_folder_and_checkpoint_inputs(tmp_path, extractor):
    x = images("smooth", 12)
    np.savez(tmp_path / "s.npz", images=x.permute(0, 2, 3, 1).numpy())
    folder = tmp_path / "pngs"
    folder.mkdir()
    for i, img in enumerate(x):
        Image.fromarray(img.permute(1, 2, 0).numpy()).save(folder / f"{i:03d}.png")
    from_npz, from_folder = S.load_samples(tmp_path / "s.npz"), S.load_samples(folder)
    assert torch.equal(from_npz.images, x) and torch.equal(from_folder.images, x)

    run = tmp_path / "gan"
    assert (
        T.main(
            [
                "--config",
                str(ROOT / "configs" / "gan" / "digits.yaml"),
                "--device",
                "cpu",
                "--steps",
                "1",
                "--n-dis",
                "1",
                "--g-channels",
                "8",
                "--d-channels",
                "8",
                "--batch-size",
                "4",
                "--g-batch-size",
                "4",
                "--score-samples",
                "0",
                "--out",
                str(run),
            ]
        )
        == 0
    )
    generated = S.load_samples(run / "checkpoint.pt", num_samples=10)
    assert generated.images.shape == (10, 1, 8, 8)
    result = S.score(generated, from_npz, extractor=extractor, cache=None, isc_splits=2)  # grayscale -> RGB
    assert result["frechet_inception_distance"] > 0


def test_fid_matches_an_independent_computation():
    train, test = S.load_samples("digits-train"), S.load_samples("digits-test")
    extractor = S.Extractor(
        DIGITS_EXTRACTOR, __import__("common.features").features.digits_extractor_weights(), torch.device("cpu")
    )
    fid = S.score(test, train, extractor=extractor, cache=None, isc=False)["frechet_inception_distance"]
    f1 = extractor(test.images, 100, "t")["features"].numpy()
    f2 = extractor(train.images, 100, "t")["features"].numpy()
    mu1, mu2 = f1.mean(0), f2.mean(0)
    s1, s2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
    covmean = linalg.sqrtm(s1 @ s2).real
    expected = float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))
    assert fid == pytest.approx(expected, rel=1e-6)


class OneHot(FeatureExtractorBase):
    """Predicts class (first pixel value) with certainty; for checking the IS arithmetic."""

    def __init__(self, name, features_list, **kwargs):
        super().__init__(name, features_list)

    def forward(self, x):
        return (100.0 * nn.functional.one_hot(x[:, 0, 0, 0].long() % 4, 4).float(),)

    @staticmethod
    def get_provided_features_list():
        return ("logits",)

    @staticmethod
    def get_default_feature_layer_for_metric(metric):
        return "logits"


register_feature_extractor("test-onehot", OneHot)


@pytest.mark.parametrize(("labels", "expected"), [([2] * 40, 1.0), ([0, 1, 2, 3] * 10, 4.0)])
def test_inception_score_extremes(tmp_path, labels, expected):
    (tmp_path / "w").write_bytes(b"none")
    x = torch.zeros(40, 3, 4, 4, dtype=torch.uint8)
    x[:, 0, 0, 0] = torch.tensor(labels, dtype=torch.uint8)
    ex = S.Extractor("test-onehot", tmp_path / "w", torch.device("cpu"))
    result = S.score(S.Samples(x, "x", ""), extractor=ex, fid=False, isc_splits=1)
    assert result["inception_score_mean"] == pytest.approx(expected, rel=1e-6)


def test_reference_statistics_are_cached_per_weights(tmp_path, weights):
    ref = samples("smooth", 12)
    a = S.Extractor(S.INCEPTION, weights[0], torch.device("cpu"))
    b = S.Extractor(S.INCEPTION, weights[1], torch.device("cpu"))
    stats_a = S.reference_statistics(ref, a, 50, tmp_path)
    stats_b = S.reference_statistics(ref, b, 50, tmp_path)  # same data, other weights: not the cached ones
    assert len(list((tmp_path / "fid-stats").iterdir())) == 2
    assert not np.allclose(stats_a["mu"], stats_b["mu"])
    with mock.patch.object(S.Extractor, "__call__", side_effect=AssertionError("recomputed")):
        again = S.reference_statistics(ref, a, 50, tmp_path)  # a cache hit: no features extracted
    np.testing.assert_array_equal(again["sigma"], stats_a["sigma"])
    other = samples("smooth", 12, seed=5)  # other data of the same count: another key
    S.reference_statistics(other, a, 50, tmp_path)
    assert len(list((tmp_path / "fid-stats").iterdir())) == 3


def test_missing_weights_offline_say_where_to_put_them(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(
        UsageError,
        match=r"weights-inception-2015-12-05-6726825d.pth not found .*hub/checkpoints/ "
        r".*--inception-weights PATH .*https://github.com/toshas",
    ):
        S.find_inception_weights(download=False)
    with pytest.raises(UsageError, match="do not exist"):
        S.find_inception_weights(tmp_path / "nope.pth")
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    (tmp_path / "hub" / "checkpoints" / S.INCEPTION_FILE).write_bytes(b"x")
    assert S.find_inception_weights(download=False).name == S.INCEPTION_FILE


def test_bad_inputs_are_usage_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="holds no PNG or JPEG images"):
        S.load_samples(tmp_path / "empty")
    np.savez(tmp_path / "float.npz", images=np.zeros((4, 8, 8, 3), np.float32))
    with pytest.raises(UsageError, match="must be uint8"):
        S.load_samples(tmp_path / "float.npz")
    np.savez(tmp_path / "nchw.npz", images=np.zeros((4, 3, 8, 8), np.uint8))
    with pytest.raises(UsageError, match=r"must be \(N, H, W, C\)"):
        S.load_samples(tmp_path / "nchw.npz")
    with pytest.raises(UsageError, match="does not exist"):
        S.load_samples(tmp_path / "missing.npz")
    few = samples("smooth", 8)
    with pytest.raises(UsageError, match="KID subsets of 1000 need at least"):
        S.score(few, few, kid=True, isc=False, feature_extractor=DIGITS_EXTRACTOR)
    with pytest.raises(UsageError, match="need a reference"):
        S.score(few, None, feature_extractor=DIGITS_EXTRACTOR)


def test_command_writes_json_with_the_protocol_and_fails_cleanly(tmp_path, weights):
    train = S.load_samples("digits-train").images[:300]
    np.savez(tmp_path / "a.npz", images=train.permute(0, 2, 3, 1).numpy())
    out = tmp_path / "scores.json"
    result = run_module(
        "gan.score",
        str(tmp_path / "a.npz"),
        "--ref",
        "digits-test",
        "--feature-extractor",
        DIGITS_EXTRACTOR,
        "--kid",
        "--kid-subset-size",
        "100",
        "--device",
        "cpu",
        "--out",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(out.read_text())
    assert {"inception_score_mean", "frechet_inception_distance", "kernel_inception_distance_mean"} <= set(data)
    protocol = data["protocol"]
    assert protocol["samples"]["count"] == 300 and protocol["reference"] == {"source": "digits-test", "count": 500}
    assert len(protocol["weights"]["sha256"]) == 64 and protocol["isc_splits"] == 10
    assert "not Inception" in result.stdout
    again = run_module("gan.score", str(tmp_path / "a.npz"), "--ref", "digits-test", "--out", str(out))
    assert again.returncode == 2 and "already exists" in again.stderr
    offline = run_module(
        "gan.score",
        str(tmp_path / "a.npz"),
        "--ref",
        "digits-test",
        "--no-download",
        "--out",
        str(tmp_path / "x.json"),
        "--device",
        "cpu",
    )
    assert offline.returncode == 2 and len(offline.stderr.strip().splitlines()) == 1
    assert "weights-inception-2015-12-05-6726825d.pth not found" in offline.stderr


def test_training_logs_once_that_scoring_is_skipped_without_weights(tmp_path):
    out = tmp_path / "run"
    argv = [
        "--config",
        str(ROOT / "configs" / "gan" / "digits.yaml"),
        "--dataset",
        "cifar10",
        "--data-dir",
        str(tmp_path / "c"),
        "--device",
        "cpu",
        "--steps",
        "1",
        "--n-dis",
        "1",
        "--g-channels",
        "8",
        "--d-channels",
        "8",
        "--batch-size",
        "4",
        "--g-batch-size",
        "4",
        "--g-bottom",
        "4",
        "--g-blocks",
        "3",
    ]
    (tmp_path / "c" / "train" / "cat").mkdir(parents=True)
    for i in range(4):
        Image.fromarray(np.full((32, 32, 3), i * 40, np.uint8)).save(tmp_path / "c" / "train" / "cat" / f"{i}.png")
    assert T.main([*argv, "--out", str(out)]) == 0
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    skipped = [m for m in lines if "scoring" in m]
    assert len(skipped) == 1 and "Inception weights" in skipped[0]["scoring"]
    assert "scoring skipped" in json.loads((out / "summary.json").read_text())["scoring"]
