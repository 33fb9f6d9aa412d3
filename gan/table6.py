"""``python -m gan.table6`` from the repository root: runs :mod:`manifold_mixup.gan.table6`."""

import runpy

if __name__ == "__main__":
    runpy.run_module("manifold_mixup.gan.table6", run_name="__main__", alter_sys=True)
