"""Issue #12's anchor: the original code's semi-supervised iteration and ours, timed in turns on the CPU.

    OMP_NUM_THREADS=1 python experiments/anchor_original_ssl.py --original DIR [--threads 1] [--repeat 5] [--warmup 2]

``DIR`` is the original repository's ``semi-supervised/`` folder (github.com/vikasverma1077/manifold_mixup,
last present at commit 46c903e, deleted in March 2019), patched only for Python 3, today's PyTorch and the
CPU: ``utils.py``'s Python-2 ``print input``, ``(depth-4)/6`` -> ``//`` and mixup's ``lam.cuda()`` ->
``.to(input.device)`` in ``networks/wide_resnet_manifold_mixup.py``. Nothing of it lives in this
repository: its ``WRN28_2`` and ``apply_zca`` are imported from ``DIR``.

One original iteration follows its training loop (``main_mixup_hidden_ssl.py``, ``train()``) with the
README's CIFAR-10 flags: a labelled and an unlabelled batch through its input pipeline (flip, 2-pixel
random crop, ToTensor, Normalize on PIL images, then its numpy ZCA with a float64 identity matrix, the
shape and dtype of its saved ZCA; in this process, where the original used 2 loader workers); the
labelled mixup loss with manifold mixup at a random one of its layers 0-2 (α = 0.1); the unlabelled
logits (autograd on, as there); the MSE between the logits of the mixed unlabelled batch (α = 2.0) and
the equally mixed detached logits; its L1 term (first parameter tensor); one Nesterov SGD update. The
"loop iteration" row adds what the loop does after the update: the loss bookkeeping and its two
monitoring forwards (labelled accuracy and the unlabelled batch). Ours: ``ssl.bench``'s "SSL step,
Algorithm 1" on the ``plain`` (fp32) and ``amp`` (bf16 + channels-last, the CPU default) paths.
Every case is timed in turns (``common.benchmark.time_steps``), so the ratios hold on a loaded machine.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # before anything imports the stdlib's ssl

import contextlib
import importlib
import io
from collections.abc import Callable, Sequence
from types import ModuleType

import numpy as np
import torch
import torch.nn.functional as F

from manifold_mixup.common.benchmark import machine, markdown_table, time_steps
from manifold_mixup.common.cli import ArgumentParser, run_main
from manifold_mixup.common.config import UsageError, resolve_config
from manifold_mixup.ssl.bench import make_steps
from manifold_mixup.ssl.config import SSLConfig

OURS = "SSL step, Algorithm 1"
NEEDED = ("utils.py", "networks/__init__.py", "networks/wide_resnet_manifold_mixup.py")
# the README's CIFAR-10 command: --lr 0.1 --l2 0.0005 --nesterov --mixup_alpha_sup 0.1 --mixup_alpha_usup 2.0
LR, L2, ALPHA_SUP, ALPHA_UNSUP, L1 = 0.1, 5e-4, 0.1, 2.0, 1e-3
MEAN = [x / 255 for x in (125.3, 123.0, 113.9)]  # its load_data_subset's CIFAR-10 statistics
STD = [x / 255 for x in (63.0, 62.1, 66.7)]


def import_original(root: Path) -> tuple[ModuleType, ModuleType]:
    """The original's network module and its ``utils``, imported from ``root`` (their own import names)."""
    if not root.is_dir():
        raise UsageError(f"--original {root}: no such folder; give the original's semi-supervised/ folder")
    if missing := [name for name in NEEDED if not (root / name).is_file()]:
        raise UsageError(f"--original {root}: no {missing[0]} there; give the original's semi-supervised/ folder")
    sys.path.insert(0, str(root))
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            network = importlib.import_module("networks.wide_resnet_manifold_mixup")
            utils = importlib.import_module("utils")
    except (SyntaxError, ImportError, AttributeError) as e:
        msg = f"{type(e).__name__}: {e}".splitlines()[0]
        raise UsageError(
            f"--original {root}: cannot import it ({msg}); patch it for Python 3 as the docstring says"
        ) from None
    finally:
        sys.path.remove(str(root))
    if not Path(getattr(network, "__file__", "")).resolve().is_relative_to(root.resolve()):
        raise UsageError(f"--original {root}: 'networks' was imported from elsewhere; run from a clean environment")
    return network, utils


def original_steps(network: ModuleType, utils: ModuleType, batch: int, n_images: int = 5000) -> dict[str, Callable]:
    """The original's iteration without and with the work its loop does after the update, and its input
    pipeline alone (two batches), on random uint8 images."""
    import torchvision.transforms as T
    from PIL import Image

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n_images, 32, 32, 3), dtype=np.uint8)  # HWC, as CIFAR10.data
    labels = torch.from_numpy(rng.integers(0, 10, n_images))
    transform = T.Compose([T.RandomHorizontalFlip(), T.RandomCrop(32, padding=2), T.ToTensor(), T.Normalize(MEAN, STD)])
    zca_mean, zca_components = np.zeros(3 * 32 * 32), np.eye(3 * 32 * 32)  # float64, like its saved .npy files

    def loader_batch() -> tuple[torch.Tensor, torch.Tensor]:  # what one DataLoader worker hands over
        idx = rng.integers(0, n_images, batch)
        return torch.stack([transform(Image.fromarray(images[i])) for i in idx]), labels[idx]

    def pipeline() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        (x, y), (u, _) = loader_batch(), loader_batch()
        return utils.apply_zca(x, zca_mean, zca_components), y, utils.apply_zca(u, zca_mean, zca_components)

    def iteration(monitoring: bool) -> Callable[[], None]:
        np.random.seed(0)  # its mixup draws λ, the layer and the permutation from numpy
        torch.manual_seed(0)
        with contextlib.redirect_stdout(io.StringIO()):
            net = network.WRN28_2(10)
        net.train()
        opt = torch.optim.SGD(net.parameters(), lr=LR, momentum=0.9, weight_decay=L2, nesterov=True)
        first = next(net.parameters())  # its l1_loss keeps only the first tensor's sum

        def step() -> None:
            x, y, u = pipeline()
            out, y_a, y_b, lam = net(x=x, y=y, mixup_hidden=True, mixup_alpha=ALPHA_SUP)
            lam = lam.item()
            loss_sup = lam * F.cross_entropy(out, y_a) + (1 - lam) * F.cross_entropy(out, y_b)
            logits_u = net(u, mixup=False)  # no torch.no_grad() there: the graph is built, then dropped
            out_u, t_a, t_b, lam_u = net(x=u, y=logits_u, mixup_hidden=True, mixup_alpha=ALPHA_UNSUP)
            target = (t_a * lam_u + t_b * (1 - lam_u)).detach()
            loss_unsup = F.mse_loss(out_u, target)
            loss = loss_sup + 1.0 * loss_unsup + L1 * first.abs().sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
            if monitoring:  # the rest of its loop body: running sums, accuracy and NLL, the unlabelled forward
                _ = loss.item(), loss_sup.item(), loss_unsup.item()
                logits = net(x, mixup=False)
                _ = logits.argmax(1).eq(y).sum().item(), F.nll_loss(F.log_softmax(logits, 1), y).item()
                net(u, mixup=False)

        return step

    return {
        "original: SSL iteration (loss + update)": iteration(False),
        "original: loop iteration (+ bookkeeping, 2 monitoring forwards)": iteration(True),
        "original: its input pipeline alone (2 batches, PIL + numpy ZCA)": pipeline,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog="experiments/anchor_original_ssl.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--original", required=True, metavar="DIR", help="the original's semi-supervised/ folder")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads, numpy's BLAS too (default: torch's)")
    parser.add_argument("--repeat", type=int, default=5, help="timed rounds (default: 5)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls of each case first (default: 2)")
    parser.add_argument("--batch-size", type=int, default=100, help="labelled (and unlabelled) batch (default: 100)")
    args = parser.parse_args(argv)
    if args.warmup < 0 or args.repeat < 1 or args.batch_size < 2:
        raise UsageError("--warmup must be >= 0, --repeat >= 1 and --batch-size >= 2")
    if args.threads is not None and args.threads < 1:
        raise UsageError("--threads must be >= 1")
    network, utils = import_original(Path(args.original))
    limits = contextlib.nullcontext()
    if args.threads:
        torch.set_num_threads(args.threads)
        with contextlib.suppress(ImportError):
            from threadpoolctl import threadpool_limits

            limits = threadpool_limits(args.threads)  # its ZCA is a numpy matmul
    device = torch.device("cpu")
    cfg = resolve_config(SSLConfig, None, {"depth": "28", "width": "2", "batch_size": str(args.batch_size)})

    with limits:
        cases = [
            (name, step, 2 * args.batch_size) for name, step in original_steps(network, utils, args.batch_size).items()
        ]
        for path, label in (("plain", "ours plain (fp32)"), ("amp", "ours CPU default (bf16 + channels-last)")):
            step, images = make_steps(path, device, cfg, args.batch_size)[OURS]
            cases.append((f"{label}: {OURS}", step, images))
        print(
            f"# anchor: WRN-28-2, batch {args.batch_size} (+{args.batch_size} unlabelled), {machine(device)}, "
            f"median of {args.repeat} after {args.warmup} warm-up calls, all cases in turns\n"
        )
        rows = time_steps(cases, device, args.warmup, args.repeat)
    print(markdown_table(rows))
    print()
    anchor, loop, pipeline = rows[0], rows[1], rows[2]
    print(
        f"- the original's input pipeline is {pipeline.ms / anchor.ms:.2f} of its SSL iteration "
        "(its loader ran it in 2 worker processes)"
    )
    for ours in rows[3:]:
        print(
            f"- {ours.name.split(':')[0]} / original: {ours.ms / anchor.ms:.3f}× (SSL iteration), "
            f"{ours.ms / loop.ms:.3f}× (loop iteration), {ours.ms / (anchor.ms - pipeline.ms):.3f}× (SSL iteration "
            "without its input pipeline)"
        )
    return 0


if __name__ == "__main__":
    run_main(main, prog="experiments/anchor_original_ssl.py")
