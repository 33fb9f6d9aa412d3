"""Manifold Mixup (Verma et al., ICML 2019) for any PyTorch network, semi-supervised learning and GANs.

The any-model API (README, "Any model, in ten lines")::

    from manifold_mixup import LayerMixup, sample_mix, soft_cross_entropy
    mixer = LayerMixup(model, ["input", "layer1", "layer2"])       # the eligible set S, checked here
    logits, y_mixed = mixer(x, y_onehot, sample_mix(len(x), mixer.points, alpha=2.0))
    loss = soft_cross_entropy(logits, y_mixed)                     # eq. 1

The trainers' configs are :class:`SSLConfig` and :class:`GANConfig`; the trainers themselves are the console
command ``manifold-mixup`` (``manifold-mixup --help``) or, from the repository root, ``python -m ssl.train``
and ``python -m gan.train``. Subpackages: ``manifold_mixup.common`` (the mixing core and run bookkeeping),
``.ssl``, ``.gan``, ``.classifiers``, ``.analyses``.
"""

from importlib.metadata import PackageNotFoundError, version

from manifold_mixup.common.layers import LayerMixup, layer_names, replace_output
from manifold_mixup.common.mixup import Mix, mix, sample_lam, sample_mix, soft_cross_entropy
from manifold_mixup.gan.config import GANConfig
from manifold_mixup.ssl.config import SSLConfig

try:
    __version__ = version("manifold-mixup")
except PackageNotFoundError:  # run from a checkout that was never installed
    __version__ = "0+unknown"

__all__ = [
    "GANConfig",
    "LayerMixup",
    "Mix",
    "SSLConfig",
    "layer_names",
    "mix",
    "replace_output",
    "sample_lam",
    "sample_mix",
    "soft_cross_entropy",
]
