"""Moved to :mod:`analyses.spiral` (the paper's analyses live in analyses/).

``python -m ssl.spiral`` still runs it and ``import ssl.spiral`` gives that module, so the commands
and imports of earlier releases keep working.
"""

import runpy
import sys

if __name__ == "__main__":
    runpy.run_module("analyses.spiral", run_name="__main__", alter_sys=True)
else:
    import analyses.spiral

    sys.modules[__name__] = analyses.spiral
