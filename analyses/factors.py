"""``python -m analyses.factors`` from the repository root: runs :mod:`manifold_mixup.analyses.factors`."""

import runpy

if __name__ == "__main__":
    runpy.run_module("manifold_mixup.analyses.factors", run_name="__main__", alter_sys=True)
