"""``python -m ssl.bench`` from the repository root: runs :mod:`manifold_mixup.ssl.bench`."""

import runpy

if __name__ == "__main__":
    runpy.run_module("manifold_mixup.ssl.bench", run_name="__main__", alter_sys=True)
