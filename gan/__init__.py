"""``python -m gan.COMMAND`` from the repository root: forwards to ``manifold_mixup.gan``."""
