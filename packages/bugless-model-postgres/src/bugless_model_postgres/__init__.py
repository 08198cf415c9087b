"""The PostgreSQL Model backend of bugless, and the ``database`` blob store."""

from __future__ import annotations

from bugless_model_postgres.__about__ import __version__
from bugless_model_postgres.backend import PostgresBackend
from bugless_model_postgres.blobs import DatabaseBlobSettings, DatabaseBlobStore

__all__ = ["DatabaseBlobSettings", "DatabaseBlobStore", "PostgresBackend", "__version__"]
