"""Datasets in their real file formats, and the labelled / unlabelled / validation split.

Every loader returns an :class:`ImageSet` held in memory as uint8 (N, C, H, W) with int64 labels:

- ``cifar10``: the official python batches (``cifar-10-batches-py/data_batch_{1..5}``,
  ``test_batch``) or an image folder ``train/<class>/*``, ``test/<class>/*`` (PNG or JPEG; the same
  class folders in both; reading rules in :func:`load_image_folder` and :func:`read_images`);
- ``cifar100``: the official python files (``cifar-100-python/train``, ``test``, ``meta``; the 100 fine
  labels) or an image folder of 100 classes laid out as for ``cifar10``;
- ``svhn``: ``train_32x32.mat`` / ``test_32x32.mat`` (``extra_32x32.mat`` on request);
- ``digits``: scikit-learn's bundled 8x8 digits, with a fixed train/test split.

The split follows Oliver et al. 2018: a validation set is held out of the training images, the
labelled set has the same number of images per class, and the unlabelled set is every
non-validation training image, the labelled ones included (as in Oliver et al. and the paper's code).
"""

from __future__ import annotations

import os
import pickle
import re
import warnings
import zipfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from manifold_mixup.common.config import UsageError
from manifold_mixup.common.inputs import regular_file, same_folder_twice
from manifold_mixup.common.outputs import write_atomic

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR100_URL = "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
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


# Means/stds: CIFAR-10, CIFAR-100 and SVHN are the usual published values of their training sets; digits
# is computed from all 1,797 images scaled as loaded here (0..16 -> 0..255). CIFAR-100 holds out 5,000
# validation images like CIFAR-10 (the paper states no validation size for its supervised runs).
DATASETS: dict[str, DatasetInfo] = {
    "cifar10": DatasetInfo("cifar10", 3, 32, 10, 5000, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), True),
    "cifar100": DatasetInfo("cifar100", 3, 32, 100, 5000, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), True),
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
    if name in _CIFAR:
        return _load_cifar(name, data_dir, split, download)
    return _load_svhn(data_dir, split, extra, download)


# ---------------------------------------------------------------------------------------------
# CIFAR-10 and CIFAR-100: the official python pickles, or an image folder


@dataclass(frozen=True)
class _Cifar:
    """Where one CIFAR version keeps what: its files of each split and the pickles' label key."""

    title: str  # CIFAR-10
    folder: str  # the archive's folder, tried under data_dir and as data_dir itself
    files: dict[str, tuple[str, ...]]  # split -> its pickles; the first test file marks the folder
    label_key: bytes
    url: str
    holds: str  # what the folder must hold, for the not-found message
    trainers: str  # the commands that can --download it
    torchvision: str  # the torchvision dataset class that downloads it


_CIFAR = {
    "cifar10": _Cifar(
        "CIFAR-10",
        "cifar-10-batches-py",
        {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)},
        b"labels",
        CIFAR10_URL,
        "the python batches",
        "ssl.train / gan.train",
        "CIFAR10",
    ),
    "cifar100": _Cifar(
        "CIFAR-100",
        "cifar-100-python",
        {"train": ("train",), "test": ("test",)},  # b"fine_labels" 0..99; b"coarse_labels" is ignored
        b"fine_labels",
        CIFAR100_URL,
        "the python files train, test and meta",
        "ssl.train",
        "CIFAR100",
    ),
}


def _cifar_dir(c: _Cifar, data_dir: Path) -> Path | None:
    for candidate in (data_dir / c.folder, data_dir):
        if (candidate / c.files["test"][0]).is_file():  # a file: test/ as a folder is the image-folder layout
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


def _unpickle(c: _Cifar, path: Path, data_dir: Path) -> dict:
    if not path.is_file():
        raise UsageError(f"{c.title} file {path} is missing; unpack {c.url} into {data_dir} again")
    try:
        with open(path, "rb") as fh:
            entry = _ArraysOnly(fh, encoding="bytes").load()
        if not isinstance(entry, dict):
            raise TypeError(type(entry).__name__)
        return entry
    except Exception as e:  # truncated download, wrong file
        raise UsageError(f"{c.title} file {path} cannot be read ({type(e).__name__}); download it again") from None


def _load_cifar(name: str, data_dir: Path, split: str, download: bool) -> ImageSet:
    """The python pickles hold b"data" (N, 3072) uint8 in CHW order and the labels; CIFAR-100's ``meta``
    holds the b"fine_label_names" in label order. Without them, ``data_dir/split`` as an image folder."""
    c, info = _CIFAR[name], DATASETS[name]
    files = _cifar_dir(c, data_dir)
    if files is None and (data_dir / split).is_dir():
        return _load_cifar_folder(data_dir, split, name)
    if files is None and download:
        import torchvision

        getattr(torchvision.datasets, c.torchvision)(str(data_dir), train=split == "train", download=True)
        files = _cifar_dir(c, data_dir)
    if files is None:
        of = "" if name == "cifar10" else f" of {info.num_classes} classes"
        raise UsageError(
            f"{c.title} not found in {data_dir}: put {c.holds} in {data_dir}/{c.folder}/ (unpack {c.url}) or an image "
            f"folder {data_dir}/train/<class>/*.png and {data_dir}/test/<class>/*{of}, or run {c.trainers} once with "
            "--download on a machine with internet"
        )
    images, labels = [], []
    for path in (files / f for f in c.files[split]):
        entry = _unpickle(c, path, data_dir)
        try:
            images.append(np.asarray(entry[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            labels.append(np.asarray(entry[c.label_key], dtype=np.int64).reshape(-1))
        except Exception as e:  # a dict without the fields, or data of the wrong size
            raise UsageError(f"{c.title} file {path} cannot be read ({type(e).__name__}); download it again") from None
        _check_labels(path, len(images[-1]), labels[-1], 0, info.num_classes - 1, c.title)
    classes = _classes(c, files, data_dir)
    return ImageSet(torch.from_numpy(np.concatenate(images)), torch.from_numpy(np.concatenate(labels)), classes)


def _classes(c: _Cifar, files: Path, data_dir: Path) -> tuple[str, ...]:
    if c.title == "CIFAR-10":
        return CIFAR10_CLASSES
    meta = _unpickle(c, files / "meta", data_dir)
    names = meta.get(b"fine_label_names")
    if not isinstance(names, list) or len(names) != 100:
        raise UsageError(f"CIFAR-100 file {files / 'meta'} does not hold 100 fine_label_names; download it again")
    return tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)


def _check_labels(path: Path, num_images: int, labels: np.ndarray, low: int, high: int, name: str) -> None:
    if len(labels) != num_images:
        raise UsageError(f"{name} file {path} has {num_images} images but {len(labels)} labels; download it again")
    if len(labels) and (labels.min() < low or labels.max() > high):
        raise UsageError(f"{name} file {path} has labels outside {low}..{high}; download it again")


def _load_cifar_folder(data_dir: Path, split: str, name: str) -> ImageSet:
    """``data_dir/split`` as an image folder of CIFAR-10's 10 (CIFAR-100's 100) classes and 32x32 RGB images,
    after checking that ``train/`` and ``test/`` have the same class folders (the labels are their sorted positions)."""
    info = DATASETS[name]
    if (data_dir / "train").is_dir() and (data_dir / "test").is_dir():
        train, test = set(class_names(data_dir / "train")), set(class_names(data_dir / "test"))
        if train != test:
            pairs = (("train", train - test), ("test", test - train))
            only = "; ".join(f"only in {n}/: {', '.join(sorted(c)[:5])}" for n, c in pairs if c)
            raise UsageError(
                f"the class folders of {data_dir}/train and {data_dir}/test differ ({only}); "
                "rename them to match: labels are the sorted folder names"
            )
    return load_image_folder(data_dir / split, channels=info.channels, size=info.size, num_classes=info.num_classes)


# ---------------------------------------------------------------------------------------------
# Image folders

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _read(path: Path) -> torch.Tensor:
    try:
        data = path.read_bytes()
        if not data:
            raise UsageError(f"{path} is empty (0 bytes), not an image; replace or remove it")
        return torch.frombuffer(bytearray(data), dtype=torch.uint8)
    except OSError as e:
        raise UsageError(f"{path} cannot be read ({e.strerror or type(e).__name__}); replace or remove it") from None


def _decode_error(path: Path, e: Exception) -> UsageError:
    reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    reason = re.sub(r"^.*\.cpp:\d+, ", "", reason)  # torchvision prefixes its C++ source location
    return UsageError(f"{path} cannot be decoded as an image ({reason}); replace or remove it")


def _to_uint8(image: torch.Tensor) -> torch.Tensor:
    """16-bit samples (0..65535) to 8-bit (0..255), rounded; 8-bit unchanged."""
    if image.dtype == torch.uint8:
        return image
    return ((image.to(torch.int32) * 255 + 32767) // 65535).to(torch.uint8)


def _decode_pil(path: Path, channels: int | None = None) -> torch.Tensor:
    """The same readings as :func:`read_images`, with PIL (the fallback where torchvision's decoders are gone)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            if im.mode.startswith("I"):  # 16-bit grey: PIL's convert("L") would clip it, scale it instead
                grey = np.asarray(im).astype(np.int64)
                im = Image.fromarray(((np.clip(grey, 0, 65535) * 255 + 32767) // 65535).astype(np.uint8))
            grey = im.mode in ("1", "L", "LA", "La")
            array = np.array(im.convert("L" if channels == 1 or (channels is None and grey) else "RGB"))
    except Exception as e:  # PIL raises many kinds: truncated, not an image, decompression bomb
        raise _decode_error(path, e) from None
    image = torch.from_numpy(array[None] if array.ndim == 2 else np.ascontiguousarray(array.transpose(2, 0, 1)))
    return image.expand(3, -1, -1).contiguous() if channels == 3 and image.shape[0] == 1 else image


def read_images(paths: list[Path], channels: int | None = None) -> list[torch.Tensor]:
    """Decode image files to (C, H, W) uint8 with torchvision's C++ decoders (JPEGs in one batched call).

    Each file gets its one right reading: palette colours (never the palette indices), alpha dropped
    (RGBA -> RGB, grey+alpha -> grey: the stored colours, not composited on a background), 16-bit samples
    rounded to 8 bits, CMYK JPEGs converted to RGB. ``channels=3`` also turns grey into RGB (replicated) and
    ``channels=1`` colour into grey (the decoder's luma); ``None`` keeps grey grey and colour RGB. A file that
    cannot be read or decoded is a UsageError naming it. torchvision 0.29 deprecates its decoders in favour
    of TorchCodec; where they are gone, PIL decodes (about 4x slower here).
    """
    if channels not in (None, 1, 3):
        raise ValueError(f"channels must be 1, 3 or None, got {channels!r}")
    try:
        from torchvision.io import ImageReadMode, decode_image, decode_jpeg
    except ImportError:
        with ThreadPoolExecutor() as pool:
            return list(pool.map(lambda p: _decode_pil(p, channels), paths, chunksize=256))

    modes = {None: ImageReadMode.UNCHANGED, 1: ImageReadMode.GRAY, 3: ImageReadMode.RGB}

    def decode_one(i: int, mode: ImageReadMode | None = None) -> torch.Tensor:
        if mode is None:
            mode = modes[channels]
            if channels is None and bytes(data[i][:8].tolist()) == _PNG_SIGNATURE and len(data[i]) > 25:
                # UNCHANGED would give a palette PNG's indices: ask for grey or RGB by the PNG colour type
                mode = ImageReadMode.GRAY if int(data[i][25]) in (0, 4) else ImageReadMode.RGB
        try:
            image = decode_image(data[i], mode=mode)
        except RuntimeError as e:  # decode_image reads PNG, JPEG, GIF, WebP... whatever the name says
            raise _decode_error(paths[i], e) from None
        return check(i, image)

    def check(i: int, image: torch.Tensor) -> torch.Tensor:
        if channels is None and image.shape[0] not in (1, 3):  # a CMYK JPEG, grey+alpha...
            return decode_one(i, ImageReadMode.GRAY if image.shape[0] == 2 else ImageReadMode.RGB)
        return _to_uint8(image)

    with ThreadPoolExecutor() as pool:
        data = list(pool.map(_read, paths, chunksize=512))
    is_jpeg = [p.suffix.lower() in (".jpg", ".jpeg") for p in paths]
    out: list[torch.Tensor | None] = [None] * len(paths)
    jpegs = [i for i, j in enumerate(is_jpeg) if j]
    others = [i for i, j in enumerate(is_jpeg) if not j]
    if jpegs:
        try:
            decoded = decode_jpeg([data[i] for i in jpegs], mode=modes[channels])
            for i, image in zip(jpegs, decoded):
                out[i] = check(i, image)
        except RuntimeError:  # one file failed the batch: decode one by one to name it (or read a misnamed PNG)
            others = sorted(others + jpegs)
    with ThreadPoolExecutor() as pool:
        for i, image in zip(others, pool.map(decode_one, others)):
            out[i] = image
    return out  # type: ignore[return-value]


def _visible(folder: Path) -> list[os.DirEntry]:
    """The entries of ``folder`` whose names do not start with '.' (.ipynb_checkpoints, .DS_Store), sorted."""
    with os.scandir(folder) as it:
        return sorted((e for e in it if not e.name.startswith(".")), key=lambda e: e.name)


def class_names(root: str | Path) -> list[str]:
    """The sorted class folder names of an image folder; anything else that is not hidden is a UsageError."""
    root = Path(root)
    if not root.is_dir():
        raise UsageError(f"image folder {root} does not exist or is not a folder")
    entries = _visible(root)
    for e in entries:
        if not e.is_dir():
            raise UsageError(
                f"{root / e.name} is not a folder: {root} must hold only <class>/ folders of images "
                "(hidden entries are ignored); move it out"
            )
    if not entries:
        raise UsageError(f"no class folders found in {root}: an image folder is {root}/<class>/*.png|jpg")
    twice = same_folder_twice([root / e.name for e in entries])
    if twice:
        raise UsageError(
            f"{twice[1]} is the same folder as {twice[0]} (a link to it): its images would be under two labels; "
            "remove the link"
        )
    return [e.name for e in entries]


def _class_files(folder: Path) -> list[Path]:
    files = []
    for e in _visible(folder):
        path = folder / e.name
        if e.is_dir():
            raise UsageError(f"{path} is a folder inside class folder {folder}; a class folder holds image files only")
        if not e.name.lower().endswith(IMAGE_SUFFIXES):
            raise UsageError(
                f"{path} is not a PNG or JPEG ({', '.join(IMAGE_SUFFIXES)}); convert it or move it out of {folder}"
            )
        regular_file(path)  # a FIFO named x.png would block the reader forever
        files.append(path)
    if not files:
        raise UsageError(f"class folder {folder} holds no images; remove it or add its images")
    return files


def load_image_folder(
    root: str | Path, *, channels: int | None = None, size: int | None = None, num_classes: int | None = None
) -> ImageSet:
    """Images in ``root/<class>/*.{png,jpg,jpeg}``; class index = position of the folder name in sorted order.

    Entries whose names start with '.' are ignored at both levels (``.ipynb_checkpoints/``, ``.DS_Store``).
    Anything else that is not a class folder in ``root``, or not a PNG/JPEG file in a class folder (a
    subfolder, ``notes.txt``, ``x.bmp``), is refused in one line naming it: nothing is skipped silently.
    Images are read as :func:`read_images` describes, converted to ``channels`` when given; all must have
    one size (``size`` x ``size`` when given) and there must be ``num_classes`` classes when given.
    50,000 CIFAR-10 JPEGs take about 4 s on 2 cores (README: Data).
    """
    root = Path(root)
    classes = class_names(root)
    if num_classes is not None and len(classes) != num_classes:
        raise UsageError(
            f"{root} has {len(classes)} class folders ({', '.join(classes[:12])}); this dataset has {num_classes}"
        )
    files = [(f, c) for c, name in enumerate(classes) for f in _class_files(root / name)]
    check_one_label_per_file(files)
    images = read_images([f for f, _ in files], channels)
    first = files[0][0], tuple(images[0].shape)
    for (f, _), image in zip(files, images):
        shape = tuple(image.shape)
        if size is not None and shape[1:] != (size, size):
            raise UsageError(f"{f} is {shape[2]}x{shape[1]} pixels; this dataset's images are {size}x{size}")
        if shape != first[1]:
            raise UsageError(
                f"{f} is {shape[0]}x{shape[1]}x{shape[2]} (CxHxW) but {first[0]} is "
                f"{'x'.join(map(str, first[1]))}; images of a folder must have one size"
            )
    labels = torch.tensor([c for _, c in files], dtype=torch.int64)
    return ImageSet(torch.stack(images), labels, tuple(classes))


def check_one_label_per_file(files: list[tuple[Path, int]]) -> None:
    """Refuse one image file (a link or a hard link to another) under two class folders: two labels."""
    label: dict[tuple[int, int], tuple[Path, int]] = {}
    for path, c in files:
        st = os.stat(path)
        first = label.setdefault((st.st_dev, st.st_ino), (path, c))
        if first[1] != c:
            raise UsageError(f"{path} is the same file as {first[0]} (a link): one image under two labels; remove one")


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
        if x.ndim != 4 or x.shape[:3] != (32, 32, 3) or x.dtype != np.uint8:
            raise UsageError(
                f"SVHN file {path} holds X of {x.dtype} {x.shape}, not uint8 (32, 32, 3, N); download it again"
            )
        images.append(np.ascontiguousarray(np.transpose(x, (3, 2, 0, 1)), dtype=np.uint8))  # (H,W,C,N) -> (N,C,H,W)
        y = y.reshape(-1).astype(np.int64)
        _check_labels(path, x.shape[3], y, 1, 10, "SVHN")
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
        """Write the split (atomically; a full disk is one line naming it)."""
        arrays = {"labelled": self.labelled, "unlabelled": self.unlabelled, "val": self.val}
        arrays |= {f"meta_{k}": np.asarray(v) for k, v in meta.items()}
        write_atomic(path, lambda f: np.savez(f, **arrays))

    @classmethod
    def load(cls, path: str | Path, *, num_train: int, dataset: str | None = None) -> Split:
        """Read a split saved by :meth:`save` and check that it fits this training set."""
        path = Path(path)
        regular_file(path, "split file")
        try:
            with np.load(path) as f:
                split = cls(f["labelled"].astype(np.int64), f["unlabelled"].astype(np.int64), f["val"].astype(np.int64))
                meta = {k[5:]: f[k].item() for k in f.files if k.startswith("meta_")}
        except (OSError, KeyError, ValueError, TypeError, EOFError, zipfile.BadZipFile, zlib.error) as e:
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
        for name in ("labelled", "unlabelled", "val"):
            part = getattr(split, name)
            if part.ndim != 1 or len(np.unique(part)) != len(part):
                raise UsageError(f"split file {path} lists an index twice in its {name} images; use a run's split.npz")
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
