"""Semi-supervised Manifold Mixup (preprint §4.2): the trainer, its data and its networks."""
