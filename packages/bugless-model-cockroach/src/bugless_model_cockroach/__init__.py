"""The CockroachDB Model backend of bugless.

The names below are imported on first use (PEP 562): every bugless process
loads each installed package's plugin, which imports this package, and only
the Model should pay for importing asyncpg and the backend.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from bugless_model_cockroach.__about__ import __version__

if TYPE_CHECKING:
    from bugless_model_cockroach.backend import CockroachBackend

#: Public name -> the module defining it.
_LAZY = {
    "CockroachBackend": "bugless_model_cockroach.backend",
}

__all__ = [
    "CockroachBackend",
    "__version__",
]


def __getattr__(name: str) -> Any:
    """Import ``name``'s module on first use, then keep the name here."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
