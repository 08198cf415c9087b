"""ChangeIssue in one statement: read without locks, then write once if nothing moved.

The common change (fields of the issue's own row, custom field values, a
move to another component and a comment: no relations or hotlists) reads
the issue unlocked (:data:`FETCH_FOR_CHANGE`; with the custom fields that
apply where it is or goes when values are set or it moves,
:data:`FETCH_WITH_FIELDS`), plans (a move reads its target component, as
the locked path does), and writes the row, its entry, its custom value
search rows and the change feed's row in one statement
(:data:`CHANGE_IN_ONE`), atomic by itself on READ COMMITTED, so no
BEGIN/COMMIT: two statements (a move: three) where the locked path takes
five to nine.

The statement writes only if the row is still the row version read: the
same ``version`` (else the caller's version is stale) and the same ``xmin``
(a star changes the row without a new version, and the reply's ``starred``
and ``star_count`` came from the read). A writer holding the row's lock
makes the statement wait; when it commits, PostgreSQL re-checks the
condition on the row it left, which a writer that changed the row fails.
Then nothing is written and :func:`change` answers ``None``: the backend
runs the locked path (:func:`_issues.change_issue`), which decides as
before, a stale version's ABORTED included.
"""

from __future__ import annotations

import functools
from typing import Any

from bugless_core.errors import InvalidArgument, IssueVersionConflict
from bugless_core.mentions import mentioned_usernames
from bugless_model_postgres import _custom_fields, _custom_values, _issues, _mentions
from bugless_model_postgres import _queries as q
from bugless_model_postgres._context import WriteContext, as_dict, editable_row
from bugless_model_postgres._convert import Row, changes_to_json, entry_from_row
from bugless_model_postgres._dialect import Dialect
from bugless_model_postgres._issue_plan import DeltaPlan, plan_delta
from bugless_proto import v1

#: What a read for a write in one statement adds to :data:`q.FETCH_ISSUE`'s
#: columns: what that statement checks the row against (``row_xmin``: the
#: row version read, as text) and every hotlist holding the issue
#: (``hotlist_ids``, as :data:`q.LOCK_AND_FETCH_ISSUE`).
ROW_CHECK_COLUMNS = (
    ", i.xmin::text AS row_xmin"
    ", ARRAY(SELECT h.hotlist_id FROM hotlist_items h WHERE h.issue_id = i.id) AS hotlist_ids"
)
#: :data:`q.FETCH_ISSUE` without locks for a change written in one statement
#: (:data:`CHANGE_IN_ONE`), with :data:`ROW_CHECK_COLUMNS`.
FETCH_FOR_CHANGE = q.fetch_issue_with(ROW_CHECK_COLUMNS)
#: :data:`FETCH_FOR_CHANGE` with the custom fields that apply in component
#: ``$4`` (a move's target), or in the issue's own when ``$4`` is 0
#: (``applicable_fields``: :data:`_custom_fields.APPLICABLE_JSON`, NULL when
#: none do or there is no such component), for a change setting values or
#: moving the issue: what the locked path reads with
#: :func:`_custom_fields.applicable` under the issue's lock, here in the same
#: read.
FETCH_WITH_FIELDS = q.fetch_issue_with(
    ROW_CHECK_COLUMNS
    + ", (SELECT "
    + _custom_fields.APPLICABLE_JSON.strip()
    + " FROM components c WHERE c.id = coalesce(nullif($4::bigint, 0), i.component_id))"
    + " AS applicable_fields"
)

#: The issue's columns as :data:`q.UPDATE_ISSUE` returns them, by name.
ISSUE_COLUMN_NAMES = tuple(c.strip().removeprefix("i.") for c in q.ISSUE_COLUMNS.split(","))


def answer(*, channel: str) -> str:
    """The last lines of a one-statement write of one issue's row (``upd``) and entry.

    Its CTEs are ``upd`` (the issue's row, :data:`q.ISSUE_COLUMNS` returned),
    ``entry`` and ``appended`` (:func:`q.feed_after_entry`); the NOTIFY goes
    to ``channel`` (a parameter). Returns the entry's columns,
    ``feed_position`` and the issue's columns prefixed ``written_``
    (:func:`record_answer`); no row when nothing was written.
    """
    return (
        "\nSELECT entry.*, appended.position AS feed_position, "
        f"pg_notify({channel}, appended.position::text), "
        + ", ".join(f"upd.{n} AS written_{n}" for n in ISSUE_COLUMN_NAMES)
        + "\n  FROM entry CROSS JOIN appended CROSS JOIN upd\n"
    )


def record_answer(ctx: WriteContext, done: Row) -> dict[str, Any]:
    """Keep what an :func:`answer` row says was written; return the issue's written columns.

    The feed position it took and its entry (final: the change listeners
    hear of it without a read after the commit).
    """
    ctx.feed_position = int(done["feed_position"])
    ctx.written.append((int(done["issue_id"]), int(done["version"])))
    ctx.know_entry(done)
    return {name: done[f"written_{name}"] for name in ISSUE_COLUMN_NAMES}


#: A change of issue $1 touching no other issue's row (no relations or
#: hotlists; mentions, custom values' search rows: :func:`change_in_one`)
#: in one statement, atomic without
#: BEGIN/COMMIT on READ COMMITTED: :data:`q.UPDATE_ISSUE` (``$1``-``$19``) only
#: if the row is still the version ``$20`` and the very row version read
#: (``xmin`` ``$21``, from :data:`FETCH_FOR_CHANGE`: a star changes the row
#: without a new version, and the reply was planned from the row read),
#: its entry (author ``$22``, changes ``$23``) and the change feed's row
#: with its NOTIFY on channel ``$24``, last, as in :data:`q.ENTRY_AND_FEED`.
#: Returns the entry's columns, ``feed_position`` and the issue's columns
#: prefixed ``written_``; no row: nothing was written (the row moved on).
CHANGE_IN_ONE = (
    "WITH upd AS (\n"
    + q.UPDATE_ISSUE.replace(
        " WHERE i.id = $1\n",
        " WHERE i.id = $1 AND i.version = $20::bigint AND i.xmin = $21::text::xid\n",
        1,
    ).strip()
    + """
), entry AS (
    INSERT INTO issue_history (issue_id, version, author, created_at, comment, changes,
                               caused_by_issue_id)
    SELECT upd.id, upd.version, $22, $16, $18, $23::jsonb, 0 FROM upd
    RETURNING *
)"""
    + q.feed_after_entry(
        committed_at="$16",
        author="$22",
        issue_ids="ARRAY[$1::bigint]",
        versions="ARRAY[$20::bigint + 1]",
    )
    + answer(channel="$24")
)
assert "i.xmin = $21" in CHANGE_IN_ONE, "UPDATE_ISSUE's WHERE changed"
#: Usernames ``$25`` recorded as mentioned in the issue (its comment's, a
#: new title's), only if the row was written.
MENTIONED = """
), mentioned AS (
    INSERT INTO issue_mentions (issue_id, username)
    SELECT $1, n FROM unnest($25::text[]) AS n WHERE EXISTS (SELECT 1 FROM upd)
    ON CONFLICT DO NOTHING"""
#: The issue's custom value search rows (migration 0010) take its new status
#: ``$3``, only if the row was written (what ``_custom_values.sync_rows``
#: leaves after a status change: the same rows, the new status).
_RESTATUSED = """
), restatused AS (
    UPDATE issue_custom_values SET status = $3
     WHERE issue_id = $1 AND EXISTS (SELECT 1 FROM upd)"""
#: The issue's search rows after its values changed, only if the row was
#: written: the rows ``(field, value, number, folded)`` of ``$n``-``$n+3``
#: (``_custom_values.search_rows`` of the new values) in its component ``$7``
#: with its status ``$3``, which is what ``_custom_values.sync_rows`` leaves,
#: written as it does: only the rows that go are deleted, only the new ones
#: inserted and the kept ones take the status and the component (here found
#: by the statement, there planned from the values before and after):
#: data-modifying CTEs of one statement run in no set order and do not see
#: each other's rows, so a row deleted and inserted again, or deleted and
#: updated, by two of them could clash on the primary key or be skipped. A
#: kept row's number is the same: it follows from the value.
_REVALUED = """
), new_rows AS (
    SELECT * FROM unnest($n::bigint[], $m::text[], $k::bigint[], $f::text[])
                  AS r(field_id, value, number, folded)
), unvalued AS (
    DELETE FROM issue_custom_values v
     WHERE v.issue_id = $1 AND EXISTS (SELECT 1 FROM upd)
       AND (v.field_id, v.value) NOT IN (SELECT field_id, value FROM new_rows)
), valued AS (
    INSERT INTO issue_custom_values
           (issue_id, field_id, value, number, component_id, status, folded)
    SELECT $1, r.field_id, r.value, r.number, $7, $3, r.folded FROM new_rows r
     WHERE EXISTS (SELECT 1 FROM upd)
       AND (r.field_id, r.value) NOT IN (SELECT v.field_id, v.value FROM issue_custom_values v
                                          WHERE v.issue_id = $1)
), restatused AS (
    UPDATE issue_custom_values v SET status = $3, component_id = $7
     WHERE v.issue_id = $1 AND EXISTS (SELECT 1 FROM upd)
       AND (v.status <> $3 OR v.component_id <> $7)
       AND (v.field_id, v.value) IN (SELECT field_id, value FROM new_rows)"""


@functools.cache
def change_in_one(*, mentions: bool, restatus: bool, revalue: bool = False) -> str:
    """:data:`CHANGE_IN_ONE` with the rows beside the issue's a change may need.

    ``mentions``: :data:`MENTIONED` (parameter ``$25``); ``restatus``:
    :data:`_RESTATUSED`; ``revalue``: :data:`_REVALUED` instead (its three
    arrays are the parameters after the mentions'). Each writes only with
    the issue's row.
    """
    parts = MENTIONED if mentions else ""
    if revalue:
        first = 26 if mentions else 25
        parts += (
            _REVALUED.replace("$n", f"${first}")
            .replace("$m", f"${first + 1}")
            .replace("$k", f"${first + 2}")
            .replace("$f", f"${first + 3}")
        )
    elif restatus:
        parts += _RESTATUSED
    statement = CHANGE_IN_ONE.replace("\n), entry AS (", parts + "\n), entry AS (", 1)
    if parts and statement == CHANGE_IN_ONE:
        msg = "CHANGE_IN_ONE's CTEs changed"
        raise RuntimeError(msg)
    return statement


#: Fields a change in one statement may set: planned from the row alone, or
#: (``component_id``) from reads of the target component and its fields.
_OWN_FIELDS = frozenset(
    {"title", "status", "priority", "severity", "type", "assignee", "verifier", "component_id"}
)


def dialect_allows(dialect: Dialect) -> bool:
    """Whether one statement, without BEGIN/COMMIT, is atomic and writes the feed row with NOTIFY.

    PostgreSQL on READ COMMITTED; not CockroachDB or the SERIALIZABLE
    compatibility mode, which keep the locked paths.
    """
    return dialect.statement_snapshots and dialect.change_feed and dialect.notify is not None


def eligible(request: v1.ChangeIssueRequest, dialect: Dialect) -> bool:
    """Whether ``request`` may be written by :func:`change` (decided before any read).

    Only where one statement is atomic by itself and writes the feed row
    with NOTIFY (PostgreSQL on READ COMMITTED), and only for a change whose
    plan reads no other issue and writes no other row but the mentions it
    adds and its custom value search rows: no relation, hotlist, parent or
    duplicate.
    """
    if not dialect_allows(dialect):
        return False
    delta = request.delta
    if delta is not None:
        if (
            delta.hotlist_add
            or delta.hotlist_remove
            or delta.blocking_add
            or delta.blocking_remove
            or delta.blocked_by_add
            or delta.blocked_by_remove
        ):
            return False
        paths = delta.update_mask.paths if delta.update_mask else []
        if not _OWN_FIELDS.issuperset(paths):
            return False
    return True


async def change(ctx: WriteContext, request: v1.ChangeIssueRequest) -> _issues.Changed | None:
    """The change written in one statement, or ``None``: nothing written, take the locked path.

    Refusals read from the committed row (not found, permission, a stale
    version, an empty change) are the locked path's: versions only grow,
    so a version read stale is stale under the lock too.
    """
    issue_id, caller = request.issue_id, ctx.caller
    delta = request.delta or v1.IssueDelta()
    may_move = "component_id" in (delta.update_mask.paths if delta.update_mask else [])
    target = delta.fields.component_id if may_move and delta.fields else 0
    with_fields = bool(delta.custom_fields_set) or may_move
    row = await editable_row(
        ctx,
        issue_id,
        await ctx.conn.fetchrow(
            FETCH_WITH_FIELDS, issue_id, caller.admin, caller.user_id, target,
        ) if with_fields else await ctx.conn.fetchrow(
            FETCH_FOR_CHANGE, issue_id, caller.admin, caller.user_id,
        ),
        "change",
    )  # fmt: skip
    if row["version"] != request.expected_version:
        raise IssueVersionConflict(issue_id, request.expected_version, row["version"])
    plan = DeltaPlan(as_dict(row))
    await plan_delta(ctx, plan, delta, {issue_id}, creating=False)
    custom = before = _custom_values.load_values(row["custom_fields"])
    known: dict[int, tuple[str, int]] | None = None
    moved = plan.new["component_id"] != plan.old["component_id"]
    if delta.custom_fields_set or moved:  # as the locked path plans them
        # Read with the row, for where the issue ends (a plan ending elsewhere,
        # which none does, would have plan_values read them).
        fields = (
            _custom_fields.fields_from_json(row["applicable_fields"] or "[]")
            if with_fields and plan.new["component_id"] == (target or row["component_id"])
            else None
        )
        custom, custom_changes, known = await _custom_fields.plan_values(
            ctx, component_id=plan.new["component_id"], current=custom,
            given=delta.custom_fields_set, creating=False, moved=moved,
            path="delta.custom_fields_set",
            fields=fields,
            names=_custom_values.names_read(row["custom_field_names"]),
        )  # fmt: skip
        plan.changes.extend(custom_changes)
    new, comment = plan.new, request.comment
    if not plan.changes and not comment.strip():
        raise InvalidArgument(
            "delta: the change is empty: every field already has the given value; "
            "change a field or add a comment",
            metadata={"field": "delta"},
        )
    texts = [comment]
    if new["title"] != plan.old["title"]:
        if not _mentions.title_change_only_adds(plan.old["title"], new["title"], comment):
            return None  # a mention only the old title made may go: the locked path resyncs
        texts.append(new["title"])
    names = mentioned_usernames(*texts)
    restatus = bool(before or custom) and new["status"] != plan.old["status"]
    revalue = custom != before or (moved and bool(custom))
    rows = _custom_values.search_rows(custom)
    done = await ctx.conn.fetchrow(
        change_in_one(mentions=bool(names), restatus=restatus, revalue=revalue),
        issue_id, new["title"], new["status"], new["priority"], new["severity"], new["type"],
        new["component_id"], new["assignee"], new["verifier"], new["cc"],
        new["blocking_ids"], new["blocked_by_ids"], new["parent_id"], new["duplicate_of_id"],
        new["closed_at"], ctx.now, 1 if comment else 0, comment,
        _custom_values.dump_values(custom), request.expected_version, row["row_xmin"],
        caller.user_id, changes_to_json(plan.changes), ctx.channel,
        *([names] if names else []),
        *([[r[i] for r in rows] for i in range(4)] if revalue else []),
    )  # fmt: skip
    if done is None:
        return None
    written = record_answer(ctx, done)
    issue = await _issues.changed_issue(ctx, row, written, custom=custom, known=known)
    return _issues.Changed(issue, entry_from_row(done))
