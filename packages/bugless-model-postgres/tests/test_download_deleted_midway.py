"""Content deleted while its download streams: the Model names the attachment, not a blob hash.

The ``database`` store reads a blob in batches; content deleted once the
attachment has been sent ends the read with the store's ``blob <sha>: it
was deleted while being read``, which reached the web's log and an API
client as it was. The download now ends with a NOT_FOUND naming the
attachment (the hash is in the Model's log).

When the content went because the attachment was deleted (by another
request, after this download read its row), the download says so: the
CONTENT_GONE of a deleted attachment, naming the entry that deleted it, as a
download started after the deletion does; not NOT_FOUND "missing from
storage; tell the operator", which sent people to an operator for nothing.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable

import pytest
from grpclib.exceptions import GRPCError

from bugless_core.attachments import AttachmentSettings
from bugless_core.blobs import BlobStore
from bugless_core.errors import ContentGone, NotFound, from_grpc_error
from bugless_core.model.backend import ModelSettings
from bugless_model_postgres import PostgresBackend
from bugless_model_postgres.blobs import DatabaseBlobSettings, DatabaseBlobStore
from bugless_proto import v1
from bugless_testing.model_backends import CHUNK_BYTES
from bugless_testing.model_contracts import ATTACHMENT_LIMITS

MIB = 1024 * 1024
ADMIN = v1.Caller(user_id="root", admin=True)


async def test_content_deleted_during_a_download_ends_it_with_the_attachments_not_found(
    model: v1.ModelStub, bugless_model_backend: PostgresBackend, caplog: pytest.LogCaptureFixture
) -> None:
    backend = bugless_model_backend
    store = backend.blob_store
    backend.use_blob_store(store, AttachmentSettings(max_file_bytes=32 * MIB))
    try:
        component = await model.create_component(
            v1.CreateComponentRequest(caller=ADMIN, name="Deleted midway")
        )
        fields = v1.IssueFields(title="A large log goes", component_id=component.id)
        issue = await model.create_issue(v1.CreateIssueRequest(caller=ADMIN, fields=fields))
        content = os.urandom(16 * MIB)
        header = v1.UploadAttachmentHeader(caller=ADMIN, issue_id=issue.id, name="big.log")
        uploaded = await model.upload_attachment(
            [v1.UploadAttachmentRequest(header=header)]
            + [
                v1.UploadAttachmentRequest(chunk=content[i : i + MIB // 2])
                for i in range(0, len(content), MIB // 2)
            ]
        )
    finally:
        backend.use_blob_store(store, ATTACHMENT_LIMITS)
    attachment = uploaded.attachment
    assert attachment is not None
    received: list[bytes] = []
    with pytest.raises(GRPCError) as raised:
        await _download_deleting_after_the_first_chunk(model, store, attachment, received)
    assert 0 < len(b"".join(received)) < len(content)
    error = from_grpc_error(raised.value)
    assert isinstance(error, NotFound)
    assert error.message == (
        f"attachment {attachment.id} (big.log): its content was deleted while it was being "
        "downloaded"
    )
    assert f"its content {attachment.sha256} went while it was being downloaded" in caplog.text


async def _download_deleting_after_the_first_chunk(
    model: v1.ModelStub, store: BlobStore, attachment: v1.Attachment, received: list[bytes]
) -> None:
    request = v1.DownloadAttachmentRequest(caller=ADMIN, attachment_id=attachment.id)
    async for part in model.download_attachment(request):
        if part.chunk and not received:
            assert await store.delete(attachment.sha256)
        if part.chunk:
            received.append(part.chunk)


async def _attached(
    model: v1.ModelStub, backend: PostgresBackend, name: str, content: bytes
) -> v1.Attachment:
    """``content`` attached to a new issue (the file limit raised for it)."""
    store = backend.blob_store
    backend.use_blob_store(store, AttachmentSettings(max_file_bytes=32 * MIB))
    try:
        component = await model.create_component(v1.CreateComponentRequest(caller=ADMIN, name=name))
        fields = v1.IssueFields(title=f"{name} goes", component_id=component.id)
        issue = await model.create_issue(v1.CreateIssueRequest(caller=ADMIN, fields=fields))
        header = v1.UploadAttachmentHeader(caller=ADMIN, issue_id=issue.id, name=f"{name}.log")
        chunks = [content[i : i + MIB // 2] for i in range(0, len(content), MIB // 2)]
        uploaded = await model.upload_attachment(
            [v1.UploadAttachmentRequest(header=header)]
            + [v1.UploadAttachmentRequest(chunk=chunk) for chunk in chunks]
        )
    finally:
        backend.use_blob_store(store, ATTACHMENT_LIMITS)
    assert uploaded.attachment is not None
    return uploaded.attachment


async def _refused_download(
    model: v1.ModelStub,
    attachment: v1.Attachment,
    *,
    after_first_chunk: Callable[[], Awaitable[None]] | None = None,
) -> tuple[list[v1.DownloadAttachmentResponse], Exception]:
    """What a download sent before it was refused, and the refusal."""
    request = v1.DownloadAttachmentRequest(caller=ADMIN, attachment_id=attachment.id)
    received: list[v1.DownloadAttachmentResponse] = []
    try:
        async for part in model.download_attachment(request):
            first = part.chunk and not any(p.chunk for p in received)
            received.append(part)
            if first and after_first_chunk is not None:
                await after_first_chunk()
    except GRPCError as exc:
        return received, from_grpc_error(exc)
    raise AssertionError(f"attachment {attachment.id} was downloaded in full")


async def _deleted(backend: PostgresBackend, attachment: v1.Attachment) -> int:
    """Delete ``attachment`` as another request does; the entry that deleted it.

    On the backend, not through the test's channel: that connection's flow
    control window is full of the download's unread chunks.
    """
    reply = await backend.delete_attachment(
        v1.DeleteAttachmentRequest(caller=ADMIN, attachment_id=attachment.id)
    )
    assert reply.entry is not None
    return reply.entry.version


async def test_an_attachment_deleted_during_its_download_ends_it_as_deleted_with_the_entry(
    model: v1.ModelStub, bugless_model_backend: PostgresBackend, caplog: pytest.LogCaptureFixture
) -> None:
    content = os.urandom(16 * MIB)  # more than the server sends ahead of the reader
    attachment = await _attached(model, bugless_model_backend, "Deleted by a person", content)
    entries: list[int] = []

    async def delete() -> None:
        entries.append(await _deleted(bugless_model_backend, attachment))

    received, error = await _refused_download(model, attachment, after_first_chunk=delete)
    assert 0 < len(b"".join(part.chunk or b"" for part in received)) < len(content)
    assert isinstance(error, ContentGone)
    assert error.message == (
        f"attachment {attachment.id} was deleted (entry {entries[0]} of its issue): "
        "its content is gone"
    )
    assert "missing from" not in caplog.text


class _DeletedAsItIsOpened(DatabaseBlobStore):
    """The database store, running ``as_opened`` once between its existence check and first read.

    What happens when the attachment is deleted by another request just
    after a download read its row: its content is removed under the open.
    """

    as_opened: Callable[[], Awaitable[object]] | None = None

    async def _size(self, sha256: str) -> int | None:
        size = await super()._size(sha256)
        run, self.as_opened = self.as_opened, None
        if run is not None:
            await run()
        return size


async def test_an_attachment_deleted_as_its_download_opens_is_gone_with_the_entry_not_missing(
    model: v1.ModelStub,
    bugless_model_backend: PostgresBackend,
    model_settings: ModelSettings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    backend = bugless_model_backend
    attachment = await _attached(model, backend, "Deleted as opened", os.urandom(MIB))
    settings = DatabaseBlobSettings(
        database_url=model_settings.database_url,
        schema=model_settings.schema,
        chunk_bytes=CHUNK_BYTES,
    )
    racing = await _DeletedAsItIsOpened.connect(settings)
    entries: list[int] = []

    async def delete() -> None:
        entries.append(await _deleted(bugless_model_backend, attachment))

    racing.as_opened = delete
    kept = backend.blob_store
    backend.use_blob_store(racing)
    try:
        received, error = await _refused_download(model, attachment)
    finally:
        backend.use_blob_store(kept)
        await racing.close()
    assert received == []  # refused before the attachment message
    assert isinstance(error, ContentGone)
    assert error.message == (
        f"attachment {attachment.id} was deleted (entry {entries[0]} of its issue): "
        "its content is gone"
    )
    assert "missing from" not in caplog.text
