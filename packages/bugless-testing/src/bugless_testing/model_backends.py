"""A Model backend opened as a test needs it: with a blob store of its own, in its schema.

The PostgreSQL and CockroachDB suites both open their backend (and the
second replica some tests start) the same way the Model service does
(:func:`bugless_core.model.runner.start_model`): the backend, then the blob
store the settings name, kept in the backend's own database and schema, with
the attachment limits the conformance suite expects. Both test trees import
this one helper rather than each keeping a copy; it takes the classes as
arguments, so this package depends on neither backend.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import TypeVar

from bugless_core.blobs import BlobStore
from bugless_core.model.backend import ModelBackend, ModelSettings
from bugless_core.settings import settings_from_environ
from bugless_testing.model_contracts import ATTACHMENT_LIMITS

B = TypeVar("B", bound=ModelBackend)

#: Small chunk rows, so that multi-chunk contents stay small in the tests.
CHUNK_BYTES = 64 * 1024


@contextlib.asynccontextmanager
async def opened_model(
    backend_cls: type[B], settings: ModelSettings, blob_store: type[BlobStore]
) -> AsyncIterator[B]:
    """``backend_cls`` open on the (migrated) database of ``settings``, with its own store.

    Args:
        backend_cls: The backend to open.
        settings: Its settings; the store is in the same database and schema.
        blob_store: The store class (its settings are read as the service
            reads them, from ``BUGLESS_*`` variables: given here, not taken
            from the environment).

    Both are closed when the block ends.
    """
    environ = {
        "BUGLESS_DATABASE_URL": settings.database_url,
        "BUGLESS_DATABASE_SCHEMA": settings.schema,
        "BUGLESS_BLOB_CHUNK_BYTES": str(CHUNK_BYTES),
    }
    backend = await backend_cls.open(settings)
    try:
        store = await blob_store.connect(settings_from_environ(blob_store.settings_type, environ))
    except BaseException:
        await backend.close()
        raise
    backend.use_blob_store(store, ATTACHMENT_LIMITS)
    try:
        yield backend
    finally:
        await backend.close()
        await store.close()


__all__ = ["CHUNK_BYTES", "opened_model"]
