"""Write samples of a trained generator, for scoring or looking at.

    python -m gan.sample runs/gan/checkpoint.pt --num 50000 --out samples.npz    # key "images", uint8 NHWC
    python -m gan.sample runs/gan/checkpoint.pt --num 64 --out samples/          # one PNG per sample

The EMA generator is used when the checkpoint has one (``--no-ema`` for the raw weights).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from common.cli import ArgumentParser, run_main
from common.config import UsageError
from common.run import load_checkpoint, progress, resolve_device


def load_generator(path: str | Path, *, ema: bool = True, device: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """(generator in eval mode, its training config) from a ``gan.train`` checkpoint."""
    from gan.train import build_generator  # the checkpoint's config says which generator to build

    state = load_checkpoint(path, device)
    if "generator" not in state or "config" not in state:
        raise UsageError(f"{path} is not a gan.train checkpoint (no generator in it)")
    G = build_generator(state["config"], state["sample_shape"])
    G.load_state_dict(state["generator_ema"] if ema and state.get("generator_ema") else state["generator"])
    return G.to(device).eval(), state["config"]


@torch.no_grad()
def generate(
    generator: nn.Module, num: int, *, batch_size: int = 500, device: str | torch.device = "cpu", seed: int = 0
) -> np.ndarray:
    """(num, H, W, C) uint8 images from z ~ N(0, I) with G in eval mode, deterministic for the seed."""
    g = torch.Generator(device="cpu").manual_seed(seed)  # its own generator: training's RNG is untouched
    was_training = generator.training
    generator.eval()
    chunks = []
    bar = progress(num, desc="sampling")
    for start in range(0, num, batch_size):
        z = torch.randn(min(batch_size, num - start), generator.z_dim, generator=g).to(device)
        x = generator(z).float()
        if x.dim() != 4:
            raise UsageError("this generator does not make images (the ring demo's makes 2-D points)")
        chunks.append(((x + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy())
        bar.update(len(z))
    bar.close()
    generator.train(was_training)
    return np.concatenate(chunks)


def write_samples(images: np.ndarray, out: str | Path) -> Path:
    """To ``out.npz`` (key ``images``) or, for a path ending in / or without suffix, a folder of PNGs."""
    from PIL import Image

    out = Path(out)
    if out.suffix == ".npz":
        np.savez_compressed(out, images=images)
        return out
    out.mkdir(parents=True)
    for i, img in enumerate(images):
        Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img).save(out / f"{i:06d}.png")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m gan.sample", description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="checkpoint.pt of a gan.train run")
    parser.add_argument("--num", type=int, default=50_000, help="number of samples (default: 50000)")
    parser.add_argument("--out", required=True, help="FILE.npz or a new folder for PNGs")
    parser.add_argument("--seed", type=int, default=0, help="noise seed (default: 0)")
    parser.add_argument("--batch-size", type=int, default=500, help="samples per forward pass (default: 500)")
    parser.add_argument("--no-ema", action="store_true", help="use the raw generator even if an EMA exists")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    args = parser.parse_args(argv)
    if args.num <= 0 or args.batch_size <= 0:
        raise UsageError("--num and --batch-size must be positive")
    out = Path(args.out)
    if out.exists():
        raise UsageError(f"{out} already exists; choose another --out or delete it first")
    device = resolve_device(args.device)
    G, _ = load_generator(args.checkpoint, ema=not args.no_ema, device=device)
    images = generate(G, args.num, batch_size=args.batch_size, device=device, seed=args.seed)
    print(f"wrote {len(images)} samples of shape {images.shape[1:]} to {write_samples(images, out)}")
    return 0


if __name__ == "__main__":
    run_main(main, prog="python -m gan.sample")
