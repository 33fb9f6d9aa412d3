"""Write samples of a trained generator, for scoring or looking at; read them back.

    python -m gan.sample runs/gan/checkpoint.pt --num 50000 --out samples.npz    # key "images", uint8 NHWC
    python -m gan.sample runs/gan/checkpoint.pt --num 64 --out samples/          # one PNG per sample

The EMA generator is used when the checkpoint has one (``--no-ema`` for the raw weights). Samples
are generated and written one batch at a time, so their number is bounded by the disk, not the
memory; the output appears under its name only once it is complete.
"""

from __future__ import annotations

import os
import shutil
import zipfile
import zlib
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from manifold_mixup.common.checkpoint import load_checkpoint
from manifold_mixup.common.cli import ArgumentParser, progress, run_main
from manifold_mixup.common.config import UsageError
from manifold_mixup.common.data import IMAGE_SUFFIXES, read_images
from manifold_mixup.common.device import resolve_device
from manifold_mixup.common.inputs import regular_file
from manifold_mixup.common.outputs import disk_errors, trainer_file
from manifold_mixup.common.registry import build
from manifold_mixup.common.trust import safe_reason
from manifold_mixup.gan.config import network_args, saved_config

OUTPUT_KINDS = "FILE.npz, or a folder of PNGs (a path ending in / or without a suffix)"


def load_generator(path: str | Path, *, ema: bool = True, device: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """(generator in eval mode, its training config) from a ``gan.train`` checkpoint.

    The generator is rebuilt from the checkpoint's ``model_args`` (common/registry.py); a checkpoint
    written before they were stored is rebuilt from its saved config (a config this version cannot
    read is a one-line UsageError).
    """
    state = load_checkpoint(path, device)
    if "generator" not in state or "config" not in state:
        raise UsageError(f"{path} is not a gan.train checkpoint (no generator in it)")
    if isinstance(state.get("model_args"), dict):
        G = build(state["model_args"]["generator"])
    else:
        cfg = saved_config(state["config"], f"the config saved in {path}")
        G = build(network_args(cfg, state["sample_shape"])["generator"])
    try:
        G.load_state_dict(state["generator_ema"] if ema and state.get("generator_ema") else state["generator"])
    except (RuntimeError, TypeError, AttributeError) as e:  # another shape, a missing or extra tensor
        raise UsageError(f"{path}: the generator's weights do not fit its stored network ({safe_reason(e)})") from None
    return G.to(device).eval(), state["config"]


@torch.no_grad()
def image_shape(generator: nn.Module, device: str | torch.device = "cpu") -> tuple[int, int, int]:
    """(H, W, C) of the generator's images, from one forward pass; a UsageError if it makes no images."""
    was_training = generator.training
    generator.eval()
    x = generator(torch.zeros(1, generator.z_dim, device=device))
    generator.train(was_training)
    if x.dim() != 4:
        raise UsageError("this generator does not make images (the ring demo's makes 2-D points)")
    return x.shape[2], x.shape[3], x.shape[1]


@torch.no_grad()
def generate_batches(
    generator: nn.Module, num: int, *, batch_size: int = 500, device: str | torch.device = "cpu", seed: int = 0
) -> Iterator[np.ndarray]:
    """``generate``'s images as (≤ batch_size, H, W, C) uint8 chunks, one forward pass each."""
    g = torch.Generator(device="cpu").manual_seed(seed)  # its own generator: training's RNG is untouched
    was_training = generator.training
    generator.eval()
    bar = progress(num, desc="sampling")
    try:
        for start in range(0, num, batch_size):
            z = torch.randn(min(batch_size, num - start), generator.z_dim, generator=g).to(device)
            x = generator(z).float()
            if x.dim() != 4:
                raise UsageError("this generator does not make images (the ring demo's makes 2-D points)")
            yield ((x + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
            bar.update(len(z))
    finally:
        bar.close()
        generator.train(was_training)


def generate(
    generator: nn.Module, num: int, *, batch_size: int = 500, device: str | torch.device = "cpu", seed: int = 0
) -> np.ndarray:
    """(num, H, W, C) uint8 images from z ~ N(0, I) with G in eval mode, deterministic for the seed."""
    return np.concatenate(list(generate_batches(generator, num, batch_size=batch_size, device=device, seed=seed)))


# ---------------------------------------------------------------------------------------------
# Sample files: an .npz with key "images" (uint8 NHWC) or a folder of PNGs


def output_kind(out: str | Path) -> str:
    """``"npz"`` or ``"png"`` (a folder) for an output path; anything else is a UsageError."""
    text = str(out)
    if text.endswith(("/", os.sep)) or Path(text).suffix == "":
        return "png"
    if Path(text).suffix.lower() == ".npz":
        return "npz"
    raise UsageError(f"--out {out}: unknown output kind {Path(text).suffix!r}; write {OUTPUT_KINDS}")


def check_writable(path: str | Path, what: str) -> None:
    """``path`` (a file or folder, with any missing parent folders) can be created: a UsageError if not.

    Its nearest existing ancestor must be a folder we may write in; a path under a regular file, a
    read-only folder or a read-only file system is refused before any work.
    """
    path = Path(path)
    for folder in path.parents:
        if folder.exists():
            break
    if not folder.is_dir():
        raise UsageError(f"{what} {path}: {folder} is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError(f"{what} {path}: cannot write in {folder} (read-only or no permission)")


def free_bytes(path: str | Path) -> int:
    """Free disk space where ``path`` would be created."""
    folder = next(p for p in Path(path).absolute().parents if p.is_dir())
    return shutil.disk_usage(folder).free


def available_memory(device: str | torch.device = "cpu") -> int:
    """Bytes that can still be allocated on ``device`` (the GPU's free memory, or MemAvailable)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError):
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")


def write_samples(images: np.ndarray | Iterable[np.ndarray], out: str | Path, num: int | None = None) -> Path:
    """Write uint8 (N, H, W, C) images, whole or as chunks (then ``num`` is their total), to ``out``.

    ``out.npz`` gets the key ``images``; any other path a new folder of PNGs (see ``output_kind``). The
    file or folder is written under a temporary name and renamed when complete, so an interrupted
    write leaves nothing under ``out``.
    """
    if isinstance(images, np.ndarray):
        images, num = [images], len(images)
    if num is None:
        raise ValueError("write_samples: pass num with chunks")
    out = Path(out)
    kind = output_kind(out)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        with disk_errors(out):
            if kind == "npz":
                _write_npz(images, tmp, num)
            else:
                _write_pngs(images, tmp, num)
            os.replace(tmp, out)
    except BaseException:  # an error or Ctrl-C: remove the partial output
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise
    return out


def _write_npz(chunks: Iterable[np.ndarray], path: Path, num: int) -> None:
    """An .npz like ``np.savez_compressed(path, images=...)``, streamed: one chunk in memory at a time."""
    written = 0
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf, zf.open("images.npy", "w", force_zip64=True) as f:
        for chunk in chunks:
            if written == 0:
                header = {"descr": np.lib.format.dtype_to_descr(chunk.dtype), "fortran_order": False}
                np.lib.format.write_array_header_2_0(f, header | {"shape": (num, *chunk.shape[1:])})
            f.write(np.ascontiguousarray(chunk).tobytes())
            written += len(chunk)
    if written != num:
        raise ValueError(f"write_samples: {written} images given, {num} announced")


def _write_pngs(chunks: Iterable[np.ndarray], folder: Path, num: int) -> None:
    from PIL import Image

    folder.mkdir(parents=True)
    i = 0
    for chunk in chunks:
        for img in chunk:
            Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img).save(folder / f"{i:06d}.png")
            i += 1
    if i != num:
        raise ValueError(f"write_samples: {i} images given, {num} announced")


def read_npz(path: str | Path) -> Tensor:
    """uint8 (N, C, H, W) from an .npz's ``images`` (or only) array; a UsageError naming the file if unreadable."""
    regular_file(path)  # a FIFO would block np.load forever
    try:
        with np.load(path) as f:
            if "images" in f.files:
                array = f["images"]
            elif len(f.files) == 1:
                array = f[f.files[0]]
            else:
                raise UsageError(f"{path} holds {f.files}; name the image array 'images'")
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:  # truncated, corrupt, not a zip
        raise UsageError(f"{path} cannot be read as .npz ({type(e).__name__}: {_first_line(e)})") from None
    if array.dtype != np.uint8:
        raise UsageError(f"{path}: images must be uint8 in 0..255, got {array.dtype}")
    if array.ndim != 4 or array.shape[-1] not in (1, 3):
        raise UsageError(f"{path}: images must be (N, H, W, C) with C = 1 or 3, got shape {array.shape}")
    return torch.from_numpy(array).permute(0, 3, 1, 2)


def read_folder(path: str | Path) -> Tensor:
    """uint8 (N, C, H, W) from the PNG/JPEG files under a folder, sorted by path; hidden files and folders
    (names starting with '.', e.g. .ipynb_checkpoints/) are ignored."""
    path = Path(path)
    files = sorted(
        p
        for p in path.rglob("*")
        if p.suffix.lower() in IMAGE_SUFFIXES
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(path).parts)
    )
    if not files:
        raise UsageError(f"{path} holds no PNG or JPEG images")
    try:
        decoded = read_images(files)
    except RuntimeError as e:
        raise UsageError(f"an image in {path} cannot be decoded ({_first_line(e)})") from None
    if len({tuple(im.shape) for im in decoded}) != 1:
        raise UsageError(f"images in {path} differ in size or channels; score images of one shape")
    return torch.stack(decoded)


def _first_line(e: BaseException) -> str:
    return safe_reason(e)


# ---------------------------------------------------------------------------------------------
# Command line


def check_sizes(num: int, batch_size: int, shape: tuple[int, int, int], out: Path, device: torch.device) -> None:
    """Refuse, before generating, a batch that cannot fit in memory or an output that cannot fit on disk."""
    pixels = int(np.prod(shape))
    # a batch holds its z, the float image, its uint8 copy, and the generator's activations: at most
    # a few dozen times the float image for these generators, so 64 floats per pixel is generous
    need = batch_size * pixels * 4 * 64
    if need > available_memory(device):
        raise UsageError(
            f"--batch-size {batch_size} needs about {need / 2**30:.1f} GiB on {device.type}, more than is free; "
            "lower --batch-size"
        )
    size = num * pixels  # uncompressed; GAN samples hardly compress
    if output_kind(out) == "png":
        size += num * 4096  # a file system block per PNG at least
    if size > free_bytes(out):
        raise UsageError(
            f"--num {num} samples of {'x'.join(map(str, shape))} need about {size / 2**30:.1f} GiB, "
            f"more than the {free_bytes(out) / 2**30:.1f} GiB free where {out} goes; lower --num"
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m gan.sample", description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="checkpoint.pt of a gan.train run")
    parser.add_argument("--num", type=int, default=50_000, help="number of samples (default: 50000)")
    parser.add_argument("--out", required=True, help=OUTPUT_KINDS)
    parser.add_argument("--seed", type=int, default=0, help="noise seed (default: 0)")
    parser.add_argument("--batch-size", type=int, default=500, help="samples per forward pass (default: 500)")
    parser.add_argument("--no-ema", action="store_true", help="use the raw generator even if an EMA exists")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda[:N] or mps (default: auto)")
    args = parser.parse_args(argv)
    if args.num <= 0 or args.batch_size <= 0:
        raise UsageError("--num and --batch-size must be positive")
    output_kind(args.out)
    out = Path(args.out)
    if trainer_file(out) or out.resolve() == Path(args.checkpoint).resolve():
        raise UsageError(f"--out {out} is a run directory's own file, which only the trainer writes; choose another")
    if out.exists() or out.is_symlink():
        raise UsageError(f"{out} already exists; choose another --out or delete it first")
    check_writable(out, "--out")
    device = resolve_device(args.device)
    G, _ = load_generator(args.checkpoint, ema=not args.no_ema, device=device)
    shape = image_shape(G, device)
    batch_size = min(args.batch_size, args.num)
    check_sizes(args.num, batch_size, shape, out, device)
    chunks = generate_batches(G, args.num, batch_size=batch_size, device=device, seed=args.seed)
    print(f"wrote {args.num} samples of shape {shape} to {write_samples(chunks, out, args.num)}")
    return 0


if __name__ == "__main__":
    run_main(main, prog="python -m gan.sample")
