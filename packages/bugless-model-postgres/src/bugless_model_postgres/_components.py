"""Component writes: create and update, keeping paths and ACLs precomputed.

Each component row carries its materialised path (``path_ids``, ``path``,
``path_key``) and its effective ACL (own plus inherited entries). A rename
or move recomputes the paths of the subtree; an ACL change or a move
recomputes the effective ACLs of the subtree. Reads and searches then need no
recursion: visibility is an array overlap on one row.
"""

from __future__ import annotations

import asyncpg

from bugless_core.errors import AlreadyExists, Conflict, FailedPrecondition, PermissionDenied
from bugless_model_postgres import _collection_queries as cq
from bugless_model_postgres._context import ROLE_NAMES, WriteContext, component_not_found
from bugless_model_postgres._convert import acl_to_json, caller_role, template_to_json
from bugless_proto import v1


def admin_needed(row: asyncpg.Record, what: str) -> PermissionDenied:
    return PermissionDenied(
        f"{ROLE_NAMES[v1.Role.ADMIN]} role on component {row['path']} needed {what}",
        metadata={"component_id": str(row["id"])},
    )


async def visible_component(
    ctx: WriteContext, component_id: int, field: str = "", *, lock: bool = False
) -> tuple[asyncpg.Record, v1.Role]:
    """A component the caller may view, with the caller's role, else NotFound."""
    sql = cq.COMPONENT_BY_ID_FOR_UPDATE if lock else cq.COMPONENT_BY_ID
    row = await ctx.conn.fetchrow(sql, component_id)
    role = caller_role(ctx.caller, row["effective_acl"]) if row else None
    if row is None or role is None:
        raise component_not_found(component_id, field)
    return row, role


def _name_taken(name: str, parent_path: str) -> AlreadyExists:
    where = f"under {parent_path}" if parent_path else "at the top level"
    return AlreadyExists(
        f"name: a component named {name!r} already exists {where} "
        "(names are compared case-insensitively)",
        metadata={"field": "name"},
    )


async def create_component(ctx: WriteContext, request: v1.CreateComponentRequest) -> int:
    """Create a component; return its id."""
    parent_path_ids: list[int] = []
    parent_path = ""
    parent_key: list[str] = []
    if request.parent_id:
        parent, role = await visible_component(ctx, request.parent_id, "parent_id", lock=True)
        if role < v1.Role.ADMIN:
            raise admin_needed(parent, "to create a subcomponent")
        parent_path_ids = list(parent["path_ids"])
        parent_path = parent["path"]
        parent_key = list(parent["path_key"])
    component_id = await ctx.conn.fetchval(cq.NEXT_COMPONENT_ID)
    path = f"{parent_path}>{request.name}" if parent_path else request.name
    try:
        async with ctx.conn.transaction():
            await ctx.conn.execute(
                cq.INSERT_COMPONENT,
                component_id,
                request.parent_id,
                request.name,
                request.description,
                acl_to_json(request.acl),
                template_to_json(request.template),
                [*parent_path_ids, component_id],
                path,
                [*parent_key, request.name.lower()],
                ctx.now,
            )
    except asyncpg.UniqueViolationError as exc:
        raise _name_taken(request.name, parent_path) from exc
    await ctx.conn.execute(cq.REFRESH_EFFECTIVE_ACL, component_id)
    ctx.components_changed.append(int(component_id))
    return int(component_id)


async def update_component(ctx: WriteContext, request: v1.UpdateComponentRequest) -> int:
    """Apply the masked fields of ``request.component``; return its id."""
    change = request.component or v1.Component()
    paths = set(request.update_mask.paths) if request.update_mask else set()
    row, role = await visible_component(ctx, change.id, lock=True)
    if role < v1.Role.ADMIN:
        raise admin_needed(row, "to change it")
    if request.expected_version and request.expected_version != row["version"]:
        raise Conflict(
            f"component {change.id} is at version {row['version']}, "
            f"not {request.expected_version}: reload it and apply your change again",
            metadata={"current_version": str(row["version"]), "component_id": str(change.id)},
        )
    name = change.name if "name" in paths else row["name"]
    description = change.description if "description" in paths else row["description"]
    archived = change.archived if "archived" in paths else row["archived"]
    acl = acl_to_json(change.acl) if "acl" in paths else row["acl"]
    template = template_to_json(change.template) if "template" in paths else row["template"]
    parent_id = change.parent_id if "parent_id" in paths else row["parent_id"]
    moved = parent_id != row["parent_id"]
    new_parent_ids: list[int] = []
    parent_path = row["path"].rsplit(">", 1)[0] if row["parent_id"] else ""
    if moved and parent_id:
        parent, parent_role = await visible_component(ctx, parent_id, "component.parent_id")
        if change.id in parent["path_ids"]:
            raise FailedPrecondition(
                f"component.parent_id: component {parent['path']} is {change.id} itself or "
                f"one of its descendants; a component cannot move under its own subtree",
                metadata={"field": "component.parent_id"},
            )
        if parent_role < v1.Role.ADMIN:
            raise admin_needed(parent, "to move a component under it")
        new_parent_ids = list(parent["path_ids"])
        parent_path = parent["path"]
    elif moved:
        parent_path = ""
    try:
        async with ctx.conn.transaction():
            await ctx.conn.execute(
                cq.UPDATE_COMPONENT,
                change.id, name, description, archived, acl, template, parent_id, ctx.now,
            )  # fmt: skip
    except asyncpg.UniqueViolationError as exc:
        raise _name_taken(name, parent_path) from exc
    if moved:
        await ctx.conn.execute(cq.MOVE_SUBTREE, change.id, new_parent_ids)
    if moved or name != row["name"]:
        try:
            async with ctx.conn.transaction():
                await ctx.conn.execute(cq.REPATH_SUBTREE, change.id)
        except asyncpg.UniqueViolationError as exc:
            raise _name_taken(name, parent_path) from exc
    if moved or "acl" in paths:
        await ctx.conn.execute(cq.REFRESH_EFFECTIVE_ACL, change.id)
    ctx.components_changed.append(change.id)
    return change.id
