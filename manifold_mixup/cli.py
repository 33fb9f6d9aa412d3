"""``manifold-mixup COMMAND [ARGS]``: every tool of the package as one console command, from any directory.

    manifold-mixup ssl-train --config configs/ssl/digits.yaml    # = python -m ssl.train ... from the repo root
    manifold-mixup gan-train --mix h1,pixel                      # = python -m gan.train ...
    manifold-mixup --help                                        # the commands

Each command runs its module (:data:`COMMANDS`) exactly as ``python -m`` does, with ``ARGS`` as its argv; its
usage line and errors name the console command.
"""

from __future__ import annotations

import runpy
import sys
from collections.abc import Sequence

import manifold_mixup.common.cli as common_cli

# command -> (module, what it does)
COMMANDS: dict[str, tuple[str, str]] = {
    "ssl-train": (
        "manifold_mixup.ssl.train",
        "train a classifier: SSL (Algorithm 1) or supervised, with mixup",
    ),
    "gan-train": ("manifold_mixup.gan.train", "train a GAN whose discriminator learns on mixes"),
    "gan-sample": ("manifold_mixup.gan.sample", "draw samples from a trained generator"),
    "score": ("manifold_mixup.gan.score", "Inception Score, FID, KID, precision/recall of saved samples"),
    "gan-table6": ("manifold_mixup.gan.table6", "preprint Table 6 on the digits from run directories"),
    "gan-report": ("manifold_mixup.gan.report", "a GAN grid's final scores per seed and mean ± std"),
    "evaluate": ("manifold_mixup.analyses.evaluate", "NLL, calibration, FGSM/PGD, deformations of a classifier"),
    "spiral": ("manifold_mixup.analyses.spiral", "the 2-D spiral figure (ICML Figure 1)"),
    "flattening": ("manifold_mixup.analyses.flattening", "singular values of hidden states (ICML Figure 3)"),
    "factors": ("manifold_mixup.analyses.factors", "the synthetic factors-of-variation task"),
    "interpolation": ("manifold_mixup.analyses.interpolation", "hidden-state interpolations (ICML Figure 1)"),
    "decoder": ("manifold_mixup.analyses.decoder", "decode mixed hidden states to images"),
    "report": ("manifold_mixup.common.report", "tables (mean ± std over seeds) from run directories or records"),
    "plot": ("manifold_mixup.common.plot", "training curves of run directories"),
    "ssl-bench": ("manifold_mixup.ssl.bench", "time the SSL training step"),
    "gan-bench": ("manifold_mixup.gan.bench", "time the GAN iteration"),
    "features": ("manifold_mixup.common.features", "train and cache the digits feature extractor"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {what}" for name, (_, what) in COMMANDS.items()]
    return "usage: manifold-mixup COMMAND [ARGS]   (manifold-mixup COMMAND --help: its options)\n\n" + "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    """Run ``COMMAND`` with the rest of ``argv`` (default: ``sys.argv[1:]``) as its arguments."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(usage())
        sys.exit(0 if args else 2)
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        print(f"manifold-mixup: error: unknown command {name!r} (commands: {', '.join(COMMANDS)})", file=sys.stderr)
        sys.exit(2)
    common_cli.COMMAND = f"manifold-mixup {name}"
    sys.argv = [common_cli.COMMAND, *rest]
    runpy.run_module(COMMANDS[name][0], run_name="__main__", alter_sys=False)


if __name__ == "__main__":
    main()
