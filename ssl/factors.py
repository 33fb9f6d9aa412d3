"""Moved to :mod:`analyses.factors` (the paper's analyses live in analyses/).

``python -m ssl.factors`` still runs it and ``import ssl.factors`` gives that module, so the commands
and imports of earlier releases keep working.
"""

import runpy
import sys

if __name__ == "__main__":
    runpy.run_module("analyses.factors", run_name="__main__", alter_sys=True)
else:
    import analyses.factors

    sys.modules[__name__] = analyses.factors
