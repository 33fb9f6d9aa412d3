"""``python -m common.report`` from the repository root: runs :mod:`manifold_mixup.common.report`."""

import runpy

if __name__ == "__main__":
    runpy.run_module("manifold_mixup.common.report", run_name="__main__", alter_sys=True)
