"""``python -m gan.score`` from the repository root: runs :mod:`manifold_mixup.gan.score`."""

import runpy

if __name__ == "__main__":
    runpy.run_module("manifold_mixup.gan.score", run_name="__main__", alter_sys=True)
