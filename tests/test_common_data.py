import pickle

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.io import savemat

from manifold_mixup.common.config import UsageError
from manifold_mixup.common.data import (
    CIFAR10_CLASSES,
    DATASETS,
    Split,
    _decode_pil,
    load_dataset,
    load_image_folder,
    make_split,
    read_images,
)

from conftest import run_module


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
    for i, img in enumerate(images):
        cls = ["b_cat", "a_dog"][i % 2]
        (tmp_path / cls).mkdir(parents=True, exist_ok=True)
        Image.fromarray(img.transpose(1, 2, 0)).save(tmp_path / cls / f"{i:03d}{suffix}", quality=95)
    data = load_image_folder(tmp_path)
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
    with pytest.raises(UsageError, match=r"c/b.png is 3x5x5 \(CxHxW\) but .*c/a.png is 3x4x4; .* one size"):
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
    with pytest.raises(UsageError, match="unknown dataset 'mnist' \\(valid: cifar10, cifar100, svhn, digits\\)"):
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


# ---------------------------------------------------------------------------------------------
# Image folders: one right reading per file, everything else refused in one line naming it


def write_cifar_folder(root, train=CIFAR10_CLASSES, test=CIFAR10_CLASSES, size=32, suffix=".png"):
    """One random size x size RGB image per class folder of train/ and test/."""
    for split, classes in (("train", train), ("test", test)):
        for i, name in enumerate(classes):
            (root / split / name).mkdir(parents=True)
            image = random_images(1, h=size, w=size, seed=i)[0].transpose(1, 2, 0)
            Image.fromarray(image).save(root / split / name / f"0{suffix}")
    return root


def one_line(excinfo):
    message = str(excinfo.value)
    assert "\n" not in message
    return message


def test_cifar10_folder_with_renamed_test_class_is_refused(tmp_path):
    test = ("plane", *CIFAR10_CLASSES[1:])  # sorts after horse: the test labels would be permuted
    write_cifar_folder(tmp_path, test=test)
    for split in ("train", "test"):
        with pytest.raises(UsageError, match=r"differ \(only in train/: airplane; only in test/: plane\)") as e:
            load_dataset("cifar10", tmp_path, split)
        one_line(e)


def test_cifar10_folder_keeps_sorted_folder_order(tmp_path):
    classes = tuple(f"c{i}" for i in range(10))  # any names, as long as train and test agree
    write_cifar_folder(tmp_path, train=classes[::-1], test=classes)
    data = load_dataset("cifar10", tmp_path, "test")
    assert data.classes == classes and data.labels.tolist() == list(range(10))
    assert data.images.shape == (10, 3, 32, 32)


def test_cifar10_folder_needs_its_class_count_and_image_size(tmp_path):
    write_cifar_folder(tmp_path / "few", train=("a", "b"), test=("a", "b"))
    with pytest.raises(UsageError, match="has 2 class folders .*this dataset has 10"):
        load_dataset("cifar10", tmp_path / "few", "train")
    write_cifar_folder(tmp_path / "big", size=64)
    with pytest.raises(UsageError, match=r"big/train/airplane/0.png is 64x64 pixels; .* 32x32"):
        load_dataset("cifar10", tmp_path / "big", "train")


PALETTE = np.array([[255, 0, 0], [0, 128, 255], [10, 20, 30], [200, 200, 0]], np.uint8)


def odd_images():
    """(file name, PIL image, expected reading with 3 channels, expected reading as stored), HWC uint8."""
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
    grey = rgb[..., 0]
    alpha = rng.integers(0, 256, (4, 4), dtype=np.uint8)
    index = rng.integers(0, 4, (4, 4), dtype=np.uint8)
    palette = Image.fromarray(index, "L").convert("P")  # (a grey index map that is really a palette image)
    palette.putpalette(PALETTE.reshape(-1).tolist())
    deep = rng.integers(0, 65536, (4, 4), dtype=np.uint16)
    deep8 = np.round(deep / 257).astype(np.uint8)  # 65535 -> 255
    flat = np.full((8, 8, 3), (95, 130, 194), np.uint8)  # JPEG keeps a flat colour (almost) exactly
    rep = np.repeat  # grey -> RGB is the grey value in every channel
    return [
        ("palette.png", palette, PALETTE[index], PALETTE[index]),
        ("rgba.png", Image.fromarray(np.dstack([rgb, alpha]), "RGBA"), rgb, rgb),
        (
            "grey_alpha.png",
            Image.fromarray(np.dstack([grey, alpha]), "LA"),
            rep(grey[..., None], 3, 2),
            grey[..., None],
        ),
        ("grey.png", Image.fromarray(grey, "L"), rep(grey[..., None], 3, 2), grey[..., None]),
        (
            "bits.png",
            Image.fromarray(grey > 127),
            rep((grey > 127)[..., None] * 255, 3, 2),
            (grey > 127)[..., None] * 255,
        ),
        ("deep.png", Image.fromarray(deep), rep(deep8[..., None], 3, 2), deep8[..., None]),
        ("cmyk.jpg", Image.fromarray(flat).convert("CMYK"), flat, flat),
        ("grey.jpg", Image.fromarray(flat[..., 0]), rep(flat[..., :1], 3, 2), flat[..., :1]),
    ]


@pytest.mark.parametrize("channels", [3, None])
@pytest.mark.parametrize("case", range(len(odd_images())), ids=[c[0] for c in odd_images()])
def test_every_image_mode_has_its_one_reading(tmp_path, case, channels):
    name, image, as_rgb, as_stored = odd_images()[case]
    image.save(tmp_path / name, quality=100)
    expected = (as_rgb if channels == 3 else as_stored).astype(np.uint8).transpose(2, 0, 1)
    tolerance = 2 if name.endswith(".jpg") else 0
    for decoded in (read_images([tmp_path / name], channels)[0], _decode_pil(tmp_path / name, channels)):
        assert decoded.dtype == torch.uint8 and decoded.shape == expected.shape, name
        assert np.abs(decoded.numpy().astype(int) - expected).max() <= tolerance, name


def test_palette_and_rgba_images_in_a_cifar10_folder_train_as_rgb(tmp_path):
    write_cifar_folder(tmp_path)
    rgb = random_images(1, seed=9)[0].transpose(1, 2, 0)
    Image.fromarray(rgb).convert("P").save(tmp_path / "train" / "cat" / "1.png")
    Image.fromarray(np.dstack([rgb, np.zeros((32, 32), np.uint8)]), "RGBA").save(tmp_path / "train" / "dog" / "1.png")
    with Image.open(tmp_path / "train" / "cat" / "1.png") as im:
        palette_colours = np.asarray(im.convert("RGB")).transpose(2, 0, 1)
    data = load_dataset("cifar10", tmp_path, "train")
    assert data.images.shape == (12, 3, 32, 32)
    np.testing.assert_array_equal(data.images[data.labels == 3][1].numpy(), palette_colours)  # cat
    np.testing.assert_array_equal(data.images[data.labels == 5][1].numpy(), rgb.transpose(2, 0, 1))  # dog


def test_hidden_entries_are_ignored(tmp_path):
    write_cifar_folder(tmp_path)
    for split in ("train", "test"):
        (tmp_path / split / ".ipynb_checkpoints").mkdir()
        Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / split / ".ipynb_checkpoints" / "x.png")
        (tmp_path / split / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
        (tmp_path / split / "cat" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
        (tmp_path / split / "cat" / ".0.png").write_bytes(b"not an image")  # e.g. a macOS ._ resource file
    data = load_dataset("cifar10", tmp_path, "train")
    assert data.classes == CIFAR10_CLASSES and data.labels.tolist() == list(range(10))


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: (d / "train" / "cat" / "x.jpg").mkdir(), r"train/cat/x.jpg is a folder inside class folder"),
        (lambda d: (d / "train" / "cat" / "notes.txt").write_text("x"), r"train/cat/notes.txt is not a PNG or JPEG"),
        (
            lambda d: (d / "train" / "labels.csv").write_text("x"),
            r"train/labels.csv is not a folder: .* only <class>/ folders",
        ),
        (lambda d: (d / "train" / "cat" / "0.png").unlink(), r"class folder .*train/cat holds no images"),
    ],
    ids=["folder-named-jpg", "text-file", "file-beside-classes", "empty-class"],
)
def test_anything_but_class_folders_of_images_is_refused(tmp_path, make, message):
    make(write_cifar_folder(tmp_path))
    with pytest.raises(UsageError, match=message) as e:
        load_dataset("cifar10", tmp_path, "train")
    one_line(e)


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_a_corrupt_image_is_named(tmp_path, suffix):
    write_cifar_folder(tmp_path, suffix=suffix)
    good = (tmp_path / "train" / "cat" / f"0{suffix}").read_bytes()
    (tmp_path / "train" / "cat" / f"0{suffix}").write_bytes(good[: len(good) // 2])
    with pytest.raises(UsageError, match=rf"train/cat/0\{suffix} cannot be decoded as an image \(\w") as e:
        load_dataset("cifar10", tmp_path, "train")
    assert ".cpp" not in one_line(e)


def test_a_png_named_jpg_is_read_as_what_it_is(tmp_path):
    write_cifar_folder(tmp_path, suffix=".jpg")
    rgb = random_images(1, seed=5)[0]
    Image.fromarray(rgb.transpose(1, 2, 0)).save(tmp_path / "train" / "cat" / "1.jpg", format="PNG")
    data = load_dataset("cifar10", tmp_path, "train")
    np.testing.assert_array_equal(data.images[data.labels == 3][1].numpy(), rgb)


def test_a_bad_folder_stops_ssl_train_in_one_line(tmp_path):
    write_cifar_folder(tmp_path / "data")
    (tmp_path / "data" / "train" / "cat" / "x.jpg").mkdir()
    before = {p: p.read_bytes() for p in (tmp_path / "data").rglob("*") if p.is_file()}
    result = run_module(
        "ssl.train", "--dataset", "cifar10", "--data-dir", str(tmp_path / "data"), "--labels", "10",
        "--out", str(tmp_path / "run"), "--device", "cpu",
    )  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "x.jpg is a folder" in result.stderr
    assert not (tmp_path / "run").exists()
    assert {p: p.read_bytes() for p in (tmp_path / "data").rglob("*") if p.is_file()} == before


# ---------------------------------------------------------------------------------------------
# Official files that are truncated or hold something else


def test_truncated_or_inconsistent_cifar_batches_are_named(tmp_path):
    write_cifar_batches(tmp_path)
    batch = tmp_path / "cifar-10-batches-py" / "test_batch"
    whole = batch.read_bytes()
    batch.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(UsageError, match=r"CIFAR-10 file .*test_batch cannot be read"):
        load_dataset("cifar10", tmp_path, "test")
    for labels, message in (([0, 1], "has 4 images but 2 labels"), ([0, 1, 2, 10], r"has labels outside 0\.\.9")):
        with open(batch, "wb") as f:
            pickle.dump({b"data": random_images(4).reshape(4, -1), b"labels": labels}, f)
        with pytest.raises(UsageError, match=f"CIFAR-10 file .*test_batch {message}"):
            load_dataset("cifar10", tmp_path, "test")


def test_truncated_or_wrong_svhn_files_are_named(tmp_path):
    path = tmp_path / "test_32x32.mat"
    write_svhn(path, 5, 0)
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(UsageError, match=r"SVHN file .*test_32x32.mat cannot be read"):
        load_dataset("svhn", tmp_path, "test")
    x = random_images(5).transpose(2, 3, 1, 0)
    for payload, message in (
        ({"X": x[..., 0, 0], "y": np.ones((5, 1))}, r"holds X of uint8 \(32, 32\)"),
        ({"X": x, "y": np.ones((3, 1))}, "has 5 images but 3 labels"),
        ({"X": x, "y": np.full((5, 1), 11)}, r"has labels outside 1\.\.10"),
    ):
        savemat(path, payload)
        with pytest.raises(UsageError, match=f"SVHN file .*test_32x32.mat {message}"):
            load_dataset("svhn", tmp_path, "test")


# ---------------------------------------------------------------------------------------------
# CIFAR-100 in its official python format

CIFAR100_NAMES = [f"class_{i:02d}".encode() for i in range(100)]


def write_cifar100(root, sizes=(("train", 400), ("test", 100)), folder="cifar-100-python"):
    """The official layout: pickled dicts with b'data' (N, 3072) in CHW order, b'fine_labels' 0..99 and
    b'coarse_labels' 0..19; meta holds b'fine_label_names' and b'coarse_label_names'."""
    root = root / folder if folder else root
    root.mkdir(parents=True, exist_ok=True)
    written = {}
    for i, (name, n) in enumerate(sizes):
        images = random_images(n, seed=10 + i)
        fine = [(7 * j + i) % 100 for j in range(n)]  # every class once per 100 images, in a shuffled order
        entry = {b"data": images.reshape(n, -1), b"fine_labels": fine, b"coarse_labels": [f // 5 for f in fine]}
        with open(root / name, "wb") as f:
            pickle.dump({**entry, b"filenames": [b"x.png"] * n, b"batch_label": b"x"}, f)
        written[name] = (images, fine)
    with open(root / "meta", "wb") as f:
        pickle.dump({b"fine_label_names": CIFAR100_NAMES, b"coarse_label_names": [b"c"] * 20}, f)
    return written


def test_cifar100_python_files_load_with_their_fine_labels(tmp_path):
    written = write_cifar100(tmp_path)
    for split, n in (("train", 400), ("test", 100)):
        data = load_dataset("cifar100", tmp_path, split)
        assert data.images.shape == (n, 3, 32, 32) and data.images.dtype == torch.uint8
        np.testing.assert_array_equal(data.images.numpy(), written[split][0])
        assert data.labels.dtype == torch.int64 and data.labels.tolist() == written[split][1]
        assert torch.bincount(data.labels, minlength=100).tolist() == [n // 100] * 100  # fine, not coarse (20)
    assert data.classes == tuple(n.decode() for n in CIFAR100_NAMES)
    assert len(load_dataset("cifar100", tmp_path / "cifar-100-python", "test")) == 100  # the folder itself works
    info = DATASETS["cifar100"]
    assert (info.channels, info.size, info.num_classes, info.num_val, info.flip) == (3, 32, 100, 5000, True)
    split = make_split(load_dataset("cifar100", tmp_path, "train").labels, 100, 40, 0, info.num_classes)
    assert len(split.labelled) == 100 and len(split.val) == 40


def test_cifar100_missing_directory_says_what_to_put_where(tmp_path):
    with pytest.raises(UsageError, match=r"CIFAR-100 not found in .*cifar-100-python/ .*cifar-100-python.tar.gz") as e:
        load_dataset("cifar100", tmp_path / "nowhere", "train")
    one_line(e)
    write_cifar100(tmp_path)
    (tmp_path / "cifar-100-python" / "meta").unlink()
    with pytest.raises(UsageError, match=r"CIFAR-100 file .*meta is missing; unpack .*cifar-100-python.tar.gz") as e:
        load_dataset("cifar100", tmp_path, "test")
    one_line(e)


def test_truncated_or_inconsistent_cifar100_files_are_named(tmp_path):
    write_cifar100(tmp_path)
    path = tmp_path / "cifar-100-python" / "test"
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(UsageError, match=r"CIFAR-100 file .*/test cannot be read \(") as e:
        load_dataset("cifar100", tmp_path, "test")
    one_line(e)
    for entry, message in (
        ({b"data": random_images(4).reshape(4, -1), b"fine_labels": [0, 1]}, "has 4 images but 2 labels"),
        ({b"data": random_images(4).reshape(4, -1), b"fine_labels": [0, 1, 99, 100]}, r"has labels outside 0\.\.99"),
        ({b"data": random_images(4).reshape(4, -1), b"labels": [0, 1, 2, 3]}, r"cannot be read \(KeyError\)"),
        ({b"data": Exploit(), b"fine_labels": [0]}, "cannot be read"),
    ):
        with open(path, "wb") as f:
            pickle.dump(entry, f)
        with pytest.raises(UsageError, match=f"CIFAR-100 file .*/test {message}") as e:
            load_dataset("cifar100", tmp_path, "test")
        one_line(e)
    write_cifar100(tmp_path)
    with open(tmp_path / "cifar-100-python" / "meta", "wb") as f:
        pickle.dump({b"fine_label_names": CIFAR100_NAMES[:20]}, f)  # coarse names where fine ones belong
    with pytest.raises(UsageError, match="meta does not hold 100 fine_label_names"):
        load_dataset("cifar100", tmp_path, "train")


def test_cifar100_image_folder_needs_100_classes(tmp_path):
    classes = tuple(f"c{i:03d}" for i in range(100))
    write_cifar_folder(tmp_path / "ok", train=classes, test=classes)
    data = load_dataset("cifar100", tmp_path / "ok", "test")
    assert data.classes == classes and data.labels.tolist() == list(range(100))
    write_cifar_folder(tmp_path / "ten")  # a CIFAR-10 folder is not CIFAR-100
    with pytest.raises(UsageError, match="has 10 class folders .*this dataset has 100"):
        load_dataset("cifar100", tmp_path / "ten", "train")
