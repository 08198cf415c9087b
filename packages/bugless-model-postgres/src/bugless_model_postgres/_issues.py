"""Issue writes: creation and deltas, each as one history entry.

Everything here runs inside a transaction the backend opened. A write locks
every issue it touches (the issue and the other side of each relation) in id
order, has :mod:`._issue_plan` check it and compute the new state (visibility,
roles, cycles), checks the version, then writes the issue row and one history
entry per issue. Other-side entries keep relations two-way. The NOTIFY of each
entry is issued in the same transaction, so the database delivers it only on
commit. The exception: a common create on READ COMMITTED, which reads without
locks and then writes in one statement, atomic without BEGIN/COMMIT
(:func:`writes_in_one_statement`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import asyncpg

from bugless_core.errors import InvalidArgument, IssueVersionConflict
from bugless_core.mentions import mentioned_usernames
from bugless_model_postgres import _collection_queries as cq
from bugless_model_postgres import _custom_fields, _custom_values, _mentions
from bugless_model_postgres import _queries as q
from bugless_model_postgres._context import (
    AdminView,
    IssueIdSource,
    WriteContext,
    as_dict,
    editable_row,
    fetch_issue_rows,
    issue_not_found,
)
from bugless_model_postgres._convert import (
    Row,
    caller_role,
    changes_to_json,
    entry_from_row,
    issue_from_row,
    one_row,
)
from bugless_model_postgres._dialect import Dialect
from bugless_model_postgres._entries import insert_entry, insert_last_entry, record_entry
from bugless_model_postgres._issue_plan import (
    DeltaPlan,
    PlannedCreate,
    check_target_row,
    create_related_ids,
    list_change,
    plan_create,
    plan_delta,
)
from bugless_proto import v1


class Changed(NamedTuple):
    """What :func:`change_issue` wrote, as the caller sees it: the reply, without a read-back.

    Attributes:
        issue: The issue at its new version.
        entry: The entry the change appended.
    """

    issue: v1.Issue
    entry: v1.HistoryEntry


class Created(NamedTuple):
    """What :func:`create_issue` made (or found by its idempotency key).

    Attributes:
        issue_id: The new issue, or the one the key created before.
        issue: The new issue as its creator sees it; ``None`` when an earlier
            create with the key made it (read it: it may have changed since).
    """

    issue_id: int
    issue: v1.Issue | None


async def append_to_hotlist(ctx: WriteContext, hotlist_id: int, issue_id: int, note: str) -> None:
    """Add an item at the end of a (locked) hotlist, which moves its version.

    The items are the hotlist's content whichever call changes them (a
    create's ``hotlist_ids``, a delta's ``hotlist_add``, an import), so its
    version and last change move as AddHotlistItems moves them
    (:data:`cq.TOUCH_HOTLIST`): a delete confirmed against the items it
    showed is refused after, and the web's hotlist rows, whose ``ETag`` is
    that version, are drawn again.
    """
    rank = await ctx.conn.fetchval(cq.COUNT_HOTLIST_ITEMS, hotlist_id)
    await ctx.conn.execute(
        cq.INSERT_HOTLIST_ITEM, hotlist_id, issue_id, rank, note, ctx.caller.user_id, ctx.now
    )
    await ctx.conn.execute(cq.TOUCH_HOTLIST, hotlist_id, ctx.now)


async def leave_hotlist(ctx: WriteContext, hotlist_id: int, issue_id: int) -> None:
    """Take an issue off a (locked) hotlist, closing the rank gap; its version moves.

    As :func:`append_to_hotlist`: RemoveHotlistItems's effect, by the issue's own change.
    """
    await ctx.conn.execute(cq.DELETE_HOTLIST_ITEMS, hotlist_id, [issue_id])
    await ctx.conn.execute(cq.COMPACT_RANKS, hotlist_id)
    await ctx.conn.execute(cq.TOUCH_HOTLIST, hotlist_id, ctx.now)


async def _write_other_sides(
    ctx: WriteContext, plan: DeltaPlan, rows: dict[int, asyncpg.Record]
) -> None:
    issue_id = int(plan.old["id"])
    for other_id in sorted(plan.other):
        # A blocking B  =>  B blocked_by A (and vice versa).
        by_added, by_removed, blocking_added, blocking_removed = plan.other[other_id]
        row = rows[other_id]
        blocking = (set(row["blocking_ids"]) | set(blocking_added)) - set(blocking_removed)
        blocked_by = (set(row["blocked_by_ids"]) | set(by_added)) - set(by_removed)
        changes = []
        if blocking_added or blocking_removed:
            changes.append(list_change("blocking_ids", blocking_added, blocking_removed))
        if by_added or by_removed:
            changes.append(list_change("blocked_by_ids", by_added, by_removed))
        version = await ctx.conn.fetchval(
            q.UPDATE_ISSUE_LISTS, other_id, sorted(blocking), sorted(blocked_by), ctx.now
        )
        await record_entry(ctx, other_id, version, "", changes, caused_by=issue_id)


async def lock_and_load(ctx: WriteContext, ids: set[int]) -> dict[int, asyncpg.Record]:
    """Lock ``ids`` in id order; return the visible ones' rows as read under the locks.

    On READ COMMITTED one issue takes one statement (:data:`q.LOCK_AND_FETCH_ISSUE`)
    unless a writer changed its row since the statement's snapshot (the
    statement waited for it; or no row came back: gone, moved, or never
    there): then it takes the lock (again: held already, if the row was
    there) and reads the issue after, as the lock-then-read path always
    does. Under SERIALIZABLE (CockroachDB, the compatibility mode) and for
    several issues (locked in id order) the lock and the read stay two
    statements.
    """
    if not ids:
        return {}
    ordered = sorted(ids)
    if len(ordered) == 1 and ctx.dialect.statement_snapshots:
        caller = ctx.caller
        rows = await ctx.conn.fetch(
            q.LOCK_AND_FETCH_ISSUE, ordered[0], caller.admin, caller.user_id
        )
        if rows and rows[0]["locked_as_read"]:
            row = rows[0]
            visible = caller_role(caller, row["effective_acl"]) is not None
            return {row["id"]: row} if visible else {}
    await ctx.conn.execute(q.LOCK_ISSUES, ordered)
    return await fetch_issue_rows(ctx.conn, ctx.caller, ordered)


async def fetch_visible_rows(ctx: WriteContext, ids: list[int]) -> dict[int, asyncpg.Record]:
    """Rows of the visible issues among ``ids`` (already locked by the caller)."""
    return await fetch_issue_rows(ctx.conn, ctx.caller, ids)


def _related_ids(delta: v1.IssueDelta) -> set[int]:
    return {
        *delta.blocking_add,
        *delta.blocking_remove,
        *delta.blocked_by_add,
        *delta.blocked_by_remove,
    }


def created_issue(
    ctx: WriteContext, request: v1.CreateIssueRequest, planned: PlannedCreate, issue_id: int
) -> v1.Issue:
    """The new issue as its creator sees it, built from what was written (no read-back)."""
    written = {
        **planned.plan.new,
        "id": issue_id,
        "reporter": ctx.caller.user_id,
        "description": request.description,
        "created_at": ctx.now,
        "modified_at": ctx.now,
        "version": 1,
        "comment_count": planned.comment_count,
    }
    # Hotlists joined here are ones the caller may edit, hence see.
    issue = issue_from_row(written, planned.plan.hotlists_added)
    issue.custom_fields = _custom_values.value_messages(planned.custom, planned.known)
    return issue


#: What a create checks first, in one round trip: component $1 (every column
#: NULL when there is none), the issue caller $2 already created with
#: idempotency key $3 (NULL: none, or no key), and the custom fields that
#: apply in component $1 as json (``_custom_fields.APPLICABLE_JSON``; NULL:
#: none apply), as BatchCreateIssues' checks carry them: a create in a
#: component with fields needs no statement of its own to read them, so the
#: common create is the checks and the write, two statements in series, with
#: fields or without. The aggregate runs only once the ``EXISTS`` found a
#: field: its index scan and sort over no rows cost PostgreSQL more than the
#: ``EXISTS``, which stops at once (in process, 16 alternated rounds of 1,000
#: creates, PostgreSQL CPU per create without the guard and with it: 0.280
#: and 0.265 ms in a component without fields, 0.290 and 0.300 in one with).
CREATE_CHECKS = (
    """
SELECT c.*,
       (SELECT i.id FROM issues i WHERE i.reporter = $2 AND i.idempotency_key = $3)
           AS idempotent_id,
       CASE WHEN EXISTS (SELECT 1 FROM custom_fields f WHERE f.component_id = ANY (c.path_ids))
            THEN """
    + _custom_fields.APPLICABLE_JSON.strip()
    + """ END AS applicable_fields
  FROM (SELECT 1) AS one LEFT JOIN components c ON c.id = $1
"""
)


async def create_issue(ctx: WriteContext, request: v1.CreateIssueRequest) -> Created:
    """Create the issue (entry 1) and its other-side entries.

    Returns its id and, built from what was written, the Issue message as
    the caller sees it, so the call needs no read-back. With an idempotency
    key already used by this caller, returns the first issue's id and no
    message (it may have changed since: the caller reads it), writing nothing.

    The common create (no relations, no hotlists: :func:`shares_a_transaction`)
    reads (the checks, which carry the custom fields that apply:
    :data:`CREATE_CHECKS`) and then writes in one statement the issue, its
    entry, its mentions, its custom value rows and the feed row
    (:func:`q.create_issue_in_one`), so on READ COMMITTED it needs no
    BEGIN/COMMIT (the backend's ``one_statement``).
    BatchCreateIssues writes its common creates together instead
    (:mod:`._batch_create`).
    """
    caller = ctx.caller
    key = request.idempotency_key or None
    fields = request.fields or v1.IssueFields()
    checks = one_row(
        await ctx.conn.fetchrow(CREATE_CHECKS, fields.component_id, caller.user_id, key)
    )
    if checks["idempotent_id"] is not None:
        return Created(int(checks["idempotent_id"]), None)
    component = checks if checks["id"] is not None else None
    await check_target_row(ctx, fields.component_id, component, "fields.component_id")
    rows = await lock_and_load(ctx, create_related_ids(request))
    fields_json = checks["applicable_fields"]
    planned = await plan_create(
        ctx, request, has_custom_fields=fields_json is not None, rows=rows,
        custom_fields=_custom_fields.fields_from_json(fields_json) if fields_json else {},
    )  # fmt: skip
    plan, custom = planned.plan, planned.custom
    new = plan.new
    values: list[Any] = [
        new["title"], new["status"], new["priority"], new["severity"], new["type"],
        new["component_id"], caller.user_id, new["assignee"], new["verifier"], new["cc"],
        new["blocking_ids"], new["blocked_by_ids"], new["parent_id"], new["duplicate_of_id"],
        request.description, ctx.now, new["closed_at"], planned.comment_count, key,
    ]  # fmt: skip
    mentioned = mentioned_usernames(new["title"], request.description)
    rows_of_values = _custom_values.search_rows(custom)
    statement = _one_statement(ctx, plan, mentions=bool(mentioned), values=bool(rows_of_values))
    if statement is None and ctx.one_statement:
        msg = "a create promised as one statement needs several (see shares_a_transaction)"
        raise RuntimeError(msg)
    if statement is not None:
        extra: list[Any] = [mentioned] if mentioned else []
        if rows_of_values:
            extra.extend(list(column) for column in zip(*rows_of_values, strict=True))
        issue_id = await _create_in_one(
            ctx, statement, [*values, _custom_values.dump_values(custom)], plan, extra
        )
    elif ctx.new_issue_id is None:
        issue_id = await ctx.conn.fetchval(
            q.INSERT_ISSUE, *values, _custom_values.dump_values(custom)
        )
    else:
        new_id = await ctx.new_issue_id(ctx.conn)
        issue_id = await ctx.conn.fetchval(
            q.INSERT_ISSUE_WITH_ID, *values, _custom_values.dump_values(custom), new_id
        )
    if issue_id is None:
        # A concurrent create with the same key committed first.
        existing = await ctx.conn.fetchval(q.FIND_IDEMPOTENT, caller.user_id, key)
        return Created(int(existing), None)
    if statement is not None:  # it wrote everything
        return Created(int(issue_id), created_issue(ctx, request, planned, int(issue_id)))
    plan.old["id"] = issue_id
    await _custom_values.sync_rows(
        ctx.conn, issue_id, before={}, after=custom, moved=True, status_changed=True,
        component_id=new["component_id"], status=new["status"],
    )  # fmt: skip
    await _mentions.add(ctx.conn, issue_id, new["title"], request.description)
    for hotlist_id in plan.hotlists_added:
        await append_to_hotlist(ctx, hotlist_id, issue_id, "")
    await record_entry(ctx, issue_id, 1, request.description, plan.changes)
    _rekey_other_sides(plan, issue_id)
    await _write_other_sides(ctx, plan, rows)
    return Created(int(issue_id), created_issue(ctx, request, planned, int(issue_id)))


def _one_statement(
    ctx: WriteContext, plan: DeltaPlan, *, mentions: bool, values: bool
) -> str | None:
    """The statement writing a common create at once, if this create is one.

    Common: nothing else to write (no hotlist memberships, no other sides of
    relations), ids from the sequence, alone in its transaction, on a
    database with the change feed and NOTIFY (PostgreSQL): the statement also
    writes the mentions and custom value rows, and appends the feed row
    (:func:`q.create_issue_in_one`). ``None``: the statement-per-row path.
    """
    if ctx.new_issue_id is not None or plan.hotlists_added or plan.other:
        return None
    alone = not ctx.written and not ctx.components_changed
    if alone and ctx.dialect.change_feed and ctx.dialect.notify is not None:
        return q.create_issue_in_one(mentions=mentions, values=values)
    return None


def shares_a_transaction(request: v1.CreateIssueRequest) -> bool:
    """Whether a batch item may be created in the batch's shared transaction.

    Items that touch other rows (hotlists, relations, parent, duplicate)
    are created each in its own transaction: their errors may come after a
    first write, which a shared transaction could not undo for them alone.
    """
    if request.hotlist_ids or request.blocking_ids or request.blocked_by_ids:
        return False
    # ``is None``, not ``request.fields or ...``: betterproto2's Message.__bool__
    # compares every field with its default, once per batch item.
    fields = request.fields
    return fields is None or not (fields.parent_id or fields.duplicate_of_id)


def writes_in_one_statement(
    request: v1.CreateIssueRequest, dialect: Dialect, new_issue_id: IssueIdSource | None
) -> bool:
    """Whether :func:`create_issue` writes ``request`` in one statement (see ``_one_statement``).

    The backend asks before the write, to run it without BEGIN/COMMIT where
    that is the same (``run_write``'s ``one_statement``): such a create reads
    without locks, then writes once.
    """
    return (
        shares_a_transaction(request)
        and new_issue_id is None
        and dialect.change_feed
        and dialect.notify is not None
    )


async def _create_in_one(
    ctx: WriteContext, statement: str, values: list[Any], plan: DeltaPlan, extra: list[Any]
) -> int | None:
    """Issue, entry 1, its other rows and the feed row in one statement; the new id.

    ``None``: a concurrent create with the key committed first (nothing written).
    """
    changes = changes_to_json(plan.changes)
    row = await ctx.conn.fetchrow(statement, *values, changes, ctx.channel, *extra)
    if row is None:
        return None
    issue_id = int(row["id"])
    ctx.written.append((issue_id, 1))
    ctx.feed_position = int(row["position"])
    return issue_id


def _rekey_other_sides(plan: DeltaPlan, issue_id: int) -> None:
    """Other-side lists were planned with the placeholder id 0."""
    for lists in plan.other.values():
        for values in lists:
            values[:] = [issue_id if v == 0 else v for v in values]


async def reject_stale_before_locking(
    ctx: WriteContext, issue_id: int, expected_version: int
) -> None:
    """Fail a change against a superseded version without queueing for row locks.

    Under SERIALIZABLE (CockroachDB, and the cockroach backend's compatibility
    mode) a writer queued behind the issue's row lock gets a serialization
    failure when the holder commits; retried, it would queue again, and with
    many writers on one issue a stale one could spend every retry waiting
    without ever learning it is stale. Reading the committed version first
    turns that into the ABORTED its caller can act on. Only a caller who could
    make the change learns the version (errors keep their precedence: not
    found, then permission, then conflict); the check under the lock stays the
    authority.

    Skipped on READ COMMITTED (``statement_snapshots``: PostgreSQL as
    deployed): there a writer queued behind the lock is not failed when the
    holder commits; it gets the lock and reads the committed row, whose
    version check then gives the same ABORTED. The statement would only cost
    every change a round trip (one of ~9). The attachment calls, whose
    refusals under the lock (the file limits, the uploader) must not answer
    a stale caller first, check the version they read before locking
    anyway: an upload with its checks before streaming, a deletion with its
    attachment (:func:`reject_stale`).
    """
    if ctx.dialect.statement_snapshots:
        return
    row = await ctx.conn.fetchrow(q.ISSUE_VERSION, issue_id)
    if row is not None:
        reject_stale(ctx, issue_id, expected_version, row, row["version"])


def reject_stale(
    ctx: WriteContext, issue_id: int, expected_version: int, acl_row: Row, version: int
) -> None:
    """:func:`reject_stale_before_locking` on a version read already (without locks).

    ``acl_row``: a row with the issue's component's ``effective_acl``, read
    with ``version`` (a deletion reads both with its attachment).
    """
    if version == expected_version:
        return
    role = caller_role(ctx.caller, acl_row["effective_acl"])
    if role is not None and role >= v1.Role.EDITOR:
        raise IssueVersionConflict(issue_id, expected_version, version)


async def changed_issue(
    ctx: WriteContext,
    loaded: Row,
    written: Row,
    *,
    hotlists: tuple[Sequence[int], Sequence[int]] = ((), ()),
    custom: dict[str, Any],
    known: dict[int, tuple[str, int]] | None = None,
) -> v1.Issue:
    """The issue after a write, as a read after the commit would return it.

    Args:
        ctx: The write's transaction.
        loaded: Its :data:`q.FETCH_ISSUE` row, read under the issue's lock.
        written: The issue's columns as the write returned them.
        hotlists: Hotlists the write (added, removed); the caller may edit
            both kinds, so both are visible to them.
        custom: The stored custom field values after the write.
        known: Names and types of the fields in ``custom``, if the write
            planned them. Otherwise the values are the ones ``loaded`` holds,
            whose names it read with them (its ``custom_field_names``).

    The caller's star and mute and whether other issues name this one as parent or
    canonical issue are not changed by a write of this issue: they come
    from ``loaded``.
    """
    added, removed = hotlists
    visible = set(loaded["visible_hotlist_ids"]).difference(removed).union(added)
    row = dict(written.items())
    for name in ("starred", "muted", "has_children", "has_duplicates"):
        row[name] = loaded[name]
    issue = issue_from_row(row, visible)
    if custom:
        if known is None:
            known = _custom_values.names_read(loaded["custom_field_names"])
        if known is None:  # never with a FETCH_ISSUES row: it holds names when values
            known = await _custom_values.field_names(ctx.conn, (int(k) for k in custom))
        issue.custom_fields = _custom_values.value_messages(custom, known)
    # Every hotlist: read under the lock (LOCK_AND_FETCH_ISSUE), or all visible to an admin.
    every = loaded["visible_hotlist_ids"] if ctx.caller.admin else loaded.get("hotlist_ids")
    if every is not None:
        every_after = set(every).difference(removed).union(added)
        ctx.know_issue(AdminView(row, every_after, custom, known or {}))
    return issue


async def change_issue(
    ctx: WriteContext,
    issue_id: int,
    expected_version: int,
    delta: v1.IssueDelta | None,
    comment: str,
    *,
    whole_transaction: bool = False,
) -> Changed:
    """Apply ``delta`` and ``comment`` as one entry; return the issue and the entry written.

    ``whole_transaction``: the caller writes nothing else in the transaction
    (ChangeIssue, not an atomic batch), so a change touching no other issue
    and keeping its title writes its entry last, with the feed row
    (:func:`insert_last_entry`).
    """
    delta = delta or v1.IssueDelta()
    related = _related_ids(delta)
    fields = delta.fields or v1.IssueFields()
    paths = set(delta.update_mask.paths) if delta.update_mask else set()
    for name in ("parent_id", "duplicate_of_id"):
        if name in paths and getattr(fields, name):
            related.add(getattr(fields, name))
    await reject_stale_before_locking(ctx, issue_id, expected_version)
    rows = await lock_and_load(ctx, related | {issue_id})  # the visible ones only
    row = await editable_row(ctx, issue_id, rows.get(issue_id), "change")
    if row["version"] != expected_version:
        raise IssueVersionConflict(issue_id, expected_version, row["version"])
    plan = DeltaPlan(as_dict(row))
    await plan_delta(ctx, plan, delta, set(rows), creating=False)
    custom = before = _custom_values.load_values(row["custom_fields"])
    known: dict[int, tuple[str, int]] | None = None
    moved = plan.new["component_id"] != plan.old["component_id"]
    if delta.custom_fields_set or moved:
        custom, custom_changes, known = await _custom_fields.plan_values(
            ctx, component_id=plan.new["component_id"], current=custom,
            given=delta.custom_fields_set, creating=False, moved=moved,
            path="delta.custom_fields_set",
            names=_custom_values.names_read(row["custom_field_names"]),
        )  # fmt: skip
        plan.changes.extend(custom_changes)
    if not plan.changes and not comment.strip():
        raise InvalidArgument(
            "delta: the change is empty: every field already has the given value; "
            "change a field or add a comment",
            metadata={"field": "delta"},
        )
    new = plan.new
    written = await ctx.conn.fetchrow(
        q.UPDATE_ISSUE,
        issue_id, new["title"], new["status"], new["priority"], new["severity"], new["type"],
        new["component_id"], new["assignee"], new["verifier"], new["cc"],
        new["blocking_ids"], new["blocked_by_ids"], new["parent_id"], new["duplicate_of_id"],
        new["closed_at"], ctx.now, 1 if comment else 0, comment,
        _custom_values.dump_values(custom),
    )  # fmt: skip
    await _custom_values.sync_rows(
        ctx.conn, issue_id, before=before, after=custom, moved=moved,
        status_changed=new["status"] != plan.old["status"],
        component_id=new["component_id"], status=new["status"],
    )  # fmt: skip
    for hotlist_id in plan.hotlists_added:
        await append_to_hotlist(ctx, hotlist_id, issue_id, "")
    for hotlist_id in plan.hotlists_removed:
        await leave_hotlist(ctx, hotlist_id, issue_id)
    # Built before the entry: the last write takes the change feed's row lock,
    # which every writer queues for, and holds it to the commit; nothing more
    # should run in between.
    issue = await changed_issue(
        ctx, row, one_row(written), custom=custom, known=known,
        hotlists=(plan.hotlists_added, plan.hotlists_removed),
    )  # fmt: skip
    version = int(one_row(written)["version"])
    texts = [comment]  # what may add mentions
    if new["title"] != plan.old["title"]:
        texts.append(new["title"])
        resync = not _mentions.title_change_only_adds(plan.old["title"], new["title"], comment)
    else:
        resync = False
    if resync or plan.other or not whole_transaction:
        entry = await insert_entry(ctx, issue_id, version, comment, plan.changes)
        if resync:  # a name only the old title mentioned may go
            await _mentions.sync(ctx.conn, issue_id)  # reads the entry's comment too
        else:
            await _mentions.add(ctx.conn, issue_id, *texts)
        await _write_other_sides(ctx, plan, rows)
    else:  # the entry is the last write (with the feed row, where it can be)
        await _mentions.add(ctx.conn, issue_id, *texts)
        entry = entry_from_row(
            await insert_last_entry(ctx, issue_id, version, comment, plan.changes)
        )
    return Changed(issue, entry)


async def lock_visible_issues(
    ctx: WriteContext, ids: Sequence[int], field: str
) -> dict[int, asyncpg.Record]:
    """Lock issues for a hotlist call; every one must be visible."""
    rows = await lock_and_load(ctx, set(ids))
    for issue_id in ids:
        if issue_id not in rows:
            raise issue_not_found(issue_id, field)
    return rows
