"""The Model's checks of attachment uploads and downloads, beside the servicer that calls them.

Kept out of :mod:`bugless_core.model.servicer` as :mod:`._import_checks` and
:mod:`._feed_checks` are: what an upload's header and chunks must be, and
what a download cut short by its content's deletion answers.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from bugless_core import attachments, limits
from bugless_core.errors import InvalidArgument, NotFound
from bugless_core.model import _import_checks as imports
from bugless_core.model import _validation as check
from bugless_proto import v1

_log = logging.getLogger("bugless.model")


def check_upload_header(header: v1.UploadAttachmentHeader) -> None:
    """The shape of an upload's header (the API gateway checks it too, before streaming)."""
    check.require_caller(header.caller)
    if header.import_content:
        imports.check_import_permission(header.caller)
        if header.issue_id or header.expected_version or header.comment:
            raise InvalidArgument(
                "header.import_content: stores content only; give no issue_id, "
                "expected_version or comment (ImportIssue attaches it)"
            )
    else:
        check.check_id(header.issue_id, "header.issue_id")
    if header.expected_version < 0:
        raise InvalidArgument("header.expected_version: must not be negative (0: none)")
    check.check_text(header.name, "header.name", attachments.MAX_RAW_NAME_CHARS, required=True)
    check.check_text(
        header.content_type, "header.content_type", attachments.MAX_CONTENT_TYPE_LENGTH
    )
    check.check_text(header.comment, "header.comment", limits.MAX_COMMENT_LENGTH)
    if header.size < 0:
        raise InvalidArgument("header.size: must not be negative (0: unknown)")


async def upload_chunks(
    messages: AsyncIterator[v1.UploadAttachmentRequest], header: v1.UploadAttachmentHeader
) -> AsyncIterator[bytes]:
    """The content of an upload's messages; the declared size, when given, must match."""
    received = 0
    async for message in messages:
        if message.header is not None:
            raise InvalidArgument("header: only the first message of an upload carries one")
        chunk = message.chunk or b""
        if len(chunk) > attachments.MAX_CHUNK_BYTES:
            msg = (
                f"chunk: {len(chunk)} bytes in one message; send at most "
                f"{attachments.MAX_CHUNK_BYTES} per message"
            )
            raise InvalidArgument(msg)
        received += len(chunk)
        if header.size and received > header.size:
            raise InvalidArgument(f"header.size: {header.size} bytes declared, more were sent")
        yield chunk
    if header.size and received != header.size:
        msg = f"header.size: {header.size} bytes declared, {received} were sent"
        raise InvalidArgument(msg)


def deleted_while_downloaded(attachment: v1.Attachment, cause: NotFound) -> NotFound:
    """NOT_FOUND for content that went while its download streamed (the attachment was sent).

    The store's own message names a blob hash; the person or bot downloading
    gets the attachment's name, and the log keeps the hash and the cause. A
    download started now would answer NOT_FOUND (or the attachment's deletion)
    before sending anything.
    """
    _log.warning(
        "attachment %s (issue %s, %r): its content %s went while it was being downloaded (%s); "
        "the download ends short",
        attachment.id,
        attachment.issue_id,
        attachment.name,
        attachment.sha256,
        cause.message,
    )
    return NotFound(
        f"attachment {attachment.id} ({attachment.name}): its content was deleted while it "
        "was being downloaded",
        metadata={"attachment_id": str(attachment.id)},
    )
