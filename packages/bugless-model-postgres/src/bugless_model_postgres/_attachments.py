"""Attachments: metadata rows beside the issue, content in the blob store.

An attachment belongs to the history entry that attached it, so it is
exactly as visible as its issue (the same ``effective_acl`` decides), and a
caller who may not see the issue gets NOT_FOUND for the attachment's id.

Content is shared: the blob store is content-addressed, so two attachments
of the same bytes refer to one stored copy. Whoever adds or drops a
reference first locks the content's row in ``attachment_contents`` (made on
first use); removing content that nothing refers to any more happens under
that lock, after re-counting the references, so it never races with
attaching the same bytes again: an attacher that took the lock after a
removal finds the content gone and is told to send the file again.
"""

from __future__ import annotations

import logging
from typing import NamedTuple

import asyncpg

from bugless_core.attachments import MAX_ATTACHMENTS_PER_ISSUE, issue_too_large
from bugless_core.blobs import BlobRef, BlobStore
from bugless_core.errors import (
    FailedPrecondition,
    IssueVersionConflict,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unavailable,
)
from bugless_model_postgres import _custom_values, _entries, _issues, _mentions
from bugless_model_postgres import _queries as q
from bugless_model_postgres._context import (
    ROLE_NAMES,
    WriteContext,
    editable_row,
    seen_component_path,
)
from bugless_model_postgres._convert import Conn, Row, caller_role, entry_from_row, one_row
from bugless_model_postgres._halving import Fold, fold
from bugless_model_postgres._mention_scans import PROGRESS_SECONDS
from bugless_proto import v1

#: An upload's refusal when its content was removed before its lock was taken.
CONTENT_GONE = "the file's content was removed by a concurrent deletion; send the file again"
#: Live attachments of issue $1 (not deleted, not redacted): what counts
#: against the per-issue limit.
USAGE = """(SELECT coalesce(sum(size), 0)::bigint AS used, count(*) AS files
   FROM attachments
  WHERE issue_id = $1 AND deleted_in_version = 0 AND NOT redacted) AS u"""
#: What an upload checks before reading a byte, in one statement: issue $1's
#: version and who may change it, and what its live attachments use.
ATTACH_CHECKS = f"""
SELECT i.version, i.component_id, c.effective_acl, c.path AS component_path, u.used, u.files
  FROM issues i JOIN components c ON c.id = i.component_id CROSS JOIN {USAGE}
 WHERE i.id = $1
"""
#: An attachment with what decides its visibility, and its issue's version
#: (a deletion's version check before locking reads it here).
BY_ID = """
SELECT a.*, i.component_id, i.version AS issue_version, c.effective_acl,
       c.path AS component_path
  FROM attachments a
  JOIN issues i ON i.id = a.issue_id
  JOIN components c ON c.id = i.component_id
 WHERE a.id = $1
"""
#: Attachments of issue $1, oldest first, deleted ones when $2.
OF_ISSUE = """
SELECT * FROM attachments
 WHERE issue_id = $1 AND ($2 OR deleted_in_version = 0)
 ORDER BY id
"""
#: Attachments added by entries $2 of issue $1.
OF_ENTRIES = """
SELECT * FROM attachments
 WHERE issue_id = $1 AND entry_version = ANY ($2::bigint[])
 ORDER BY id
"""
#: Attachments added by the entries (issue $1[n], version $2[n]), exactly those.
OF_ENTRY_PAIRS = """
SELECT a.* FROM unnest($1::bigint[], $2::bigint[]) AS p(issue_id, version)
  JOIN attachments a ON a.issue_id = p.issue_id AND a.entry_version = p.version
 ORDER BY a.id
"""
#: Attachments added by entries of issues $1 at versions $2 (a superset of
#: the pairs wanted: the caller keeps its own pairs; portable to CockroachDB).
OF_FEED_ENTRIES = """
SELECT * FROM attachments
 WHERE issue_id = ANY ($1::bigint[]) AND entry_version = ANY ($2::bigint[])
 ORDER BY id
"""
#: Attachments deleted by entries of issues $1 at versions $2 (a superset, as above).
DELETIONS_OF_FEED_ENTRIES = """
SELECT issue_id, version, deleted_attachment_id FROM issue_history
 WHERE issue_id = ANY ($1::bigint[]) AND version = ANY ($2::bigint[])
   AND deleted_attachment_id <> 0
"""
#: Names of attachments $1 (deleted ones: their metadata stays).
NAMES = "SELECT id, name FROM attachments WHERE id = ANY ($1::bigint[])"
#: The columns of :data:`INSERT`'s ``$3``-``$7``, an upload's file.
_FILE_COLUMNS = ("name", "size", "content_type", "declared_content_type", "sha256")
#: An upload's file (``$3``-``$7``), its uploader ``$8`` and time ``$9``, and its
#: name folded by ``str.casefold`` ``$10`` (``attachment:`` terms, migration 0022).
INSERT = """
INSERT INTO attachments (issue_id, entry_version, name, size, content_type,
                         declared_content_type, sha256, uploader, created_at, folded_name)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
RETURNING *
"""
#: :data:`INSERT` for an imported file, with its source's description ``$11``
#: (migration 0031).
INSERT_IMPORTED = """
INSERT INTO attachments (issue_id, entry_version, name, size, content_type,
                         declared_content_type, sha256, uploader, created_at, folded_name,
                         description)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
"""
#: Up to $1 attachments without their folded name (made before migration
#: 0022, or by a replica of the release before it since).
UNFOLDED_NAMES = "SELECT id, name FROM attachments WHERE folded_name IS NULL ORDER BY id LIMIT $1"
#: Attachments $1 named $2 take folded names $3, unless folded since.
SET_FOLDED_NAMES = """
UPDATE attachments a SET folded_name = k.folded_name
  FROM unnest($1::bigint[], $2::text[], $3::text[]) AS k(id, name, folded_name)
 WHERE a.id = k.id AND a.name = k.name AND a.folded_name IS NULL
"""
#: Names folded per statement by :func:`fold_names` (fewer past ``statement_timeout``).
FOLD_BATCH = 5000
#: An upload's attachment (``$13`` name, ``$14`` size, ``$15`` content type,
#: ``$16`` declared content type, ``$17`` sha256, ``$18`` the name folded as
#: in :data:`INSERT`), its entry and the change
#: feed's row in one statement: :data:`q.ENTRY_AND_FEED` (``$1``-``$12``), the
#: attachment inserted with it (the entry's issue, version, author and time);
#: returns the attachment's id as ``attachment_id``.
UPLOAD_AND_FEED = q.ENTRY_AND_FEED.replace(
    "WITH entry AS (",
    """WITH attached AS (
    INSERT INTO attachments (issue_id, entry_version, name, size, content_type,
                             declared_content_type, sha256, uploader, created_at,
                             folded_name)
    VALUES ($1, $2, $13, $14, $15, $16, $17, $3, $4, $18)
    RETURNING id
), entry AS (""",
    1,
).replace(
    "::text)\n  FROM entry CROSS JOIN appended",
    "::text),\n       attached.id AS attachment_id\n"
    "  FROM entry CROSS JOIN appended CROSS JOIN attached",
    1,
)
assert "attachment_id\n" in UPLOAD_AND_FEED, "ENTRY_AND_FEED's last lines changed"
#: A new entry's version, with its comment counted and indexed ($3 0/1, $4
#: text); the issue's columns returned as :data:`q.FETCH_ISSUE` reads them (the
#: call's reply is built from them: no read after the write).
BUMP = f"""
UPDATE issues AS i
   SET version = i.version + 1, modified_at = $2, comment_count = i.comment_count + $3,
       comments_tsv = i.comments_tsv || to_tsvector('english', $4),
       text_tsv = to_tsvector('english', i.title) || i.comments_tsv || to_tsvector('english', $4)
 WHERE i.id = $1
RETURNING {q.ISSUE_COLUMNS}"""
#: :data:`BUMP` for an upload, also returning what the issue's live
#: attachments used before it (``used``, ``files``: read under the issue's
#: lock, so no other attach or delete changes them; the limits are checked
#: on them after, and a refusal rolls the bump back).
BUMP_WITH_USAGE = f"""
UPDATE issues AS i
   SET version = i.version + 1, modified_at = $2, comment_count = i.comment_count + $3,
       comments_tsv = i.comments_tsv || to_tsvector('english', $4),
       text_tsv = to_tsvector('english', i.title) || i.comments_tsv || to_tsvector('english', $4)
  FROM {USAGE}
 WHERE i.id = $1
RETURNING {q.ISSUE_COLUMNS}, u.used, u.files"""
#: Mark attachment $1 of issue $2 redacted, unless it is already, its
#: description blanked with its content; its content's hash and the
#: description it had (``old_description``: the redaction takes it out of
#: the issue's vectors and mentions when there was one).
MARK_REDACTED = """
WITH old AS (
    SELECT description FROM attachments WHERE id = $1 AND issue_id = $2 AND NOT redacted
)
UPDATE attachments SET redacted = true, description = ''
 WHERE id = $1 AND issue_id = $2 AND NOT redacted
RETURNING sha256, (SELECT description FROM old) AS old_description
"""
#: The content row of $1, made if missing, locked either way, in one
#: statement: the insert holds a new row, the conflict's update an existing
#: one (waiting for its holder; a row its holder deleted is inserted anew).
#: It writes the row's one column unchanged: ``DO NOTHING`` would take no lock.
LOCK_CONTENT = """
INSERT INTO attachment_contents AS c (sha256) VALUES ($1)
ON CONFLICT (sha256) DO UPDATE SET sha256 = c.sha256
"""
#: Forget content $1 (its row, locked) unless an attachment still needs it;
#: its hash when forgotten.
FORGET_UNREFERENCED = """
DELETE FROM attachment_contents c
 WHERE c.sha256 = $1
   AND NOT EXISTS (SELECT 1 FROM attachments a
                    WHERE a.sha256 = $1 AND a.deleted_in_version = 0 AND NOT a.redacted)
RETURNING c.sha256
"""
#: Which of the hashes $1 some live attachment still needs.
REFERENCED_AMONG = """
SELECT DISTINCT sha256 FROM attachments
 WHERE sha256 = ANY ($1::bytea[]) AND deleted_in_version = 0 AND NOT redacted
"""


def attachment_from_row(row: Row) -> v1.Attachment:
    """An ``attachments`` row as its message."""
    return v1.Attachment(
        id=row["id"],
        issue_id=row["issue_id"],
        entry_version=row["entry_version"],
        name=row["name"],
        size=row["size"],
        content_type=row["content_type"],
        declared_content_type=row["declared_content_type"],
        sha256=bytes(row["sha256"]).hex(),
        uploader=row["uploader"],
        created_at=row["created_at"],
        deleted_in_version=row["deleted_in_version"],
        redacted=row["redacted"],
        description=row["description"],
    )


def attachment_not_found(attachment_id: int) -> NotFound:
    """The one message for a missing or invisible attachment."""
    return NotFound(
        f"attachment {attachment_id} not found",
        metadata={"attachment_id": str(attachment_id)},
    )


async def visible_attachment(
    conn: Conn, caller: v1.Caller, attachment_id: int
) -> tuple[asyncpg.Record, v1.Role]:
    """The attachment's row and the caller's role, if they may view its issue."""
    row = await conn.fetchrow(BY_ID, attachment_id)
    role = caller_role(caller, row["effective_acl"]) if row is not None else None
    if row is None or role is None:
        raise attachment_not_found(attachment_id)
    return row, role


class Written(NamedTuple):
    """What an upload or a deletion wrote, as its caller sees it (the call's reply).

    Built inside the write's transaction from the rows it wrote and the issue's
    row read under its lock (a deletion in one statement, :mod:`._delete_in_one`:
    read just before it, at the row version the statement checks), so a
    retried attempt (CockroachDB's 40001) answers what its own attempt
    committed, and the call reads nothing back.

    Attributes:
        issue: The issue at its new version.
        entry: The entry the call appended (with the file it attached, if any).
        sha256: The content the attachment refers to.
    """

    issue: v1.Issue
    entry: v1.HistoryEntry
    sha256: str


async def _refuse(ctx: WriteContext, issue_id: int, row: Row | None, expected_version: int) -> Row:
    """NotFound, PermissionDenied, then ABORTED (a stale version), in that order."""
    editable = await editable_row(ctx, issue_id, row, "attach files to")
    _check_version(issue_id, expected_version, editable)
    return editable


def _refuse_one_more(issue_id: int, files: int) -> None:
    if files >= MAX_ATTACHMENTS_PER_ISSUE:
        msg = (
            f"issue {issue_id} has {files} attachments, the most one issue may have; "
            "delete some first"
        )
        raise ResourceExhausted(msg, retry_after=None, metadata={"issue_id": str(issue_id)})


async def check_can_attach(ctx: WriteContext, issue_id: int, expected_version: int) -> int:
    """NotFound / PermissionDenied / ABORTED / file-count refusal; else the bytes used.

    One statement (:data:`ATTACH_CHECKS`), before a byte is read: a stale
    upload is refused without streaming its file. The attach checks again
    under the issue's lock.
    """
    row = await ctx.conn.fetchrow(ATTACH_CHECKS, issue_id)
    await _refuse(ctx, issue_id, row, expected_version)
    assert row is not None  # _refuse raised otherwise
    _refuse_one_more(issue_id, int(row["files"]))
    return int(row["used"])


def _check_version(issue_id: int, expected_version: int, loaded: Row) -> None:
    """The check against the issue's row as read (0: any version)."""
    if expected_version and loaded["version"] != expected_version:
        raise IssueVersionConflict(issue_id, expected_version, int(loaded["version"]))


async def lock_content(ctx: WriteContext, sha256: str) -> None:
    """Take the lock that adding or dropping a reference to ``sha256`` needs."""
    await ctx.conn.execute(LOCK_CONTENT, bytes.fromhex(sha256))


async def issue_after(ctx: WriteContext, loaded: Row, written: Row) -> v1.Issue:
    """The issue as an upload or a deletion left it (``loaded``: as read for the caller)."""
    custom = _custom_values.load_values(written["custom_fields"])
    return await _issues.changed_issue(ctx, loaded, written, custom=custom)


async def record_upload(
    ctx: WriteContext,
    header: v1.UploadAttachmentHeader,
    *,
    name: str,
    ref: BlobRef,
    content_type: str,
    max_issue_bytes: int,
    store: BlobStore,
    content_checked: bool = False,
) -> tuple[Row, Written]:
    """Attach stored content by a new entry; return the attachment's row and what was written.

    ``content_checked``: the transaction holds the content's lock and found
    the content stored under it already (:mod:`._upload_in_one`).
    """
    issue_id, expected_version = header.issue_id, header.expected_version
    if expected_version:  # under SERIALIZABLE only (see the function)
        await _issues.reject_stale_before_locking(ctx, issue_id, expected_version)
    locked = (await _issues.lock_and_load(ctx, {issue_id})).get(issue_id)
    loaded = await _refuse(ctx, issue_id, locked, expected_version)
    comment = header.comment
    written = one_row(
        await ctx.conn.fetchrow(BUMP_WITH_USAGE, issue_id, ctx.now, 1 if comment else 0, comment)
    )
    used = int(written["used"])
    _refuse_one_more(issue_id, int(written["files"]))
    if used + ref.size > max_issue_bytes:
        raise issue_too_large(max_issue_bytes, used)
    if not content_checked:
        await lock_content(ctx, ref.sha256)
        if not await store.exists(ref.sha256):
            raise Unavailable(CONTENT_GONE)
    version = int(written["version"])
    await _mentions.add(ctx.conn, issue_id, comment)
    file = (name, ref.size, content_type, header.content_type, bytes.fromhex(ref.sha256))
    issue = await issue_after(ctx, loaded, written)  # before the feed's lock
    row: Row
    if _entries.entry_takes_feed(ctx):  # the file, its entry and the feed row at once
        values = _entries.last_entry_values(ctx, issue_id, version, comment, [])
        entry_row = await _entries.entry_and_feed(
            ctx, UPLOAD_AND_FEED, values, *file, name.casefold()
        )
        ctx.written.append((issue_id, version))
        row = dict(zip(_FILE_COLUMNS, file, strict=True))
        row.update(
            id=entry_row["attachment_id"], issue_id=issue_id, entry_version=version,
            uploader=ctx.caller.user_id, created_at=ctx.now, deleted_in_version=0,
            redacted=False, description="",
        )  # fmt: skip
    else:
        row = one_row(await ctx.conn.fetchrow(
            INSERT, issue_id, version, *file, ctx.caller.user_id, ctx.now, name.casefold()
        ))  # fmt: skip
        entry_row = await _entries.insert_last_entry(ctx, issue_id, version, comment, [])
    entry = entry_from_row(entry_row)
    entry.attachments = [attachment_from_row(row)]
    ctx.know_entry(entry_row, (row,))
    return row, Written(issue, entry, ref.sha256)


async def refuse_deletion(
    ctx: WriteContext,
    attachment_id: int,
    row: Row,
    *,
    issue_id: int,
    role: v1.Role,
    component_id: int,
    path: str,
) -> None:
    """The refusals of a deletion by a caller who may view the file, in their order.

    PermissionDenied unless the caller uploaded it or is an admin of its
    component (``component_id``, whose whole path is ``path``: named as the
    caller sees it), FailedPrecondition if it is deleted already,
    PermissionDenied without the editor role. ``row``: the attachment's
    ``uploader`` and ``deleted_in_version`` as read; ``role``: the caller's
    on the issue's component. Both deletion paths (:func:`delete` and
    :mod:`._delete_in_one`) refuse through here.
    """
    if role < v1.Role.ADMIN and row["uploader"] != ctx.caller.user_id:
        path = await seen_component_path(ctx.conn, ctx.caller, component_id, path)
        raise PermissionDenied(
            f"only its uploader or an {ROLE_NAMES[v1.Role.ADMIN]} of component "
            f"{path} may delete attachment {attachment_id}",
            metadata={"attachment_id": str(attachment_id)},
        )
    if row["deleted_in_version"]:
        raise FailedPrecondition(
            f"attachment {attachment_id} was already deleted (entry {row['deleted_in_version']})",
            metadata={"attachment_id": str(attachment_id)},
        )
    if role < v1.Role.EDITOR:
        path = await seen_component_path(ctx.conn, ctx.caller, component_id, path)
        raise PermissionDenied(
            f"{ROLE_NAMES[v1.Role.EDITOR]} role on component {path} needed "
            f"to change issue {issue_id}",
            metadata={"issue_id": str(issue_id)},
        )


async def delete(ctx: WriteContext, request: v1.DeleteAttachmentRequest) -> Written:
    """Detach by a new entry; return what was written (its sha256: content to maybe remove).

    The locked path: on CockroachDB and SERIALIZABLE, and on READ COMMITTED
    after :mod:`._delete_in_one` found the issue's row moved on.
    """
    row, role = await visible_attachment(ctx.conn, ctx.caller, request.attachment_id)
    issue_id = int(row["issue_id"])
    if request.expected_version:  # before the uploader check under the lock
        _issues.reject_stale(ctx, issue_id, request.expected_version, row, row["issue_version"])
    loaded = (await _issues.lock_and_load(ctx, {issue_id})).get(issue_id)
    if loaded is not None and loaded["version"] == row["issue_version"]:
        # Every write of an attachment's row (a deletion, a redaction) bumps
        # its issue's version under the issue's lock: at the version read with
        # it, the row is current. Who may see it is the issue's, read under the lock.
        found = caller_role(ctx.caller, loaded["effective_acl"])
        if found is None:
            raise attachment_not_found(request.attachment_id)
        role, path = found, str(loaded["component_path"])
        component_id = int(loaded["component_id"])
    else:
        row, role = await visible_attachment(ctx.conn, ctx.caller, request.attachment_id)
        path, component_id = str(row["component_path"]), int(row["component_id"])
    await refuse_deletion(
        ctx,
        request.attachment_id,
        row,
        issue_id=issue_id,
        role=role,
        component_id=component_id,
        path=path,
    )
    if loaded is None:  # its component's ACL changed between the two reads
        raise attachment_not_found(request.attachment_id)
    _check_version(issue_id, request.expected_version, loaded)
    written = one_row(await ctx.conn.fetchrow(BUMP, issue_id, ctx.now, 0, ""))
    version = int(written["version"])
    issue = await issue_after(ctx, loaded, written)  # before the feed's lock
    entry = entry_from_row(
        await _entries.insert_last_entry(
            ctx, issue_id, version, "", [], deleted_attachment_id=request.attachment_id
        )
    )
    # Named as history reads name it (:func:`_name_deletions`), so the
    # reply and what listeners hear equal a later read of the entry.
    entry.deleted_attachment_name = ctx.deleted_names[request.attachment_id] = str(row["name"])
    return Written(issue, entry, bytes(row["sha256"]).hex())


async def redact(ctx: WriteContext, issue_id: int, attachment_id: int) -> tuple[str, str]:
    """Mark an attachment's content redacted (inside the redaction).

    Returns:
        Its sha256, and the description it had (blanked with the content).
    """
    marked = await ctx.conn.fetchrow(MARK_REDACTED, attachment_id, issue_id)
    if marked is not None:
        return bytes(marked["sha256"]).hex(), str(marked["old_description"])
    row = await ctx.conn.fetchrow(BY_ID, attachment_id)
    if row is None or row["issue_id"] != issue_id:
        raise NotFound(
            f"attachment_id: issue {issue_id} has no attachment {attachment_id}",
            metadata={"field": "attachment_id"},
        )
    raise FailedPrecondition(
        f"the content of attachment {attachment_id} was already redacted",
        metadata={"attachment_id": str(attachment_id)},
    )


async def remove_if_unreferenced(ctx: WriteContext, sha256: str, store: BlobStore) -> bool:
    """Under the content lock: remove content no live attachment refers to any more."""
    await lock_content(ctx, sha256)
    if await ctx.conn.fetchval(FORGET_UNREFERENCED, bytes.fromhex(sha256)) is None:
        return False
    # The row's removal commits only if the content's does: a failure here
    # rolls it back with the transaction.
    await store.delete(sha256)
    return True


async def fill_entries(conn: Conn, issue_id: int, entries: list[v1.HistoryEntry]) -> None:
    """Set ``attachments`` on the entries that attached files."""
    if not entries:
        return
    rows = await conn.fetch(OF_ENTRIES, issue_id, [e.version for e in entries])
    by_version: dict[int, list[v1.Attachment]] = {}
    for row in rows:
        by_version.setdefault(row["entry_version"], []).append(attachment_from_row(row))
    for entry in entries:
        entry.attachments = by_version.get(entry.version, [])
    await _name_deletions(conn, entries)


async def _name_deletions(conn: Conn, entries: list[v1.HistoryEntry]) -> None:
    """Set ``deleted_attachment_name`` on the entries that deleted a file.

    Why the Model says it: a mail or page can then say "Deleted attachment
    build.log", not its id, without listing the issue's attachments. One
    statement, and only when some entry deleted a file.
    """
    ids = sorted({e.deleted_attachment_id for e in entries if e.deleted_attachment_id})
    if not ids:
        return
    names = {r["id"]: r["name"] for r in await conn.fetch(NAMES, ids)}
    for entry in entries:
        entry.deleted_attachment_name = names.get(entry.deleted_attachment_id, "")


async def fill_entries_of_issues(conn: Conn, entries: list[v1.HistoryEntry]) -> None:
    """:func:`fill_entries` for entries of several issues, in one statement."""
    if not entries:
        return
    rows = await conn.fetch(
        OF_ENTRY_PAIRS, [e.issue_id for e in entries], [e.version for e in entries]
    )
    by_entry: dict[tuple[int, int], list[v1.Attachment]] = {}
    for row in rows:
        key = (row["issue_id"], row["entry_version"])
        by_entry.setdefault(key, []).append(attachment_from_row(row))
    for entry in entries:
        entry.attachments = by_entry.get((entry.issue_id, entry.version), [])
    await _name_deletions(conn, entries)


async def fill_feed_entries(conn: Conn, entries: list[v1.FeedEntry]) -> None:
    """Set ``attachments`` and ``deleted_attachment_id`` on change-feed entries.

    Why here and not left to readers: the notifier and the web's live pages
    learn of a change from the feed; with the files named in it they can say
    "attached crash.log" without reading every entry back.
    """
    if not entries:
        return
    wanted = {(e.issue_id, e.version): e for e in entries}
    issue_ids = sorted({e.issue_id for e in entries})
    versions = sorted({e.version for e in entries})
    for row in await conn.fetch(OF_FEED_ENTRIES, issue_ids, versions):
        entry = wanted.get((row["issue_id"], row["entry_version"]))
        if entry is not None:
            entry.attachments.append(attachment_from_row(row))
    for row in await conn.fetch(DELETIONS_OF_FEED_ENTRIES, issue_ids, versions):
        entry = wanted.get((row["issue_id"], row["version"]))
        if entry is not None:
            entry.deleted_attachment_id = row["deleted_attachment_id"]


async def fold_names(
    pool: asyncpg.Pool, *, batch: int = FOLD_BATCH, progress_seconds: float = PROGRESS_SECONDS
) -> int:
    """Fold the names of the attachments migration 0022 left without; how many were.

    The Model runs it right after migrating, ``batch`` names a statement,
    fewer past ``statement_timeout`` (:func:`._halving.fold`). Names are
    folded by ``str.casefold``, as every upload writes them.

    Raises:
        Unavailable: one name alone ran past ``statement_timeout``.
    """
    return await fold(pool, _UNFOLDED, batch=batch, progress_seconds=progress_seconds)


_UNFOLDED = Fold(
    name="migration 0022's fold of attachment names",
    count="SELECT count(*) FROM attachments WHERE folded_name IS NULL",
    select=UNFOLDED_NAMES,
    update=SET_FOLDED_NAMES,
    arguments=lambda rows: (
        [r["id"] for r in rows],
        [r["name"] for r in rows],
        [r["name"].casefold() for r in rows],
    ),
    row=lambda r: f"the name of attachment {r['id']}",
    log=logging.getLogger(__name__),
)
