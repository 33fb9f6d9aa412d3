"""``python -m analyses.interpolation`` from the repository root: runs :mod:`manifold_mixup.analyses.interpolation`."""

import runpy

if __name__ == "__main__":
    runpy.run_module("manifold_mixup.analyses.interpolation", run_name="__main__", alter_sys=True)
