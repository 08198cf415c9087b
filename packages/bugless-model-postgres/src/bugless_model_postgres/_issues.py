"""Issue writes: creation and deltas, each as one history entry.

Everything here runs inside a transaction the backend opened. A write locks
every issue it touches (the issue and the other side of each relation) in id
order, checks visibility, roles, the version and cycles, then writes the
issue row and one history entry per issue. Other-side entries keep relations
two-way. The NOTIFY of each entry is issued in the same transaction, so the
database delivers it only on commit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import asyncpg

from bugless_core.errors import (
    FailedPrecondition,
    InvalidArgument,
    IssueVersionConflict,
    PermissionDenied,
)
from bugless_core.issue_fields import ENUM_FIELDS, SCALAR_FIELDS, is_open
from bugless_model_postgres import _custom_fields, _custom_values, _mentions
from bugless_model_postgres import _queries as q
from bugless_model_postgres._context import (
    ROLE_NAMES,
    WriteContext,
    as_dict,
    component_not_found,
    fetch_issue_rows,
    hotlist_editable,
    hotlist_not_found,
    hotlist_visible,
    issue_not_found,
)
from bugless_model_postgres._convert import (
    Row,
    caller_role,
    changes_to_json,
    issue_from_row,
    one_row,
    scalar_text,
)
from bugless_proto import v1

_DEFAULTS: dict[str, int] = {
    "priority": int(v1.Priority.P2),
    "severity": int(v1.Severity.S2),
    "type": int(v1.IssueType.BUG),
}


class Created(NamedTuple):
    """What :func:`create_issue` made (or found by its idempotency key).

    Attributes:
        issue_id: The new issue, or the one the key created before.
        issue: The new issue as its creator sees it; ``None`` when an earlier
            create with the key made it (read it: it may have changed since).
    """

    issue_id: int
    issue: v1.Issue | None


def _is_open(status: int) -> bool:
    return is_open(v1.Status(status))


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


async def check_target_component(ctx: WriteContext, component_id: int, field: str) -> None:
    """An issue may be put in a visible, unarchived component the caller edits."""
    row = await ctx.conn.fetchrow(q.COMPONENT_BY_ID, component_id)
    check_target_row(ctx, component_id, row, field)


def check_target_row(ctx: WriteContext, component_id: int, row: Row | None, field: str) -> None:
    """:func:`check_target_component` on the component's row, already read."""
    role = caller_role(ctx.caller, row["effective_acl"]) if row else None
    if row is None or role is None:
        raise component_not_found(component_id, field)
    if role < v1.Role.EDITOR:
        raise PermissionDenied(
            f"{field}: editor role on component {row['path']} needed",
            metadata={"component_id": str(component_id)},
        )
    if row["archived"]:
        raise FailedPrecondition(
            f"{field}: component {row['path']} is archived and accepts no new issues",
            metadata={"component_id": str(component_id)},
        )


async def _check_hierarchy(
    ctx: WriteContext, issue_id: int, field: str, target: int, visible: set[int]
) -> None:
    """Parent/duplicate targets exist, are visible, not self, and close no cycle."""
    if target == issue_id:
        what = "its own parent" if field == "parent_id" else "a duplicate of itself"
        raise InvalidArgument(f"{field}: an issue cannot be {what}", metadata={"field": field})
    if target not in visible:
        raise issue_not_found(target, field)
    if issue_id == 0:
        return
    if ctx.dialect.hierarchy_lock is not None:
        await ctx.conn.execute(ctx.dialect.hierarchy_lock)
    sql = q.PARENT_CHAIN_REACHES if field == "parent_id" else q.DUPLICATE_CHAIN_REACHES
    if await ctx.conn.fetchval(sql, target, issue_id):
        relation = "descendant" if field == "parent_id" else "duplicate"
        raise FailedPrecondition(
            f"{field}: issue {target} is a {relation} of issue {issue_id}",
            metadata={"field": field},
        )


async def _hotlist_rows(
    ctx: WriteContext, ids: Sequence[int], field: str
) -> dict[int, asyncpg.Record]:
    """Hotlists the caller may edit, locked (after the issues: lock order)."""
    rows: dict[int, asyncpg.Record] = {}
    for hotlist_id in sorted(ids):
        await ctx.conn.execute(q.LOCK_HOTLIST, hotlist_id)
        row = await ctx.conn.fetchrow(q.HOTLIST_BY_ID, hotlist_id)
        if row is None or not hotlist_visible(ctx.caller, row):
            raise hotlist_not_found(hotlist_id, field)
        if not hotlist_editable(ctx.caller, row):
            raise PermissionDenied(
                f"{field}: owner or editor role on hotlist {hotlist_id} needed",
                metadata={"hotlist_id": str(hotlist_id)},
            )
        rows[hotlist_id] = row
    return rows


async def append_to_hotlist(ctx: WriteContext, hotlist_id: int, issue_id: int, note: str) -> None:
    """Add an item at the end of a (locked) hotlist."""
    rank = await ctx.conn.fetchval(q.COUNT_HOTLIST_ITEMS, hotlist_id)
    await ctx.conn.execute(
        q.INSERT_HOTLIST_ITEM, hotlist_id, issue_id, rank, note, ctx.caller.user_id, ctx.now
    )


class _Plan:
    """What one delta does: the new state, its FieldChanges, other sides."""

    def __init__(self, old: dict[str, Any]) -> None:
        self.old = old
        self.new = dict(old)
        self.changes: list[v1.FieldChange] = []
        # other issue id -> (blocking added, blocking removed, by added, by removed)
        self.other: dict[int, tuple[list[int], list[int], list[int], list[int]]] = {}
        self.hotlists_added: list[int] = []
        self.hotlists_removed: list[int] = []

    def other_side(self, issue_id: int) -> tuple[list[int], list[int], list[int], list[int]]:
        return self.other.setdefault(issue_id, ([], [], [], []))


def _list_change(field: str, added: Sequence[Any], removed: Sequence[Any]) -> v1.FieldChange:
    return v1.FieldChange(
        field=field,
        added=[str(v) for v in sorted(added)],
        removed=[str(v) for v in sorted(removed)],
    )


async def _plan_delta(
    ctx: WriteContext,
    plan: _Plan,
    delta: v1.IssueDelta,
    visible: set[int],
    *,
    creating: bool,
) -> None:
    """Compute the new state and changes of ``plan`` from ``delta`` (no writes)."""
    issue_id = int(plan.old["id"])
    fields = delta.fields or v1.IssueFields()
    paths = list(delta.update_mask.paths) if delta.update_mask else []
    for name in SCALAR_FIELDS:
        if name not in paths:
            continue
        value: Any = getattr(fields, name)
        if name in _DEFAULTS and int(value) == 0:
            value = _DEFAULTS[name]
        value = int(value) if name in ENUM_FIELDS else value
        if value == plan.old[name]:
            continue
        prefix = "fields" if creating else "delta.fields"
        if name == "component_id":
            await check_target_component(ctx, value, f"{prefix}.component_id")
        elif name in {"parent_id", "duplicate_of_id"} and value:
            await _check_hierarchy(ctx, issue_id, name, value, visible)
        elif name == "status":
            if _is_open(plan.old["status"] or 1) and not _is_open(value):
                plan.new["closed_at"] = ctx.now
            elif not _is_open(value):
                plan.new["closed_at"] = plan.old["closed_at"] or (ctx.now if creating else None)
            else:
                plan.new["closed_at"] = None
        plan.new[name] = value
        plan.changes.append(
            v1.FieldChange(
                field=name,
                old_value=scalar_text(name, plan.old[name]),
                new_value=scalar_text(name, value),
            )
        )

    cc = set(plan.old["cc"])
    cc_added = sorted(set(delta.cc_add) - cc)
    cc_removed = sorted(set(delta.cc_remove) & cc)
    if cc_added or cc_removed:
        plan.new["cc"] = sorted((cc | set(cc_added)) - set(cc_removed))
        plan.changes.append(_list_change("cc", cc_added, cc_removed))

    await _plan_hotlists(ctx, plan, delta, creating=creating)

    add_field, remove_field = (
        ("blocking_ids", "blocked_by_ids")
        if creating
        else (
            "blocking_add",
            "blocking_remove",
        )
    )
    for own, mirror, add_ids, remove_ids, add_name, remove_name in (
        ("blocking_ids", 0, delta.blocking_add, delta.blocking_remove, add_field, remove_field),
        (
            "blocked_by_ids",
            2,
            delta.blocked_by_add,
            delta.blocked_by_remove,
            remove_field if creating else "blocked_by_add",
            "blocked_by_remove",
        ),
    ):
        current = set(plan.old[own])
        for other in add_ids:
            if other == issue_id:
                what = "block itself" if own == "blocking_ids" else "be blocked by itself"
                raise InvalidArgument(
                    f"{add_name}: an issue cannot {what}", metadata={"field": add_name}
                )
            if other not in visible:
                raise issue_not_found(other, add_name)
        for other in remove_ids:
            if other not in visible and other in current:
                raise issue_not_found(other, remove_name)
        added = sorted(set(add_ids) - current)
        removed = sorted(set(remove_ids) & current)
        if not added and not removed:
            continue
        plan.new[own] = sorted((current | set(added)) - set(removed))
        plan.changes.append(_list_change(own, added, removed))
        for other in added:
            plan.other_side(other)[mirror].append(issue_id)
        for other in removed:
            plan.other_side(other)[mirror + 1].append(issue_id)


async def _plan_hotlists(
    ctx: WriteContext, plan: _Plan, delta: v1.IssueDelta, *, creating: bool
) -> None:
    if not delta.hotlist_add and not delta.hotlist_remove:
        return
    add_name = "hotlist_ids" if creating else "hotlist_add"
    rows = await _hotlist_rows(ctx, delta.hotlist_add, add_name)
    rows |= await _hotlist_rows(ctx, delta.hotlist_remove, "hotlist_remove")
    member: set[int] = set()
    if not creating:
        member = {
            r["hotlist_id"]
            for r in await ctx.conn.fetch(
                "SELECT hotlist_id FROM hotlist_items WHERE issue_id = $1", plan.old["id"]
            )
        }
    plan.hotlists_added = sorted(set(delta.hotlist_add) - member)
    plan.hotlists_removed = sorted(set(delta.hotlist_remove) & member)
    if plan.hotlists_added or plan.hotlists_removed:
        plan.changes.append(_list_change("hotlist_ids", plan.hotlists_added, plan.hotlists_removed))


async def _write_other_sides(
    ctx: WriteContext, plan: _Plan, rows: dict[int, asyncpg.Record]
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
            changes.append(_list_change("blocking_ids", blocking_added, blocking_removed))
        if by_added or by_removed:
            changes.append(_list_change("blocked_by_ids", by_added, by_removed))
        version = await ctx.conn.fetchval(
            q.UPDATE_ISSUE_LISTS, other_id, sorted(blocking), sorted(blocked_by), ctx.now
        )
        await record_entry(ctx, other_id, version, "", changes, caused_by=issue_id)


async def _lock_and_load(ctx: WriteContext, ids: set[int]) -> dict[int, asyncpg.Record]:
    """Lock ``ids`` in id order; return the visible ones' rows."""
    if not ids:
        return {}
    ordered = sorted(ids)
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


class PlannedCreate(NamedTuple):
    """A create that passed its checks: what to write, and how to answer it.

    Attributes:
        plan: The new issue's state (``plan.new``), entry-1 changes and other sides.
        custom: The custom field values to store.
        known: Names and types of the fields involved (for the answer).
        comment_count: 1 with a description, else 0.
    """

    plan: _Plan
    custom: dict[str, Any]
    known: dict[int, tuple[str, int]]
    comment_count: int


def create_related_ids(request: v1.CreateIssueRequest) -> set[int]:
    """The other issues a create touches (relations, parent, duplicate)."""
    fields = request.fields or v1.IssueFields()
    ids = {
        *request.blocking_ids,
        *request.blocked_by_ids,
        fields.parent_id,
        fields.duplicate_of_id,
    }
    return ids - {0}


async def plan_create(
    ctx: WriteContext,
    request: v1.CreateIssueRequest,
    *,
    has_custom_fields: bool,
    rows: dict[int, asyncpg.Record],
    custom_fields: Mapping[int, v1.CustomField] | None = None,
) -> PlannedCreate:
    """Plan a create whose component :func:`check_target_row` accepted (no writes).

    Args:
        ctx: The transaction.
        request: The create.
        has_custom_fields: Whether custom fields apply in the component
            (:data:`q.CREATE_CHECKS`' column); without them and without given
            values, the values need no statement.
        rows: The related issues, locked and loaded (:func:`create_related_ids`).
        custom_fields: The fields that apply in the component, if read
            already (see :func:`_custom_fields.plan_values`).

    Raises:
        BuglessError: the request cannot be created (nothing was written).
    """
    fields = request.fields or v1.IssueFields()
    delta = v1.IssueDelta(
        fields=fields,
        cc_add=list(request.cc),
        hotlist_add=list(request.hotlist_ids),
        blocking_add=list(request.blocking_ids),
        blocked_by_add=list(request.blocked_by_ids),
    )
    status = int(fields.status) or int(v1.Status.ASSIGNED if fields.assignee else v1.Status.NEW)
    empty: dict[str, Any] = {
        "id": 0, "title": "", "status": 0, "priority": 0, "severity": 0, "type": 0,
        "component_id": 0, "assignee": "", "verifier": "", "parent_id": 0,
        "duplicate_of_id": 0, "cc": [], "blocking_ids": [], "blocked_by_ids": [],
        "closed_at": None,
    }  # fmt: skip
    plan = _Plan(empty)
    fields_for_plan = v1.IssueFields(
        title=fields.title,
        status=v1.Status(status),
        priority=fields.priority,
        severity=fields.severity,
        type=fields.type,
        component_id=fields.component_id,
        assignee=fields.assignee,
        verifier=fields.verifier,
        parent_id=fields.parent_id,
        duplicate_of_id=fields.duplicate_of_id,
    )
    delta.fields = fields_for_plan
    delta.update_mask = _mask(SCALAR_FIELDS)
    # component_id was checked by the caller; the plan must not re-check against id 0.
    plan.old["component_id"] = fields.component_id
    await _plan_delta(ctx, plan, delta, set(rows), creating=True)
    plan.old["component_id"] = 0
    plan.changes.insert(
        5,
        v1.FieldChange(field="component_id", old_value="", new_value=str(fields.component_id)),
    )
    plan.new["component_id"] = fields.component_id
    custom: dict[str, Any] = {}
    known: dict[int, tuple[str, int]] = {}
    if has_custom_fields or request.custom_fields:
        custom, custom_changes, known = await _custom_fields.plan_values(
            ctx, component_id=fields.component_id, current={}, given=request.custom_fields,
            creating=True, moved=False, path="custom_fields", fields=custom_fields,
        )  # fmt: skip
        plan.changes.extend(custom_changes)
    return PlannedCreate(plan, custom, known, 1 if request.description else 0)


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


async def create_issue(ctx: WriteContext, request: v1.CreateIssueRequest) -> Created:
    """Create the issue (entry 1) and its other-side entries.

    Returns its id and, built from what was written, the Issue message as
    the caller sees it, so the call needs no read-back. With an idempotency
    key already used by this caller, returns the first issue's id and no
    message (it may have changed since: the caller reads it), writing nothing.

    The common create (no relations, no hotlists) is two statements in its
    transaction: the checks, and one statement writing the issue, its entry
    and the feed row (:data:`q.CREATE_ISSUE_IN_ONE`). BatchCreateIssues
    writes its common creates together instead (:mod:`._batch_create`).
    """
    caller = ctx.caller
    key = request.idempotency_key or None
    fields = request.fields or v1.IssueFields()
    checks = one_row(
        await ctx.conn.fetchrow(q.CREATE_CHECKS, fields.component_id, caller.user_id, key)
    )
    if checks["idempotent_id"] is not None:
        return Created(int(checks["idempotent_id"]), None)
    component = checks if checks["id"] is not None else None
    check_target_row(ctx, fields.component_id, component, "fields.component_id")
    rows = await _lock_and_load(ctx, create_related_ids(request))
    planned = await plan_create(
        ctx, request, has_custom_fields=checks["has_custom_fields"], rows=rows
    )
    plan, custom = planned.plan, planned.custom
    new = plan.new
    values: list[Any] = [
        new["title"], new["status"], new["priority"], new["severity"], new["type"],
        new["component_id"], caller.user_id, new["assignee"], new["verifier"], new["cc"],
        new["blocking_ids"], new["blocked_by_ids"], new["parent_id"], new["duplicate_of_id"],
        request.description, ctx.now, new["closed_at"], planned.comment_count, key,
    ]  # fmt: skip
    statement = _one_statement(ctx, plan, custom_values=bool(custom))
    if statement is not None:
        issue_id = await _create_in_one(
            ctx, statement, values, _custom_values.dump_values(custom), plan
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
    plan.old["id"] = issue_id
    await _custom_values.sync_rows(
        ctx.conn, issue_id, before={}, after=custom, moved=True, status_changed=True,
        component_id=new["component_id"], status=new["status"],
    )  # fmt: skip
    await _mentions.add(ctx.conn, issue_id, new["title"], request.description)
    if statement is None:
        for hotlist_id in plan.hotlists_added:
            await append_to_hotlist(ctx, hotlist_id, issue_id, "")
        await record_entry(ctx, issue_id, 1, request.description, plan.changes)
        _rekey_other_sides(plan, issue_id)
        await _write_other_sides(ctx, plan, rows)
    return Created(int(issue_id), created_issue(ctx, request, planned, int(issue_id)))


def _one_statement(ctx: WriteContext, plan: _Plan, *, custom_values: bool) -> str | None:
    """The statement writing a common create at once, if this create is one.

    Common: nothing else to write (no hotlist memberships, no other sides of
    relations), ids from the sequence, alone in its transaction, on a
    database with the change feed and NOTIFY (PostgreSQL): the statement also
    appends the feed row (:data:`q.CREATE_ISSUE_IN_ONE`). Custom field values
    write their search rows after the issue, so such a create keeps the feed
    row for the end (statement-per-row path). ``None``: the statement-per-row
    path.
    """
    if ctx.new_issue_id is not None or plan.hotlists_added or plan.other:
        return None
    alone = not ctx.written and not ctx.components_changed and not custom_values
    if alone and ctx.dialect.change_feed and ctx.dialect.notify is not None:
        return q.CREATE_ISSUE_IN_ONE
    return None


def shares_a_transaction(request: v1.CreateIssueRequest) -> bool:
    """Whether a batch item may be created in the batch's shared transaction.

    Items that touch other rows (hotlists, relations, parent, duplicate)
    are created each in its own transaction: their errors may come after a
    first write, which a shared transaction could not undo for them alone.
    """
    fields = request.fields or v1.IssueFields()
    return not (
        request.hotlist_ids
        or request.blocking_ids
        or request.blocked_by_ids
        or fields.parent_id
        or fields.duplicate_of_id
    )


async def _create_in_one(
    ctx: WriteContext, statement: str, values: list[Any], custom: str, plan: _Plan
) -> int | None:
    """Issue, entry 1 and the feed row in one statement; the new id (``None``: key taken)."""
    changes = changes_to_json(plan.changes)
    row = await ctx.conn.fetchrow(statement, *values, custom, changes, ctx.channel)
    if row is None:
        return None
    issue_id = int(row["id"])
    ctx.written.append((issue_id, 1))
    ctx.feed_position = int(row["position"])
    return issue_id


def _rekey_other_sides(plan: _Plan, issue_id: int) -> None:
    """Other-side lists were planned with the placeholder id 0."""
    for lists in plan.other.values():
        for values in lists:
            values[:] = [issue_id if v == 0 else v for v in values]


def _mask(paths: Sequence[str]) -> Any:
    from bugless_proto.google.protobuf import FieldMask  # noqa: PLC0415

    return FieldMask(paths=list(paths))


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
    """
    row = await ctx.conn.fetchrow(q.ISSUE_VERSION, issue_id)
    if row is None or row["version"] == expected_version:
        return
    role = caller_role(ctx.caller, row["effective_acl"])
    if role is not None and role >= v1.Role.EDITOR:
        raise IssueVersionConflict(issue_id, expected_version, row["version"])


async def change_issue(
    ctx: WriteContext,
    issue_id: int,
    expected_version: int,
    delta: v1.IssueDelta | None,
    comment: str,
) -> tuple[int, int]:
    """Apply ``delta`` and ``comment`` as one entry; return (issue id, version)."""
    delta = delta or v1.IssueDelta()
    related = _related_ids(delta)
    fields = delta.fields or v1.IssueFields()
    paths = set(delta.update_mask.paths) if delta.update_mask else set()
    for name in ("parent_id", "duplicate_of_id"):
        if name in paths and getattr(fields, name):
            related.add(getattr(fields, name))
    await reject_stale_before_locking(ctx, issue_id, expected_version)
    rows = await _lock_and_load(ctx, related | {issue_id})
    row = rows.get(issue_id)
    if row is None:
        raise issue_not_found(issue_id)
    role = caller_role(ctx.caller, row["effective_acl"])
    if role is None or role < v1.Role.EDITOR:
        raise PermissionDenied(
            f"{ROLE_NAMES[v1.Role.EDITOR]} role on component {row['component_path']} needed "
            f"to change issue {issue_id}",
            metadata={"issue_id": str(issue_id)},
        )
    if row["version"] != expected_version:
        raise IssueVersionConflict(issue_id, expected_version, row["version"])
    plan = _Plan(as_dict(row))
    await _plan_delta(ctx, plan, delta, set(rows), creating=False)
    custom = before = _custom_values.load_values(row["custom_fields"])
    moved = plan.new["component_id"] != plan.old["component_id"]
    if delta.custom_fields_set or moved:
        custom, custom_changes, _ = await _custom_fields.plan_values(
            ctx, component_id=plan.new["component_id"], current=custom,
            given=delta.custom_fields_set, creating=False, moved=moved,
            path="delta.custom_fields_set",
        )  # fmt: skip
        plan.changes.extend(custom_changes)
    if not plan.changes and not comment.strip():
        raise InvalidArgument(
            "delta: the change is empty: every field already has the given value; "
            "change a field or add a comment",
            metadata={"field": "delta"},
        )
    new = plan.new
    version = await ctx.conn.fetchval(
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
        await ctx.conn.execute(q.DELETE_HOTLIST_ITEMS, hotlist_id, [issue_id])
        await ctx.conn.execute(q.COMPACT_RANKS, hotlist_id)
    await record_entry(ctx, issue_id, version, comment, plan.changes)
    if new["title"] != plan.old["title"]:
        await _mentions.sync(ctx.conn, issue_id)
    elif comment:
        await _mentions.add(ctx.conn, issue_id, comment)
    await _write_other_sides(ctx, plan, rows)
    return issue_id, int(version)


async def record_membership(
    ctx: WriteContext, issue_id: int, hotlist_id: int, *, added: bool
) -> None:
    """An entry for an issue joining or leaving a hotlist (hotlist calls)."""
    version = await ctx.conn.fetchval(
        "UPDATE issues SET version = version + 1, modified_at = $2 WHERE id = $1 RETURNING version",
        issue_id,
        ctx.now,
    )
    change = _list_change(
        "hotlist_ids", [hotlist_id] if added else [], [] if added else [hotlist_id]
    )
    await record_entry(ctx, issue_id, version, "", [change])


async def lock_visible_issues(
    ctx: WriteContext, ids: Sequence[int], field: str
) -> dict[int, asyncpg.Record]:
    """Lock issues for a hotlist call; every one must be visible."""
    rows = await _lock_and_load(ctx, set(ids))
    for issue_id in ids:
        if issue_id not in rows:
            raise issue_not_found(issue_id, field)
    return rows
