"""The pluggy hookimpls of bugless-model-postgres: registration only."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bugless_core.hookspecs import hookimpl

if TYPE_CHECKING:
    from bugless_core.registry import BlobStoreRegistrar, ModelBackendRegistrar


@hookimpl
def bugless_register_model_backends(register: ModelBackendRegistrar) -> None:
    """Offer the backend as ``--model postgres``; nothing connects here."""
    from bugless_model_postgres.backend import PostgresBackend  # noqa: PLC0415

    register(PostgresBackend)


@hookimpl
def bugless_register_blob_stores(register: BlobStoreRegistrar) -> None:
    """Offer chunk rows in the Model's database as ``BUGLESS_BLOB_STORE=database``."""
    from bugless_model_postgres.blobs import DatabaseBlobStore  # noqa: PLC0415

    register(DatabaseBlobStore)
