"""Moved to :mod:`analyses.interpolation` (the paper's analyses live in analyses/).

``python -m ssl.interpolation`` still runs it and ``import ssl.interpolation`` gives that module, so the commands
and imports of earlier releases keep working.
"""

import runpy
import sys

if __name__ == "__main__":
    runpy.run_module("analyses.interpolation", run_name="__main__", alter_sys=True)
else:
    import analyses.interpolation

    sys.modules[__name__] = analyses.interpolation
