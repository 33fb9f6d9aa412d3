"""Inception Score, FID, KID and precision/recall of saved samples, with torch-fidelity's extractors and metrics.

    python -m gan.score samples.npz --ref cifar10-train --data-dir data/cifar10-jpeg75
    python -m gan.score runs/gan/checkpoint.pt --num-samples 50000 --ref cifar10-train --kid
    python -m gan.score samples/ --ref other-samples.npz --inception-weights weights-inception-2015-12-05-6726825d.pth
    python -m gan.score digits.npz --ref digits-train --feature-extractor digits-cnn
    python -m gan.score samples.npz --ref cifar10-train --prc           # + precision and recall
    python -m gan.score docs/results/scores/noise.json                  # the table of a saved result

SAMPLES is an ``.npz`` of uint8 NHWC images (key ``images``, or its only array), a folder of
PNG/JPEG images, a ``gan.train`` checkpoint (``--num-samples`` are drawn from its generator), or a
dataset split. IS uses 10 splits of SAMPLES; FID, KID and precision/recall compare SAMPLES with REF. Every result is
written to a JSON file (``--out``, by default beside SAMPLES; for a dataset split, stdout only) together
with its protocol (counts, reference, extractor, weights hash, versions), because FID values are only
comparable under the same protocol. Inputs, weights, the output and the cache are all checked before
any sample is generated or any feature extracted. docs/scores.md has more.

Inception weights (``weights-inception-2015-12-05-6726825d.pth``) are looked up in this order:
``--inception-weights``, ``$MMIX_INCEPTION_WEIGHTS``, torch's hub cache; then downloaded if possible.
Whatever their origin, they are read only with ``torch.load(..., weights_only=True)``. The lookup and
the safe loading live in common/features.py, with the ``digits-cnn`` extractor.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch_fidelity
from torch import Tensor
from torch_fidelity.metric_fid import KEY_METRIC_FID, fid_features_to_statistics, fid_statistics_to_metric
from torch_fidelity.metric_isc import KEY_METRIC_ISC_MEAN, KEY_METRIC_ISC_STD, isc_features_to_metric
from torch_fidelity.metric_kid import KEY_METRIC_KID_MEAN, KEY_METRIC_KID_STD, kid_features_to_metric
from torch_fidelity.metric_prc import (
    KEY_METRIC_F_SCORE,
    KEY_METRIC_PRECISION,
    KEY_METRIC_RECALL,
    prc_features_to_metric,
)
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

from manifold_mixup.common.cli import ArgumentParser, progress, run_main
from manifold_mixup.common.config import UsageError
from manifold_mixup.common.data import load_dataset
from manifold_mixup.common.device import resolve_device
from manifold_mixup.common.features import (
    DIGITS_EXTRACTOR,
    INCEPTION,
    WEIGHTS_ENV,
    cache_dir,
    digits_extractor_weights,
    find_inception_weights,
    load_inception,
    published_inception,
    sha256_file,
)
from manifold_mixup.common.inputs import regular_file
from manifold_mixup.common.outputs import check_output_file, disk_errors, write_atomic
from manifold_mixup.common.speed import no_tf32
from manifold_mixup.gan.sample import (
    _first_line,
    available_memory,
    check_writable,
    generate,
    image_shape,
    load_generator,
    read_folder,
    read_npz,
)

DATASET_SPLITS = {
    "cifar10-train": ("cifar10", "train"),
    "cifar10-test": ("cifar10", "test"),
    "digits-train": ("digits", "train"),
    "digits-test": ("digits", "test"),
}
# The keys of score()'s result (torch-fidelity's names), besides "protocol".
KEYS = (
    KEY_METRIC_ISC_MEAN,
    KEY_METRIC_ISC_STD,
    KEY_METRIC_FID,
    KEY_METRIC_KID_MEAN,
    KEY_METRIC_KID_STD,
    KEY_METRIC_PRECISION,
    KEY_METRIC_RECALL,
    KEY_METRIC_F_SCORE,
)


# ---------------------------------------------------------------------------------------------
# Inputs


@dataclass(frozen=True)
class Samples:
    """Images to score and where they came from."""

    images: Tensor  # (N, C, H, W) uint8, CPU, C = 1 or 3
    source: str  # what the user named
    sha256: str = ""  # of the image bytes: a reference's identity in the statistics cache
    info: dict = field(default_factory=dict)  # protocol details: dataset split, checkpoint seed, ...

    @classmethod
    def of(cls, images: Tensor, source: str, **info: object) -> Samples:
        images = _checked(images.contiguous(), source)
        return cls(images, source, hashlib.sha256(images.numpy().tobytes()).hexdigest(), info)


def _checked(images: Tensor, source: str) -> Tensor:
    if images.dtype != torch.uint8:
        raise UsageError(f"{source}: images must be uint8 in 0..255, got {images.dtype}")
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise UsageError(f"{source}: images must be (N, C, H, W) with C = 1 or 3, got shape {tuple(images.shape)}")
    if len(images) == 0:
        raise UsageError(f"{source} holds no images")
    return images.cpu()


def prepare_samples(
    spec: str | Path,
    *,
    num_samples: int = 50_000,
    data_dir: str | Path | None = None,
    device: str | torch.device = "cpu",
    seed: int = 0,
    ema: bool = True,
) -> Callable[[], Samples]:
    """Check a samples spec cheaply and return the function that loads it (``load_samples``' first half).

    Checked now: the path exists and is of a known kind, an .npz opens as a zip archive, a checkpoint
    loads as a ``gan.train`` generator that makes images. The returned function reads or generates
    the images, which is what takes time.
    """
    spec = str(spec)
    if spec in DATASET_SPLITS:
        name, split = DATASET_SPLITS[spec]
        directory = None if name == "digits" else str(data_dir or f"data/{name}")
        if directory is not None and not Path(directory).is_dir():
            raise UsageError(f"{spec}: dataset folder {directory} does not exist (pass --data-dir)")
        return lambda: Samples.of(
            load_dataset(name, directory, split).images, spec, dataset=name, split=split, data_dir=directory
        )
    path = Path(spec)
    if not path.exists():
        raise UsageError(
            f"{spec} does not exist (samples are an .npz, an image folder, a checkpoint .pt, "
            f"or one of {', '.join(DATASET_SPLITS)})"
        )
    if path.is_dir():
        return lambda: Samples.of(read_folder(path), spec)
    regular_file(path)  # a FIFO would block the reader forever
    if path.suffix == ".npz":
        try:
            zipfile.ZipFile(path).close()
        except (OSError, zipfile.BadZipFile) as e:  # truncated or not an .npz at all
            raise UsageError(f"{path} cannot be read as .npz ({type(e).__name__}: {_first_line(e)})") from None
        return lambda: Samples.of(read_npz(path), spec)
    if path.suffix in (".pt", ".pth"):
        if num_samples <= 0:
            raise UsageError(f"--num-samples must be positive, got {num_samples}")
        G, _ = load_generator(path, ema=ema, device=device)
        shape = image_shape(G, device)  # a ring generator makes points, not images
        # all samples stay in memory as uint8, with their features as float64 (Inception: 2048 + 1008)
        need = num_samples * (int(np.prod(shape)) + 8 * (2048 + 1008))
        if need > available_memory("cpu"):
            raise UsageError(
                f"--num-samples {num_samples} needs about {need / 2**30:.1f} GiB of memory, more than is free; "
                "score fewer samples"
            )

        def generated() -> Samples:
            images = torch.from_numpy(generate(G, num_samples, device=device, seed=seed)).permute(0, 3, 1, 2)
            return Samples.of(images, spec, checkpoint=str(path), seed=seed, ema=ema)

        return generated
    raise UsageError(f"cannot read samples from {path}: use an .npz, an image folder or a checkpoint .pt")


def load_samples(spec: str | Path, **kwargs: object) -> Samples:
    """Images from an .npz, a folder, a generator checkpoint or a dataset split (see module docstring).

    Keyword arguments as for ``prepare_samples``: ``num_samples``, ``seed`` (noise) and ``ema`` apply
    to checkpoints, ``data_dir`` to dataset splits (default ``data/<dataset>``; digits need none).
    """
    return prepare_samples(spec, **kwargs)()  # type: ignore[arg-type]


def as_samples(x: Samples | str | Path | np.ndarray | Tensor, what: str, **load: object) -> Callable[[], Samples]:
    """A function giving Samples for a spec (checked now, see ``prepare_samples``), a uint8
    (N, H, W, C) array or a uint8 (N, C, H, W) tensor."""
    if isinstance(x, Samples):
        return lambda: x
    if isinstance(x, np.ndarray):
        if x.ndim != 4 or x.shape[-1] not in (1, 3):
            raise UsageError(f"{what}: arrays must be (N, H, W, C) with C = 1 or 3, got shape {x.shape}")
        s = Samples.of(torch.from_numpy(x).permute(0, 3, 1, 2), f"{what} (array)")
        return lambda: s
    if isinstance(x, Tensor):
        s = Samples.of(x.detach(), f"{what} (tensor)")
        return lambda: s
    return prepare_samples(x, **load)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# Weights and feature extractors


class Extractor:
    """A feature extractor, its weights (and their sha256) and the layer each metric reads.

    ``inception-v3-compat`` is built by ``common.features.load_inception`` (``weights_only=True``);
    other torch-fidelity extractors are refused, because their constructors unpickle weights or
    fetch code unsafely; extractors registered by this package (``digits-cnn``) or by the caller
    load their weights themselves.
    """

    def __init__(self, name: str, weights: str | Path, device: str | torch.device = "cpu"):
        if name not in FEATURE_EXTRACTORS_REGISTRY:
            raise UsageError(
                f"unknown feature extractor {name!r} (valid: {', '.join(sorted(FEATURE_EXTRACTORS_REGISTRY))})"
            )
        cls = FEATURE_EXTRACTORS_REGISTRY[name]
        if name != INCEPTION and cls.__module__.startswith("torch_fidelity."):
            raise UsageError(f"feature extractor {name!r} is not supported (use {INCEPTION} or {DIGITS_EXTRACTOR})")
        self.name, self.weights, self.sha256 = name, Path(weights), sha256_file(weights)
        # the published file (protocol information only: every file is loaded the same safe way)
        self.official = name == INCEPTION and published_inception(self.sha256)
        self.layers = {m: cls.get_default_feature_layer_for_metric(m) for m in ("isc", "fid", "kid")}
        with contextlib.suppress(KeyError, ValueError):  # an extractor of the caller's may know no "prc" layer
            self.layers["prc"] = cls.get_default_feature_layer_for_metric("prc")
        self.device = torch.device(device)
        layers = sorted(set(self.layers.values()))
        try:
            if name == INCEPTION:
                module = load_inception(weights, layers)
            else:
                module = cls(name, layers, feature_extractor_weights_path=str(weights))
        except UsageError:
            raise
        except Exception as e:  # wrong or truncated file: missing keys, shape mismatch
            raise UsageError(
                f"{weights} cannot be loaded as {name} weights ({type(e).__name__}: {_first_line(e)})"
            ) from None
        self.module = module.to(self.device).eval()

    @torch.no_grad()
    def __call__(self, images: Tensor, batch_size: int, desc: str) -> dict[str, Tensor]:
        """uint8 (N, C, H, W) -> {layer: (N, D) float64 on the CPU}, with a progress bar on stderr."""
        outputs: dict[str, list[Tensor]] = {}
        bar = progress(len(images), desc=f"{self.name}: {desc}")
        for i in range(0, len(images), batch_size):
            x = images[i : i + batch_size].to(self.device)
            if self.name != DIGITS_EXTRACTOR and x.shape[1] == 1:
                x = x.expand(-1, 3, -1, -1)  # Inception takes RGB
            try:
                with no_tf32():  # the TF protocol's fp32 convolutions: no TF32 on Ampere and later GPUs
                    features = self.module(x)
            except ValueError as e:  # torch-fidelity's (and digits-cnn's) input checks
                raise UsageError(f"{self.name} cannot read the {desc} images: {e}") from None
            for layer, f in self.module.convert_features_tuple_to_dict(features).items():
                outputs.setdefault(layer, []).append(f.double().cpu())
            bar.update(len(x))
        bar.close()
        return {k: torch.cat(v) for k, v in outputs.items()}


def make_extractor(
    feature_extractor: str = INCEPTION,
    weights_path: str | Path | None = None,
    *,
    download: bool = True,
    device: str | torch.device = "cpu",
) -> Extractor:
    """An extractor with its weights: Inception's via ``find_inception_weights``, digits-cnn's trained on first use."""
    if feature_extractor == DIGITS_EXTRACTOR:
        weights = Path(weights_path) if weights_path else digits_extractor_weights()
        if not weights.is_file():
            raise UsageError(f"digits-cnn weights {weights} do not exist (omit the path to train them)")
    elif feature_extractor == INCEPTION:
        weights = find_inception_weights(weights_path, download=download)
    elif weights_path is None:
        raise UsageError(f"feature extractor {feature_extractor!r} needs a weights path")
    else:
        weights = Path(weights_path)
    return Extractor(feature_extractor, weights, device)


# ---------------------------------------------------------------------------------------------
# Reference statistics, cached under the identity of weights AND data


def reference_statistics(
    ref: Samples, extractor: Extractor, *, batch_size: int = 100, cache: Path | None = None, kid: bool = False
) -> dict:
    """{"mu", "sigma"} (FID) and, with ``kid``, "features" (N, D) of a reference (what KID and precision/recall
    read), and "cached": bool.

    The cache file's name is a hash of (extractor, weights sha256, feature layer, torch-fidelity
    version, data sha256, image count), and the file repeats them, so statistics computed with
    other weights or other data are never reused. torch-fidelity's own cache is keyed by the
    input's name only, which is why it is not used here.
    """
    layer = extractor.layers["fid"]
    if kid and {extractor.layers["kid"], extractor.layers.get("prc", layer)} != {layer}:
        raise UsageError(f"{extractor.name} reads FID, KID and precision/recall from different layers; not supported")
    identity = {
        "extractor": extractor.name,
        "weights_sha256": extractor.sha256,
        "layer": layer,
        "torch_fidelity": torch_fidelity.__version__,
        "data_sha256": ref.sha256,
        "count": len(ref.images),
    }
    key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:32]
    stats_path = features_path = None
    if cache is not None and ref.sha256:
        stats_path = cache / "reference-stats" / f"{key}.npz"
        features_path = cache / "reference-features" / f"{key}.npz"

    wanted = [stats_path] + ([features_path] if kid else [])
    if stats_path is not None and all(_cached(p, identity) for p in wanted):
        with np.load(stats_path) as f:
            out = {"mu": f["mu"], "sigma": f["sigma"], "cached": True}
        if kid:
            with np.load(features_path) as f:
                out["features"] = torch.from_numpy(f["features"])
        return out

    features = extractor(ref.images, batch_size, "reference")[layer]
    out = fid_features_to_statistics(features) | {"cached": False}
    if kid:
        out["features"] = features.float()
    if stats_path is not None:
        meta = {"identity": json.dumps(identity, sort_keys=True), "source": ref.source}
        try:
            _save_npz(stats_path, mu=out["mu"], sigma=out["sigma"], **meta)
            if kid:
                _save_npz(features_path, features=out["features"].numpy(), **meta)
        except OSError as e:  # the statistics are computed: a cache that cannot be written costs time, not results
            print(f"warning: reference statistics not cached in {cache} ({e.strerror or e})", file=sys.stderr)
    return out


def _cached(path: Path, identity: dict) -> bool:
    if not path.is_file():
        return False
    try:
        with np.load(path) as f:
            return json.loads(str(f["identity"])) == identity
    except (OSError, ValueError, KeyError, EOFError):
        return False  # unreadable or foreign: recompute and replace


def _save_npz(path: Path, **arrays: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npz")
    try:
        with disk_errors(path):
            np.savez(tmp, **arrays)
            os.replace(tmp, path)  # atomic: a concurrent reader sees the old file or the whole new one
    finally:
        tmp.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------
# The metrics call


def score(
    samples: Samples | str | Path | np.ndarray | Tensor,
    reference: Samples | str | Path | np.ndarray | Tensor | None = None,
    *,
    isc: bool = True,
    fid: bool = True,
    kid: bool = False,
    prc: bool = False,
    feature_extractor: str = INCEPTION,
    weights_path: str | Path | None = None,
    download: bool = True,
    device: str | torch.device = "auto",
    batch_size: int = 100,
    isc_splits: int = 10,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    prc_neighborhood: int = 3,
    num_samples: int = 50_000,
    data_dir: str | Path | None = None,
    seed: int = 0,
    ema: bool = True,
    cache: str | Path | None = "default",
    extractor: Extractor | None = None,
) -> dict:
    """IS of ``samples``; FID, KID and precision/recall of ``samples`` against ``reference``.

    Args:
        samples, reference: ``Samples``, a spec for ``load_samples`` (an .npz, an image folder, a
            checkpoint, ``cifar10-train``/``cifar10-test``/``digits-train``/``digits-test``), a uint8
            (N, H, W, C) numpy array or a uint8 (N, C, H, W) tensor. ``num_samples``, ``seed``, ``ema``
            (checkpoints) and ``data_dir`` (dataset splits) are passed to ``load_samples``. Specs
            are checked, then the extractor and its weights are loaded, and only then are images
            read or generated.
        isc, fid, kid, prc: which metrics. IS uses ``isc_splits`` splits (10 is the standard protocol);
            KID draws ``kid_subsets`` subsets of ``kid_subset_size`` from each side; precision and recall
            (Kynkäänniemi et al. 2019) are the fractions of samples inside the reference's manifold and of
            reference images inside the samples', each manifold the union of balls reaching every feature's
            ``prc_neighborhood``-th nearest neighbour.
        feature_extractor: ``inception-v3-compat`` (the standard) or ``digits-cnn`` (8x8 digits
            only, see common.features); ``weights_path`` overrides where its weights are found,
            ``download`` allows fetching Inception's. A ready ``extractor`` skips all three.
        device: ``auto`` (cuda when available), ``cpu`` or ``cuda``; ``batch_size`` images per pass.
        cache: folder for reference statistics, "default" (``$MMIX_CACHE`` or
            ``~/.cache/manifold-mixup``) or None (no cache).

    Returns:
        A flat dict with the metrics asked for, under torch-fidelity's keys:
        ``inception_score_mean``, ``inception_score_std``, ``frechet_inception_distance``,
        ``kernel_inception_distance_mean``, ``kernel_inception_distance_std``, ``precision``, ``recall``,
        ``f_score``; and ``protocol``:
        samples and reference (source, count, sha256, dataset split / checkpoint seed), extractor,
        layers, weights path and sha256, IS splits, KID subsets, the precision/recall neighbourhood,
        torch-fidelity version, device,
        whether the reference statistics came from the cache, and
        ``comparable_to_inception_scores`` (False for any extractor but Inception).
    """
    if not (isc or fid or kid or prc):
        raise UsageError("nothing to compute: enable at least one of IS, FID, KID, precision/recall")
    if batch_size <= 0 or isc_splits <= 0 or kid_subsets <= 0 or kid_subset_size <= 1 or prc_neighborhood <= 0:
        raise UsageError(
            "batch size, IS splits, KID subsets and the precision/recall neighbourhood must be positive, "
            "the KID subset size above 1"
        )
    if (fid or kid or prc) and reference is None:
        raise UsageError("FID, KID and precision/recall need a reference (--ref); for IS alone pass --no-fid")
    if extractor is None:
        device = resolve_device(str(device))
    else:
        device = extractor.device
    # every input is checked before anything slow: specs (cheap), then the weights, then the loading
    load = {"num_samples": num_samples, "data_dir": data_dir, "seed": seed, "ema": ema, "device": device}
    get_samples = as_samples(samples, "samples", **load)
    get_reference = None if reference is None else as_samples(reference, "reference", **load)
    if extractor is None:
        extractor = make_extractor(feature_extractor, weights_path, download=download, device=device)
    reference = None if get_reference is None else get_reference()
    samples = get_samples()
    n = len(samples.images)
    if isc and n < isc_splits:
        raise UsageError(f"{n} samples cannot be split into {isc_splits} IS splits; score more samples")
    if kid and min(n, len(reference.images)) < kid_subset_size:
        raise UsageError(
            f"KID subsets of {kid_subset_size} need at least that many samples and reference images "
            f"(have {n} and {len(reference.images)}); lower --kid-subset-size"
        )
    if prc and "prc" not in extractor.layers:
        raise UsageError(f"feature extractor {extractor.name} names no layer for precision/recall")
    if prc and min(n, len(reference.images)) <= prc_neighborhood:
        raise UsageError(
            f"precision/recall with the {prc_neighborhood}th nearest neighbour need more than {prc_neighborhood} "
            f"samples and reference images (have {n} and {len(reference.images)}); lower --prc-neighborhood"
        )
    cache_path = None if cache is None else (cache_dir() if cache == "default" else Path(cache))

    out: dict = {}
    features = extractor(samples.images, batch_size, "samples")
    if isc:
        out |= isc_features_to_metric(features[extractor.layers["isc"]], splits=isc_splits, shuffle=True)
    ref_stats = None
    if fid or kid or prc:
        ref_stats = reference_statistics(reference, extractor, batch_size=batch_size, cache=cache_path, kid=kid or prc)
    if fid:
        fid_features = features[extractor.layers["fid"]]
        check_fid_size(n, len(reference.images), fid_features.shape[1])
        stats = fid_features_to_statistics(fid_features)
        out |= fid_statistics_to_metric(stats, ref_stats, False)
    if kid:
        out |= kid_features_to_metric(
            features[extractor.layers["kid"]].float(),
            ref_stats["features"],
            kid_subsets=kid_subsets,
            kid_subset_size=kid_subset_size,
            verbose=False,
        )
    if prc:  # the memory-bounded variant: distances in blocks of 10,000 rows, the same result
        out |= prc_features_to_metric(
            features[extractor.layers["prc"]].float(),
            ref_stats["features"],
            prc_neighborhood=prc_neighborhood,
            prc_batch_size=10_000,
            save_cpu_ram=True,
            verbose=False,
        )
    out["protocol"] = protocol(samples, reference, extractor, isc_splits if isc else None, kid, device)
    if ref_stats is not None:
        out["protocol"]["reference"]["statistics"] = "cached" if ref_stats["cached"] else "computed"
    if kid:
        out["protocol"]["kid"] = {"subsets": kid_subsets, "subset_size": kid_subset_size}
    if prc:
        out["protocol"]["prc"] = {"neighborhood": prc_neighborhood}
    return out


def check_fid_size(n: int, n_ref: int, dims: int) -> None:
    """FID needs covariances: fewer than 2 images is a UsageError; fewer images than feature dimensions gives a
    singular covariance and a biased, unreliable FID, said in a warning on stderr (and in no number)."""
    if min(n, n_ref) < 2:
        raise UsageError(f"FID needs at least 2 samples and 2 reference images (have {n} and {n_ref}); score more")
    if min(n, n_ref) < dims:
        print(
            f"warning: FID from {min(n, n_ref)} images (fewer than its {dims} feature dimensions) is unreliable and "
            "not comparable to published numbers (those use 50,000 samples); score more samples",
            file=sys.stderr,
        )


def protocol(
    samples: Samples,
    reference: Samples | None,
    extractor: Extractor,
    isc_splits: int | None,
    kid: bool,
    device: torch.device,
) -> dict:
    """What was compared with what, and how: FID values are only comparable when this matches."""

    def describe(s: Samples) -> dict:
        return {"source": s.source, "count": len(s.images), "shape": list(s.images.shape[1:]), "sha256": s.sha256}

    p = {
        "samples": describe(samples) | samples.info,
        "reference": None if reference is None else describe(reference) | reference.info,
        "feature_extractor": extractor.name,
        "feature_layers": extractor.layers,
        "weights": {"path": str(extractor.weights), "sha256": extractor.sha256, "published": extractor.official},
        "isc_splits": isc_splits,
        "kid": None,
        "prc": None,
        "torch_fidelity": torch_fidelity.__version__,
        "device": device.type,
        "comparable_to_inception_scores": extractor.name == INCEPTION,
    }
    if extractor.name != INCEPTION:
        p["note"] = f"{extractor.name} features: comparable only with other {extractor.name} scores, never Inception"
    return p


def format_table(result: dict) -> str:
    """The metrics as a small text table, each value labelled with its extractor when it is not Inception."""
    p = result["protocol"]
    tag = "" if p["comparable_to_inception_scores"] else f" [{p['feature_extractor']}, NOT Inception]"
    rows = []
    for key, name in ((KEY_METRIC_ISC_MEAN, "IS"), (KEY_METRIC_FID, "FID"), (KEY_METRIC_KID_MEAN, "KID")):
        if key in result:
            std = result.get(key.replace("_mean", "_std")) if key.endswith("_mean") else None
            rows.append(f"{name + tag:<36} {result[key]:.4f}" + (f" ± {std:.4f}" if std is not None else ""))
    if KEY_METRIC_PRECISION in result:
        k = p["prc"]["neighborhood"]
        for key, name in ((KEY_METRIC_PRECISION, "precision"), (KEY_METRIC_RECALL, "recall")):
            rows.append(f"{name + tag:<36} {result[key]:.4f} (k = {k})")
    s, ref = p["samples"], p["reference"]
    splits = f" (IS over {p['isc_splits']} splits)" if p["isc_splits"] else ""
    rows.append(f"samples   {s['count']} from {s['source']}{splits}")
    if ref:
        rows.append(f"reference {ref['count']} from {ref['source']} (statistics {ref.get('statistics', 'unused')})")
    rows.append(f"extractor {p['feature_extractor']}, weights sha256 {p['weights']['sha256'][:16]}…")
    return "\n".join(rows)


# ---------------------------------------------------------------------------------------------
# Command line


def get_args_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="python -m gan.score", description=__doc__.split("\n\n")[0])
    parser.add_argument("samples", help=".npz, image folder, checkpoint .pt, or a dataset split")
    parser.add_argument("--ref", default=None, help=f"reference for FID/KID: {', '.join(DATASET_SPLITS)} or samples")
    parser.add_argument("--data-dir", default=None, help="dataset folder for cifar10-* (default: data/cifar10)")
    parser.add_argument(
        "--num-samples", type=int, default=50_000, help="samples drawn from a checkpoint (default: 50000)"
    )
    parser.add_argument("--seed", type=int, default=0, help="noise seed for checkpoint samples (default: 0)")
    parser.add_argument("--no-ema", action="store_true", help="checkpoints: the raw generator, not its EMA")
    parser.add_argument("--no-isc", action="store_true", help="skip the Inception Score")
    parser.add_argument("--no-fid", action="store_true", help="skip FID")
    parser.add_argument("--kid", action="store_true", help="also compute KID")
    parser.add_argument("--kid-subset-size", type=int, default=1000, help="KID subset size (default: 1000)")
    parser.add_argument("--kid-subsets", type=int, default=100, help="KID subsets (default: 100)")
    parser.add_argument("--prc", action="store_true", help="also compute precision and recall (Kynkäänniemi et al.)")
    parser.add_argument(
        "--prc-neighborhood", type=int, default=3, help="precision/recall: the k of the k-NN balls (default: 3)"
    )
    parser.add_argument(
        "--feature-extractor",
        default=INCEPTION,
        choices=(INCEPTION, DIGITS_EXTRACTOR),
        help=f"{INCEPTION} (default, the standard) or {DIGITS_EXTRACTOR} (8x8 digits, not comparable)",
    )
    parser.add_argument(
        "--inception-weights", default=None, metavar="PATH", help=f"weights file (default: ${WEIGHTS_ENV} or hub cache)"
    )
    parser.add_argument("--no-download", action="store_true", help="never try to download the Inception weights")
    parser.add_argument("--batch-size", type=int, default=100, help="images per forward pass (default: 100)")
    parser.add_argument(
        "--cache-dir", default=None, help="reference statistics cache (default: $MMIX_CACHE or ~/.cache/manifold-mixup)"
    )
    parser.add_argument("--no-cache", action="store_true", help="neither read nor write cached reference statistics")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda[:N] or mps (default: auto)")
    parser.add_argument(
        "--out",
        default=None,
        metavar="FILE",
        help="JSON file for the results (default: beside SAMPLES; for a dataset split, stdout only)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    return parser


def saved_scores(path: Path) -> dict:
    """A result JSON this command wrote (it holds the metrics and their ``protocol``)."""
    try:
        saved = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UsageError(f"{path}: not a readable JSON file ({e})") from None
    if not isinstance(saved, dict) or not isinstance(saved.get("protocol"), dict):
        raise UsageError(f"{path} is not a result file of python -m gan.score; score samples to make one")
    return saved


def main(argv: Sequence[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    if args.samples.endswith(".json") and Path(args.samples).is_file():  # a saved result: its table, nothing run
        print(format_table(saved_scores(Path(args.samples))))
        return 0
    if args.num_samples <= 0:
        raise UsageError(f"--num-samples must be positive, got {args.num_samples}")
    if args.kid and args.ref is None:
        raise UsageError("--kid needs a reference: pass --ref")
    if args.prc and args.ref is None:
        raise UsageError("--prc needs a reference: pass --ref")
    if args.prc_neighborhood <= 0:
        raise UsageError(f"--prc-neighborhood must be positive, got {args.prc_neighborhood}")
    # the output and the cache are checked before any input is read, generated or scored
    out = Path(args.out) if args.out else _default_out(args.samples, args.ref)
    if out is not None:
        inputs = tuple(p for p in (args.samples, args.ref) if p)
        check_output_file(out, overwrite=args.overwrite, inputs=inputs)  # checked again when writing
    cache = None if args.no_cache else Path(args.cache_dir) if args.cache_dir else cache_dir()
    if cache is not None and args.ref:
        check_writable(cache / "reference-stats", "--cache-dir")
    if args.ref is None and not args.no_fid:
        print("no --ref: FID skipped")
    result = score(
        args.samples,
        args.ref,
        isc=not args.no_isc,
        fid=not args.no_fid and args.ref is not None,
        kid=args.kid,
        prc=args.prc,
        feature_extractor=args.feature_extractor,
        weights_path=args.inception_weights if args.feature_extractor == INCEPTION else None,
        download=not args.no_download,
        device=args.device,
        batch_size=args.batch_size,
        kid_subsets=args.kid_subsets,
        kid_subset_size=args.kid_subset_size,
        prc_neighborhood=args.prc_neighborhood,
        num_samples=args.num_samples,
        data_dir=args.data_dir,
        seed=args.seed,
        ema=not args.no_ema,
        cache=cache,
    )
    print(format_table(result))
    text = json.dumps(result, indent=2) + "\n"
    if out is None:  # a dataset split has no folder to write beside: the JSON goes to stdout only
        print(text, end="")
        return 0
    if out.exists() and not args.overwrite:
        raise UsageError(f"{out} appeared while scoring; results not written (pass --overwrite)")
    write_atomic(out, text)
    print(f"wrote {out}")
    return 0


def _default_out(samples: str, ref: str | None) -> Path | None:
    """``<samples>-scores[-vs-<ref>].json`` beside SAMPLES; None for a dataset split (stdout only)."""
    if samples in DATASET_SPLITS:
        return None
    path = Path(samples)
    tag = f"-vs-{Path(ref).stem}" if ref else ""
    return path.parent / f"{path.stem if path.is_file() else path.name}-scores{tag}.json"


if __name__ == "__main__":
    run_main(main, prog="python -m gan.score")
