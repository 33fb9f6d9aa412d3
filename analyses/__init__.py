"""``python -m analyses.COMMAND`` from the repository root: forwards to ``manifold_mixup.analyses``."""
