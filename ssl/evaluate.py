"""Moved to :mod:`analyses.evaluate` (the paper's analyses live in analyses/).

``python -m ssl.evaluate`` still runs it and ``import ssl.evaluate`` gives that module, so the commands
and imports of earlier releases keep working.
"""

import runpy
import sys

if __name__ == "__main__":
    runpy.run_module("analyses.evaluate", run_name="__main__", alter_sys=True)
else:
    import analyses.evaluate

    sys.modules[__name__] = analyses.evaluate
