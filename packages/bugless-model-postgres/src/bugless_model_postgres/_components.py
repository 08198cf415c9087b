"""Component writes: create and update, keeping paths and ACLs precomputed.

Each component row carries its materialised path (``path_ids``, ``path``,
``path_key``) and its effective ACL (own plus inherited entries). A rename
or move recomputes the paths of the subtree; an ACL change or a move
recomputes the effective ACLs of the subtree. Reads and searches then need no
recursion: visibility is an array overlap on one row.

Names compare by one rule, Unicode case folding (Python's ``str.casefold``,
as custom field names and options do): ``path_key`` is the path's names so
folded, computed here, never by SQL's ``lower()`` (which under the C locale
folds ASCII only, and under none folds "ß" to "ss"). Its unique index keeps
sibling names distinct by that rule; a lookup by path compares it exactly.
"""

from __future__ import annotations

from collections import defaultdict

import asyncpg

from bugless_core.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    VersionConflict,
)
from bugless_model_postgres import _collection_queries as cq
from bugless_model_postgres._context import (
    ROLE_NAMES,
    WriteContext,
    component_not_found,
    seen_component_path,
)
from bugless_model_postgres._convert import (
    Conn,
    Row,
    acl_to_json,
    caller_role,
    principals_of,
    template_to_json,
)
from bugless_model_postgres._visibility import ELIDED, ELIDED_TYPED
from bugless_proto import v1


async def seen_path(conn: Conn, caller: v1.Caller, row: Row) -> str:
    """The path of component ``row`` as ``caller`` sees it, to name it in a refusal.

    A refusal names the component by the path every answer gives the caller
    (``_visibility.SEEN_PATH``), not by one naming components above that
    they may not view. One statement, read only when refusing.
    """
    return await seen_component_path(conn, caller, int(row["id"]), str(row["path"]))


async def admin_needed(ctx: WriteContext, row: Row, what: str) -> PermissionDenied:
    """The refusal of a change of component ``row`` that needs its admin role."""
    path = await seen_path(ctx.conn, ctx.caller, row)
    return PermissionDenied(
        f"{ROLE_NAMES[v1.Role.ADMIN]} role on component {path} needed {what}",
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


async def seen_by_path(conn: Conn, caller: v1.Caller, path: str) -> tuple[Row, v1.Role]:
    """The component ``path`` names for ``caller`` (GetComponent by path), with their role.

    ``path`` names a component as the caller is shown it
    (``_visibility.TYPED_PATH``): whole when they may view every component
    above it, else shortened (``…>Net``). A whole path through a component
    they may not view is refused in the words of a path of nothing, so the
    answer does not confirm the name it passes through.

    Raises:
        NotFound: no component they may view has that path as they see it.
        InvalidArgument: a shortened path that is the path they are shown of
            more than one (below different components they may not view).
    """
    rows = await conn.fetch(
        cq.COMPONENT_SEEN_BY_PATH, ">".join(path_key(path)), caller.admin, principals_of(caller)
    )
    found = [
        (row, role)
        for row in rows
        if (role := caller_role(caller, row["effective_acl"])) is not None
    ]
    if not found:
        shortened = ELIDED_TYPED if path.startswith(ELIDED) else ""
        raise NotFound(f"component {path!r} not found{shortened}", metadata={"path": path})
    if len(found) > 1:
        ids = ", ".join(str(row["id"]) for row, _ in found)
        raise InvalidArgument(
            f"path: {path!r} is the path you are shown of more than one component "
            f"(ids {ids}): give the id of the one you mean",
            metadata={"field": "path", "path": path},
        )
    return found[0]


def path_key(path: str) -> list[str]:
    """A path's ``path_key``: its names (separated by '>', which no name holds), casefolded.

    The one rule component names compare by: sibling uniqueness, lookups by
    path and the tree order of listings all read it.
    """
    return [name.casefold() for name in path.split(">")]


async def _name_taken(
    ctx: WriteContext, name: str, parent_id: int, parent_path: str
) -> AlreadyExists:
    """A sibling of that name exists under ``parent_id`` (its path as the caller sees it)."""
    if parent_id:
        where = f"under {await seen_component_path(ctx.conn, ctx.caller, parent_id, parent_path)}"
    else:
        where = "at the top level"
    return AlreadyExists(
        f"name: a component named {name!r} already exists {where} "
        "(names are compared case-insensitively)",
        metadata={"field": "name"},
    )


async def create_component(ctx: WriteContext, request: v1.CreateComponentRequest) -> int:
    """Create a component; return its id."""
    parent_path_ids: list[int] = []
    parent_path = ""
    if request.parent_id:
        parent, role = await visible_component(ctx, request.parent_id, "parent_id", lock=True)
        if role < v1.Role.ADMIN:
            raise await admin_needed(ctx, parent, "to create a subcomponent")
        parent_path_ids = list(parent["path_ids"])
        parent_path = parent["path"]
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
                path_key(path),
                ctx.now,
            )
    except asyncpg.UniqueViolationError as exc:
        raise await _name_taken(ctx, request.name, request.parent_id, parent_path) from exc
    await ctx.conn.execute(cq.REFRESH_EFFECTIVE_ACL, component_id)
    ctx.components_changed.append(int(component_id))
    return int(component_id)


async def update_component(ctx: WriteContext, request: v1.UpdateComponentRequest) -> int:
    """Apply the masked fields of ``request.component``; return its id."""
    change = request.component or v1.Component()
    paths = set(request.update_mask.paths) if request.update_mask else set()
    row, role = await visible_component(ctx, change.id, lock=True)
    if role < v1.Role.ADMIN:
        raise await admin_needed(ctx, row, "to change it")
    if request.expected_version and request.expected_version != row["version"]:
        raise VersionConflict.stale(
            f"component {change.id}",
            request.expected_version,
            row["version"],
            component_id=str(change.id),
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
                f"component.parent_id: component {await seen_path(ctx.conn, ctx.caller, parent)} "
                f"is {change.id} itself or "
                f"one of its descendants; a component cannot move under its own subtree",
                metadata={"field": "component.parent_id"},
            )
        if parent_role < v1.Role.ADMIN:
            raise await admin_needed(ctx, parent, "to move a component under it")
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
        raise await _name_taken(ctx, name, parent_id, parent_path) from exc
    if moved:
        await ctx.conn.execute(cq.MOVE_SUBTREE, change.id, new_parent_ids)
    if moved or name != row["name"]:
        try:
            async with ctx.conn.transaction():
                await _repath_subtree(ctx.conn, change.id)
        except asyncpg.UniqueViolationError as exc:
            raise await _name_taken(ctx, name, parent_id, parent_path) from exc
    if moved or "acl" in paths:
        await ctx.conn.execute(cq.REFRESH_EFFECTIVE_ACL, change.id)
    ctx.components_changed.append(change.id)
    return change.id


async def _repath_subtree(conn: Conn, component_id: int) -> None:
    """Give the subtree of ``component_id`` the paths and keys its names make now."""
    rows = await conn.fetch(cq.SUBTREE_PATHS, component_id)
    await _set_paths(conn, [(r["id"], r["path"], r["held"]) for r in rows])


async def _set_paths(conn: Conn, paths: list[tuple[int, str, str]]) -> None:
    """Write (id, path, path read) triples with their keys; a path changed since is kept."""
    if paths:
        ids, new, held = (list(column) for column in zip(*paths, strict=True))
        keys = [">".join(path_key(p)) for p in new]
        await conn.execute(cq.SET_PATHS, ids, new, keys, held)


async def fill_path_keys(pool: asyncpg.Pool) -> int:
    """Key every component by :func:`path_key`; how many keys changed.

    The Model runs it right after migrating (migration 0020): components
    made before were keyed by SQL's ``lower()``, and a replica of the
    release before may make more until it is replaced. Two siblings whose
    names that rule told apart but case folding does not ("Straße" and
    "STRASSE", or "Ä" and "ä" under the C locale) cannot both keep a unique
    key: then nothing is written and FailedPrecondition names them, to be
    renamed (UpdateComponent) before migrating again. A component renamed
    while this runs keeps the key its rename wrote.
    """
    async with pool.acquire() as conn, conn.transaction():
        rows = await conn.fetch(cq.ALL_COMPONENT_PATHS)
        siblings: dict[tuple[int | None, str], list[asyncpg.Record]] = defaultdict(list)
        for row in rows:
            siblings[(row["parent_id"], row["name"].casefold())].append(row)
        clashes = [group for group in siblings.values() if len(group) > 1]
        if clashes:
            named = "; ".join(
                " and ".join(f"{r['path']!r} (id {r['id']})" for r in group) for group in clashes
            )
            msg = (
                "component names must differ by Unicode case folding among siblings, and "
                f"these do not: {named}. Rename all but one of each (UpdateComponent), "
                "then run `bugless model migrate` again"
            )
            raise FailedPrecondition(msg)
        stale = [
            (r["id"], r["path"], r["path"])
            for r in rows
            if list(r["path_key"]) != path_key(r["path"])
        ]
        try:
            await _set_paths(conn, stale)
        except asyncpg.UniqueViolationError as exc:
            msg = f"two components' paths fold alike ({exc.detail}); rename one and migrate again"
            raise FailedPrecondition(msg) from exc
    return len(stale)
