"""The CockroachDB Model backend of bugless.

The names below are imported on first use (PEP 562): every bugless process
loads each installed package's plugin, which imports this package, and only
the Model should pay for importing asyncpg and the backend.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bugless_core.lazy import lazy_attribute
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
    """Import ``name``'s module on first use (:mod:`bugless_core.lazy`)."""
    return lazy_attribute(__name__, _LAZY, name)
