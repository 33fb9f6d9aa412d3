"""gan.score end to end with torch-fidelity's real InceptionV3 on random weights (values are meaningless,
the plumbing, counts and caching are real), plus the digits extractor where speed matters.

Inception on a CPU costs ~6 GFLOP per image, so the Inception tests share two sets of 12 images and a
module-wide statistics cache; the whole file passes about a hundred images through it. Command-line
failures run ``main`` in-process (``main_in_process``) rather than paying a subprocess's imports.
"""

import json
import pickle
from unittest import mock

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import linalg
from torch import nn
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.registry import register_feature_extractor

import manifold_mixup.common.features as F
import manifold_mixup.gan.score as S
import manifold_mixup.gan.train as T
from manifold_mixup.common.config import UsageError
from manifold_mixup.common.features import DIGITS_EXTRACTOR, digits_extractor_weights

from conftest import ROOT, run_module

CPU = torch.device("cpu")
N_SHARED = 12  # images per set in the shared Inception fixture: ~0.15 s CPU each through Inception


def write_random_inception(path, seed):
    """torch-fidelity's InceptionV3 with random weights whose features do not vanish: Kaiming-normal
    convolutions and a unit-variance final layer (its default initialisation gives ~0 features)."""
    import torch_fidelity.feature_extractor_inceptionv3 as fi

    with (
        mock.patch.object(fi, "load_state_dict_from_url", lambda *a, **k: {}),
        mock.patch.object(fi.FeatureExtractorInceptionV3, "load_state_dict", lambda *a, **k: None),
    ):
        net = fi.FeatureExtractorInceptionV3(F.INCEPTION, ["2048"])
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
    return S.Extractor(F.INCEPTION, weights[0], CPU)


@pytest.fixture(scope="module")
def stats_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("stats")


def images(kind, n=100, seed=0):
    g = torch.Generator().manual_seed(seed)
    if kind == "smooth":  # low-frequency colour fields
        x = nn.functional.interpolate(torch.rand(n, 3, 4, 4, generator=g), size=32, mode="bilinear")
    else:  # white noise
        x = torch.rand(n, 3, 32, 32, generator=g)
    return (x * 255).to(torch.uint8)


@pytest.fixture(scope="module")
def inception_results(extractor, stats_cache):
    """FID(A, A) and FID(B, A): A's reference statistics are computed once, then read from the cache."""
    a = S.Samples.of(images("smooth", N_SHARED), "smooth")
    b = S.Samples.of(images("noise", N_SHARED), "noise")
    same = S.score(a, a, extractor=extractor, cache=stats_cache, isc_splits=3, prc=True)
    different = S.score(b, a, extractor=extractor, cache=stats_cache, isc_splits=3, prc=True)
    return same, different


def test_fid_of_a_set_with_itself_is_zero_and_of_different_sets_positive(inception_results):
    same, different = inception_results
    assert different["frechet_inception_distance"] > 0
    assert abs(same["frechet_inception_distance"]) < 1e-6 * different["frechet_inception_distance"]
    assert same["inception_score_mean"] > 1
    assert same["protocol"]["samples"]["count"] == N_SHARED and same["protocol"]["isc_splits"] == 3
    assert same["protocol"]["reference"]["statistics"] == "computed"
    assert different["protocol"]["reference"]["statistics"] == "cached"
    assert same["protocol"]["comparable_to_inception_scores"] is True
    assert same["protocol"]["weights"]["published"] is False  # random weights are not the published file


def test_precision_and_recall_through_inception(inception_results):
    same, different = inception_results
    assert same["precision"] == same["recall"] == 1.0  # every image lies in its own ball
    p, r = different["precision"], different["recall"]
    assert 0 <= p <= 1 and 0 <= r <= 1 and different["f_score"] == pytest.approx(2 * p * r / max(p + r, 1e-5))
    assert same["protocol"]["prc"] == {"neighborhood": 3} and same["protocol"]["feature_layers"]["prc"] == "2048"
    assert different["protocol"]["reference"]["statistics"] == "cached"  # the reference's features included
    table = S.format_table(different)
    assert f"precision{' ' * 27} {different['precision']:.4f} (k = 3)" in table and "recall" in table


def precision_recall_by_hand(fake: np.ndarray, real: np.ndarray, k: int) -> tuple[float, float]:
    """Kynkäänniemi et al. 2019 written out: a point is in a set's manifold when it lies within the distance
    from some member of the set to that member's k-th nearest neighbour (itself excluded)."""

    def radii(x):
        d = np.linalg.norm(x[:, None] - x[None], axis=-1)
        return np.sort(d, axis=1)[:, k]  # column 0 is the point itself

    def inside(points, members):
        d = np.linalg.norm(points[:, None] - members[None], axis=-1)
        return (d <= radii(members)[None]).any(axis=1).mean()

    return inside(fake, real), inside(real, fake)


def test_precision_and_recall_match_the_definition(tmp_path):
    extractor = S.Extractor(DIGITS_EXTRACTOR, digits_extractor_weights(), CPU)
    ref = S.load_samples("digits-train").images[:200]
    fake = images("noise", 150, seed=2)[:, :1, :8, :8] // 2 + ref[:150] // 2  # half digit, half noise
    result = S.score(fake, ref, isc=False, fid=False, prc=True, prc_neighborhood=5, extractor=extractor, cache=None)
    layer = extractor.layers["prc"]
    f_fake, f_real = (extractor(x, 100, "t")[layer].float().numpy() for x in (fake, ref))
    precision, recall = precision_recall_by_hand(f_fake, f_real, 5)
    assert 0 < result["precision"] < 1 and 0 < result["recall"] < 1  # a case that can tell them apart
    assert result["precision"] == pytest.approx(precision, abs=1e-6)
    assert result["recall"] == pytest.approx(recall, abs=1e-6)
    assert result["protocol"]["prc"]["neighborhood"] == 5 and "frechet_inception_distance" not in result


@pytest.fixture(scope="module")
def gan_run(tmp_path_factory):
    """A one-step digits GAN that scores its 20 samples with digits-cnn at the end."""
    out = tmp_path_factory.mktemp("gan") / "run"
    tiny = ["--steps", "1", "--n-dis", "1", "--g-channels", "8", "--d-channels", "8", "--batch-size", "4"]
    argv = ["--config", str(ROOT / "configs/gan/digits.yaml"), "--device", "cpu", *tiny, "--g-batch-size", "4"]
    assert T.main([*argv, "--score-samples", "20", "--out", str(out)]) == 0
    return out


def test_checkpoint_samples_through_inception(gan_run, extractor, stats_cache, inception_results):
    generated = S.load_samples(gan_run / "checkpoint.pt", num_samples=10, seed=3)
    assert generated.images.shape == (10, 1, 8, 8) and generated.images.dtype == torch.uint8
    again = S.load_samples(gan_run / "checkpoint.pt", num_samples=10, seed=3)
    assert torch.equal(generated.images, again.images)  # the seed fixes the noise
    reference = S.Samples.of(images("smooth", N_SHARED), "smooth")  # statistics cached by inception_results
    result = S.score(generated, reference, extractor=extractor, cache=stats_cache, isc_splits=2)  # grey as RGB
    assert result["inception_score_mean"] >= 1 and result["frechet_inception_distance"] > 0
    assert result["protocol"]["reference"]["statistics"] == "cached"
    assert result["protocol"]["samples"] | {"seed": 3, "ema": True, "count": 10} == result["protocol"]["samples"]


def test_training_scores_at_the_end_with_the_digits_extractor(gan_run):
    lines = [json.loads(line) for line in (gan_run / "metrics.jsonl").read_text().splitlines()]
    scored = [m for m in lines if "digits-cnn_fid" in m]
    assert len(scored) == 1 and scored[0]["step"] == 1 and scored[0]["digits-cnn_fid"] > 0
    assert scored[0]["digits-cnn_is"] >= 1
    summary = json.loads((gan_run / "summary.json").read_text())
    assert summary["digits-cnn_fid"] == scored[0]["digits-cnn_fid"] and "scoring" not in summary


def test_command_reads_npz_and_folder_alike_through_inception(tmp_path, weights, main_in_process):
    x = images("smooth", 12, seed=1)
    np.savez(tmp_path / "s.npz", images=x.permute(0, 2, 3, 1).numpy())
    folder = tmp_path / "pngs"
    folder.mkdir()
    for i, img in enumerate(x):
        Image.fromarray(img.permute(1, 2, 0).numpy()).save(folder / f"{i:03d}.png")
    assert torch.equal(S.load_samples(tmp_path / "s.npz").images, x)
    assert torch.equal(S.load_samples(folder).images, x)

    out = tmp_path / "scores.json"
    args = [str(tmp_path / "s.npz"), "--ref", str(folder), "--device", "cpu", "--out", str(out)]
    code, stdout, err = main_in_process(S.main, *args, "--inception-weights", weights[0], "--cache-dir", tmp_path)
    assert code == 0, err
    data = json.loads(out.read_text())
    assert abs(data["frechet_inception_distance"]) < 1e-3  # the same pixels, lossless PNG: FID ~ 0
    p = data["protocol"]
    assert p["weights"]["sha256"] == F.sha256_file(weights[0]) and p["feature_extractor"] == F.INCEPTION
    assert p["samples"]["count"] == 12 and p["reference"]["count"] == 12 and p["isc_splits"] == 10
    assert p["samples"]["sha256"] == p["reference"]["sha256"] and "FID" in stdout


def test_fid_matches_an_independent_computation():
    train, test = S.load_samples("digits-train"), S.load_samples("digits-test")
    extractor = S.Extractor(DIGITS_EXTRACTOR, digits_extractor_weights(), CPU)
    fid = S.score(test, train, extractor=extractor, cache=None, isc=False)["frechet_inception_distance"]
    f1 = extractor(test.images, 100, "t")["features"].numpy()
    f2 = extractor(train.images, 100, "t")["features"].numpy()
    mu1, mu2 = f1.mean(0), f2.mean(0)
    s1, s2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
    covmean = linalg.sqrtm(s1 @ s2).real
    expected = float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))
    assert fid == pytest.approx(expected, rel=1e-6)


class OneHot(FeatureExtractorBase):
    """Predicts class (first pixel value mod 4) with certainty; for checking the IS arithmetic."""

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


@pytest.mark.parametrize(("labels", "expected"), [([2] * 40, 1.0), ([0, 1, 2, 3] * 10, 4.0), ([0, 1] * 20, 2.0)])
def test_inception_score_is_one_for_one_class_and_k_for_k_even_classes(tmp_path, labels, expected):
    (tmp_path / "w").write_bytes(b"unused")
    x = torch.zeros(40, 3, 4, 4, dtype=torch.uint8)
    x[:, 0, 0, 0] = torch.tensor(labels, dtype=torch.uint8)
    ex = S.Extractor("test-onehot", tmp_path / "w", CPU)
    result = S.score(x, extractor=ex, fid=False, isc_splits=1)
    assert result["inception_score_mean"] == pytest.approx(expected, rel=1e-6)


def test_reference_statistics_computed_with_other_weights_are_never_reused(tmp_path, weights):
    ref = S.Samples.of(images("smooth", 6, seed=2), "ref")
    a, b = S.Extractor(F.INCEPTION, weights[0], CPU), S.Extractor(F.INCEPTION, weights[1], CPU)
    stats_a = S.reference_statistics(ref, a, cache=tmp_path)
    stats_b = S.reference_statistics(ref, b, cache=tmp_path)  # same data, other weights: computed anew
    assert not stats_b["cached"] and not np.allclose(stats_a["mu"], stats_b["mu"])
    files = sorted((tmp_path / "reference-stats").iterdir())
    assert len(files) == 2
    with mock.patch.object(S.Extractor, "__call__", side_effect=AssertionError("recomputed")):
        again = S.reference_statistics(ref, a, cache=tmp_path)  # a cache hit: no features extracted
    assert again["cached"]
    np.testing.assert_array_equal(again["sigma"], stats_a["sigma"])

    # a file under A's name that holds B's statistics (a copied cache, a hash-prefix collision) is not trusted
    path_a = next(f for f in files if np.load(f)["mu"].tolist() == stats_a["mu"].tolist())
    path_b = next(f for f in files if f != path_a)
    path_a.write_bytes(path_b.read_bytes())
    fake = {"2048": torch.zeros(6, 2048, dtype=torch.float64)}
    with mock.patch.object(S.Extractor, "__call__", return_value=fake) as extract:
        replaced = S.reference_statistics(ref, a, cache=tmp_path)
    assert extract.call_count == 1 and not replaced["cached"]

    other = S.Samples.of(images("smooth", 6, seed=5), "ref")  # same name and count, other pixels: another key
    with mock.patch.object(S.Extractor, "__call__", return_value=fake) as extract:
        S.reference_statistics(other, a, cache=tmp_path)
    assert extract.call_count == 1 and len(list((tmp_path / "reference-stats").iterdir())) == 3


def test_kid_reference_features_are_cached_and_one_pass_serves_fid_and_kid(tmp_path):
    extractor = S.Extractor(DIGITS_EXTRACTOR, digits_extractor_weights(), CPU)
    ref, samples = S.load_samples("digits-train"), S.load_samples("digits-test")
    kw = dict(extractor=extractor, cache=tmp_path, kid=True, isc=False, kid_subset_size=100, kid_subsets=10)
    with mock.patch.object(S.Extractor, "__call__", autospec=True, side_effect=S.Extractor.__call__) as extract:
        first = S.score(samples, ref, **kw)
        assert extract.call_count == 2  # the samples once, the reference once for both metrics
        second = S.score(samples, ref, **kw)
        assert extract.call_count == 3  # the reference's features came from the cache
    assert second["protocol"]["reference"]["statistics"] == "cached"
    for key in ("frechet_inception_distance", "kernel_inception_distance_mean"):
        assert second[key] == pytest.approx(first[key], rel=1e-5)


def test_missing_weights_offline_say_which_file_where_and_from_where(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(
        UsageError,
        match=r"weights-inception-2015-12-05-6726825d.pth not found .*hub/checkpoints/ "
        r".*--inception-weights PATH .*MMIX_INCEPTION_WEIGHTS.*https://github.com/toshas",
    ):
        F.find_inception_weights(download=False)
    with pytest.raises(UsageError, match="do not exist"):
        F.find_inception_weights(tmp_path / "nope.pth")
    monkeypatch.setenv(F.WEIGHTS_ENV, str(tmp_path / "env.pth"))
    with pytest.raises(UsageError, match="env.pth do not exist"):
        F.find_inception_weights(download=False)
    (tmp_path / "env.pth").write_bytes(b"x")
    assert F.find_inception_weights(download=False) == tmp_path / "env.pth"
    monkeypatch.delenv(F.WEIGHTS_ENV)
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    (tmp_path / "hub" / "checkpoints" / F.INCEPTION_FILE).write_bytes(b"x")
    assert F.find_inception_weights(download=False).name == F.INCEPTION_FILE


def test_weights_that_are_not_inception_weights_are_usage_errors(tmp_path):
    (tmp_path / "junk.pth").write_bytes(b"not a torch file")
    with pytest.raises(UsageError, match="junk.pth is not a plain weights file"):
        S.Extractor(F.INCEPTION, tmp_path / "junk.pth", CPU)
    (tmp_path / "code.pth").write_bytes(pickle.dumps(print))  # a pickle that would run code
    with pytest.raises(UsageError, match="code.pth is not a plain weights file"):
        S.Extractor(F.INCEPTION, tmp_path / "code.pth", CPU)
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(UsageError, match="other.pth cannot be loaded as inception-v3-compat weights"):
        S.Extractor(F.INCEPTION, tmp_path / "other.pth", CPU)


def test_bad_inputs_are_usage_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="holds no PNG or JPEG images"):
        S.load_samples(tmp_path / "empty")
    (tmp_path / "rgba").mkdir()  # RGBA has one right reading (README: Data): its colours, alpha dropped
    Image.fromarray(np.full((8, 8, 4), 7, np.uint8)).save(tmp_path / "rgba" / "a.png")
    assert S.load_samples(tmp_path / "rgba").images.shape == (1, 3, 8, 8)
    (tmp_path / "rgba" / ".ipynb_checkpoints").mkdir()  # hidden folders are not samples
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "rgba" / ".ipynb_checkpoints" / "b.png")
    assert S.load_samples(tmp_path / "rgba").images.shape == (1, 3, 8, 8)
    np.savez(tmp_path / "rgba.npz", images=np.zeros((4, 8, 8, 4), np.uint8))
    with pytest.raises(UsageError, match="C = 1 or 3"):
        S.load_samples(tmp_path / "rgba.npz")
    np.savez(tmp_path / "float.npz", images=np.zeros((4, 8, 8, 3), np.float32))
    with pytest.raises(UsageError, match="must be uint8"):
        S.load_samples(tmp_path / "float.npz")
    np.savez(tmp_path / "nchw.npz", images=np.zeros((4, 3, 8, 8), np.uint8))
    with pytest.raises(UsageError, match=r"must be \(N, H, W, C\)"):
        S.load_samples(tmp_path / "nchw.npz")
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(UsageError, match="cannot be read as .npz"):
        S.load_samples(tmp_path / "text.npz")
    with pytest.raises(UsageError, match="does not exist"):
        S.load_samples(tmp_path / "missing.npz")
    with pytest.raises(UsageError, match="must be uint8"):
        S.score(torch.zeros(4, 3, 8, 8), feature_extractor=DIGITS_EXTRACTOR, fid=False)
    few = images("smooth", 8)
    with pytest.raises(UsageError, match="KID subsets of 1000 need at least"):
        S.score(few, few, kid=True, isc=False, feature_extractor=DIGITS_EXTRACTOR)
    with pytest.raises(UsageError, match="need a reference"):
        S.score(few, None, feature_extractor=DIGITS_EXTRACTOR)
    with pytest.raises(UsageError, match="8 samples cannot be split into 10 IS splits"):
        S.score(few, feature_extractor=DIGITS_EXTRACTOR, fid=False)
    with pytest.raises(UsageError, match="digits-cnn cannot read the samples images"):  # 32x32 is not a digit
        S.score(images("smooth", 10), feature_extractor=DIGITS_EXTRACTOR, fid=False, device="cpu")


def test_command_writes_json_with_the_protocol_and_fails_in_one_line(tmp_path, main_in_process):
    train = S.load_samples("digits-train").images[:300]
    np.savez(tmp_path / "a.npz", images=train.permute(0, 2, 3, 1).numpy())
    out = tmp_path / "scores.json"
    common = [str(tmp_path / "a.npz"), "--ref", "digits-test", "--device", "cpu"]
    result = run_module(
        "gan.score", *common, "--feature-extractor", DIGITS_EXTRACTOR, "--kid", "--kid-subset-size", "100", "--out", out
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(out.read_text())
    assert {"inception_score_mean", "frechet_inception_distance", "kernel_inception_distance_mean"} <= set(data)
    p = data["protocol"]
    assert p["samples"]["count"] == 300 and p["isc_splits"] == 10 and p["kid"]["subset_size"] == 100
    assert p["reference"]["source"] == "digits-test" and p["reference"]["split"] == "test"
    assert p["reference"]["count"] == 500 and len(p["reference"]["sha256"]) == 64
    assert len(p["weights"]["sha256"]) == 64 and p["torch_fidelity"] and p["comparable_to_inception_scores"] is False
    assert "NOT Inception" in result.stdout and "never Inception" in p["note"]
    # the saved result prints the same table again, without scoring anything
    code, printed, _ = main_in_process(S.main, str(out))
    table = result.stdout.splitlines()[: len(printed.splitlines())]
    assert code == 0 and printed.splitlines() == table and "IS [digits-cnn, NOT Inception]" in printed
    (tmp_path / "other.json").write_text(json.dumps({"results": {}}))
    code, _, err = main_in_process(S.main, str(tmp_path / "other.json"))
    assert code == 2 and "not a result file of python -m gan.score" in err

    def fails(*args, expect):  # as the user sees it: exit 2, one line, no traceback
        code, _, err = main_in_process(S.main, *args)
        assert code == 2 and len(err.strip().splitlines()) == 1 and expect in err, err

    fails(*common, "--out", out, expect="already exists")
    fails(*common, "--no-download", "--out", tmp_path / "x.json", expect="6726825d.pth not found")
    assert not (tmp_path / "x.json").exists()
    for args, expect in [  # the same errors from main itself
        ([str(tmp_path / "none.npz"), "--out", str(tmp_path / "y.json")], "does not exist"),
        ([*common, "--out", str(tmp_path / "no" / "such.json")], "does not exist"),
        ([str(tmp_path / "a.npz"), "--kid", "--out", str(tmp_path / "z.json")], "--kid needs a reference"),
        ([*common, "--num-samples", "0", "--out", str(tmp_path / "z.json")], "--num-samples must be positive"),
        ([str(tmp_path / "a.npz"), "--prc", "--out", str(tmp_path / "z.json")], "--prc needs a reference"),
        ([*common, "--prc", "--prc-neighborhood", "0", "--out", str(tmp_path / "z.json")], "must be positive"),
    ]:
        with pytest.raises(UsageError, match=expect):
            S.main(args)
    with pytest.raises(SystemExit) as exit_:
        S.main([*common, "--feature-extractor", "nope"])
    assert exit_.value.code == 2


def test_training_logs_once_that_scoring_is_skipped_without_weights(tmp_path):
    for i in range(10):  # a CIFAR-10 image folder has its 10 class folders (README: Data)
        (tmp_path / "c" / "train" / f"class{i}").mkdir(parents=True)
        Image.fromarray(np.full((32, 32, 3), i * 20, np.uint8)).save(tmp_path / "c" / "train" / f"class{i}" / "a.png")
    tiny = ["--steps", "1", "--n-dis", "1", "--g-channels", "8", "--d-channels", "8", "--batch-size", "4"]
    argv = ["--config", str(ROOT / "configs/gan/digits.yaml"), "--dataset", "cifar10", "--device", "cpu", *tiny]
    out = tmp_path / "run"
    more = ["--g-batch-size", "4", "--g-bottom", "4", "--g-blocks", "3", "--data-dir", str(tmp_path / "c")]
    assert T.main([*argv, *more, "--out", str(out)]) == 0
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    skipped = [m for m in lines if "scoring" in m]
    assert len(skipped) == 1 and "Inception weights" in skipped[0]["scoring"]
    assert not any("fid" in m for m in lines)
    assert "scoring skipped" in json.loads((out / "summary.json").read_text())["scoring"]


class RunsCode:
    """Unpickling this writes a marker file: what a malicious weights file could do."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').write('ran')",)


def test_a_weights_file_that_would_run_code_is_never_unpickled_even_under_the_published_name(tmp_path, monkeypatch):
    hub = tmp_path / "hub"
    (hub / "checkpoints").mkdir(parents=True)
    weights = hub / "checkpoints" / F.INCEPTION_FILE
    marker = tmp_path / "marker"
    torch.save({"fc.weight": RunsCode(marker)}, weights)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub))
    # a file whose sha256 starts with the published 8 hex digits (a few billion tries to forge)
    monkeypatch.setattr(F, "INCEPTION_SHA256_PREFIX", F.sha256_file(weights)[:8])
    with pytest.raises(UsageError, match=f"{F.INCEPTION_FILE} is not a plain weights file"):
        S.make_extractor(F.INCEPTION, download=False)
    with pytest.raises(UsageError, match="is not a plain weights file"):
        S.Extractor(F.INCEPTION, weights, CPU)
    assert not marker.exists()


def test_score_checks_the_weights_before_generating_a_single_sample(gan_run, tmp_path, monkeypatch):
    import time

    import manifold_mixup.gan.sample

    def no_generating(*args, **kwargs):
        raise AssertionError("generated samples before checking the weights")

    monkeypatch.setattr(manifold_mixup.gan.sample, "generate", no_generating)
    monkeypatch.setattr(S, "generate", no_generating, raising=False)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    argv = [str(gan_run / "checkpoint.pt"), "--num-samples", "50000", "--no-fid", "--device", "cpu"]
    start = time.perf_counter()
    with pytest.raises(UsageError, match=f"{F.INCEPTION_FILE} not found"):
        S.main([*argv, "--no-download", "--out", str(tmp_path / "s.json")])
    assert time.perf_counter() - start < 2
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no JSON, no hub folder
    huge = [str(gan_run / "checkpoint.pt"), "--num-samples", "1000000000", "--feature-extractor", DIGITS_EXTRACTOR]
    with pytest.raises(UsageError, match="--num-samples 1000000000 needs about .* GiB of memory"):
        S.main([*huge, "--no-fid", "--device", "cpu", "--out", str(tmp_path / "s.json")])
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_outputs_that_cannot_be_written_are_refused_before_any_work(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("keep")
    np.savez(tmp_path / "a.npz", images=np.zeros((20, 8, 8, 1), np.uint8))
    (tmp_path / "folder").mkdir()
    monkeypatch.setattr(S.Extractor, "__call__", mock.Mock(side_effect=AssertionError("features extracted")))
    common = [str(tmp_path / "a.npz"), "--ref", "digits-test", "--feature-extractor", DIGITS_EXTRACTOR]
    for args, expect in [
        (["--cache-dir", str(tmp_path / "file" / "cache"), "--out", str(tmp_path / "s.json")], "is a file, not a"),
        (["--out", str(tmp_path / "file" / "s.json")], "file is a file, not a folder"),
        (["--out", str(tmp_path / "folder"), "--overwrite"], "is a folder; name a file"),
    ]:
        with pytest.raises(UsageError, match=expect):
            S.main([*common, "--device", "cpu", *args])
    assert (tmp_path / "file").read_text() == "keep" and list((tmp_path / "folder").iterdir()) == []


def test_unwritable_cache_is_one_line_before_work(tmp_path, main_in_process, monkeypatch):
    (tmp_path / "file").write_text("keep")
    np.savez(tmp_path / "a.npz", images=np.zeros((20, 8, 8, 1), np.uint8))
    monkeypatch.setattr(S.Extractor, "__call__", mock.Mock(side_effect=AssertionError("features extracted")))
    args = [str(tmp_path / "a.npz"), "--ref", "digits-test", "--feature-extractor", DIGITS_EXTRACTOR, "--device", "cpu"]
    code, _, err = main_in_process(S.main, *args, "--cache-dir", tmp_path / "file" / "c", "--out", tmp_path / "s.json")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--cache-dir" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npz", "file"] and (tmp_path / "file").read_text() == "keep"


def test_a_dataset_split_writes_no_json_into_the_working_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert S.main(["digits-test", "--feature-extractor", DIGITS_EXTRACTOR, "--device", "cpu"]) == 0
    assert list(tmp_path.iterdir()) == []
    printed = capsys.readouterr().out
    data = json.loads(printed[printed.index("{") :])  # the table, then the JSON: stdout only
    assert data["protocol"]["samples"]["source"] == "digits-test" and data["inception_score_mean"] > 1


def test_a_failed_download_leaves_no_empty_cache_folder(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.delenv("MMIX_OFFLINE", raising=False)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "torch" / "hub"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(UsageError, match="download failed: OSError"):
        F.find_inception_weights()
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "torch" / "hub" / "other").mkdir(parents=True)  # folders that were there before stay
    with pytest.raises(UsageError, match="download failed"):
        F.find_inception_weights()
    assert sorted(p.name for p in (tmp_path / "torch" / "hub").iterdir()) == ["other"]


def test_a_truncated_or_corrupt_npz_is_one_line_naming_the_file(tmp_path, main_in_process):
    x = np.random.default_rng(0).integers(0, 256, (50, 8, 8, 1), dtype=np.uint8)
    np.savez_compressed(tmp_path / "good.npz", images=x)
    data = (tmp_path / "good.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    flipped = bytearray(data)
    flipped[len(data) // 3] ^= 0xFF  # inside the compressed array
    (tmp_path / "flipped.npz").write_bytes(bytes(flipped))
    for name in ("cut.npz", "flipped.npz"):
        with pytest.raises(UsageError, match=f"{name} cannot be read as .npz") as e:
            S.load_samples(tmp_path / name)
        assert "\n" not in str(e.value)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    code, _, err = main_in_process(S.main, tmp_path / "cut.npz", "--no-fid", "--out", tmp_path / "s.json")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "cut.npz cannot be read" in err, err
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # no s.json, inputs untouched


def test_command_prints_and_writes_precision_and_recall(tmp_path, main_in_process):
    x = S.load_samples("digits-test").images[:60]
    np.savez(tmp_path / "a.npz", images=x.permute(0, 2, 3, 1).numpy())
    out = tmp_path / "scores.json"
    args = [tmp_path / "a.npz", "--ref", "digits-train", "--device", "cpu", "--out", out, "--no-isc", "--no-fid"]
    code, stdout, err = main_in_process(S.main, *args, "--feature-extractor", DIGITS_EXTRACTOR, "--prc")
    assert code == 0, err
    data = json.loads(out.read_text())
    assert 0 < data["precision"] <= 1 and 0 < data["recall"] <= 1 and "f_score" in data
    assert data["protocol"]["prc"] == {"neighborhood": 3} and "frechet_inception_distance" not in data
    assert f"{data['precision']:.4f} (k = 3)" in stdout and f"{data['recall']:.4f} (k = 3)" in stdout
    code, _, err = main_in_process(
        S.main,
        *args[:-2],
        "--out",
        tmp_path / "b.json",
        "--prc-neighborhood",
        "99",
        "--prc",
        "--feature-extractor",
        DIGITS_EXTRACTOR,
    )
    assert code == 2 and "lower --prc-neighborhood" in err and len(err.strip().splitlines()) == 1, err
