"""Names a package exports but imports on first use (PEP 562), written once.

Every bugless process loads every installed plugin, and a package ``__init__``
that imported its whole public surface made each process pay for all of them
(a web tier importing asyncpg, a client importing the gRPC server). Each
package keeps a ``{name: module}`` table and a two-line ``__getattr__`` that
calls :func:`lazy_attribute`, so the names are imported only when used.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Mapping
from typing import Any


def lazy_attribute(package: str, lazy: Mapping[str, str], name: str) -> Any:
    """``name`` from the module ``lazy`` maps it to, kept in ``package`` for the next use.

    Raises:
        AttributeError: ``package`` exports no ``name`` (as a module would say).
    """
    module = lazy.get(name)
    if module is None:
        raise AttributeError(f"module {package!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    setattr(sys.modules[package], name, value)
    return value


__all__ = ["lazy_attribute"]
