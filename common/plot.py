"""``python -m common.plot`` from the repository root: runs :mod:`manifold_mixup.common.plot`."""

import runpy

if __name__ == "__main__":
    runpy.run_module("manifold_mixup.common.plot", run_name="__main__", alter_sys=True)
