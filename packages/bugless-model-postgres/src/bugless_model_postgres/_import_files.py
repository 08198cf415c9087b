"""The files of imported entries: content stored before, attached in ImportIssue's transaction.

A source's attachment is a file its author uploaded at a time in the middle
of the issue's history, so it is attached by the imported entry at that
place (``ImportedEntry.attachments``), with the entry's author and time,
rather than by an UploadAttachment appended after the history. Its content
reaches the blob store first (UploadAttachment with ``import_content``:
:func:`store_import_content`); ImportIssue then only refers to it by its
SHA-256, under the same content lock an upload takes
(:data:`._attachments.LOCK_CONTENT`), so the orphan sweep either sees the
reference or removed the content before, and the import is told to store it
again (UNAVAILABLE), with nothing of the issue written. Idempotency is the
entries': a file rides on its entry, which a repeated import does not write
again (``import_position``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import datetime

from bugless_core.attachments import (
    MAX_ATTACHMENTS_PER_ISSUE,
    SNIFF_BYTES,
    AttachmentSettings,
    SniffedChunks,
    check_content_type,
    file_too_large,
    issue_too_large,
    sanitise_name,
    sniff_content_type,
)
from bugless_core.blobs import BlobStore
from bugless_core.errors import NotFound, ResourceExhausted, SizeLimitExceeded, Unavailable
from bugless_model_postgres import _attachments as att
from bugless_model_postgres._context import WriteContext
from bugless_proto import v1

#: What issue ``$1``'s live files use.
_USAGE = f"SELECT u.used, u.files FROM {att.USAGE}"


async def store_import_content(
    store: BlobStore,
    settings: AttachmentSettings,
    header: v1.UploadAttachmentHeader,
    content: AsyncIterator[bytes],
) -> v1.UploadAttachmentResponse:
    """Store an imported file's content (no issue, no entry); its size, type and hash.

    Bounded by the per-file limit; a type the deployment refuses is refused
    here, before the ImportIssue that would attach it. Content nothing
    refers to is the orphan sweep's, as an abandoned upload's is.
    """
    limit = settings.max_file_bytes
    if header.content_type:
        check_content_type(settings, header.content_type, "header.content_type")
    if header.size > limit:
        raise file_too_large(limit)
    sniffed = SniffedChunks(content)
    try:
        ref = await store.put(sniffed, max_size=limit)
    except SizeLimitExceeded:
        raise file_too_large(limit) from None
    content_type = sniffed.content_type()
    check_content_type(settings, content_type, "content")
    return v1.UploadAttachmentResponse(
        attachment=v1.Attachment(
            name=sanitise_name(header.name),
            size=ref.size,
            content_type=content_type,
            declared_content_type=header.content_type,
            sha256=ref.sha256,
        )
    )


async def _sniff(store: BlobStore, sha256: str, size: int) -> str:
    """What the stored content is, from its first bytes (as an upload sniffs it)."""
    head = bytearray()
    if size:
        async with await store.open(sha256, length=min(size, SNIFF_BYTES)) as reader:
            async for chunk in reader:
                head.extend(chunk)
    return sniff_content_type(bytes(head))


async def attach(
    ctx: WriteContext,
    issue_id: int,
    *,
    store: BlobStore,
    settings: AttachmentSettings,
    placed: Sequence[tuple[int, str, datetime, Sequence[v1.ImportedAttachment]]],
    external_id: str,
) -> None:
    """Attach each entry's files: ``(version, author, created_at, files)`` of the entries written.

    Raises:
        Unavailable: A file's content is not in the store (store it again).
        SizeLimitExceeded: The files would take the issue past its limits.
    """
    if not any(files for *_, files in placed):
        return
    usage = await ctx.conn.fetchrow(_USAGE, issue_id)
    used = int(usage["used"]) if usage is not None else 0
    count = int(usage["files"]) if usage is not None else 0
    for version, author, created_at, files in placed:
        for file in files:
            await att.lock_content(ctx, file.sha256)
            try:
                ref = await store.stat(file.sha256)
            except NotFound:
                raise Unavailable(
                    f"{external_id}: the content of {file.name!r} ({file.sha256}) is not stored "
                    "(never, or removed as orphaned since): store it again "
                    "(UploadAttachment with import_content) and import again",
                    metadata={"sha256": file.sha256},
                ) from None
            if ref.size > settings.max_file_bytes:
                raise file_too_large(settings.max_file_bytes)
            if used + ref.size > settings.max_issue_bytes:
                raise issue_too_large(settings.max_issue_bytes, used)
            if count >= MAX_ATTACHMENTS_PER_ISSUE:
                raise ResourceExhausted(
                    f"{external_id}: an issue has at most {MAX_ATTACHMENTS_PER_ISSUE} attachments",
                    retry_after=None,
                    metadata={"issue_id": str(issue_id)},
                )
            count += 1
            used += ref.size
            name = sanitise_name(file.name)
            content_type = await _sniff(store, file.sha256, ref.size)
            check_content_type(settings, content_type, "content")
            await ctx.conn.execute(
                att.INSERT_IMPORTED,
                issue_id, version, name, ref.size, content_type, file.content_type,
                bytes.fromhex(file.sha256), author, created_at, name.casefold(),
                file.description,
            )  # fmt: skip
