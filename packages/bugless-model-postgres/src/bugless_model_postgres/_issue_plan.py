"""Planning an issue write: what a create or a delta would do, checked, before any write.

A plan (:class:`DeltaPlan`) holds the issue's new state, the FieldChanges of
its history entry and the other sides of its relations. Planning runs the
checks a write must pass (the target component, visibility of related
issues, hierarchy cycles, hotlist roles) and reads what it needs, but writes
nothing but hotlist locks; :mod:`._issues` then writes what was planned. It
is kept apart so the rules of a delta read in one place, and so
BatchCreateIssues (:mod:`._batch_create`) plans its creates the same way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import asyncpg

from bugless_core.errors import (
    FailedPrecondition,
    InvalidArgument,
    PermissionDenied,
)
from bugless_core.issue_fields import ENUM_FIELDS, SCALAR_FIELDS, is_open
from bugless_model_postgres import _collection_queries as cq
from bugless_model_postgres import _custom_fields
from bugless_model_postgres import _queries as q
from bugless_model_postgres._components import seen_path
from bugless_model_postgres._context import (
    WriteContext,
    component_not_found,
    hotlist_editable,
    hotlist_not_found,
    hotlist_visible,
    issue_not_found,
)
from bugless_model_postgres._convert import (
    Row,
    caller_role,
    scalar_text,
)
from bugless_proto import v1, wire

_DEFAULTS: dict[str, int] = {
    "priority": int(v1.Priority.P2),
    "severity": int(v1.Severity.S2),
    "type": int(v1.IssueType.BUG),
}


def _is_open(status: int) -> bool:
    return is_open(v1.Status(status))


async def check_target_component(ctx: WriteContext, component_id: int, field: str) -> None:
    """An issue may be put in a visible, unarchived component the caller edits."""
    row = await ctx.conn.fetchrow(cq.COMPONENT_BY_ID, component_id)
    await check_target_row(ctx, component_id, row, field)


async def check_target_row(
    ctx: WriteContext, component_id: int, row: Row | None, field: str
) -> None:
    """:func:`check_target_component` on the component's row, already read.

    A refusal names the component by its path as the caller sees it
    (:func:`._components.seen_path`): a statement more, only when refusing.
    """
    role = caller_role(ctx.caller, row["effective_acl"]) if row else None
    if row is None or role is None:
        raise component_not_found(component_id, field)
    if role < v1.Role.EDITOR:
        raise PermissionDenied(
            f"{field}: editor role on component {await seen_path(ctx.conn, ctx.caller, row)} "
            "needed",
            metadata={"component_id": str(component_id)},
        )
    if row["archived"]:
        raise FailedPrecondition(
            f"{field}: component {await seen_path(ctx.conn, ctx.caller, row)} is archived "
            "and accepts no new issues",
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


async def lock_editable_hotlists(
    ctx: WriteContext, ids: Sequence[int], field: str
) -> dict[int, asyncpg.Record]:
    """Hotlists the caller may edit, locked (after the issues: lock order)."""
    rows: dict[int, asyncpg.Record] = {}
    for hotlist_id in sorted(ids):
        await ctx.conn.execute(cq.LOCK_HOTLIST, hotlist_id)
        row = await ctx.conn.fetchrow(cq.HOTLIST_BY_ID, hotlist_id)
        if row is None or not hotlist_visible(ctx.caller, row):
            raise hotlist_not_found(hotlist_id, field)
        if not hotlist_editable(ctx.caller, row):
            raise PermissionDenied(
                f"{field}: owner or editor role on hotlist {hotlist_id} needed",
                metadata={"hotlist_id": str(hotlist_id)},
            )
        rows[hotlist_id] = row
    return rows


class DeltaPlan:
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


def list_change(field: str, added: Sequence[Any], removed: Sequence[Any]) -> v1.FieldChange:
    return v1.FieldChange(
        field=field,
        added=[str(v) for v in sorted(added)],
        removed=[str(v) for v in sorted(removed)],
    )


async def plan_delta(
    ctx: WriteContext,
    plan: DeltaPlan,
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
        plan.changes.append(list_change("cc", cc_added, cc_removed))

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
        plan.changes.append(list_change(own, added, removed))
        for other in added:
            plan.other_side(other)[mirror].append(issue_id)
        for other in removed:
            plan.other_side(other)[mirror + 1].append(issue_id)


async def _plan_hotlists(
    ctx: WriteContext, plan: DeltaPlan, delta: v1.IssueDelta, *, creating: bool
) -> None:
    if not delta.hotlist_add and not delta.hotlist_remove:
        return
    add_name = "hotlist_ids" if creating else "hotlist_add"
    rows = await lock_editable_hotlists(ctx, delta.hotlist_add, add_name)
    rows |= await lock_editable_hotlists(ctx, delta.hotlist_remove, "hotlist_remove")
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
        plan.changes.append(list_change("hotlist_ids", plan.hotlists_added, plan.hotlists_removed))


class PlannedCreate(NamedTuple):
    """A create that passed its checks: what to write, and how to answer it.

    Attributes:
        plan: The new issue's state (``plan.new``), entry-1 changes and other sides.
        custom: The custom field values to store.
        known: Names and types of the fields involved (for the answer).
        comment_count: 1 with a description, else 0.
    """

    plan: DeltaPlan
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

    A create is the delta from an empty issue to its fields: one touching
    other rows (relations, hotlists, parent, duplicate) is planned by
    :func:`plan_delta` as such; the common one, fields and cc only, by
    :func:`_plan_fields`, which writes the same state and FieldChanges
    without building the delta (``tests/test_create_plan.py`` compares
    both): per item of a BatchCreateIssues the delta's messages, its mask
    and the walk over every relation cost more than the rest of the plan.

    Args:
        ctx: The transaction.
        request: The create.
        has_custom_fields: Whether custom fields apply in the component
            (``applicable_fields`` of :data:`_issues.CREATE_CHECKS` not NULL);
            without them and without given values, the values need no
            statement.
        rows: The related issues, locked and loaded (:func:`create_related_ids`).
        custom_fields: The fields that apply in the component, if read
            already (see :func:`_custom_fields.plan_values`).

    Raises:
        BuglessError: the request cannot be created (nothing was written).
    """
    fields = request.fields if request.fields is not None else v1.IssueFields()
    status = int(fields.status) or int(v1.Status.ASSIGNED if fields.assignee else v1.Status.NEW)
    if (
        fields.parent_id
        or fields.duplicate_of_id
        or request.hotlist_ids
        or request.blocking_ids
        or request.blocked_by_ids
    ):
        plan = await _plan_as_delta(ctx, request, fields, status, rows)
    else:
        plan = _plan_fields(ctx, fields, status, request.cc)
    plan.changes.insert(5, _field_change("component_id", str(fields.component_id)))
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


def _empty_issue() -> dict[str, Any]:
    """The state a create is the delta from (``component_id`` set by the planner)."""
    return {
        "id": 0, "title": "", "status": 0, "priority": 0, "severity": 0, "type": 0,
        "component_id": 0, "assignee": "", "verifier": "", "parent_id": 0,
        "duplicate_of_id": 0, "cc": [], "blocking_ids": [], "blocked_by_ids": [],
        "closed_at": None,
    }  # fmt: skip


async def _plan_as_delta(
    ctx: WriteContext,
    request: v1.CreateIssueRequest,
    fields: v1.IssueFields,
    status: int,
    rows: dict[int, asyncpg.Record],
) -> DeltaPlan:
    """:func:`plan_create`'s plan through :func:`plan_delta` (any create).

    ``component_id`` is left out of the changes (the caller inserts it) and
    is 0 in ``plan.old``.
    """
    delta = v1.IssueDelta(
        fields=fields,
        cc_add=list(request.cc),
        hotlist_add=list(request.hotlist_ids),
        blocking_add=list(request.blocking_ids),
        blocked_by_add=list(request.blocked_by_ids),
    )
    plan = DeltaPlan(_empty_issue())
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
    await plan_delta(ctx, plan, delta, set(rows), creating=True)
    plan.old["component_id"] = 0
    return plan


#: The scalar fields a create without parent or duplicate sets, in
#: :data:`SCALAR_FIELDS` order: ``component_id`` (the planner's own change)
#: and the two relations (0 here) left out.
_CREATE_SCALARS = tuple(
    name for name in SCALAR_FIELDS if name not in {"component_id", "parent_id", "duplicate_of_id"}
)
_FIELD_CHANGE_DEFAULTS: dict[str, Any] = dict(v1.FieldChange().__dict__)
#: :func:`scalar_text` of every known non-zero value of each enum field (a look-up
#: instead of building the enum member per field and item).
_ENUM_TEXT: dict[str, dict[int, str]] = {
    name: {int(member): scalar_text(name, int(member)) for member in enum if int(member)}
    for name, enum in ENUM_FIELDS.items()
}
_OPEN_STATUSES = frozenset(int(status) for status in v1.Status if _is_open(int(status)))


def _field_change(name: str, new_value: str) -> v1.FieldChange:
    """``FieldChange(field=name, old_value="", new_value=new_value)``, without its ``__init__``."""
    values = dict(_FIELD_CHANGE_DEFAULTS)
    values["field"] = name
    values["new_value"] = new_value
    values["added"] = []
    values["removed"] = []
    return wire.message_from_fields(v1.FieldChange, values)


def _plan_fields(
    ctx: WriteContext, fields: v1.IssueFields, status: int, cc: Sequence[str]
) -> DeltaPlan:
    """:func:`_plan_as_delta` of a create without relations, hotlists, parent or duplicate.

    Every scalar starts empty, so each set one is a change from ``""``, in
    :data:`SCALAR_FIELDS` order, as :func:`plan_delta` words it.
    """
    plan = DeltaPlan(_empty_issue())
    new, changes = plan.new, plan.changes
    v1.Status(status)  # an unknown status fails here as it does building the delta
    for name in _CREATE_SCALARS:
        value: Any = status if name == "status" else getattr(fields, name)
        texts = _ENUM_TEXT.get(name)
        if texts is not None:
            value = int(value)
            if not value and name in _DEFAULTS:
                value = _DEFAULTS[name]
            if not value:
                continue
            if name == "status":
                new["closed_at"] = None if value in _OPEN_STATUSES else ctx.now
            text = texts.get(value)
            if text is None:  # a value this build does not know
                text = scalar_text(name, value)
        elif not value:
            continue
        else:
            text = scalar_text(name, value)
        new[name] = value
        changes.append(_field_change(name, text))
    if cc:
        added = sorted(set(cc))
        new["cc"] = added
        changes.append(list_change("cc", added, []))
    return plan


def _mask(paths: Sequence[str]) -> Any:
    from bugless_proto.google.protobuf import FieldMask  # noqa: PLC0415

    return FieldMask(paths=list(paths))
