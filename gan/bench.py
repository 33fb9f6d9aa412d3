"""``python -m gan.bench`` from the repository root: runs :mod:`manifold_mixup.gan.bench`."""

import runpy

if __name__ == "__main__":
    runpy.run_module("manifold_mixup.gan.bench", run_name="__main__", alter_sys=True)
