"""The feature extractors of FID/IS/KID: Inception's weights found and read safely, and ``digits-cnn``.

**Inception** (torch-fidelity's ``inception-v3-compat``): its weights
(``weights-inception-2015-12-05-6726825d.pth``) are looked up in this order: an explicit path
(``--inception-weights``), ``$MMIX_INCEPTION_WEIGHTS``, torch's hub cache; then downloaded if possible
(:func:`find_inception_weights`). Whatever their origin, they are read only with
``torch.load(..., weights_only=True)`` (:func:`load_inception`).

**digits-cnn**: Inception features of 8x8 grayscale digits upscaled to 299x299 say little, and the
Inception weights cannot be downloaded everywhere. ``digits-cnn`` is a small classifier trained (once,
deterministically, on the CPU, in seconds) on the 1,297 training digits and cached on disk; its
penultimate layer (64 features) stands in for Inception's pool features in FID/KID and its logits
for Inception's in IS. Scores computed with it are comparable with each other, never with
Inception numbers.

    from manifold_mixup.common.features import digits_extractor_weights   # trains on first use, returns the path
    python -m common.features                              # train now and report test accuracy
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import socket
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3, FeatureExtractorInceptionV3

from manifold_mixup.common.cli import ArgumentParser, run_main
from manifold_mixup.common.config import UsageError

DIGITS_EXTRACTOR = "digits-cnn"
# The recipe is part of the cache key: change it and a new classifier is trained.
RECIPE = {"version": 1, "epochs": 40, "batch_size": 64, "lr": 2e-3, "weight_decay": 1e-4, "seed": 0, "width": 32}


def cache_dir() -> Path:
    """Where trained extractors and reference statistics live: $MMIX_CACHE or ~/.cache/manifold-mixup."""
    return Path(os.environ.get("MMIX_CACHE", Path.home() / ".cache" / "manifold-mixup"))


# ---------------------------------------------------------------------------------------------
# Inception

INCEPTION = "inception-v3-compat"
INCEPTION_FILE = Path(URL_INCEPTION_V3).name
# The published file's name carries the first 8 hex digits of its sha256 (torch hub's convention). A
# match is recorded in the protocol ("published"); it never changes how a file is loaded, since 8 hex
# digits are easy to forge.
INCEPTION_SHA256_PREFIX = INCEPTION_FILE.rsplit("-", 1)[-1].split(".")[0]
WEIGHTS_ENV = "MMIX_INCEPTION_WEIGHTS"


def find_inception_weights(path: str | Path | None = None, *, download: bool = True) -> Path:
    """The Inception weights file: explicit path, $MMIX_INCEPTION_WEIGHTS, torch's hub cache, or a download.

    Downloads are never tried when ``download`` is False or ``$MMIX_OFFLINE`` is set. Not found:
    a one-line UsageError naming the file, where to put it and where to get it.
    """
    path = path or os.environ.get(WEIGHTS_ENV)
    if path:
        if not Path(path).is_file():
            raise UsageError(f"Inception weights {path} do not exist; get {INCEPTION_FILE} from {URL_INCEPTION_V3}")
        return Path(path)
    cached = Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE
    if cached.is_file():
        return cached
    reason = "downloads are off"
    if download and not os.environ.get("MMIX_OFFLINE"):
        previous = socket.getdefaulttimeout()
        socket.setdefaulttimeout(20)
        created = [p for p in (cached.parent, *cached.parent.parents) if not p.exists()]  # innermost first
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(URL_INCEPTION_V3, str(cached), progress=False)
            return cached
        except Exception as e:  # no network, proxy, disk: all mean "not available"
            reason = f"download failed: {type(e).__name__}"
            for folder in created:  # leave no empty cache folders behind
                try:
                    folder.rmdir()
                except OSError:  # not empty (another process uses it) or never made
                    break
        finally:
            socket.setdefaulttimeout(previous)
    raise UsageError(
        f"Inception weights {INCEPTION_FILE} not found ({reason}): put the file in {cached.parent}/ or pass "
        f"--inception-weights PATH (or set {WEIGHTS_ENV}); get it from {URL_INCEPTION_V3}"
    )


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_inception(weights: str | Path, layers: Sequence[str]) -> FeatureExtractorInceptionV3:
    """torch-fidelity's InceptionV3 with the state dict in ``weights``, read with ``weights_only=True``.

    The file is never unpickled any other way: a pickle that would run code, or anything but plain
    tensors, is a UsageError. torch-fidelity's constructor would ``torch.load`` its weights argument
    with ``weights_only=False``, so it is handed an in-memory copy re-serialised here from the plain
    tensors just read, never the file itself, and never a download.
    """
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as e:  # an unsafe pickle, a truncated file, not a torch file
        raise UsageError(
            f"{weights} is not a plain weights file ({type(e).__name__}); get {URL_INCEPTION_V3}"
        ) from None
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise UsageError(f"{weights} cannot be loaded as {INCEPTION} weights (not a state dict of tensors)")
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return FeatureExtractorInceptionV3(INCEPTION, list(layers), feature_extractor_weights_path=buffer)


def published_inception(sha256: str) -> bool:
    """Whether a weights file's sha256 matches the published file's name (protocol information only)."""
    return sha256.startswith(INCEPTION_SHA256_PREFIX)


# ---------------------------------------------------------------------------------------------
# digits-cnn


class DigitsCNN(nn.Module):
    """(B, 1, 8, 8) in [0, 1] -> (features (B, 2w), logits (B, 10))."""

    def __init__(self, width: int = 32):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.BatchNorm2d(2 * width),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.head = nn.Linear(2 * width, 10)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        features = self.body(x)
        return features, self.head(features)


def train_digits_classifier(recipe: dict = RECIPE) -> tuple[DigitsCNN, float]:
    """Train on the digits training split (CPU, seeded); returns (model in eval mode, test accuracy)."""
    from manifold_mixup.common.data import load_dataset

    train, test = load_dataset("digits", None, "train"), load_dataset("digits", None, "test")
    g = torch.Generator().manual_seed(recipe["seed"])
    with torch.random.fork_rng(devices=[]):  # a trainer that calls this keeps its own random stream
        torch.manual_seed(recipe["seed"])
        model = DigitsCNN(recipe["width"])
    opt = torch.optim.AdamW(model.parameters(), lr=recipe["lr"], weight_decay=recipe["weight_decay"])
    x, y = train.images.float() / 255, train.labels
    for _ in range(recipe["epochs"]):
        for idx in torch.randperm(len(x), generator=g).split(recipe["batch_size"]):
            loss = F.cross_entropy(model(x[idx])[1], y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        accuracy = (model(test.images.float() / 255)[1].argmax(1) == test.labels).float().mean().item()
    return model, accuracy


def digits_extractor_weights(directory: str | Path | None = None) -> Path:
    """Path of the trained digits classifier, training and caching it on first use."""
    key = hashlib.sha256(json.dumps(RECIPE, sort_keys=True).encode()).hexdigest()[:12]
    path = Path(directory or cache_dir()) / f"digits-cnn-{key}.pt"
    if not path.is_file():
        try:  # before training: a cache that cannot be written is reported in one line, not after the work
            path.parent.mkdir(parents=True, exist_ok=True)
            if not os.access(path.parent, os.W_OK | os.X_OK):
                raise PermissionError(13, "not writable")
        except OSError as e:
            raise UsageError(
                f"cannot write the digits-cnn cache in {path.parent} ({e.strerror or e}); "
                "set MMIX_CACHE to a writable folder"
            ) from None
        model, accuracy = train_digits_classifier()
        tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
        torch.save({"model": model.state_dict(), "recipe": RECIPE, "test_accuracy": accuracy}, tmp)
        os.replace(tmp, path)
    return path


class DigitsFeatureExtractor(FeatureExtractorBase):
    """torch-fidelity extractor: uint8 (B, 1 or 3, 8, 8) -> 'features' (B, 64) and 'logits' (B, 10)."""

    def __init__(
        self,
        name: str,
        features_list: Sequence[str],
        feature_extractor_weights_path: str | None = None,
        **kwargs: object,
    ):
        super().__init__(name, list(features_list))
        state = torch.load(feature_extractor_weights_path or digits_extractor_weights(), weights_only=True)
        self.model = DigitsCNN(state["recipe"]["width"])
        self.model.load_state_dict(state["model"])
        self.eval()

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        if x.dtype != torch.uint8 or x.dim() != 4 or x.shape[-2:] != (8, 8):
            raise ValueError(f"digits-cnn expects uint8 (B, 1, 8, 8) images, got {tuple(x.shape)} {x.dtype}")
        x = x.float().mean(1, keepdim=True) / 255  # grayscale, also for RGB-saved samples
        features, logits = self.model(x)
        out = {"features": features, "logits": logits}
        return tuple(out[name] for name in self.features_list)

    @staticmethod
    def get_provided_features_list() -> tuple[str, ...]:
        return "features", "logits"

    @staticmethod
    def get_default_feature_layer_for_metric(metric: str) -> str:
        return {"isc": "logits", "fid": "features", "kid": "features", "prc": "features"}[metric]

    @staticmethod
    def can_be_compiled() -> bool:
        return False

    @staticmethod
    def get_dummy_input_for_compile() -> Tensor:
        return torch.zeros(1, 1, 8, 8, dtype=torch.uint8)


def register() -> None:
    """Make ``digits-cnn`` known to torch-fidelity (idempotent)."""
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY, register_feature_extractor

    if DIGITS_EXTRACTOR not in FEATURE_EXTRACTORS_REGISTRY:
        register_feature_extractor(DIGITS_EXTRACTOR, DigitsFeatureExtractor)


register()


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m common.features", description="Train (once) and cache digits-cnn.")
    parser.add_argument("--cache-dir", default=None, help="where to keep it (default: $MMIX_CACHE or ~/.cache/...)")
    args = parser.parse_args(argv)
    path = digits_extractor_weights(args.cache_dir)
    state = torch.load(path, weights_only=True)
    print(f"{path}: digits-cnn, test accuracy {state['test_accuracy']:.4f} on the 500 held-out digits")
    return 0


if __name__ == "__main__":
    run_main(main, prog="python -m common.features")
