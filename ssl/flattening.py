"""Moved to :mod:`analyses.flattening` (the paper's analyses live in analyses/).

``python -m ssl.flattening`` still runs it and ``import ssl.flattening`` gives that module, so the commands
and imports of earlier releases keep working.
"""

import runpy
import sys

if __name__ == "__main__":
    runpy.run_module("analyses.flattening", run_name="__main__", alter_sys=True)
else:
    import analyses.flattening

    sys.modules[__name__] = analyses.flattening
