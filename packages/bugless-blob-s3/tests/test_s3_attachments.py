"""The Model's attachment contracts with content in the s3 store (moto) and metadata in PostgreSQL.

The same :class:`~bugless_testing.model_contracts.AttachmentContract` the
Model backends run with the ``database`` store: uploads stream into S3
objects, deletions and redactions remove the objects once nothing refers to
them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import pytest
from s3_support import settings_on

from bugless_blob_s3 import S3BlobStore
from bugless_core.model.backend import ModelSettings
from bugless_model_postgres import PostgresBackend
from bugless_testing.model_contracts import ATTACHMENT_LIMITS, AttachmentContract
from bugless_testing.s3 import S3TestServer

if TYPE_CHECKING:
    from bugless_testing.postgres import ThrowawayPostgres

pytestmark = pytest.mark.bugless_backend.with_args(PostgresBackend)


@pytest.fixture(scope="session")
async def bugless_model_backend(
    postgres_server: ThrowawayPostgres, s3_server: S3TestServer, bucket: str
) -> AsyncIterator[PostgresBackend]:
    """PostgreSQL for the metadata, the s3 store for the content."""
    url = await postgres_server.acreate_database("s3_attachments")
    settings = ModelSettings(
        database_url=url, page_token_secret="test-page-token-secret-0123456789"
    )
    await PostgresBackend.migrate(settings)
    backend = await PostgresBackend.open(settings)
    store = await S3BlobStore.connect(settings_on(s3_server, bucket))
    backend.use_blob_store(store, ATTACHMENT_LIMITS)
    try:
        yield backend
    finally:
        await backend.close()
        await store.close()


class TestAttachmentsInS3(AttachmentContract): ...
