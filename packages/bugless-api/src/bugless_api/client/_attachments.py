"""Attachment calls of the client: attach a file, list, download, delete.

Content streams both ways in chunks of :data:`bugless_core.attachments.CHUNK_BYTES`:
a file is read a chunk at a time as the connection takes it, and a download
is written to disk as it arrives, so neither end holds a whole file. A
download whose connection drops resumes where it stopped (the Model serves
ranges), up to the client's retry attempts; an upload is not retried (it
would attach the file twice).
"""

from __future__ import annotations

import asyncio
import contextlib
import mimetypes
import os
import stat
from collections.abc import AsyncIterator
from pathlib import Path

from grpclib.const import Cardinality
from grpclib.exceptions import StreamTerminatedError

from bugless_api.client._base import ClientBase, client_mistake
from bugless_core.attachments import CHUNK_BYTES
from bugless_core.clients import call_errors
from bugless_core.errors import Unavailable
from bugless_core.ids import check_id
from bugless_proto import v1


async def file_chunks(path: Path, chunk_bytes: int = CHUNK_BYTES) -> AsyncIterator[bytes]:
    """The file's content a chunk at a time, read off the event loop."""
    handle = await asyncio.to_thread(path.open, "rb")
    try:
        while chunk := await asyncio.to_thread(handle.read, chunk_bytes):
            yield chunk
    finally:
        handle.close()


class AttachmentCalls(ClientBase):
    """The attachment calls of ``bugless.v1.Issues``."""

    async def attach(
        self,
        issue_id: int,
        path: Path | str,
        *,
        name: str | None = None,
        content_type: str | None = None,
        comment: str = "",
    ) -> v1.UploadAttachmentResponse:
        """Attach the file at ``path`` to an issue by a new history entry.

        The size is declared up front, so a file over the deployment's limit
        is refused before any byte is sent. ``content_type`` defaults to the
        guess from the name (the Model sniffs the content anyway).
        """
        check_id(issue_id, "issue_id")
        file = Path(path)
        try:
            found = await asyncio.to_thread(file.stat)
        except OSError as exc:
            raise client_mistake(f"{file}: {exc.strerror}") from exc
        if not stat.S_ISREG(found.st_mode):
            raise client_mistake(f"{file}: not a regular file")
        size = found.st_size
        shown = name or file.name
        if content_type is None:
            content_type = mimetypes.guess_type(shown)[0] or ""
        header = v1.UploadAttachmentHeader(
            issue_id=issue_id, name=shown, content_type=content_type, comment=comment, size=size
        )

        async def messages() -> AsyncIterator[v1.UploadAttachmentRequest]:
            yield v1.UploadAttachmentRequest(header=header)
            async for chunk in file_chunks(file):
                yield v1.UploadAttachmentRequest(chunk=chunk)

        with call_errors("the bugless API is unreachable"):
            async with self.issues.channel.request(
                "/bugless.v1.Issues/UploadAttachment",
                Cardinality.STREAM_UNARY,
                v1.UploadAttachmentRequest,
                v1.UploadAttachmentResponse,
            ) as stream:
                await stream.send_request()
                refused_early: StreamTerminatedError | None = None
                try:
                    async for message in messages():
                        await stream.send_message(message)
                    await stream.end()
                except StreamTerminatedError as exc:
                    # The server may answer before the upload ends (not found,
                    # too large) and reset the stream: a send then fails with
                    # this, and so does the end on the CorkedChannel the client
                    # always opens (ServiceAddress.channel). The status it
                    # answered with is the error to report; anything else (the
                    # file could not be read) ends the call as it is.
                    refused_early = exc
                reply = await stream.recv_message()
            if reply is None:
                raise refused_early or Unavailable("the upload ended without an answer")
            return reply

    async def get_attachment(self, attachment_id: int) -> v1.Attachment:
        """One attachment's metadata."""
        check_id(attachment_id, "attachment_id")
        request = v1.GetAttachmentRequest(attachment_id=attachment_id)
        return await self._call(self.issues.get_attachment, request, idempotent=True)

    async def list_attachments(
        self, issue_id: int, *, include_deleted: bool = False
    ) -> list[v1.Attachment]:
        """An issue's attachments, oldest first."""
        check_id(issue_id, "issue_id")
        request = v1.ListAttachmentsRequest(issue_id=issue_id, include_deleted=include_deleted)
        reply = await self._call(self.issues.list_attachments, request, idempotent=True)
        return list(reply.attachments)

    async def delete_attachment(self, attachment_id: int) -> v1.ChangeIssueResponse:
        """Detach a file (its uploader or a component admin); the entry stays in history."""
        check_id(attachment_id, "attachment_id")
        request = v1.DeleteAttachmentRequest(attachment_id=attachment_id)
        return await self._call(self.issues.delete_attachment, request, idempotent=False)

    async def iter_attachment(
        self, attachment_id: int, *, offset: int = 0
    ) -> AsyncIterator[v1.DownloadAttachmentResponse]:
        """The raw download stream: the Attachment, then content chunks from ``offset``."""
        check_id(attachment_id, "attachment_id")
        request = v1.DownloadAttachmentRequest(attachment_id=attachment_id, offset=offset)
        with call_errors("the bugless API is unreachable"):
            async for part in self.issues.download_attachment(request):
                yield part

    async def download_attachment(
        self, attachment_id: int, destination: Path | str
    ) -> v1.Attachment:
        """Write an attachment's content to ``destination``; return its metadata.

        The content goes to a temporary file beside ``destination``, renamed
        over it once complete, so an interrupted download never leaves a
        truncated file under the real name. A dropped connection resumes
        from the bytes already written.
        """
        target = Path(destination)
        partial = target.with_name(f".{target.name}.part")
        attachment: v1.Attachment | None = None
        written = 0
        attempt = 0
        handle = await asyncio.to_thread(partial.open, "wb")
        try:
            while True:
                try:
                    async for part in self.iter_attachment(attachment_id, offset=written):
                        if part.attachment is not None:
                            attachment = part.attachment
                        elif part.chunk:
                            await asyncio.to_thread(handle.write, part.chunk)
                            written += len(part.chunk)
                    break
                except Unavailable as exc:
                    attempt += 1
                    if attempt >= self.retry.attempts:
                        raise
                    await asyncio.sleep(self.retry.delay(attempt - 1, exc))
            handle.close()
            if attachment is None or written != attachment.size:
                msg = f"attachment {attachment_id}: the download ended after {written} bytes"
                raise Unavailable(msg)
            await asyncio.to_thread(os.replace, partial, target)
        except BaseException:
            handle.close()
            with contextlib.suppress(OSError):
                partial.unlink()
            raise
        return attachment
