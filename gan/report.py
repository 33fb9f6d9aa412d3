"""``python -m gan.report`` from the repository root: runs :mod:`manifold_mixup.gan.report`."""

import runpy

if __name__ == "__main__":
    runpy.run_module("manifold_mixup.gan.report", run_name="__main__", alter_sys=True)
