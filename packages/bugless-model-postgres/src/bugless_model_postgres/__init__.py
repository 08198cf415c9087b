"""The PostgreSQL Model backend of bugless, and the ``database`` blob store.

The names below are imported on first use (PEP 562): every bugless process
loads each installed package's plugin, which imports this package, and only
the Model should pay for importing asyncpg and the backend.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bugless_core.lazy import lazy_attribute
from bugless_model_postgres.__about__ import __version__

if TYPE_CHECKING:
    from bugless_model_postgres.backend import PostgresBackend
    from bugless_model_postgres.blobs import DatabaseBlobSettings, DatabaseBlobStore

#: Public name -> the module defining it.
_LAZY = {
    "DatabaseBlobSettings": "bugless_model_postgres.blobs",
    "DatabaseBlobStore": "bugless_model_postgres.blobs",
    "PostgresBackend": "bugless_model_postgres.backend",
}

__all__ = [
    "DatabaseBlobSettings",
    "DatabaseBlobStore",
    "PostgresBackend",
    "__version__",
]


def __getattr__(name: str) -> Any:
    """Import ``name``'s module on first use (:mod:`bugless_core.lazy`)."""
    return lazy_attribute(__name__, _LAZY, name)
