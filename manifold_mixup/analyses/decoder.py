"""What a hidden-state mix looks like (preprint Figures 3-4): decode mixes of two images' hidden states.

    python -m analyses.decoder --train runs/interp --out docs/decoder.png   # the digits manifold model of
                                                                        # analyses.interpolation (trained if missing)
    python -m analyses.decoder RUN --point h2 --out decoder.png             # any classifier run of ssl.train

A small convolutional decoder (3×3 convolutions and ×2 nearest upsampling, sigmoid output) learns to predict the
image in [0, 1] pixel space from the classifier's hidden state at mixing point ``--point`` (squared error; the
classifier is frozen, in eval mode), on the run's non-validation training images. Then, for pairs of test images of
different classes and λ = 1, ..., 0, the figure shows per pair two rows: the pixel blend λ·x_a + (1−λ)·x_b (Input
Mixup, Figure 3) and the decoded hidden mix decoder(λ·h(a) + (1−λ)·h(b)) (Figure 4; the paper decodes "the output of
the second resblock", h2 here). The JSON beside the figure records the decoder's test reconstruction error and, per
λ, the mean distance from the pixel blends and from the decoded mixes to their nearest training image (how far each
kind of mix lies from real images; the decoded endpoints show how far the decoder itself is).
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

from manifold_mixup.analyses.evaluate import LoadedRun, load_classifier, network_input
from manifold_mixup.analyses.interpolation import train_digits_runs
from manifold_mixup.common.cli import (
    ArgumentParser,
    command_line,
    integer,
    output_path,
    positive_int,
    run_main,
    write_json_beside,
)
from manifold_mixup.common.config import UsageError
from manifold_mixup.common.device import resolve_device
from manifold_mixup.common.staged import StagedNet


def decoder_for(feature_shape: Sequence[int], image_shape: Sequence[int], width: int = 64) -> nn.Sequential:
    """(C, h, w) hidden states -> (c, H, W) images in [0, 1]: conv, (×2 upsample, conv) while smaller, conv, sigmoid."""
    c_in, h, _ = feature_shape
    c_out, size, _ = image_shape
    layers: list[nn.Module] = [nn.Conv2d(c_in, width, 3, padding=1), nn.ReLU()]
    while h < size:
        layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(width, width, 3, padding=1), nn.ReLU()]
        h *= 2
    if h != size:
        layers.append(nn.Upsample(size=tuple(image_shape[1:]), mode="nearest"))
    layers += [nn.Conv2d(width, c_out, 3, padding=1), nn.Sigmoid()]
    return nn.Sequential(*layers)


def point_index(run: LoadedRun, point: str) -> int:
    """The stage index k of a hidden mixing point name ``hk`` of a StagedNet; anything else is a UsageError."""
    if not isinstance(run.model, StagedNet):
        raise UsageError(
            f"{run.run_dir}: the decoder needs a network of stages (WRN, PreActResNet), not a torchvision one"
        )
    points = run.model.mix_points[1:]
    if point not in points:
        raise UsageError(f"--point {point!r}: not a hidden mixing point of this network (valid: {', '.join(points)})")
    return run.model.mix_points.index(point)


@torch.no_grad()
def hidden(run: LoadedRun, k: int, images: Tensor, batch_size: int = 500) -> Tensor:
    """uint8 images (N, C, H, W) -> hidden states at point k (N, ...), eval mode."""
    return torch.cat(
        [run.model(network_input(run.data.preprocess, x.float() / 255), 0, k) for x in images.split(batch_size)]
    )


def fit_decoder(h: Tensor, x: Tensor, *, steps: int, batch_size: int = 64, lr: float = 1e-3, seed: int = 0):
    """Train a :func:`decoder_for` with Adam on MSE(decoder(h), x), x in [0, 1]; returns it (eval) and its losses."""
    torch.manual_seed(seed)
    dec = decoder_for(h.shape[1:], x.shape[1:]).to(h.device)
    opt = torch.optim.Adam(dec.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        idx = torch.randint(0, len(h), (batch_size,), device=h.device)
        loss = F.mse_loss(dec(h[idx]), x[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return dec.eval(), losses


def pick_pairs(labels: Tensor, count: int, seed: int) -> tuple[Tensor, Tensor]:
    """``count`` pairs of test indices of different classes, from a generator seeded with ``seed``."""
    g = torch.Generator().manual_seed(seed)
    a, b = [], []
    while len(a) < count:
        i, j = torch.randint(0, len(labels), (2,), generator=g).tolist()
        if labels[i] != labels[j]:
            a.append(i)
            b.append(j)
    return torch.tensor(a), torch.tensor(b)


@torch.no_grad()
def mixes(dec: nn.Module, ha: Tensor, hb: Tensor, xa: Tensor, xb: Tensor, lams: Tensor) -> tuple[Tensor, Tensor]:
    """(pixel blends, decoded hidden mixes), each (pairs, len(lams), C, H, W), x in [0, 1]."""
    pixel, decoded = [], []
    for lam in lams.tolist():
        pixel.append(lam * xa + (1 - lam) * xb)
        decoded.append(dec(lam * ha + (1 - lam) * hb))
    return torch.stack(pixel, 1), torch.stack(decoded, 1)


def nearest_distance(images: Tensor, reference: Tensor) -> Tensor:
    """Per image (N, ...) the L2 distance (per pixel, RMS) to its nearest reference image (M, ...)."""
    a, r = images.flatten(1), reference.flatten(1)
    return (torch.cdist(a, r).min(1).values / math.sqrt(a.shape[1])).cpu()


def plot(pixel: Tensor, decoded: Tensor, lams: Tensor, out: Path, cell: int = 48) -> None:
    """Per pair a row of pixel blends above a row of decoded hidden mixes; λ of the first image over the columns."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pairs, cols = pixel.shape[:2]
    rows = torch.stack([pixel, decoded], 1).flatten(0, 1)  # (2·pairs, cols, C, H, W)
    c, h, w = rows.shape[2:]
    pad = torch.ones(2 * pairs, cols, c, h + 2, w + 2)
    pad[:, :, :, 1:-1, 1:-1] = rows.cpu()
    grid = pad.permute(0, 3, 1, 4, 2).reshape(2 * pairs * (h + 2), cols * (w + 2), c)
    fig, ax = plt.subplots(figsize=(cols * cell / 60 + 1.3, 2 * pairs * cell / 60 + 0.6))
    ax.imshow(
        grid.squeeze(-1).numpy() if c == 1 else grid.numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest"
    )
    ax.set_xticks([(i + 0.5) * (w + 2) for i in range(cols)], [f"{v:.2g}" for v in lams.tolist()], fontsize=8)
    ax.set_yticks([(i + 0.5) * (h + 2) for i in range(2 * pairs)], ["pixels", "decoded h"] * pairs, fontsize=8)
    ax.set_xlabel("λ (weight of the left image)", fontsize=9)
    ax.tick_params(length=0)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=60)
    plt.close(fig)
    Image.open(buffer).convert("L" if c == 1 else "RGB").save(out, optimize=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m analyses.decoder", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "run", nargs="?", default=None, metavar="RUN", help="run directory (or checkpoint) of ssl.train"
    )
    parser.add_argument(
        "--train", default=None, metavar="DIR", help="use DIR/manifold of analyses.interpolation --train"
    )
    parser.add_argument("--point", default="h2", help="hidden mixing point to decode from (default: h2)")
    parser.add_argument("--steps", default="3000", help="decoder Adam updates of batch 64 (default: 3000)")
    parser.add_argument("--pairs", default="6", help="test pairs shown (default: 6)")
    parser.add_argument("--columns", default="9", help="λ values from 1 to 0 (default: 9)")
    parser.add_argument("--seed", default="0", help="seed of the decoder and the pairs (default: 0)")
    parser.add_argument("--out", default="docs/decoder.png", help="PNG to write; the JSON goes beside it")
    parser.add_argument("--device", default="auto", help="auto (cuda when present), cpu or cuda[:N] (default: auto)")
    args = parser.parse_args(argv)
    steps = positive_int(args.steps, "--steps", 3000)
    count = positive_int(args.pairs, "--pairs", 6)
    cols = positive_int(args.columns, "--columns", 9)
    if cols < 2:
        raise UsageError(f"--columns must be >= 2 (λ = 1 and 0 at least), got {cols}")
    seed = integer(args.seed, "--seed")
    out = output_path(args.out, ".png")
    if (args.run is None) == (args.train is None):
        raise UsageError("give either a run directory of python -m ssl.train or --train DIR (not both, not neither)")
    path = str(train_digits_runs(Path(args.train), methods=["manifold"])[0]) if args.train else args.run
    run = load_classifier(path, resolve_device(args.device))
    k = point_index(run, args.point)
    data = run.data
    train_idx = torch.as_tensor(data.split.unlabelled, device=data.train.device)  # every non-validation image
    x_train = data.train[train_idx]
    h_train = hidden(run, k, x_train)
    if h_train.dim() != 4:
        raise UsageError(f"--point {args.point}: hidden states of shape {tuple(h_train.shape[1:])}, need (C, h, w)")
    pixels_train = x_train.float() / 255
    dec, losses = fit_decoder(h_train, pixels_train, steps=steps, seed=seed)

    x_test = data.test.float() / 255
    with torch.no_grad():
        h_test = hidden(run, k, data.test)
        test_mse = F.mse_loss(dec(h_test), x_test).item()
    a, b = pick_pairs(data.test_labels.cpu(), count, seed)
    lams = torch.linspace(1, 0, cols)
    dev = x_test.device
    pixel, decoded = mixes(dec, h_test[a.to(dev)], h_test[b.to(dev)], x_test[a.to(dev)], x_test[b.to(dev)], lams)
    dist_pixel = nearest_distance(pixel.flatten(0, 1), pixels_train).view(count, cols).mean(0)
    dist_decoded = nearest_distance(decoded.flatten(0, 1), pixels_train).view(count, cols).mean(0)
    out.parent.mkdir(parents=True, exist_ok=True)
    plot(pixel, decoded, lams, out)
    print(f"decoder from {args.point} {tuple(h_train.shape[1:])}: test reconstruction MSE {test_mse:.4f}")
    print("| λ | " + " | ".join(f"{v:.2g}" for v in lams.tolist()) + " |")
    print("|---|" + "---:|" * cols)
    print(
        "| pixel blend: RMS distance to nearest training image | " + " | ".join(f"{v:.3f}" for v in dist_pixel) + " |"
    )
    print("| decoded hidden mix: same | " + " | ".join(f"{v:.3f}" for v in dist_decoded) + " |")
    result = {
        "protocol": {
            "command": command_line("python -m analyses.decoder", argv),
            "run": str(run.run_dir),
            "point": args.point,
            "feature_shape": list(h_train.shape[1:]),
            "decoder": "conv3x3-ReLU, (x2 upsample, conv3x3-ReLU) up to the image size, conv3x3, sigmoid; 64 ch",
            "training": f"Adam lr 1e-3, batch 64, {steps} updates, MSE to pixels in [0, 1], classifier frozen",
            "training_images": len(x_train),
            "pairs": f"{count} pairs of test images of different classes (seed {seed})",
            "distance": "RMS per pixel of the L2 distance to the nearest non-validation training image",
        },
        "lams": lams.tolist(),
        "test_reconstruction_mse": test_mse,
        "final_train_mse": sum(losses[-50:]) / len(losses[-50:]),
        "nearest_distance_pixel_blend": dist_pixel.tolist(),
        "nearest_distance_decoded_mix": dist_decoded.tolist(),
        "pairs": {"a": a.tolist(), "b": b.tolist()},
    }
    print(f"wrote {out} and {write_json_beside(out, result)}")
    return 0


if __name__ == "__main__":
    run_main(main, prog="python -m analyses.decoder")
