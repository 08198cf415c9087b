"""The Model's attachment contracts with content in the s3 store (moto) and metadata in PostgreSQL.

The same :class:`~bugless_testing.model_contracts.AttachmentContract` the
Model backends run with the ``database`` store: uploads stream into S3
objects, deletions and redactions remove the objects once nothing refers to
them.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING

import pytest
from grpclib.exceptions import GRPCError
from s3_support import settings_on

from bugless_blob_s3 import S3BlobStore
from bugless_core.errors import ContentGone, NotFound, from_grpc_error
from bugless_core.model.backend import ModelSettings
from bugless_model_postgres import PostgresBackend
from bugless_proto import v1
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


class _DeletedAfterTheCheck(S3BlobStore):
    """The store, with the object deleted right after ``open`` found it (the race, made sure)."""

    async def _size(self, sha256: str) -> int | None:
        size = await super()._size(sha256)
        await self.delete(sha256)
        return size


async def test_content_deleted_as_the_download_starts_is_not_found_before_any_message(
    model: v1.ModelStub,
    bugless_model_backend: PostgresBackend,
    s3_server: S3TestServer,
    bucket: str,
) -> None:
    """The download answers NOT_FOUND (CONTENT_MISSING), not an attachment and then a cut.

    Before, the object's GET came after the attachment message had gone: the
    web had answered 200 and cut the body; an API client got the blob's own
    message about a hash.
    """
    admin = v1.Caller(user_id="root", admin=True)
    component = await model.create_component(
        v1.CreateComponentRequest(caller=admin, name="Deleted while read")
    )
    fields = v1.IssueFields(title="A log goes", component_id=component.id)
    issue = await model.create_issue(v1.CreateIssueRequest(caller=admin, fields=fields))
    header = v1.UploadAttachmentHeader(caller=admin, issue_id=issue.id, name="gone.log")
    uploaded = await model.upload_attachment(
        [v1.UploadAttachmentRequest(header=header), v1.UploadAttachmentRequest(chunk=b"x" * 4096)]
    )
    assert uploaded.attachment is not None
    kept = bugless_model_backend.blob_store
    assert isinstance(kept, S3BlobStore)
    sha = uploaded.attachment.sha256
    prefix = kept.key_of(sha).removesuffix(f"{sha[:2]}/{sha}")
    racing = await _DeletedAfterTheCheck.connect(settings_on(s3_server, bucket, prefix=prefix))
    bugless_model_backend.use_blob_store(racing)
    received: list[v1.DownloadAttachmentResponse] = []
    error: Exception | None = None
    try:
        request = v1.DownloadAttachmentRequest(caller=admin, attachment_id=uploaded.attachment.id)
        try:
            async for part in model.download_attachment(request):
                received.append(part)
        except GRPCError as exc:
            error = from_grpc_error(exc)
    finally:
        bugless_model_backend.use_blob_store(kept)
        await racing.close()
    assert received == []
    assert isinstance(error, NotFound)
    assert error.reason == "CONTENT_MISSING"
    assert "the file's content is missing from storage; tell the operator" in error.message


class _AttachmentDeletedAsOpened(S3BlobStore):
    """The store, running ``as_opened`` once between the object's HEAD and its GET.

    What happens when another request deletes the attachment just after a
    download read its row: the object goes with it, under the open.
    """

    as_opened: Callable[[], Awaitable[object]] | None = None

    async def _size(self, sha256: str) -> int | None:
        size = await super()._size(sha256)
        run, self.as_opened = self.as_opened, None
        if run is not None:
            await run()
        return size


async def test_an_attachment_deleted_as_its_download_opens_is_gone_not_missing_from_storage(
    model: v1.ModelStub,
    bugless_model_backend: PostgresBackend,
    s3_server: S3TestServer,
    bucket: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """CONTENT_GONE naming the entry that deleted it, as a download started after it says.

    Before, the Model took the missing object for a loss in storage: NOT_FOUND
    "the file's content is missing from storage; tell the operator", and an
    error in its log asking for a restore from the backup.
    """
    admin = v1.Caller(user_id="root", admin=True)
    component = await model.create_component(
        v1.CreateComponentRequest(caller=admin, name="Deleted as opened")
    )
    fields = v1.IssueFields(title="A log is deleted", component_id=component.id)
    issue = await model.create_issue(v1.CreateIssueRequest(caller=admin, fields=fields))
    header = v1.UploadAttachmentHeader(caller=admin, issue_id=issue.id, name="deleted.log")
    uploaded = await model.upload_attachment(
        [
            v1.UploadAttachmentRequest(header=header),
            v1.UploadAttachmentRequest(chunk=os.urandom(4096)),
        ]
    )
    attachment = uploaded.attachment
    assert attachment is not None
    kept = bugless_model_backend.blob_store
    assert isinstance(kept, S3BlobStore)
    sha = attachment.sha256
    prefix = kept.key_of(sha).removesuffix(f"{sha[:2]}/{sha}")
    racing = await _AttachmentDeletedAsOpened.connect(settings_on(s3_server, bucket, prefix=prefix))
    deleted: list[v1.ChangeIssueResponse] = []

    async def delete() -> None:
        request = v1.DeleteAttachmentRequest(caller=admin, attachment_id=attachment.id)
        deleted.append(await bugless_model_backend.delete_attachment(request))

    racing.as_opened = delete
    bugless_model_backend.use_blob_store(racing)
    received: list[v1.DownloadAttachmentResponse] = []
    error: Exception | None = None
    try:
        request = v1.DownloadAttachmentRequest(caller=admin, attachment_id=attachment.id)
        try:
            async for part in model.download_attachment(request):
                received.append(part)
        except GRPCError as exc:
            error = from_grpc_error(exc)
    finally:
        bugless_model_backend.use_blob_store(kept)
        await racing.close()
    assert received == []
    assert not await kept.exists(sha)  # the deletion removed the object
    entry = deleted[0].entry
    assert entry is not None
    assert isinstance(error, ContentGone)
    assert error.message == (
        f"attachment {attachment.id} was deleted (entry {entry.version} of its issue): "
        "its content is gone"
    )
    assert "missing from" not in caplog.text
