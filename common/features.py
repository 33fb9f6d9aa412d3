"""``python -m common.features`` from the repository root: runs :mod:`manifold_mixup.common.features`."""

import runpy

if __name__ == "__main__":
    runpy.run_module("manifold_mixup.common.features", run_name="__main__", alter_sys=True)
