"""``python -m analyses.decoder`` from the repository root: runs :mod:`manifold_mixup.analyses.decoder`."""

import runpy

if __name__ == "__main__":
    runpy.run_module("manifold_mixup.analyses.decoder", run_name="__main__", alter_sys=True)
