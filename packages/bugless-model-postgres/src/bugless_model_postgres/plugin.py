"""The pluggy hookimpls of bugless-model-postgres: registration only.

The classes are registered by reference, so loading this plugin imports
neither asyncpg nor the backend: only the Model process, which asks for them,
does (every bugless process loads every plugin).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bugless_core.hookspecs import hookimpl

if TYPE_CHECKING:
    from bugless_core.registry import BlobStoreRegistrar, ModelBackendRegistrar


@hookimpl
def bugless_register_model_backends(register: ModelBackendRegistrar) -> None:
    """Offer the backend as ``--model postgres``; imported when a Model asks for it."""
    register("postgres", "bugless_model_postgres.backend:PostgresBackend")


@hookimpl
def bugless_register_blob_stores(register: BlobStoreRegistrar) -> None:
    """Offer chunk rows in the Model's database as ``BUGLESS_BLOB_STORE=database``."""
    register("database", "bugless_model_postgres.blobs:DatabaseBlobStore")
