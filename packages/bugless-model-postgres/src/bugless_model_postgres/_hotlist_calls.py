"""The hotlist and saved-search calls: a person's own lists of issues and queries.

A mixin of :class:`~bugless_model_postgres.PostgresBackend`. Both are owned
by a person and shared through an ACL rather than by component, and both are
written by :mod:`._hotlists`; their calls open the write transaction through
the backend's ``_write`` and read the result back as the caller sees it.
"""

from __future__ import annotations

from bugless_model_postgres import _collection_queries as cq
from bugless_model_postgres import _hotlists
from bugless_model_postgres._calls_base import BackendCalls
from bugless_model_postgres._context import (
    fetch_issues,
    hotlist_not_found,
    hotlist_visible,
)
from bugless_model_postgres._convert import (
    hotlist_from_row,
    hotlist_item_from_row,
    principals_of,
    saved_search_from_row,
)
from bugless_model_postgres._database import translated_errors
from bugless_model_postgres._paging import KeysetPage, caller_key
from bugless_proto import v1


class HotlistCalls(BackendCalls):
    """Hotlists, their items, and saved searches over the backend's pool."""

    async def _hotlist(
        self, caller: v1.Caller, hotlist_id: int, *, written: bool = False
    ) -> v1.Hotlist:
        """The hotlist, if ``caller`` may view it or has just ``written`` it."""
        async with translated_errors(), self._pool.acquire() as conn:
            row = await conn.fetchrow(cq.HOTLIST_BY_ID, hotlist_id)
        if row is None or not (written or hotlist_visible(caller, row)):
            raise hotlist_not_found(hotlist_id)
        return hotlist_from_row(row)

    async def create_hotlist(self, request: v1.CreateHotlistRequest) -> v1.Hotlist:
        """Create a hotlist owned by the caller."""
        hotlist_id, _ = await self._write(
            request.caller, lambda ctx: _hotlists.create_hotlist(ctx, request)
        )
        return await self._hotlist(request.caller or v1.Caller(), hotlist_id, written=True)

    async def get_hotlist(self, request: v1.GetHotlistRequest) -> v1.Hotlist:
        """One visible hotlist."""
        return await self._hotlist(request.caller or v1.Caller(), request.hotlist_id)

    async def list_hotlists(self, request: v1.ListHotlistsRequest) -> v1.ListHotlistsResponse:
        """Visible hotlists (of one member when given), by id."""
        caller = request.caller or v1.Caller()
        page = KeysetPage.of(
            self._tokens, request.page, "hotlists", request.member, caller_key(caller)
        )
        async with translated_errors(), self._pool.acquire() as conn:
            fetched = await conn.fetch(
                cq.LIST_HOTLISTS,
                caller.admin,
                caller.user_id,
                request.member,
                page.after(0),
                page.size + 1,
            )
        rows, more = page.cut(fetched)
        return v1.ListHotlistsResponse(
            hotlists=[hotlist_from_row(r) for r in rows],
            next_page_token=page.next_token(rows, more, lambda r: [r["id"]]),
        )

    async def update_hotlist(self, request: v1.UpdateHotlistRequest) -> v1.Hotlist:
        """Change the masked fields (owner-only ones need the owner)."""
        hotlist_id, _ = await self._write(
            request.caller, lambda ctx: _hotlists.update_hotlist(ctx, request)
        )
        return await self._hotlist(request.caller or v1.Caller(), hotlist_id, written=True)

    async def delete_hotlist(self, request: v1.DeleteHotlistRequest) -> v1.DeleteResponse:
        """Delete a hotlist (owner or admin)."""
        await self._write(request.caller, lambda ctx: _hotlists.delete_hotlist(ctx, request))
        return v1.DeleteResponse()

    async def add_hotlist_items(self, request: v1.AddHotlistItemsRequest) -> v1.Hotlist:
        """Add issues at a position; present ones keep their place."""
        await self._write(request.caller, lambda ctx: _hotlists.add_items(ctx, request))
        return await self._hotlist(request.caller or v1.Caller(), request.hotlist_id)

    async def remove_hotlist_items(self, request: v1.RemoveHotlistItemsRequest) -> v1.Hotlist:
        """Remove issues from the hotlist."""
        await self._write(request.caller, lambda ctx: _hotlists.remove_items(ctx, request))
        return await self._hotlist(request.caller or v1.Caller(), request.hotlist_id)

    async def rank_hotlist_item(self, request: v1.RankHotlistItemRequest) -> v1.Hotlist:
        """Move one item to a position."""
        await self._write(request.caller, lambda ctx: _hotlists.rank_item(ctx, request))
        return await self._hotlist(request.caller or v1.Caller(), request.hotlist_id)

    async def set_hotlist_item_note(self, request: v1.SetHotlistItemNoteRequest) -> v1.HotlistItem:
        """Set the note of one item."""
        row, _ = await self._write(request.caller, lambda ctx: _hotlists.set_note(ctx, request))
        return hotlist_item_from_row(row)

    async def list_hotlist_items(
        self, request: v1.ListHotlistItemsRequest
    ) -> v1.ListHotlistItemsResponse:
        """Items of visible issues in rank order, with those issues."""
        caller = request.caller or v1.Caller()
        await self._hotlist(caller, request.hotlist_id)
        page = KeysetPage.of(
            self._tokens, request.page, "hotlist-items", request.hotlist_id, caller_key(caller)
        )
        async with translated_errors(), self._pool.acquire() as conn:
            fetched = await conn.fetch(
                cq.LIST_HOTLIST_ITEMS,
                request.hotlist_id,
                caller.admin,
                principals_of(caller),
                page.after(-1),
                page.size + 1,
            )
            rows, more = page.cut(fetched)
            found = await fetch_issues(conn, caller, [r["issue_id"] for r in rows])
        rows = [r for r in rows if r["issue_id"] in found]
        return v1.ListHotlistItemsResponse(
            items=[hotlist_item_from_row(r) for r in rows],
            issues=[found[r["issue_id"]] for r in rows],
            next_page_token=page.next_token(rows, more, lambda r: [r["rank"]]),
        )

    # ---- saved searches ----

    async def create_saved_search(self, request: v1.CreateSavedSearchRequest) -> v1.SavedSearch:
        """Store a query for the caller."""
        row, _ = await self._write(
            request.caller, lambda ctx: _hotlists.create_saved_search(ctx, request)
        )
        return saved_search_from_row(row)

    async def list_saved_searches(
        self, request: v1.ListSavedSearchesRequest
    ) -> v1.ListSavedSearchesResponse:
        """The caller's own, plus those shared with them unless owned_only."""
        caller = request.caller or v1.Caller()
        page = KeysetPage.of(
            self._tokens, request.page, "saved-searches", request.owned_only, caller_key(caller)
        )
        async with translated_errors(), self._pool.acquire() as conn:
            fetched = await conn.fetch(
                cq.LIST_SAVED_SEARCHES,
                caller.user_id,
                principals_of(caller),
                request.owned_only,
                page.after(0),
                page.size + 1,
            )
        rows, more = page.cut(fetched)
        return v1.ListSavedSearchesResponse(
            saved_searches=[saved_search_from_row(r) for r in rows],
            next_page_token=page.next_token(rows, more, lambda r: [r["id"]]),
        )

    async def update_saved_search(self, request: v1.UpdateSavedSearchRequest) -> v1.SavedSearch:
        """Change a saved search (owner only)."""
        row, _ = await self._write(
            request.caller, lambda ctx: _hotlists.update_saved_search(ctx, request)
        )
        return saved_search_from_row(row)

    async def delete_saved_search(self, request: v1.DeleteSavedSearchRequest) -> v1.DeleteResponse:
        """Delete a saved search (owner only)."""
        await self._write(
            request.caller, lambda ctx: _hotlists.delete_saved_search(ctx, request.saved_search_id)
        )
        return v1.DeleteResponse()
