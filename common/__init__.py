"""``python -m common.COMMAND`` from the repository root: forwards to ``manifold_mixup.common``."""
