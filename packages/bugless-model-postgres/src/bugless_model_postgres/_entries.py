"""A write's history entries: appended one by one, or the last one with the change-feed row.

Every write appends one entry per issue it changes (the issue's new
version). A write whose one entry is its last statement appends it with the
transaction's change-feed row and NOTIFY in the same statement, where the
database has them (:data:`q.ENTRY_AND_FEED`; ``run_write`` then appends
none); :func:`entry_takes_feed` says when. The entries whose rows a write
returns are kept for the change listeners (``WriteContext.know_entry``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

from bugless_model_postgres import _queries as q
from bugless_model_postgres._context import WriteContext
from bugless_model_postgres._convert import changes_to_json, entry_from_row, one_row
from bugless_proto import v1


async def record_entry(
    ctx: WriteContext,
    issue_id: int,
    version: int,
    comment: str,
    changes: Sequence[v1.FieldChange],
    *,
    caused_by: int = 0,
) -> None:
    """Append a history entry; the transaction's feed row will name it."""
    values = (
        issue_id,
        version,
        ctx.caller.user_id,
        ctx.now,
        comment,
        changes_to_json(changes),
        caused_by,
    )
    await ctx.conn.execute(q.INSERT_ENTRY, *values)
    ctx.written.append((issue_id, version))


async def insert_last_entry(
    ctx: WriteContext,
    issue_id: int,
    version: int,
    comment: str,
    changes: Sequence[v1.FieldChange],
    *,
    deleted_attachment_id: int = 0,
    redaction: tuple[int, int, int] = (0, 0, 0),
    edits_version: int = 0,
) -> asyncpg.Record:
    """:func:`insert_entry` for a write's one entry, written after everything else.

    ``deleted_attachment_id``: the entry deletes that attachment, which is
    marked deleted here (in the same statement, where the feed row is too).
    ``redaction``: the entry records one (target, redacted entry, redacted
    attachment), as :data:`q.INSERT_LAST_ENTRY` stores them.
    ``edits_version``: the entry is an edit of that entry's comment.

    Nothing is written after it in the transaction (reads are fine): the
    caller's work is the whole transaction and this is its last write. Where
    the change feed and NOTIFY exist (PostgreSQL), a write with no other entry
    appends its feed row in the same statement (:data:`q.ENTRY_AND_FEED`),
    one round trip fewer (``run_write`` then appends none); elsewhere the
    entry is inserted and ``run_write`` appends the feed row after it. Every
    writer queues for the feed's row lock, held from this statement to the
    commit: build the reply before it, not after.
    """
    values = last_entry_values(
        ctx, issue_id, version, comment, changes, deleted_attachment_id=deleted_attachment_id,
        redaction=redaction, edits_version=edits_version,
    )  # fmt: skip
    if entry_takes_feed(ctx):
        statement = q.DELETION_AND_FEED if deleted_attachment_id else q.ENTRY_AND_FEED
        row = await entry_and_feed(ctx, statement, values)
    else:
        if deleted_attachment_id:
            await ctx.conn.execute(q.MARK_ATTACHMENT_DELETED, deleted_attachment_id, version)
        row = one_row(await ctx.conn.fetchrow(q.INSERT_LAST_ENTRY, *values))
    ctx.written.append((issue_id, version))
    ctx.know_entry(row)
    return row


def entry_takes_feed(ctx: WriteContext) -> bool:
    """Whether the write's last entry appends the change-feed row in its statement.

    Where the change feed and NOTIFY exist (PostgreSQL) and the entry is the
    transaction's only one (:data:`q.ENTRY_AND_FEED`); ``run_write`` then
    appends none.
    """
    alone = not ctx.written and not ctx.components_changed
    return alone and ctx.dialect.change_feed and ctx.dialect.notify is not None


def last_entry_values(
    ctx: WriteContext,
    issue_id: int,
    version: int,
    comment: str,
    changes: Sequence[v1.FieldChange],
    *,
    deleted_attachment_id: int = 0,
    redaction: tuple[int, int, int] = (0, 0, 0),
    edits_version: int = 0,
) -> tuple[Any, ...]:
    """The parameters ``$1``-``$11`` of :data:`q.INSERT_LAST_ENTRY` and :data:`q.ENTRY_AND_FEED`."""
    return (
        issue_id, version, ctx.caller.user_id, ctx.now, comment, changes_to_json(changes),
        deleted_attachment_id, *redaction, edits_version,
    )  # fmt: skip


async def entry_and_feed(
    ctx: WriteContext, statement: str, values: tuple[Any, ...], *extra: Any
) -> asyncpg.Record:
    """Run an :data:`q.ENTRY_AND_FEED`-like statement: ``values``, the channel, ``extra``.

    Records the feed position it took; the caller records the entry.
    """
    row = one_row(await ctx.conn.fetchrow(statement, *values, ctx.channel, *extra))
    ctx.feed_position = int(row["feed_position"])
    return row


async def insert_entry(
    ctx: WriteContext, issue_id: int, version: int, comment: str, changes: Sequence[v1.FieldChange]
) -> v1.HistoryEntry:
    """:func:`record_entry` that returns the entry as written (a call's reply, no read-back)."""
    values = (issue_id, version, ctx.caller.user_id, ctx.now, comment, changes_to_json(changes), 0)
    row = one_row(await ctx.conn.fetchrow(q.INSERT_ENTRY_RETURNING, *values))
    ctx.written.append((issue_id, version))
    ctx.know_entry(row)
    return entry_from_row(row)
