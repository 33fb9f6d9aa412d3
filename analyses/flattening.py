"""``python -m analyses.flattening`` from the repository root: runs :mod:`manifold_mixup.analyses.flattening`."""

import runpy

if __name__ == "__main__":
    runpy.run_module("manifold_mixup.analyses.flattening", run_name="__main__", alter_sys=True)
