"""Datasets in their real file formats, and the labelled / unlabelled / validation split.

Every loader returns an :class:`ImageSet` held in memory as uint8 (N, C, H, W) with int64 labels:

- ``cifar10``: the official python batches (``cifar-10-batches-py/data_batch_{1..5}``,
  ``test_batch``) or an image folder ``train/<class>/*``, ``test/<class>/*`` (PNG or JPEG);
- ``svhn``: ``train_32x32.mat`` / ``test_32x32.mat`` (``extra_32x32.mat`` on request);
- ``digits``: scikit-learn's bundled 8x8 digits, with a fixed train/test split.

The split follows Oliver et al. 2018: a validation set is held out of the training images, the
labelled set has the same number of images per class, and the unlabelled set is every
non-validation training image, the labelled ones included (as in Oliver et al. and the paper's code).
"""

from __future__ import annotations

import pickle
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from common.config import UsageError

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
SVHN_URL = "http://ufldl.stanford.edu/housenumbers/"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
# torchvision 0.29 warns on every decode that its decoders will move to TorchCodec; they still work.
warnings.filterwarnings("ignore", "The image decoding and encoding capabilities of TorchVision", DeprecationWarning)


@dataclass(frozen=True)
class ImageSet:
    images: torch.Tensor  # (N, C, H, W) uint8, CPU, contiguous
    labels: torch.Tensor  # (N,) int64
    classes: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    channels: int
    size: int
    num_classes: int
    num_val: int  # validation images held out of the training set by the protocol
    mean: tuple[float, ...]  # per channel, training images scaled to [0, 1]
    std: tuple[float, ...]
    flip: bool  # whether a horizontal flip keeps the label


# Means/stds: CIFAR-10 and SVHN are the usual published values of their training sets; digits is
# computed from all 1,797 images scaled as loaded here (0..16 -> 0..255).
DATASETS: dict[str, DatasetInfo] = {
    "cifar10": DatasetInfo("cifar10", 3, 32, 10, 5000, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), True),
    "svhn": DatasetInfo("svhn", 3, 32, 10, 7325, (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970), False),
    "digits": DatasetInfo("digits", 1, 8, 10, 200, (0.3053,), (0.3759,), False),
}
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def load_dataset(
    name: str,
    data_dir: str | Path | None,
    split: Literal["train", "test"],
    *,
    extra: bool = False,
    download: bool = False,
) -> ImageSet:
    """Load ``split`` of dataset ``name`` from ``data_dir`` (ignored for digits)."""
    if name not in DATASETS:
        raise UsageError(f"unknown dataset {name!r} (valid: {', '.join(DATASETS)})")
    if split not in ("train", "test"):
        raise ValueError(f"split must be train or test, got {split!r}")
    if name == "digits":
        return _load_digits(split)
    if data_dir is None:
        raise UsageError(f"{name} needs a data directory (--data-dir)")
    data_dir = Path(data_dir)
    if name == "cifar10":
        return _load_cifar10(data_dir, split, download)
    return _load_svhn(data_dir, split, extra, download)


# ---------------------------------------------------------------------------------------------
# CIFAR-10


def _cifar_batches_dir(data_dir: Path) -> Path | None:
    for candidate in (data_dir / "cifar-10-batches-py", data_dir):
        if (candidate / "test_batch").is_file():
            return candidate
    return None


class _ArraysOnly(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays, nothing else: a pickle could otherwise run code."""

    ALLOWED = frozenset(
        {
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
        }
    )

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def _load_cifar10(data_dir: Path, split: str, download: bool) -> ImageSet:
    batches = _cifar_batches_dir(data_dir)
    if batches is None and (data_dir / split).is_dir():
        return load_image_folder(data_dir / split)
    if batches is None and download:
        import torchvision

        torchvision.datasets.CIFAR10(str(data_dir), train=split == "train", download=True)
        batches = _cifar_batches_dir(data_dir)
    if batches is None:
        raise UsageError(
            f"CIFAR-10 not found in {data_dir}: put the python batches in {data_dir}/cifar-10-batches-py/ "
            f"(unpack {CIFAR10_URL}) or an image folder {data_dir}/train/<class>/*.png and {data_dir}/test/<class>/*, "
            "or run ssl.train / gan.train once with --download on a machine with internet"
        )
    files = [batches / f"data_batch_{i}" for i in range(1, 6)] if split == "train" else [batches / "test_batch"]
    images, labels = [], []
    for f in files:
        if not f.is_file():
            raise UsageError(f"CIFAR-10 file {f} is missing; unpack {CIFAR10_URL} into {data_dir} again")
        try:
            with open(f, "rb") as fh:
                entry = _ArraysOnly(fh, encoding="bytes").load()
            images.append(np.asarray(entry[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            labels.append(np.asarray(entry[b"labels"], dtype=np.int64))
        except Exception as e:  # truncated download, wrong file
            raise UsageError(f"CIFAR-10 file {f} cannot be read ({type(e).__name__}); download it again") from None
    return ImageSet(torch.from_numpy(np.concatenate(images)), torch.from_numpy(np.concatenate(labels)), CIFAR10_CLASSES)


# ---------------------------------------------------------------------------------------------
# Image folders


def _read(path: Path) -> torch.Tensor:
    return torch.frombuffer(bytearray(path.read_bytes()), dtype=torch.uint8)


def _decode_pil(path: Path) -> torch.Tensor:
    from PIL import Image

    with Image.open(path) as im:
        array = np.asarray(im if im.mode in ("L", "RGB") else im.convert("RGB"))
    return torch.from_numpy(array[None] if array.ndim == 2 else array.transpose(2, 0, 1).copy())


def read_images(paths: list[Path]) -> list[torch.Tensor]:
    """Decode image files to (C, H, W) uint8 with torchvision's C++ decoders (JPEGs in one batched call).

    torchvision 0.29 deprecates its decoders in favour of TorchCodec; where they are gone, PIL decodes
    (about 4x slower here).
    """
    try:
        from torchvision.io import ImageReadMode, decode_image, decode_jpeg
    except ImportError:
        with ThreadPoolExecutor() as pool:
            return list(pool.map(_decode_pil, paths, chunksize=256))

    with ThreadPoolExecutor() as pool:
        data = list(pool.map(_read, paths, chunksize=512))
    is_jpeg = [p.suffix.lower() in (".jpg", ".jpeg") for p in paths]
    out: list[torch.Tensor | None] = [None] * len(paths)
    jpegs = [i for i, j in enumerate(is_jpeg) if j]
    if jpegs:
        for i, image in zip(jpegs, decode_jpeg([data[i] for i in jpegs], mode=ImageReadMode.UNCHANGED)):
            out[i] = image
    others = [i for i, j in enumerate(is_jpeg) if not j]
    with ThreadPoolExecutor() as pool:
        for i, image in zip(others, pool.map(lambda i: decode_image(data[i], mode=ImageReadMode.UNCHANGED), others)):
            out[i] = image
    return out  # type: ignore[return-value]


def load_image_folder(root: str | Path) -> ImageSet:
    """Images in ``root/<class>/*.{png,jpg,jpeg}``; class index = position of the folder name in sorted order.

    All images must have the same size and channels (grayscale or RGB). 50,000 CIFAR-10 JPEGs take
    about 4 s on 2 cores (README: Data).
    """
    root = Path(root)
    classes = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    files = [
        (f, c)
        for c, name in enumerate(classes)
        for f in sorted((root / name).iterdir())
        if f.suffix.lower() in IMAGE_SUFFIXES
    ]
    if not files:
        raise UsageError(f"no images found in {root}/<class>/*.png|jpg: is this an image folder?")
    try:
        images = read_images([f for f, _ in files])
    except RuntimeError as e:
        raise UsageError(f"an image in {root} cannot be decoded ({str(e).splitlines()[0]})") from None
    shapes = {tuple(im.shape) for im in images}
    if len(shapes) != 1:
        raise UsageError(f"images in {root} differ in size or channels ({sorted(shapes)[:3]}); resize them first")
    labels = torch.tensor([c for _, c in files], dtype=torch.int64)
    return ImageSet(torch.stack(images), labels, tuple(classes))


# ---------------------------------------------------------------------------------------------
# SVHN


def _load_svhn(data_dir: Path, split: str, extra: bool, download: bool) -> ImageSet:
    from scipy.io import loadmat

    names = [f"{split}_32x32.mat"] + (["extra_32x32.mat"] if extra and split == "train" else [])
    images, labels = [], []
    for name in names:
        path = data_dir / name
        if not path.is_file() and download:
            import torchvision

            torchvision.datasets.SVHN(str(data_dir), split=name.split("_")[0], download=True)
        if not path.is_file():
            raise UsageError(
                f"SVHN file {path} not found: put {name} in {data_dir} (from {SVHN_URL}{name}) "
                "or run ssl.train / gan.train once with --download on a machine with internet"
            )
        try:
            mat = loadmat(path)
            x, y = mat["X"], mat["y"]
        except Exception as e:
            raise UsageError(f"SVHN file {path} cannot be read ({type(e).__name__}); download it again") from None
        images.append(np.ascontiguousarray(np.transpose(x, (3, 2, 0, 1)), dtype=np.uint8))  # (H,W,C,N) -> (N,C,H,W)
        y = y.reshape(-1).astype(np.int64)
        labels.append(np.where(y == 10, 0, y))  # SVHN stores the digit 0 as label 10
    return ImageSet(
        torch.from_numpy(np.concatenate(images)),
        torch.from_numpy(np.concatenate(labels)),
        tuple(str(i) for i in range(10)),
    )


# ---------------------------------------------------------------------------------------------
# Digits (scikit-learn, bundled: works offline everywhere)

DIGITS_TEST = 500


def _load_digits(split: str) -> ImageSet:
    """1,797 8x8 digits; a fixed class-stratified 1,297 / 500 train/test split, independent of any run seed."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.round(digits.images * (255 / 16)).astype(np.uint8)[:, None]
    labels = digits.target.astype(np.int64)
    test = _stratified_choice(labels, DIGITS_TEST, np.random.default_rng(0))
    mask = np.zeros(len(labels), bool)
    mask[test] = True
    keep = mask if split == "test" else ~mask
    return ImageSet(
        torch.from_numpy(np.ascontiguousarray(images[keep])),
        torch.from_numpy(labels[keep]),
        tuple(str(i) for i in range(10)),
    )


def _stratified_choice(labels: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """n indices whose class proportions follow ``labels`` (largest remainders), sorted."""
    classes, counts = np.unique(labels, return_counts=True)
    quota = counts * n / len(labels)
    take = np.floor(quota).astype(int)
    take[np.argsort(-(quota - take), kind="stable")[: n - take.sum()]] += 1
    chosen = [rng.choice(np.flatnonzero(labels == c), k, replace=False) for c, k in zip(classes, take)]
    return np.sort(np.concatenate(chosen))


# ---------------------------------------------------------------------------------------------
# Splits


@dataclass(frozen=True)
class Split:
    """Indices into the training ImageSet (sorted int64 arrays)."""

    labelled: np.ndarray
    unlabelled: np.ndarray  # every non-validation training image, the labelled ones included
    val: np.ndarray

    def save(self, path: str | Path, **meta: object) -> None:
        np.savez(
            path,
            labelled=self.labelled,
            unlabelled=self.unlabelled,
            val=self.val,
            **{f"meta_{k}": np.asarray(v) for k, v in meta.items()},
        )

    @classmethod
    def load(cls, path: str | Path, *, num_train: int, dataset: str | None = None) -> Split:
        """Read a split saved by :meth:`save` and check that it fits this training set."""
        path = Path(path)
        if not path.is_file():
            raise UsageError(f"split file {path} does not exist")
        try:
            with np.load(path) as f:
                split = cls(f["labelled"].astype(np.int64), f["unlabelled"].astype(np.int64), f["val"].astype(np.int64))
                meta = {k[5:]: f[k].item() for k in f.files if k.startswith("meta_")}
        except (OSError, KeyError, ValueError) as e:
            raise UsageError(
                f"split file {path} cannot be read ({type(e).__name__}); use a split.npz of a run"
            ) from None
        if dataset is not None and meta.get("dataset", dataset) != dataset:
            raise UsageError(f"split file {path} was made for {meta['dataset']}, not {dataset}")
        if meta.get("num_train", num_train) != num_train:
            raise UsageError(f"split file {path} indexes {meta['num_train']} training images, this set has {num_train}")
        all_idx = np.concatenate([split.labelled, split.unlabelled, split.val])
        if len(all_idx) and (all_idx.min() < 0 or all_idx.max() >= num_train):
            raise UsageError(f"split file {path} has indices outside 0..{num_train - 1}")
        if np.intersect1d(split.val, split.unlabelled).size or np.intersect1d(split.val, split.labelled).size:
            raise UsageError(f"split file {path} is inconsistent: validation overlaps training images")
        return split


def make_split(
    labels: np.ndarray | torch.Tensor, num_labelled: int, num_val: int, seed: int, num_classes: int
) -> Split:
    """Hold out ``num_val`` random validation images, then pick ``num_labelled / num_classes`` per class.

    Raises UsageError when the numbers cannot be met exactly (nothing is silently changed).
    """
    labels = np.asarray(labels, dtype=np.int64)
    n = len(labels)
    if num_labelled < num_classes:
        raise UsageError(f"--labels {num_labelled} is fewer than the {num_classes} classes; use at least one per class")
    if num_labelled % num_classes:
        raise UsageError(
            f"--labels {num_labelled} does not divide into {num_classes} classes; use a multiple of {num_classes}"
        )
    if not 0 <= num_val < n:
        raise UsageError(f"a validation set of {num_val} does not fit {n} training images")
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    val, rest = np.sort(order[:num_val]), order[num_val:]
    per_class = num_labelled // num_classes
    labelled = []
    for c in range(num_classes):
        pool = rest[labels[rest] == c]
        if len(pool) < per_class:
            raise UsageError(
                f"--labels {num_labelled} needs {per_class} images of class {c}, but only {len(pool)} "
                "are left outside validation; use fewer labels"
            )
        labelled.append(pool[:per_class])
    return Split(np.sort(np.concatenate(labelled)), np.sort(rest), val)
