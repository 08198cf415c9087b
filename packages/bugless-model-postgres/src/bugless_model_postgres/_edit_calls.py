"""The backend calls of issue 18: comment edits, redaction and custom fields.

A mixin of :class:`~bugless_model_postgres.PostgresBackend`, kept in its own
module so that the calls that came with one feature stay together; the
write logic is in :mod:`._edits` and :mod:`._custom_fields`.
"""

from __future__ import annotations

from typing import ClassVar

import asyncpg

from bugless_core.custom_fields import MASK_PATHS as CUSTOM_FIELD_MASK_PATHS
from bugless_core.transactions import retrying
from bugless_model_postgres import _custom_fields, _edits
from bugless_model_postgres._calls_base import BackendCalls
from bugless_model_postgres._context import component_not_found
from bugless_model_postgres._convert import Conn, caller_role, principals_of
from bugless_model_postgres._database import translated_errors
from bugless_model_postgres._paging import KeysetPage, caller_key
from bugless_proto import v1

#: The latest edit of each of entries $2 of issue $1.
EDITED_IN = """
SELECT edits_version, max(version) AS latest FROM issue_history
 WHERE issue_id = $1 AND edits_version = ANY ($2::bigint[])
 GROUP BY edits_version
"""


async def mark_edited(conn: Conn, issue_id: int, entries: list[v1.HistoryEntry]) -> None:
    """Set ``edited_in_version`` on the entries that were edited."""
    versions = [e.version for e in entries if not e.edits_version]
    if not versions:
        return
    latest = {
        r["edits_version"]: r["latest"] for r in await conn.fetch(EDITED_IN, issue_id, versions)
    }
    for entry in entries:
        entry.edited_in_version = int(latest.get(entry.version, 0))


class EditsAndCustomFields(BackendCalls):
    """Edit, Redact and the custom-field calls over the backend's pool."""

    #: Removes an attachment's content within a redaction (installed by the
    #: attachments module; without one, attachment redactions are NotFound).
    attachment_redactor: ClassVar[_edits.AttachmentRedactor | None] = None

    async def edit_comment(self, request: v1.EditCommentRequest) -> v1.ChangeIssueResponse:
        """Append an entry that supersedes a comment's text (its author only)."""
        changed, _ = await self._write(
            request.caller, lambda ctx: _edits.edit_comment(ctx, request)
        )
        return v1.ChangeIssueResponse(issue=changed.issue, entry=changed.entry)

    async def redact(self, request: v1.RedactRequest) -> v1.ChangeIssueResponse:
        """Remove content everywhere it is kept and record the redaction (admins)."""
        response, _ = await self._redact(request)
        return response

    async def _redact(self, request: v1.RedactRequest) -> tuple[v1.ChangeIssueResponse, str]:
        """:meth:`redact`, with the hash of the attachment content it redacted (or ``""``)."""
        redactor = type(self).attachment_redactor
        (changed, sha256), _ = await self._write(
            request.caller, lambda ctx: _edits.redact(ctx, request, redactor)
        )
        return v1.ChangeIssueResponse(issue=changed.issue, entry=changed.entry), sha256

    async def create_custom_field(self, request: v1.CreateCustomFieldRequest) -> v1.CustomField:
        """Define a field on a component (admin there)."""
        field, _ = await self._write(
            request.caller, lambda ctx: _custom_fields.create_field(ctx, request)
        )
        return field

    async def list_custom_fields(
        self, request: v1.ListCustomFieldsRequest
    ) -> v1.ListCustomFieldsResponse:
        """The fields applying to a visible component, root first.

        A read of one statement (no write transaction): the web asks this for
        every component of a result page, so its cost is per row shown.
        With ``all_visible``, the fields of the caller's whole tree, a page
        at a time (:meth:`_list_all_visible_fields`).
        """
        caller = request.caller or v1.Caller()
        if request.all_visible:
            return await self._list_all_visible_fields(caller, request.page)

        async def read() -> list[asyncpg.Record]:
            async with translated_errors(), self._pool.acquire() as conn:
                rows: list[asyncpg.Record] = await conn.fetch(
                    _custom_fields.LIST_APPLICABLE, request.component_id
                )
                return rows

        rows = await retrying(self._retry_policy, read)
        if not rows or caller_role(caller, rows[0]["component_acl"]) is None:
            raise component_not_found(request.component_id, "component_id")
        return v1.ListCustomFieldsResponse(
            custom_fields=[_custom_fields.field_from_row(r) for r in rows if r["id"] is not None]
        )

    async def _list_all_visible_fields(
        self, caller: v1.Caller, page_request: v1.PageRequest | None
    ) -> v1.ListCustomFieldsResponse:
        """Every field applying to a component ``caller`` views, by id, keyset-paged by id.

        One statement a page, whatever the size of the tree: a frontend that
        offers the fields of all of a viewer's components (a saved search's
        columns) asked one component at a time before, thousands of calls on
        a large tree.
        """
        page = KeysetPage.of(self._tokens, page_request, "custom_fields", caller_key(caller))

        async def read() -> list[asyncpg.Record]:
            async with translated_errors(), self._pool.acquire() as conn:
                rows: list[asyncpg.Record] = await conn.fetch(
                    _custom_fields.LIST_ALL_VISIBLE,
                    caller.admin,
                    principals_of(caller),
                    page.after(0),
                    page.size + 1,
                )
                return rows

        rows, more = page.cut(await retrying(self._retry_policy, read))
        return v1.ListCustomFieldsResponse(
            custom_fields=[_custom_fields.field_from_row(r) for r in rows],
            next_page_token=page.next_token(rows, more, lambda r: [r["id"]]),
        )

    async def update_custom_field(self, request: v1.UpdateCustomFieldRequest) -> v1.CustomField:
        """Change the masked parts of a definition (admin on its component)."""
        mask = request.update_mask.paths if request.update_mask else []
        paths = [p for p in mask if p in CUSTOM_FIELD_MASK_PATHS]
        field, _ = await self._write(
            request.caller, lambda ctx: _custom_fields.update_field(ctx, request, paths)
        )
        return field

    async def delete_custom_field(self, request: v1.DeleteCustomFieldRequest) -> v1.DeleteResponse:
        """Delete a definition and its values; history keeps the old values."""
        await self._write(request.caller, lambda ctx: _custom_fields.delete_field(ctx, request))
        return v1.DeleteResponse()


__all__ = ["EditsAndCustomFields", "mark_edited"]
