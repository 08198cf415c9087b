"""The PostgreSQL Model backend of bugless."""

from __future__ import annotations

from bugless_model_postgres.__about__ import __version__
from bugless_model_postgres.backend import PostgresBackend

__all__ = ["PostgresBackend", "__version__"]
