"""Hotlist and saved-search writes.

Hotlist ranks are gapless 0-based positions: inserting shifts the items at
and after the position, removing and moving renumber. Every membership change
made here is also an issue history entry (``hotlist_ids``), so replaying an
issue's history yields its memberships. Issues are locked before the hotlist
(the same order as issue changes use), so the two never deadlock.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from bugless_core.errors import InvalidArgument, NotFound, PermissionDenied, VersionConflict
from bugless_model_postgres import _collection_queries as cq
from bugless_model_postgres import _queries as q
from bugless_model_postgres._context import (
    WriteContext,
    hotlist_editable,
    hotlist_not_found,
    hotlist_visible,
)
from bugless_model_postgres._convert import changes_to_json, one_row, principal_key
from bugless_model_postgres._issue_plan import list_change
from bugless_model_postgres._issues import lock_visible_issues
from bugless_proto import v1


async def _hotlist(ctx: WriteContext, hotlist_id: int, *, edit: bool) -> asyncpg.Record:
    row = await ctx.conn.fetchrow(cq.HOTLIST_BY_ID, hotlist_id)
    if row is None or not hotlist_visible(ctx.caller, row):
        raise hotlist_not_found(hotlist_id)
    if edit and not hotlist_editable(ctx.caller, row):
        raise PermissionDenied(
            f"owner or editor role on hotlist {hotlist_id} needed to change its items",
            metadata={"hotlist_id": str(hotlist_id)},
        )
    return row


async def _record_memberships(
    ctx: WriteContext, issue_ids: Sequence[int], hotlist_id: int, *, added: bool
) -> None:
    """Each issue's entry for joining or leaving a hotlist, its version one higher.

    One statement for any number of issues (:data:`cq.RECORD_MEMBERSHIPS`):
    a version bump and an entry per issue were two round trips each, most of
    the time a hotlist call of many issues took (175 issues: 535 statements).
    The entries are named to the change feed in ``issue_ids``' order, as
    they were written before.
    """
    if not issue_ids:
        return
    change = list_change(
        "hotlist_ids", [hotlist_id] if added else [], [] if added else [hotlist_id]
    )
    rows = await ctx.conn.fetch(
        cq.RECORD_MEMBERSHIPS,
        list(issue_ids),
        ctx.now,
        ctx.caller.user_id,
        changes_to_json([change]),
    )
    versions = {int(r["issue_id"]): int(r["version"]) for r in rows}
    ctx.written.extend((issue_id, versions[issue_id]) for issue_id in issue_ids)


def _check_version(kind: str, row: asyncpg.Record, expected: int) -> None:
    if expected and expected != row["version"]:
        raise VersionConflict.stale(f"{kind} {row['id']}", expected, row["version"])


async def create_hotlist(ctx: WriteContext, request: v1.CreateHotlistRequest) -> int:
    """Create a hotlist owned by the caller; return its id."""
    hotlist_id = await ctx.conn.fetchval(
        cq.INSERT_HOTLIST,
        request.name,
        request.description,
        ctx.caller.user_id,
        sorted(set(request.editors)),
        request.private,
        ctx.now,
    )
    return int(hotlist_id)


async def update_hotlist(ctx: WriteContext, request: v1.UpdateHotlistRequest) -> int:
    """Change the masked fields; owner-only fields need the owner or an admin."""
    change = request.hotlist or v1.Hotlist()
    paths = set(request.update_mask.paths) if request.update_mask else set()
    await ctx.conn.execute(cq.LOCK_HOTLIST, change.id)
    row = await _hotlist(ctx, change.id, edit=True)
    owner_only = paths & {"owner", "editors", "private"}
    if owner_only and not (ctx.caller.admin or row["owner"] == ctx.caller.user_id):
        raise PermissionDenied(
            f"{sorted(owner_only)[0]}: only the owner of hotlist {change.id} "
            "(or an admin) may change owner, editors or private",
            metadata={"hotlist_id": str(change.id)},
        )
    _check_version("hotlist", row, request.expected_version)
    await ctx.conn.execute(
        cq.UPDATE_HOTLIST,
        change.id,
        change.name if "name" in paths else row["name"],
        change.description if "description" in paths else row["description"],
        change.owner if "owner" in paths else row["owner"],
        sorted(set(change.editors)) if "editors" in paths else list(row["editors"]),
        change.private if "private" in paths else row["private"],
        ctx.now,
    )
    return change.id


async def delete_hotlist(ctx: WriteContext, request: v1.DeleteHotlistRequest) -> None:
    """Delete a hotlist; each member issue records leaving it."""
    row = await _hotlist(ctx, request.hotlist_id, edit=False)
    if not (ctx.caller.admin or row["owner"] == ctx.caller.user_id):
        raise PermissionDenied(
            f"only the owner of hotlist {request.hotlist_id} (or an admin) may delete it",
            metadata={"hotlist_id": str(request.hotlist_id)},
        )
    members = [r["issue_id"] for r in await ctx.conn.fetch(cq.HOTLIST_ISSUE_IDS, row["id"])]
    await ctx.conn.execute(q.LOCK_ISSUES, sorted(members))
    await ctx.conn.execute(cq.LOCK_HOTLIST, row["id"])
    row = await _hotlist(ctx, request.hotlist_id, edit=False)
    _check_version("hotlist", row, request.expected_version)
    members = [r["issue_id"] for r in await ctx.conn.fetch(cq.HOTLIST_ISSUE_IDS, row["id"])]
    await ctx.conn.execute(cq.DELETE_HOTLIST, row["id"])
    await _record_memberships(ctx, sorted(members), row["id"], added=False)


async def add_items(ctx: WriteContext, request: v1.AddHotlistItemsRequest) -> None:
    """Insert new issues at ``position``; present ones keep their place."""
    await _hotlist(ctx, request.hotlist_id, edit=True)
    await lock_visible_issues(ctx, request.issue_ids, "issue_ids")
    await ctx.conn.execute(cq.LOCK_HOTLIST, request.hotlist_id)
    present = {
        r["issue_id"] for r in await ctx.conn.fetch(cq.HOTLIST_ISSUE_IDS, request.hotlist_id)
    }
    new = [i for i in dict.fromkeys(request.issue_ids) if i not in present]
    if not new:
        return
    count = len(present)
    position = count if request.position < 0 or request.position > count else request.position
    await ctx.conn.execute(cq.SHIFT_RANKS_UP, request.hotlist_id, position, len(new))
    await ctx.conn.execute(
        cq.INSERT_HOTLIST_ITEMS,
        request.hotlist_id,
        new,
        position,
        request.note,
        ctx.caller.user_id,
        ctx.now,
    )
    await ctx.conn.execute(cq.TOUCH_HOTLIST, request.hotlist_id, ctx.now)
    await _record_memberships(ctx, new, request.hotlist_id, added=True)


async def remove_items(ctx: WriteContext, request: v1.RemoveHotlistItemsRequest) -> None:
    """Remove issues (absent ones are ignored) and close the rank gaps."""
    await _hotlist(ctx, request.hotlist_id, edit=True)
    await lock_visible_issues(ctx, request.issue_ids, "issue_ids")
    await ctx.conn.execute(cq.LOCK_HOTLIST, request.hotlist_id)
    present = {
        r["issue_id"] for r in await ctx.conn.fetch(cq.HOTLIST_ISSUE_IDS, request.hotlist_id)
    }
    gone = sorted(set(request.issue_ids) & present)
    if not gone:
        return
    await ctx.conn.execute(cq.DELETE_HOTLIST_ITEMS, request.hotlist_id, gone)
    await ctx.conn.execute(cq.COMPACT_RANKS, request.hotlist_id)
    await ctx.conn.execute(cq.TOUCH_HOTLIST, request.hotlist_id, ctx.now)
    await _record_memberships(ctx, gone, request.hotlist_id, added=False)


async def rank_item(ctx: WriteContext, request: v1.RankHotlistItemRequest) -> None:
    """Move one item to ``position``; the others keep their relative order.

    A negative position counts from the end (-1 the last place, -2 the one
    before it), against the items as they are under the hotlist's lock: a
    client that counted first and sent a 0-based place would land one off
    when an item was added between its count and the move.

    Raises:
        InvalidArgument: a negative position further back than the first
            place (nothing moves).
    """
    await _hotlist(ctx, request.hotlist_id, edit=True)
    await ctx.conn.execute(cq.LOCK_HOTLIST, request.hotlist_id)
    item = await ctx.conn.fetchrow(cq.HOTLIST_ITEM, request.hotlist_id, request.issue_id)
    if item is None:
        raise _item_not_found(request.hotlist_id, request.issue_id)
    ids = [
        r["issue_id"]
        for r in await ctx.conn.fetch(
            "SELECT issue_id FROM hotlist_items WHERE hotlist_id = $1 ORDER BY rank",
            request.hotlist_id,
        )
    ]
    ids.remove(request.issue_id)
    if request.position < 0:
        position = len(ids) + 1 + request.position
        if position < 0:
            raise InvalidArgument(
                f"position: {request.position} is before the first place of a hotlist of "
                f"{len(ids) + 1} items (-1 is the last place, -{len(ids) + 1} the first)",
                metadata={"field": "position"},
            )
    else:
        position = min(request.position, len(ids))
    ids.insert(position, request.issue_id)
    # One statement for the whole order: a statement per item made a move on
    # a long hotlist one round trip per item.
    moved = await ctx.conn.execute(cq.SET_ITEM_RANKS, request.hotlist_id, ids)
    if moved != "UPDATE 0":  # a move to its own place changes nothing
        await ctx.conn.execute(cq.TOUCH_HOTLIST, request.hotlist_id, ctx.now)


def _item_not_found(hotlist_id: int, issue_id: int) -> NotFound:
    return NotFound(
        f"issue_id: issue {issue_id} is not on hotlist {hotlist_id}",
        metadata={"issue_id": str(issue_id), "hotlist_id": str(hotlist_id)},
    )


async def set_note(ctx: WriteContext, request: v1.SetHotlistItemNoteRequest) -> asyncpg.Record:
    """Set one item's note; return the item row.

    A note that changes moves the hotlist's version and last change
    (:data:`cq.TOUCH_HOTLIST`, before the item: the lock order of every
    hotlist write); the same note again changes nothing.
    """
    await _hotlist(ctx, request.hotlist_id, edit=True)
    item = await ctx.conn.fetchrow(cq.HOTLIST_ITEM, request.hotlist_id, request.issue_id)
    if item is None:
        raise _item_not_found(request.hotlist_id, request.issue_id)
    if item["note"] == request.note:
        return item
    await ctx.conn.execute(cq.TOUCH_HOTLIST, request.hotlist_id, ctx.now)
    row = await ctx.conn.fetchrow(
        cq.SET_ITEM_NOTE, request.hotlist_id, request.issue_id, request.note
    )
    if row is None:  # removed since it was read: the call's transaction undoes the touch
        raise _item_not_found(request.hotlist_id, request.issue_id)
    return row


# ---- saved searches ----


def saved_search_visible(caller: v1.Caller, principals: list[str], row: asyncpg.Record) -> bool:
    """Owner and reader principals see a saved search."""
    return row["owner"] == caller.user_id or bool(set(principals) & set(row["readers"]))


async def owned_saved_search(ctx: WriteContext, saved_search_id: int) -> asyncpg.Record:
    """A saved search the caller owns, locked; NotFound/PermissionDenied otherwise."""
    row = await ctx.conn.fetchrow(cq.SAVED_SEARCH_FOR_UPDATE, saved_search_id)
    if row is None or not saved_search_visible(ctx.caller, ctx.principals, row):
        raise NotFound(
            f"saved search {saved_search_id} not found",
            metadata={"saved_search_id": str(saved_search_id)},
        )
    if row["owner"] != ctx.caller.user_id:
        raise PermissionDenied(
            f"only the owner may change or delete saved search {saved_search_id}",
            metadata={"saved_search_id": str(saved_search_id)},
        )
    return row


def readers_of(readers: list[v1.Principal]) -> list[str]:
    """Reader principals as stored strings, without repeats."""
    return sorted({principal_key(p) for p in readers})


async def create_saved_search(
    ctx: WriteContext, request: v1.CreateSavedSearchRequest
) -> asyncpg.Record:
    """Store a query owned by the caller; return its row."""
    row = await ctx.conn.fetchrow(
        cq.INSERT_SAVED_SEARCH,
        ctx.caller.user_id,
        request.name,
        request.query,
        readers_of(request.readers),
        ctx.now,
        list(request.columns),
    )
    return one_row(row)


async def update_saved_search(
    ctx: WriteContext, request: v1.UpdateSavedSearchRequest
) -> asyncpg.Record:
    """Change the masked fields of a saved search the caller owns; return its row."""
    change = request.saved_search or v1.SavedSearch()
    paths = set(request.update_mask.paths) if request.update_mask else set()
    row = await owned_saved_search(ctx, change.id)
    if request.expected_version and request.expected_version != row["version"]:
        raise VersionConflict.stale(
            f"saved search {change.id}", request.expected_version, row["version"]
        )
    updated = await ctx.conn.fetchrow(
        cq.UPDATE_SAVED_SEARCH,
        change.id,
        change.name if "name" in paths else row["name"],
        change.query if "query" in paths else row["query"],
        readers_of(change.readers) if "readers" in paths else row["readers"],
        ctx.now,
        list(change.columns) if "columns" in paths else row["columns"],
    )
    await ctx.conn.execute(cq.BUMP_SUBSCRIPTIONS_VERSION)
    return one_row(updated)


async def delete_saved_search(ctx: WriteContext, saved_search_id: int) -> None:
    """Delete a saved search the caller owns."""
    await owned_saved_search(ctx, saved_search_id)
    await ctx.conn.execute(cq.DELETE_SAVED_SEARCH, saved_search_id)
    await ctx.conn.execute(cq.BUMP_SUBSCRIPTIONS_VERSION)
