"""``python -m analyses.spiral`` from the repository root: runs :mod:`manifold_mixup.analyses.spiral`."""

import runpy

if __name__ == "__main__":
    runpy.run_module("manifold_mixup.analyses.spiral", run_name="__main__", alter_sys=True)
