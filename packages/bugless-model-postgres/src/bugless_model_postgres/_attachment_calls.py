"""The backend calls of issue 17: attachments, and redaction removing their content.

A mixin of :class:`~bugless_model_postgres.PostgresBackend`. The order of an
upload: access and limits first (before any byte is read), then the content
streams into the blob store (bounded by the smaller of the per-file limit
and what the issue has left), then one transaction attaches it, re-checking
the issue's total, and builds the reply from what it wrote (no read after
the commit): on READ COMMITTED the content's lock with a read of the issue
and one statement (:mod:`._upload_in_one`), elsewhere under the issue's lock.
Whatever fails after the content is stored removes it again unless another
attachment refers to it.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import asyncpg

from bugless_core.attachments import (
    AttachmentSettings,
    SniffedChunks,
    check_content_type,
    check_download_offset,
    content_gone,
    file_too_large,
    issue_too_large,
    sanitise_name,
)
from bugless_core.blobs import BlobReader, BlobStore
from bugless_core.errors import NotFound, SizeLimitExceeded
from bugless_model_postgres import _attachments as att
from bugless_model_postgres import _delete_in_one, _import_files, _upload_in_one
from bugless_model_postgres._context import WriteContext, fetch_issue_rows, issue_not_found
from bugless_model_postgres._database import translated_errors
from bugless_model_postgres._edit_calls import EditsAndCustomFields
from bugless_proto import v1

#: Hashes checked for references per query by the sweep.
SWEEP_BATCH = 200
_log = logging.getLogger(__name__)


async def _mark_redacted(ctx: WriteContext, issue_id: int, attachment_id: int) -> tuple[str, str]:
    return await att.redact(ctx, issue_id, attachment_id)


#: The ErrorInfo reason of an attachment whose content the blob store lacks.
CONTENT_MISSING = "CONTENT_MISSING"


def content_missing(attachment: v1.Attachment, store: str, cause: NotFound) -> NotFound:
    """NOT_FOUND for a listed attachment whose content is not in the blob store.

    It happens after a restore that brought back a database listing a file the
    bucket's copy lacks (docs/backup.md). The person downloading cannot fix
    it, so the message says whom to tell; the operator gets the object's hash
    in the log (and the ErrorInfo) to bring it back from the backup bucket.
    """
    _log.error(
        "attachment %s (issue %s, %r): its content %s is missing from the %s blob store (%s); "
        "restore it from the backup (docs/backup.md)",
        attachment.id,
        attachment.issue_id,
        attachment.name,
        attachment.sha256,
        store,
        cause.message,
    )
    return NotFound(
        f"attachment {attachment.id} ({attachment.name}): the file's content is missing "
        "from storage; tell the operator",
        reason=CONTENT_MISSING,
        metadata={
            "attachment_id": str(attachment.id),
            "sha256": attachment.sha256,
            "blob_store": store,
        },
    )


class AttachmentCalls(EditsAndCustomFields):
    """UploadAttachment, DownloadAttachment, Get/List/DeleteAttachment over the pool."""

    attachment_redactor = _mark_redacted

    if TYPE_CHECKING:
        attachment_settings: AttachmentSettings

        @property
        def blob_store(self) -> BlobStore: ...

    async def _discard(self, sha256: str) -> None:
        """Remove content unless an attachment refers to it (failures are only logged)."""
        store = self.blob_store
        try:
            await self._write(None, lambda ctx: att.remove_if_unreferenced(ctx, sha256, store))
        except Exception:
            _log.exception("could not remove unreferenced attachment content %s", sha256)

    async def upload_attachment(
        self, header: v1.UploadAttachmentHeader, content: AsyncIterator[bytes]
    ) -> v1.UploadAttachmentResponse:
        """Check, stream into the blob store, attach by a new entry (an import's: store only)."""
        store = self.blob_store
        settings = self.attachment_settings
        if header.import_content:
            return await _import_files.store_import_content(store, settings, header, content)
        name = sanitise_name(header.name)
        if header.content_type:
            check_content_type(settings, header.content_type, "header.content_type")
        # Reads only (the attach re-checks under the issue's lock): on READ
        # COMMITTED no BEGIN/COMMIT around them, two round trips fewer.
        used, _ = await self._write(
            header.caller,
            lambda ctx: att.check_can_attach(ctx, header.issue_id, header.expected_version),
            one_statement=True,
        )
        remaining = max(settings.max_issue_bytes - used, 0)
        per_file = settings.max_file_bytes <= remaining
        limit = settings.max_file_bytes if per_file else remaining

        def too_large() -> SizeLimitExceeded:
            if per_file:
                return file_too_large(limit)
            return issue_too_large(settings.max_issue_bytes, used)

        if header.size > limit:
            raise too_large()
        sniffed = SniffedChunks(content)
        try:
            ref = await store.put(sniffed, max_size=limit)
        except SizeLimitExceeded:
            raise too_large() from None
        try:
            content_type = sniffed.content_type()
            check_content_type(settings, content_type, "content")
            # On READ COMMITTED the content's lock with a read of the issue, then
            # one statement (:mod:`._upload_in_one`); else the locked path.
            record = (
                _upload_in_one.upload
                if _upload_in_one.eligible(self._dialect)
                else att.record_upload
            )
            (row, written), _ = await self._write(
                header.caller,
                lambda ctx: record(
                    ctx,
                    header,
                    name=name,
                    ref=ref,
                    content_type=content_type,
                    max_issue_bytes=settings.max_issue_bytes,
                    store=store,
                ),
            )
        except BaseException:
            await self._discard(ref.sha256)
            raise
        return v1.UploadAttachmentResponse(
            attachment=att.attachment_from_row(row),
            issue=written.issue,
            entry=written.entry,
        )

    async def _visible(self, caller: v1.Caller | None, attachment_id: int) -> asyncpg.Record:
        async with translated_errors(), self._pool.acquire() as conn:
            row, _ = await att.visible_attachment(conn, caller or v1.Caller(), attachment_id)
        return row

    async def open_attachment(
        self, request: v1.DownloadAttachmentRequest
    ) -> tuple[v1.Attachment, BlobReader]:
        """The attachment and a reader over its content; none for deleted or redacted ones."""
        row = await self._visible(request.caller, request.attachment_id)
        attachment = att.attachment_from_row(row)
        if (gone := content_gone(attachment)) is not None:
            raise gone
        check_download_offset(attachment, request.offset)
        try:
            reader = await self.blob_store.open(
                attachment.sha256, offset=request.offset, length=request.length or None
            )
        except NotFound as exc:
            # Deleted (or redacted) since its row was read, its content
            # removed with it: that is what to say, not a loss in storage.
            now = att.attachment_from_row(await self._visible(request.caller, attachment.id))
            if (gone := content_gone(now)) is not None:
                raise gone from exc
            raise content_missing(attachment, self.blob_store.name, exc) from exc
        return attachment, reader

    async def get_attachment(self, request: v1.GetAttachmentRequest) -> v1.Attachment:
        """One attachment of a visible issue."""
        return att.attachment_from_row(await self._visible(request.caller, request.attachment_id))

    async def list_attachments(
        self, request: v1.ListAttachmentsRequest
    ) -> v1.ListAttachmentsResponse:
        """A visible issue's attachments, oldest first."""
        caller = request.caller or v1.Caller()
        async with translated_errors(), self._pool.acquire() as conn:
            if not await fetch_issue_rows(conn, caller, [request.issue_id]):
                raise issue_not_found(request.issue_id)
            rows = await conn.fetch(att.OF_ISSUE, request.issue_id, request.include_deleted)
        return v1.ListAttachmentsResponse(attachments=[att.attachment_from_row(r) for r in rows])

    async def delete_attachment(
        self, request: v1.DeleteAttachmentRequest
    ) -> v1.ChangeIssueResponse:
        """Detach by a new entry; the content goes when nothing refers to it.

        The reply is what the deletion wrote (built inside its transaction).
        Where the dialect allows, it is first tried as a read and one
        statement (:mod:`._delete_in_one`); if the issue's row moved on in
        between, nothing was written and the locked path runs.
        """
        quick: att.Written | None = None
        if _delete_in_one.eligible(self._dialect):
            quick, _ = await self._write(
                request.caller, lambda ctx: _delete_in_one.delete(ctx, request), one_statement=True
            )
        if quick is not None:
            written = quick
        else:
            written, _ = await self._write(request.caller, lambda ctx: att.delete(ctx, request))
        await self._discard(written.sha256)
        return v1.ChangeIssueResponse(issue=written.issue, entry=written.entry)

    async def sweep_orphaned_content(self, grace_seconds: float) -> int:
        """Abandoned puts, then every old content no live attachment needs (in batches).

        Each removal re-checks under the content's lock
        (:func:`~bugless_model_postgres._attachments.remove_if_unreferenced`), so
        an attach of the same bytes racing the sweep either keeps the content
        or is told to send the file again; it never refers to removed content.
        """
        store = self.blob_store
        cutoff = datetime.now(UTC) - timedelta(seconds=grace_seconds)
        removed = await store.remove_abandoned(cutoff)
        batch: list[str] = []
        async for sha256 in store.stored_before(cutoff):
            batch.append(sha256)
            if len(batch) >= SWEEP_BATCH:
                removed += await self._sweep(batch)
                batch = []
        if batch:
            removed += await self._sweep(batch)
        if removed:
            _log.info("removed %d orphaned attachment contents and pieces", removed)
        return removed

    async def _sweep(self, hashes: list[str]) -> int:
        async with translated_errors(), self._pool.acquire() as conn:
            rows = await conn.fetch(att.REFERENCED_AMONG, [bytes.fromhex(h) for h in hashes])
        needed = {bytes(r["sha256"]).hex() for r in rows}
        store = self.blob_store
        removed = 0
        for sha256 in hashes:
            if sha256 not in needed:
                removed += await self._remove_unreferenced(store, sha256)
        return removed

    async def _remove_unreferenced(self, store: BlobStore, sha256: str) -> int:
        gone, _ = await self._write(
            None, lambda ctx: att.remove_if_unreferenced(ctx, sha256, store)
        )
        return int(gone)

    async def redact(self, request: v1.RedactRequest) -> v1.ChangeIssueResponse:
        """Redact; for an attachment, its content then leaves the store (if unshared)."""
        response, sha256 = await self._redact(request)
        if sha256:  # the redaction returned it: no read of the attachment after it
            await self._discard(sha256)
        return response


__all__ = ["AttachmentCalls"]
