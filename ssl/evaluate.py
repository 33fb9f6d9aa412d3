"""``python -m ssl.evaluate`` (earlier releases' name), from the repository root: runs
:mod:`manifold_mixup.analyses.evaluate`."""

import runpy

if __name__ == "__main__":
    runpy.run_module("manifold_mixup.analyses.evaluate", run_name="__main__", alter_sys=True)
