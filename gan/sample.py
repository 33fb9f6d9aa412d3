"""``python -m gan.sample`` from the repository root: runs :mod:`manifold_mixup.gan.sample`."""

import runpy

if __name__ == "__main__":
    runpy.run_module("manifold_mixup.gan.sample", run_name="__main__", alter_sys=True)
