"""DeleteAttachment in one statement: read without locks, then write once if nothing moved.

A deletion reads the file with its issue, unlocked (:data:`FETCH_FOR_DELETION`),
refuses as the locked path does (:func:`_attachments.refuse_deletion`), and
writes the issue's new version, the file's deletion, its entry and the
change feed's row with its NOTIFY in one statement (:data:`DELETION_IN_ONE`),
atomic by itself on READ COMMITTED, so no BEGIN/COMMIT: two statements
where the locked path takes six.

As in :mod:`._change_in_one`, the statement writes only while the issue's
row is the row version read (the same ``version`` and ``xmin``). Every
write of an attachment's row (an upload, a deletion, a redaction) bumps its
issue's version under the issue's lock, so at that row version the file is
as read. A writer that moved the row on makes the statement write nothing,
not even the issue's row: :func:`delete` answers ``None`` and the backend
runs the locked path (:func:`_attachments.delete`), which decides as before
(the file deleted meanwhile: FailedPrecondition; a stale version: ABORTED).
The content's removal after the deletion is the backend's, as before.
"""

from __future__ import annotations

from bugless_model_postgres import _attachments, _change_in_one, _issues
from bugless_model_postgres import _queries as q
from bugless_model_postgres._context import WriteContext
from bugless_model_postgres._convert import caller_role, entry_from_row
from bugless_model_postgres._dialect import Dialect
from bugless_proto import v1

_ISSUE_FROM = "  FROM issues i JOIN components c ON c.id = i.component_id\n WHERE i.id = $1::bigint"
#: Attachment $1 with its issue as :data:`q.FETCH_ISSUE` reads it for the
#: caller (``$2`` admin, ``$3`` user id; ``id`` is the issue's), read without
#: locks, with :data:`_change_in_one.ROW_CHECK_COLUMNS` and the file's
#: ``uploader``, ``deleted_in_version``, ``sha256`` and name (``attachment_name``).
FETCH_FOR_DELETION = q.fetch_issue_with(
    _change_in_one.ROW_CHECK_COLUMNS
    + ", a.uploader, a.deleted_in_version, a.sha256, a.name AS attachment_name"
).replace(
    _ISSUE_FROM,
    "  FROM attachments a JOIN issues i ON i.id = a.issue_id"
    " JOIN components c ON c.id = i.component_id\n WHERE a.id = $1::bigint",
    1,
)
assert "WHERE a.id = $1" in FETCH_FOR_DELETION, "FETCH_ISSUE's FROM and WHERE changed"

#: Attachment ``$5`` of issue ``$1`` deleted in one statement, atomic without
#: BEGIN/COMMIT on READ COMMITTED: the issue's new version
#: (:data:`_attachments.BUMP`, ``$2`` the time, ``$3`` 0 and ``$4`` ''
#: for no comment) only if the row is still version ``$6``, the very row
#: version read (``xmin`` ``$7``) and the file is not deleted; the file
#: marked deleted by it; the entry (author ``$8``) naming the file; and the
#: change feed's row with its NOTIFY on channel ``$9``, last, as in
#: :data:`q.ENTRY_AND_FEED`. Each part writes only if the one before it did.
#: Returns :func:`_change_in_one.answer`'s columns; no row: nothing written.
DELETION_IN_ONE = (
    "WITH upd AS (\n"
    + _attachments.BUMP.replace(
        " WHERE i.id = $1\n",
        " WHERE i.id = $1 AND i.version = $6::bigint AND i.xmin = $7::text::xid\n"
        "   AND EXISTS (SELECT 1 FROM attachments f\n"
        "                WHERE f.id = $5 AND f.issue_id = $1 AND f.deleted_in_version = 0)\n",
        1,
    ).strip()
    + """
), marked AS (
    UPDATE attachments f SET deleted_in_version = upd.version
      FROM upd
     WHERE f.id = $5 AND f.deleted_in_version = 0
    RETURNING f.id
), entry AS (
    INSERT INTO issue_history (issue_id, version, author, created_at, comment, changes,
                               deleted_attachment_id)
    SELECT upd.id, upd.version, $8, $2, '', '[]'::jsonb, marked.id FROM upd CROSS JOIN marked
    RETURNING *
)"""
    + q.feed_after_entry(
        committed_at="$2",
        author="$8",
        issue_ids="ARRAY[$1::bigint]",
        versions="ARRAY[$6::bigint + 1]",
    )
    + _change_in_one.answer(channel="$9")
)
assert "i.xmin = $7" in DELETION_IN_ONE, "BUMP's WHERE changed"


def eligible(dialect: Dialect) -> bool:
    """Whether a deletion may be written by :func:`delete` (decided before any read).

    Wherever a change may be (:func:`_change_in_one.dialect_allows`): the
    deletion reads nothing but the file with its issue.
    """
    return _change_in_one.dialect_allows(dialect)


async def delete(
    ctx: WriteContext, request: v1.DeleteAttachmentRequest
) -> _attachments.Written | None:
    """The deletion written in one statement, or ``None``: nothing written, take the locked path.

    Refuses as :func:`_attachments.delete` does, in its order: NotFound, a
    stale version (ABORTED, for a caller who may edit the issue), then
    :func:`_attachments.refuse_deletion`.
    """
    caller, attachment_id = ctx.caller, request.attachment_id
    row = await ctx.conn.fetchrow(FETCH_FOR_DELETION, attachment_id, caller.admin, caller.user_id)
    role = caller_role(caller, row["effective_acl"]) if row is not None else None
    if row is None or role is None:
        raise _attachments.attachment_not_found(attachment_id)
    issue_id, version = int(row["id"]), int(row["version"])
    if request.expected_version:  # any mismatch left after the refusals raises here
        _issues.reject_stale(ctx, issue_id, request.expected_version, row, version)
    await _attachments.refuse_deletion(
        ctx,
        attachment_id,
        row,
        issue_id=issue_id,
        role=role,
        component_id=int(row["component_id"]),
        path=str(row["component_path"]),
    )
    done = await ctx.conn.fetchrow(
        DELETION_IN_ONE, issue_id, ctx.now, 0, "", attachment_id, version, row["row_xmin"],
        caller.user_id, ctx.channel,
    )  # fmt: skip
    if done is None:
        return None
    written = _change_in_one.record_answer(ctx, done)
    issue = await _attachments.issue_after(ctx, row, written)
    entry = entry_from_row(done)
    name = ctx.deleted_names[attachment_id] = str(row["attachment_name"])
    entry.deleted_attachment_name = name  # as history reads name it, and listeners hear it
    return _attachments.Written(issue, entry, bytes(row["sha256"]).hex())
