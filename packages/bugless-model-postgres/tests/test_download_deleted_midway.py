"""Content deleted while its download streams: the Model names the attachment, not a blob hash.

The ``database`` store reads a blob in batches; content deleted once the
attachment has been sent ends the read with the store's ``blob <sha>: it
was deleted while being read``, which reached the web's log and an API
client as it was. The download now ends with a NOT_FOUND naming the
attachment (the hash is in the Model's log).
"""

from __future__ import annotations

import os

import pytest
from grpclib.exceptions import GRPCError

from bugless_core.attachments import AttachmentSettings
from bugless_core.blobs import BlobStore
from bugless_core.errors import NotFound, from_grpc_error
from bugless_model_postgres import PostgresBackend
from bugless_proto import v1
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
