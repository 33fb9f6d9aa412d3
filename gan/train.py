"""``python -m gan.train`` from the repository root: runs :mod:`manifold_mixup.gan.train`."""

import runpy

if __name__ == "__main__":
    runpy.run_module("manifold_mixup.gan.train", run_name="__main__", alter_sys=True)
