"""``python -m ssl.train`` from the repository root, and a stand-in for Python's standard ``ssl`` module.

The trainer lives in :mod:`manifold_mixup.ssl`; this folder keeps the commands of earlier releases
(``python -m ssl.train``, ``ssl.bench`` and the ``ssl.*`` analyses) working from the repository root. It is
named ``ssl``, which is also the name of the standard library's TLS module. When the repository root is on
``sys.path`` (it is, for ``python -m ...`` run from there) this package shadows the standard module, and
everything that does ``import ssl`` (asyncio, urllib, http.client, pip, torch) would break. So this file
first executes the standard library's ``ssl.py`` in its own namespace: ``import ssl`` keeps giving a
working TLS module, and ``ssl.train`` / ``ssl.bench`` are still the commands.
"""

import os as _os
import sysconfig as _sysconfig


def _load_stdlib_ssl() -> None:
    path = _os.path.join(_sysconfig.get_path("stdlib"), "ssl.py")
    with open(path, encoding="utf-8") as f:
        code = compile(f.read(), path, "exec")
    namespace = globals()
    keep = {k: namespace[k] for k in ("__name__", "__file__", "__path__", "__package__", "__spec__")}
    exec(code, namespace)  # defines SSLContext, create_default_context, ... as this module's names
    namespace.update(keep)


_load_stdlib_ssl()
