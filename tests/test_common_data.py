import pickle

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.io import savemat

from common.config import UsageError
from common.data import DATASETS, Split, load_dataset, load_image_folder, make_split


def random_images(n, c=3, h=32, w=32, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, c, h, w), dtype=np.uint8)


def write_cifar_batches(root, per_batch=4):
    """The official layout: pickled dicts with b'data' (N, 3072) in CHW order and b'labels'."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    written = {}
    for i, name in enumerate([f"data_batch_{j}" for j in range(1, 6)] + ["test_batch"]):
        images = random_images(per_batch, seed=i)
        labels = [(i + j) % 10 for j in range(per_batch)]
        with open(folder / name, "wb") as f:
            pickle.dump({b"data": images.reshape(per_batch, -1), b"labels": labels, b"batch_label": b"x"}, f)
        written[name] = (images, labels)
    return written


def test_cifar10_python_batches(tmp_path):
    written = write_cifar_batches(tmp_path)
    train = load_dataset("cifar10", tmp_path, "train")
    assert train.images.shape == (20, 3, 32, 32) and train.images.dtype == torch.uint8
    assert train.labels.dtype == torch.int64
    np.testing.assert_array_equal(train.images[4:8].numpy(), written["data_batch_2"][0])
    assert train.labels[4:8].tolist() == written["data_batch_2"][1]
    test = load_dataset("cifar10", tmp_path / "cifar-10-batches-py", "test")  # the folder itself works too
    np.testing.assert_array_equal(test.images.numpy(), written["test_batch"][0])
    assert train.classes[0] == "airplane" and len(train.classes) == 10


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_image_folder(tmp_path, suffix):
    images = np.kron(random_images(6, h=2, w=2), np.ones((4, 4), np.uint8))  # 4x4 blocks: JPEG keeps them
    for split in ("train", "test"):
        for i, img in enumerate(images):
            cls = ["b_cat", "a_dog"][i % 2]
            (tmp_path / split / cls).mkdir(parents=True, exist_ok=True)
            Image.fromarray(img.transpose(1, 2, 0)).save(tmp_path / split / cls / f"{i:03d}{suffix}", quality=95)
    data = load_dataset("cifar10", tmp_path, "train")
    assert data.classes == ("a_dog", "b_cat")  # class index = sorted folder name
    assert data.images.shape == (6, 3, 8, 8) and data.images.dtype == torch.uint8
    assert data.labels.tolist() == [0, 0, 0, 1, 1, 1]
    expected = images[[1, 3, 5, 0, 2, 4]]
    if suffix == ".png":
        np.testing.assert_array_equal(data.images.numpy(), expected)
    else:  # lossy, but the same pictures
        assert np.abs(data.images.numpy().astype(int) - expected).mean() < 12


def test_grayscale_image_folder(tmp_path):
    (tmp_path / "0").mkdir()
    Image.fromarray(np.full((5, 5), 7, np.uint8)).save(tmp_path / "0" / "a.png")
    data = load_image_folder(tmp_path)
    assert data.images.shape == (1, 1, 5, 5) and int(data.images[0, 0, 0, 0]) == 7


def test_image_folder_with_mixed_sizes_is_refused(tmp_path):
    (tmp_path / "c").mkdir()
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "c" / "a.png")
    Image.fromarray(np.zeros((5, 5, 3), np.uint8)).save(tmp_path / "c" / "b.png")
    with pytest.raises(UsageError, match="differ in size"):
        load_image_folder(tmp_path)


def write_svhn(path, n, seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)  # SVHN's (H, W, C, N)
    y = (np.arange(n) % 10 + 1).reshape(-1, 1).astype(np.uint8)  # labels 1..10, 10 means the digit 0
    savemat(path, {"X": x, "y": y})
    return x, y


def test_svhn_mat_files(tmp_path):
    x, _ = write_svhn(tmp_path / "train_32x32.mat", 12, 0)
    write_svhn(tmp_path / "test_32x32.mat", 5, 1)
    write_svhn(tmp_path / "extra_32x32.mat", 7, 2)
    train = load_dataset("svhn", tmp_path, "train")
    assert train.images.shape == (12, 3, 32, 32) and train.images.dtype == torch.uint8
    np.testing.assert_array_equal(train.images[3].numpy(), x[..., 3].transpose(2, 0, 1))
    assert train.labels.tolist() == [(i % 10 + 1) % 10 for i in range(12)]  # 10 -> 0
    assert 0 in train.labels.tolist() and 10 not in train.labels.tolist()
    assert len(load_dataset("svhn", tmp_path, "train", extra=True)) == 19
    assert len(load_dataset("svhn", tmp_path, "test")) == 5


def test_digits_are_bundled_with_a_fixed_split():
    train, test = load_dataset("digits", None, "train"), load_dataset("digits", None, "test")
    assert train.images.shape == (1297, 1, 8, 8) and test.images.shape == (500, 1, 8, 8)
    assert train.images.dtype == torch.uint8 and int(train.images.max()) == 255
    assert torch.equal(load_dataset("digits", None, "test").labels, test.labels)  # not seed dependent
    counts = torch.bincount(test.labels, minlength=10)
    assert counts.min() >= 45 and counts.max() <= 56  # stratified
    info = DATASETS["digits"]
    assert abs(float(train.images.float().mean() / 255) - info.mean[0]) < 0.01


@pytest.mark.parametrize(
    ("name", "message"),
    [("cifar10", "CIFAR-10 not found .*cifar-10-python.tar.gz"), ("svhn", "SVHN file .*train_32x32.mat not found")],
)
def test_missing_files_say_what_to_put_where(tmp_path, name, message):
    with pytest.raises(UsageError, match=message):
        load_dataset(name, tmp_path, "train")


class Exploit:
    def __reduce__(self):
        return (print, ("pwned",))


def test_cifar_pickles_cannot_run_code(tmp_path, capsys):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({b"data": Exploit(), b"labels": [0]}, f)
    with pytest.raises(UsageError, match="cannot be read"):
        load_dataset("cifar10", tmp_path, "test")
    assert "pwned" not in capsys.readouterr().out


def test_unknown_dataset_and_corrupt_files(tmp_path):
    with pytest.raises(UsageError, match="unknown dataset 'mnist' \\(valid: cifar10, svhn, digits\\)"):
        load_dataset("mnist", tmp_path, "train")
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    (folder / "test_batch").write_bytes(b"garbage")
    with pytest.raises(UsageError, match="cannot be read"):
        load_dataset("cifar10", tmp_path, "test")


def labels_of(n=1000, classes=10):
    return np.random.default_rng(1).integers(0, classes, n)


def test_split_is_class_balanced_and_disjoint_from_validation():
    labels = labels_of()
    split = make_split(labels, 40, 100, seed=0, num_classes=10)
    assert len(split.labelled) == 40 and len(split.val) == 100 and len(split.unlabelled) == 900
    assert np.bincount(labels[split.labelled], minlength=10).tolist() == [4] * 10
    assert not np.intersect1d(split.val, split.unlabelled).size
    assert np.isin(split.labelled, split.unlabelled).all()  # the unlabelled set includes the labelled images
    assert np.array_equal(np.sort(np.concatenate([split.val, split.unlabelled])), np.arange(1000))


def test_split_is_reproducible_from_the_seed():
    labels = labels_of()
    a, b, c = (make_split(labels, 40, 100, seed=s, num_classes=10) for s in (0, 0, 1))
    assert np.array_equal(a.labelled, b.labelled) and np.array_equal(a.val, b.val)
    assert not np.array_equal(a.labelled, c.labelled) and not np.array_equal(a.val, c.val)


def test_paper_protocol_sizes():
    labels = np.repeat(np.arange(10), 5000)  # CIFAR-10's training set: 5,000 per class
    split = make_split(labels, 4000, DATASETS["cifar10"].num_val, seed=0, num_classes=10)
    assert (len(split.unlabelled), len(split.val), len(split.labelled)) == (45000, 5000, 4000)


@pytest.mark.parametrize(
    ("num_labelled", "message"),
    [(45, "does not divide into 10 classes"), (5, "fewer than the 10 classes"), (2000, "needs 200 images of class")],
)
def test_impossible_label_counts_are_errors(num_labelled, message):
    with pytest.raises(UsageError, match=message):
        make_split(labels_of(), num_labelled, 100, seed=0, num_classes=10)


def test_split_save_and_load_round_trip_and_validation(tmp_path):
    split = make_split(labels_of(), 40, 100, seed=0, num_classes=10)
    path = tmp_path / "split.npz"
    split.save(path, dataset="cifar10", num_labels=40, seed=0, num_train=1000)
    loaded = Split.load(path, num_train=1000, dataset="cifar10")
    for field in ("labelled", "unlabelled", "val"):
        assert np.array_equal(getattr(loaded, field), getattr(split, field))
    with pytest.raises(UsageError, match="made for cifar10, not svhn"):
        Split.load(path, num_train=1000, dataset="svhn")
    with pytest.raises(UsageError, match="indexes 1000 training images"):
        Split.load(path, num_train=999)
    with pytest.raises(UsageError, match="does not exist"):
        Split.load(tmp_path / "nope.npz", num_train=1000)
    Split(split.labelled, split.unlabelled, split.unlabelled[:3]).save(tmp_path / "bad.npz")
    with pytest.raises(UsageError, match="validation overlaps"):
        Split.load(tmp_path / "bad.npz", num_train=1000)
