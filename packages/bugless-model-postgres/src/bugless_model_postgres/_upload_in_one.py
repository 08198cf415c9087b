"""UploadAttachment's write in two statements: the content's lock with the issue, then the rest.

Once the file is stored, an upload must hold its content's row lock
(:data:`_attachments.LOCK_CONTENT`) from checking that the store still has
the content until its reference commits, so that a concurrent removal either
waits and then sees the reference, or removed the content before and the
upload is told to send the file again (:mod:`._attachments`). That needs a
transaction; the locked path then takes the issue's lock, bumps its version
with the usage, inserts the file with its entry and the feed row: five
statements between BEGIN and COMMIT.

Here, on READ COMMITTED, the content's lock is taken by the statement that
reads the issue as the caller sees it, with what its live files use
(:data:`LOCK_CONTENT_AND_READ`, unlocked); the store is checked; and, if the
read allows the upload (visible, editable, the expected version, room for
one more file of this size), one statement bumps the issue's version, inserts
the file, its entry, the mentions and the feed row with its NOTIFY
(:func:`upload_in_one`), only while the issue's row is the row version read
(the same ``version`` and ``xmin``, as :mod:`._change_in_one`). Every write
of an attachment's row bumps its issue's version under the issue's lock, so
at that row version the usage read is current. Two statements between BEGIN
and COMMIT. Anything else (a refusal, the row moved on) goes on in the same
transaction down the locked path (:func:`_attachments.record_upload`),
which decides and refuses as before, the content's lock held and its check
done already. The content's lock comes before the issue's on both paths
here; the locked path on its own (CockroachDB, SERIALIZABLE) takes the
issue's first, as before. (While replicas of both orders run against one
database, during an upgrade, two uploads of the same bytes to the same
issue at once may deadlock: PostgreSQL aborts one, 40P01, and the write is
retried.)
"""

from __future__ import annotations

import functools

from bugless_core.attachments import MAX_ATTACHMENTS_PER_ISSUE
from bugless_core.blobs import BlobRef, BlobStore
from bugless_core.errors import Unavailable
from bugless_core.mentions import mentioned_usernames
from bugless_model_postgres import _attachments, _change_in_one
from bugless_model_postgres import _queries as q
from bugless_model_postgres._context import WriteContext
from bugless_model_postgres._convert import Row, caller_role, entry_from_row
from bugless_model_postgres._dialect import Dialect
from bugless_proto import v1

_ISSUE_FROM = "  FROM issues i JOIN components c ON c.id = i.component_id\n WHERE i.id = $1::bigint"
#: Content ``$4``'s row made or locked (:data:`_attachments.LOCK_CONTENT`), and
#: issue ``$1`` as :data:`_change_in_one.FETCH_FOR_CHANGE` reads it for the
#: caller (``$2`` admin, ``$3`` user id), unlocked, with what its live files
#: use (``used``, ``files``). The lock is taken whether or not the issue is
#: found (a data-modifying ``WITH`` always runs).
LOCK_CONTENT_AND_READ = (
    "WITH locked AS ("
    + _attachments.LOCK_CONTENT.replace("($1)", "($4)", 1).rstrip()
    + "\n)"
    + q.fetch_issue_with(_change_in_one.ROW_CHECK_COLUMNS + ", u.used, u.files").replace(
        _ISSUE_FROM,
        "  FROM issues i JOIN components c ON c.id = i.component_id"
        f" CROSS JOIN {_attachments.USAGE}\n WHERE i.id = $1::bigint",
        1,
    )
)
assert "VALUES ($4)" in LOCK_CONTENT_AND_READ, "LOCK_CONTENT changed"
assert "CROSS JOIN (SELECT" in LOCK_CONTENT_AND_READ, "FETCH_ISSUE's FROM and WHERE changed"

#: An upload to issue ``$1`` in one statement: its new version
#: (:data:`_attachments.BUMP`, ``$2`` the time, ``$3`` 1 with a comment,
#: ``$4`` the comment) only if the row is still version ``$5`` and the very
#: row version read (``xmin`` ``$6``); the file (``$9`` name, ``$10`` size,
#: ``$11`` content type, ``$12`` declared content type, ``$13`` sha256,
#: ``$14`` the name folded, as :data:`_attachments.INSERT` writes it) and
#: the entry (author ``$7``) attaching it; the change feed's row with its
#: NOTIFY on channel ``$8``, last. Each part writes only if the issue's row
#: was. Returns :func:`_change_in_one.answer`'s columns and the file's id
#: (``attachment_id``); no row: nothing written.
UPLOAD_IN_ONE = (
    "WITH upd AS (\n"
    + _attachments.BUMP.replace(
        " WHERE i.id = $1\n",
        " WHERE i.id = $1 AND i.version = $5::bigint AND i.xmin = $6::text::xid\n",
        1,
    ).strip()
    + """
), attached AS (
    INSERT INTO attachments (issue_id, entry_version, name, size, content_type,
                             declared_content_type, sha256, uploader, created_at,
                             folded_name)
    SELECT upd.id, upd.version, $9, $10, $11, $12, $13, $7, $2, $14 FROM upd
    RETURNING id
), entry AS (
    INSERT INTO issue_history (issue_id, version, author, created_at, comment, changes)
    SELECT upd.id, upd.version, $7, $2, $4, '[]'::jsonb FROM upd
    RETURNING *
)"""
    + q.feed_after_entry(
        committed_at="$2",
        author="$7",
        issue_ids="ARRAY[$1::bigint]",
        versions="ARRAY[$5::bigint + 1]",
    )
    + _change_in_one.answer(channel="$8").replace(
        "\n  FROM entry CROSS JOIN appended CROSS JOIN upd\n",
        ", attached.id AS attachment_id\n"
        "  FROM entry CROSS JOIN appended CROSS JOIN upd CROSS JOIN attached\n",
        1,
    )
)
assert "i.xmin = $6" in UPLOAD_IN_ONE, "BUMP's WHERE changed"
assert "attached.id AS attachment_id" in UPLOAD_IN_ONE, "answer's last lines changed"


@functools.cache
def upload_in_one(*, mentions: bool) -> str:
    """:data:`UPLOAD_IN_ONE`, with the comment's mentions (``$15``) recorded if ``mentions``."""
    if not mentions:
        return UPLOAD_IN_ONE
    mentioned = _change_in_one.MENTIONED.replace("$25", "$15")
    statement = UPLOAD_IN_ONE.replace("\n), entry AS (", mentioned + "\n), entry AS (", 1)
    if statement == UPLOAD_IN_ONE:
        msg = "UPLOAD_IN_ONE's CTEs changed"
        raise RuntimeError(msg)
    return statement


def eligible(dialect: Dialect) -> bool:
    """Whether an upload is written here first (:func:`_change_in_one.dialect_allows`)."""
    return _change_in_one.dialect_allows(dialect)


def _allows(
    ctx: WriteContext, header: v1.UploadAttachmentHeader, row: Row | None, size: int, limit: int
) -> bool:
    """Whether the row read lets the upload go ahead as the locked path would, at that row."""
    if row is None:
        return False
    role = caller_role(ctx.caller, row["effective_acl"])
    if role is None or role < v1.Role.EDITOR:
        return False
    if header.expected_version and row["version"] != header.expected_version:
        return False
    files = int(row["files"])
    return files < MAX_ATTACHMENTS_PER_ISSUE and int(row["used"]) + size <= limit


async def upload(
    ctx: WriteContext,
    header: v1.UploadAttachmentHeader,
    *,
    name: str,
    ref: BlobRef,
    content_type: str,
    max_issue_bytes: int,
    store: BlobStore,
) -> tuple[Row, _attachments.Written]:
    """Attach stored content by a new entry (see the module docstring); the file's row, the reply.

    Takes the content's lock and checks the store (Unavailable if the
    content was removed meanwhile), then writes in one statement, or goes on
    down the locked path, which refuses as before.
    """
    issue_id, caller = header.issue_id, ctx.caller
    row = await ctx.conn.fetchrow(
        LOCK_CONTENT_AND_READ, issue_id, caller.admin, caller.user_id, bytes.fromhex(ref.sha256)
    )
    if not await store.exists(ref.sha256):
        raise Unavailable(_attachments.CONTENT_GONE)
    done = None
    if _allows(ctx, header, row, ref.size, max_issue_bytes):
        assert row is not None  # _allows said no otherwise
        comment = header.comment
        names = mentioned_usernames(comment)
        done = await ctx.conn.fetchrow(
            upload_in_one(mentions=bool(names)),
            issue_id, ctx.now, 1 if comment else 0, comment, row["version"], row["row_xmin"],
            caller.user_id, ctx.channel, name, ref.size, content_type, header.content_type,
            bytes.fromhex(ref.sha256), name.casefold(), *([names] if names else []),
        )  # fmt: skip
    if done is None:  # refused, or the row moved on: the locked path decides
        return await _attachments.record_upload(
            ctx, header, name=name, ref=ref, content_type=content_type,
            max_issue_bytes=max_issue_bytes, store=store, content_checked=True,
        )  # fmt: skip
    assert row is not None  # written only after a read
    written = _change_in_one.record_answer(ctx, done)
    version = int(done["version"])
    file: Row = {
        "id": done["attachment_id"], "issue_id": issue_id, "entry_version": version,
        "name": name, "size": ref.size, "content_type": content_type,
        "declared_content_type": header.content_type, "sha256": bytes.fromhex(ref.sha256),
        "uploader": caller.user_id, "created_at": ctx.now, "deleted_in_version": 0,
        "redacted": False, "description": "",
    }  # fmt: skip
    ctx.know_entry(done, (file,))
    issue = await _attachments.issue_after(ctx, row, written)
    entry = entry_from_row(done)
    entry.attachments = [_attachments.attachment_from_row(file)]
    return file, _attachments.Written(issue, entry, ref.sha256)
