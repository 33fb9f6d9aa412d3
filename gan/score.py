"""Inception Score, FID and KID of saved samples, with torch-fidelity's feature extractors and metrics.

    python -m gan.score samples.npz --ref cifar10-train --data-dir data/cifar10
    python -m gan.score runs/gan/checkpoint.pt --num-samples 50000 --ref cifar10-train --kid
    python -m gan.score samples/ --ref other-samples.npz
    python -m gan.score digits.npz --ref digits-train --feature-extractor digits-cnn

SAMPLES is an ``.npz`` of uint8 NHWC images (key ``images``), a folder of PNG/JPEG images, a
``gan.train`` checkpoint (``--num-samples`` are drawn from its generator), or a dataset split.
IS uses 10 splits of SAMPLES; FID and KID compare SAMPLES with REF. Every result is written to a
JSON file together with its protocol (counts, reference, extractor, weights hash, versions),
because FID values are only comparable under the same protocol.

Inception weights (``weights-inception-2015-12-05-6726825d.pth``) are looked up in this order:
``--inception-weights``, ``$MMIX_INCEPTION_WEIGHTS``, torch's hub cache; then downloaded if possible.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch_fidelity
from torch import Tensor
from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3
from torch_fidelity.metric_fid import KEY_METRIC_FID, fid_features_to_statistics, fid_statistics_to_metric
from torch_fidelity.metric_isc import KEY_METRIC_ISC_MEAN, KEY_METRIC_ISC_STD, isc_features_to_metric
from torch_fidelity.metric_kid import KEY_METRIC_KID_MEAN, KEY_METRIC_KID_STD, kid_features_to_metric
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

from common.cli import ArgumentParser, run_main
from common.config import UsageError
from common.data import IMAGE_SUFFIXES, load_dataset, read_images
from common.features import DIGITS_EXTRACTOR, cache_dir, digits_extractor_weights
from common.run import progress, resolve_device

INCEPTION = "inception-v3-compat"
INCEPTION_FILE = Path(URL_INCEPTION_V3).name
WEIGHTS_ENV = "MMIX_INCEPTION_WEIGHTS"
DATASET_SPLITS = {
    "cifar10-train": ("cifar10", "train"),
    "cifar10-test": ("cifar10", "test"),
    "digits-train": ("digits", "train"),
    "digits-test": ("digits", "test"),
}
KEYS = (KEY_METRIC_ISC_MEAN, KEY_METRIC_ISC_STD, KEY_METRIC_FID, KEY_METRIC_KID_MEAN, KEY_METRIC_KID_STD)


@dataclass(frozen=True)
class Samples:
    images: Tensor  # (N, C, H, W) uint8, CPU
    source: str  # what the user named
    sha256: str  # of the image bytes: the identity of a reference in the statistics cache


def _fingerprint(images: Tensor) -> str:
    return hashlib.sha256(images.contiguous().numpy().tobytes()).hexdigest()


def load_samples(
    spec: str | Path,
    *,
    num_samples: int = 50_000,
    data_dir: str | Path | None = None,
    device: str | torch.device = "cpu",
    seed: int = 0,
) -> Samples:
    """Images from an .npz, a folder, a generator checkpoint or a dataset split (see module docstring)."""
    spec = str(spec)
    if spec in DATASET_SPLITS:
        name, split = DATASET_SPLITS[spec]
        images = load_dataset(name, data_dir or f"data/{name}", split).images
        return Samples(images, spec, _fingerprint(images))
    path = Path(spec)
    if not path.exists():
        raise UsageError(
            f"{spec} does not exist (samples are an .npz, an image folder, a checkpoint .pt, "
            f"or one of {', '.join(DATASET_SPLITS)})"
        )
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise UsageError(f"{path} holds no PNG or JPEG images")
        decoded = read_images(files)
        if len({tuple(im.shape) for im in decoded}) != 1:
            raise UsageError(f"images in {path} differ in size or channels; score images of one shape")
        images = torch.stack(decoded)
    elif path.suffix == ".npz":
        images = _from_npz(path)
    elif path.suffix in (".pt", ".pth"):
        from gan.sample import generate, load_generator

        G, _ = load_generator(path, device=device)
        images = torch.from_numpy(generate(G, num_samples, device=device, seed=seed)).permute(0, 3, 1, 2)
    else:
        raise UsageError(f"cannot read samples from {path}: use an .npz, an image folder or a checkpoint .pt")
    images = images.contiguous()
    return Samples(images, spec, _fingerprint(images))


def _from_npz(path: Path) -> Tensor:
    try:
        with np.load(path) as f:
            if "images" in f.files:
                array = f["images"]
            elif len(f.files) == 1:
                array = f[f.files[0]]
            else:
                raise UsageError(f"{path} holds {f.files}; name the image array 'images'")
    except (OSError, ValueError) as e:
        raise UsageError(f"{path} cannot be read as .npz ({type(e).__name__})") from None
    if array.dtype != np.uint8:
        raise UsageError(f"{path}: images must be uint8 in 0..255, got {array.dtype}")
    if array.ndim != 4 or array.shape[-1] not in (1, 3):
        raise UsageError(f"{path}: images must be (N, H, W, C) with C = 1 or 3, got shape {array.shape}")
    if len(array) == 0:
        raise UsageError(f"{path} holds no images")
    return torch.from_numpy(array).permute(0, 3, 1, 2)


def find_inception_weights(path: str | Path | None = None, *, download: bool = True) -> Path:
    """The Inception weights file: explicit path, $MMIX_INCEPTION_WEIGHTS, torch's hub cache, or a download."""
    path = path or os.environ.get(WEIGHTS_ENV)
    if path:
        if not Path(path).is_file():
            raise UsageError(f"Inception weights {path} do not exist; download {URL_INCEPTION_V3}")
        return Path(path)
    cached = Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE
    if cached.is_file():
        return cached
    reason = "downloads are off"
    if download and not os.environ.get("MMIX_OFFLINE"):
        previous = socket.getdefaulttimeout()
        socket.setdefaulttimeout(20)
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(URL_INCEPTION_V3, str(cached), progress=False)
            return cached
        except Exception as e:  # no network, proxy, disk: all mean "not available"
            reason = f"download failed: {type(e).__name__}"
        finally:
            socket.setdefaulttimeout(previous)
    raise UsageError(
        f"Inception weights {INCEPTION_FILE} not found ({reason}): put the file in {cached.parent}/ or pass "
        f"--inception-weights PATH (or set {WEIGHTS_ENV}); get it from {URL_INCEPTION_V3}"
    )


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class Extractor:
    """A torch-fidelity feature extractor, its weights and the feature layer each metric reads."""

    def __init__(self, name: str, weights: Path, device: torch.device):
        if name not in FEATURE_EXTRACTORS_REGISTRY:
            raise UsageError(
                f"unknown feature extractor {name!r} (valid: {', '.join(sorted(FEATURE_EXTRACTORS_REGISTRY))})"
            )
        cls = FEATURE_EXTRACTORS_REGISTRY[name]
        self.name, self.weights, self.sha256 = name, weights, _sha256_file(weights)
        self.layers = {m: cls.get_default_feature_layer_for_metric(m) for m in ("isc", "fid", "kid")}
        requested = sorted(set(self.layers.values()))
        self.module = cls(name, requested, feature_extractor_weights_path=str(weights), verbose=False).to(device).eval()
        self.device = device

    @torch.no_grad()
    def __call__(self, images: Tensor, batch_size: int, desc: str) -> dict[str, Tensor]:
        """uint8 (N, C, H, W) -> {layer: (N, D) float64 on the CPU}."""
        outputs: dict[str, list[Tensor]] = {}
        bar = progress(len(images), desc=desc)
        for i in range(0, len(images), batch_size):
            x = images[i : i + batch_size].to(self.device)
            if self.name != DIGITS_EXTRACTOR and x.shape[1] == 1:
                x = x.expand(-1, 3, -1, -1)  # Inception takes RGB
            for layer, f in self.module.convert_features_tuple_to_dict(self.module(x)).items():
                outputs.setdefault(layer, []).append(f.double().cpu())
            bar.update(len(x))
        bar.close()
        return {k: torch.cat(v) for k, v in outputs.items()}


def reference_statistics(ref: Samples, extractor: Extractor, batch_size: int, cache: Path | None) -> dict:
    """FID statistics (mu, sigma) of a reference, cached under a key of extractor, weights and data.

    torch-fidelity's own cache key is the input's name only, so statistics computed with other
    weights or other files of the same name would be reused; this key cannot collide that way.
    """
    layer = extractor.layers["fid"]
    key = hashlib.sha256(f"{extractor.name}|{extractor.sha256}|{layer}|{ref.sha256}|{len(ref.images)}".encode())
    path = None if cache is None else cache / "fid-stats" / f"{key.hexdigest()[:32]}.npz"
    if path is not None and path.is_file():
        with np.load(path) as f:
            return {"mu": f["mu"], "sigma": f["sigma"]}
    stats = fid_features_to_statistics(extractor(ref.images, batch_size, "reference")[layer])
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".{os.getpid()}.tmp.npz")
        np.savez(tmp, mu=stats["mu"], sigma=stats["sigma"], source=ref.source, weights_sha256=extractor.sha256)
        os.replace(tmp, path)
    return stats


def score(
    samples: Samples,
    reference: Samples | None = None,
    *,
    isc: bool = True,
    fid: bool = True,
    kid: bool = False,
    feature_extractor: str = INCEPTION,
    weights_path: str | Path | None = None,
    download: bool = True,
    device: torch.device | str = "cpu",
    batch_size: int = 100,
    isc_splits: int = 10,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    cache: str | Path | None = "default",
    extractor: Extractor | None = None,
) -> dict:
    """IS of ``samples``; FID and KID of ``samples`` against ``reference``.

    Returns a flat dict with torch-fidelity's keys (``inception_score_mean``, ``inception_score_std``,
    ``frechet_inception_distance``, ``kernel_inception_distance_mean``, ``..._std``) for the metrics
    asked for, plus ``protocol``: what was compared with what, how. ``cache=None`` disables the
    reference-statistics cache; "default" is ``$MMIX_CACHE`` or ``~/.cache/manifold-mixup``.
    """
    if (fid or kid) and reference is None:
        raise UsageError("FID and KID need a reference (--ref); pass --no-fid for IS alone")
    if isc and len(samples.images) < isc_splits:
        raise UsageError(f"{len(samples.images)} samples cannot be split into {isc_splits} IS splits")
    if kid and min(len(samples.images), len(reference.images)) < kid_subset_size:
        raise UsageError(
            f"KID subsets of {kid_subset_size} need at least that many samples and reference images "
            f"(have {len(samples.images)} and {len(reference.images)}); lower --kid-subset-size"
        )
    device = torch.device(device)
    if extractor is None:
        weights = (
            (Path(weights_path) if weights_path else digits_extractor_weights())
            if feature_extractor == DIGITS_EXTRACTOR
            else find_inception_weights(weights_path, download=download)
        )
        extractor = Extractor(feature_extractor, weights, device)
    cache_path = None if cache is None else (cache_dir() if cache == "default" else Path(cache))

    out: dict = {}
    features = extractor(samples.images, batch_size, "samples")
    if isc:
        out |= isc_features_to_metric(features[extractor.layers["isc"]], splits=isc_splits, shuffle=True)
    if fid:
        stats = fid_features_to_statistics(features[extractor.layers["fid"]])
        out |= fid_statistics_to_metric(
            stats, reference_statistics(reference, extractor, batch_size, cache_path), False
        )
    if kid:
        ref_features = extractor(reference.images, batch_size, "reference")[extractor.layers["kid"]]
        out |= kid_features_to_metric(
            features[extractor.layers["kid"]].float(),
            ref_features.float(),
            kid_subsets=kid_subsets,
            kid_subset_size=kid_subset_size,
            verbose=False,
        )
    out["protocol"] = {
        "samples": {"source": samples.source, "count": len(samples.images), "shape": list(samples.images.shape[1:])},
        "reference": None if reference is None else {"source": reference.source, "count": len(reference.images)},
        "feature_extractor": extractor.name,
        "feature_layers": extractor.layers,
        "weights": {"path": str(extractor.weights), "sha256": extractor.sha256},
        "isc_splits": isc_splits if isc else None,
        "kid": {"subsets": kid_subsets, "subset_size": kid_subset_size} if kid else None,
        "torch_fidelity": torch_fidelity.__version__,
        "comparable_to_inception_scores": extractor.name == INCEPTION,
    }
    if extractor.name == DIGITS_EXTRACTOR:
        out["protocol"]["note"] = "digits-cnn domain features: comparable only with other digits-cnn scores"
    return out


def format_table(result: dict) -> str:
    names = {KEY_METRIC_ISC_MEAN: "IS", KEY_METRIC_FID: "FID", KEY_METRIC_KID_MEAN: "KID"}
    p = result["protocol"]
    label = "" if p["comparable_to_inception_scores"] else f" [{p['feature_extractor']}: not Inception]"
    rows = []
    for key, name in names.items():
        if key in result:
            std = result.get(key.replace("_mean", "_std")) if key.endswith("_mean") else None
            rows.append(f"{name + label:<34} {result[key]:.4f}" + (f" ± {std:.4f}" if std is not None else ""))
    ref = p["reference"]
    rows.append(
        f"samples {p['samples']['count']} from {p['samples']['source']}"
        + (f" | reference {ref['count']} from {ref['source']}" if ref else "")
    )
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m gan.score", description=__doc__.split("\n\n")[0])
    parser.add_argument("samples", help=".npz, image folder, checkpoint .pt, or a dataset split")
    parser.add_argument("--ref", default=None, help=f"reference for FID/KID: {', '.join(DATASET_SPLITS)} or samples")
    parser.add_argument("--data-dir", default=None, help="dataset folder for cifar10-*/digits-* (default: data/NAME)")
    parser.add_argument(
        "--num-samples", type=int, default=50_000, help="samples drawn from a checkpoint (default: 50000)"
    )
    parser.add_argument("--seed", type=int, default=0, help="noise seed for checkpoint samples (default: 0)")
    parser.add_argument("--no-isc", action="store_true", help="skip the Inception Score")
    parser.add_argument("--no-fid", action="store_true", help="skip FID")
    parser.add_argument("--kid", action="store_true", help="also compute KID")
    parser.add_argument("--kid-subset-size", type=int, default=1000, help="KID subset size (default: 1000)")
    parser.add_argument("--kid-subsets", type=int, default=100, help="KID subsets (default: 100)")
    parser.add_argument("--feature-extractor", default=INCEPTION, help=f"{INCEPTION} (default) or {DIGITS_EXTRACTOR}")
    parser.add_argument(
        "--inception-weights", default=None, help=f"weights file (default: ${WEIGHTS_ENV} or hub cache)"
    )
    parser.add_argument("--no-download", action="store_true", help="never try to download the Inception weights")
    parser.add_argument("--batch-size", type=int, default=100, help="images per forward pass (default: 100)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    parser.add_argument("--out", default=None, help="JSON file for the results (default: beside SAMPLES)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    args = parser.parse_args(argv)

    out = Path(args.out) if args.out else _default_out(args.samples, args.ref)
    if out.exists() and not args.overwrite:
        raise UsageError(f"{out} already exists; pass --overwrite or choose another --out")
    if args.num_samples <= 0 or args.batch_size <= 0:
        raise UsageError("--num-samples and --batch-size must be positive")
    device = resolve_device(args.device)
    samples = load_samples(
        args.samples, num_samples=args.num_samples, data_dir=args.data_dir, device=device, seed=args.seed
    )
    reference = load_samples(args.ref, data_dir=args.data_dir, device=device) if args.ref else None
    result = score(
        samples,
        reference,
        isc=not args.no_isc,
        fid=not args.no_fid and reference is not None,
        kid=args.kid,
        feature_extractor=args.feature_extractor,
        weights_path=args.inception_weights,
        download=not args.no_download,
        device=device,
        batch_size=args.batch_size,
        kid_subsets=args.kid_subsets,
        kid_subset_size=args.kid_subset_size,
    )
    print(format_table(result))
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


def _default_out(samples: str, ref: str | None) -> Path:
    path = Path(samples)
    tag = f"-vs-{Path(ref).stem}" if ref else ""
    base = path.parent / f"{path.stem if path.suffix else path.name}-scores{tag}.json"
    return Path(f"{Path(samples).name}-scores{tag}.json") if samples in DATASET_SPLITS else base


if __name__ == "__main__":
    run_main(main, prog="python -m gan.score")
