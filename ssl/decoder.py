"""Moved to :mod:`analyses.decoder` (the paper's analyses live in analyses/).

``python -m ssl.decoder`` still runs it and ``import ssl.decoder`` gives that module, so the commands
and imports of earlier releases keep working.
"""

import runpy
import sys

if __name__ == "__main__":
    runpy.run_module("analyses.decoder", run_name="__main__", alter_sys=True)
else:
    import analyses.decoder

    sys.modules[__name__] = analyses.decoder
