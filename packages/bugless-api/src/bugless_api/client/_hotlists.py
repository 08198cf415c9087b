"""Hotlist and saved-search calls of the client."""

from __future__ import annotations

from collections.abc import Iterable

from bugless_api.client._base import ClientBase, checked_ids, page
from bugless_core.clients import follow_pages
from bugless_core.errors import InvalidArgument
from bugless_core.ids import check_id
from bugless_proto import v1
from bugless_proto.google.protobuf import FieldMask

#: A hotlist position is an int32 on the wire: a larger one would wrap when
#: encoded (-4294967295 arrived as 1, moving the item to the second place).
_POSITIONS = range(-(2**31), 2**31)


def _checked_position(position: int) -> int:
    """``position`` once it fits the wire's int32 (refused before encoding: no wrap).

    Raises:
        InvalidArgument: (a client mistake) it does not.
    """
    if position not in _POSITIONS:
        raise InvalidArgument(
            f"position: {position} is no place in a hotlist; give one from 0 (the first), "
            "or from -1 (the last) back",
            metadata={"field": "position", "origin": "client"},
        )
    return position


class HotlistCalls(ClientBase):
    """``bugless.v1.Hotlists``."""

    async def list_hotlists(self, *, member: str = "") -> list[v1.Hotlist]:
        """Visible hotlists, or those ``member`` owns or edits, every page."""

        async def fetch(token: str, size: int) -> v1.ListHotlistsResponse:
            request = v1.ListHotlistsRequest(member=member, page=page(size, token))
            return await self._call(self.hotlists.list_hotlists, request, idempotent=True)

        return [
            hotlist
            async for response in follow_pages(fetch, page_size=500)
            for hotlist in response.hotlists
        ]

    async def get_hotlist(self, hotlist_id: int) -> v1.Hotlist:
        """One hotlist."""
        check_id(hotlist_id, "hotlist_id")
        request = v1.GetHotlistRequest(hotlist_id=hotlist_id)
        return await self._call(self.hotlists.get_hotlist, request, idempotent=True)

    async def create_hotlist(
        self,
        name: str,
        *,
        description: str = "",
        editors: Iterable[str] = (),
        private: bool = False,
    ) -> v1.Hotlist:
        """Create a hotlist owned by you."""
        request = v1.CreateHotlistRequest(
            name=name, description=description, editors=list(editors), private=private
        )
        return await self._call(self.hotlists.create_hotlist, request, idempotent=False)

    async def update_hotlist(
        self, hotlist: v1.Hotlist, fields: Iterable[str], *, expected_version: int = 0
    ) -> v1.Hotlist:
        """Set the mask paths ``fields`` of ``hotlist`` (by its id) to the values it carries.

        Paths: name, description, editors, private, owner. Not retried.
        """
        check_id(hotlist.id, "hotlist.id")
        request = v1.UpdateHotlistRequest(
            hotlist=hotlist,
            update_mask=FieldMask(paths=list(fields)),
            expected_version=expected_version,
        )
        return await self._call(self.hotlists.update_hotlist, request, idempotent=False)

    async def delete_hotlist(self, hotlist_id: int, *, expected_version: int = 0) -> None:
        """Delete a hotlist (owner or admin)."""
        check_id(hotlist_id, "hotlist_id")
        request = v1.DeleteHotlistRequest(hotlist_id=hotlist_id, expected_version=expected_version)
        await self._call(self.hotlists.delete_hotlist, request, idempotent=False)

    async def add_to_hotlist(
        self, hotlist_id: int, issue_ids: Iterable[int], *, position: int = -1, note: str = ""
    ) -> v1.Hotlist:
        """Add issues (appended unless a 0-based position is given)."""
        check_id(hotlist_id, "hotlist_id")
        request = v1.AddHotlistItemsRequest(
            hotlist_id=hotlist_id,
            issue_ids=checked_ids(issue_ids, "issue_ids"),
            position=_checked_position(position),
            note=note,
        )
        # Adding present issues changes nothing, so a retry is harmless.
        return await self._call(self.hotlists.add_hotlist_items, request, idempotent=True)

    async def remove_from_hotlist(self, hotlist_id: int, issue_ids: Iterable[int]) -> v1.Hotlist:
        """Remove issues."""
        check_id(hotlist_id, "hotlist_id")
        request = v1.RemoveHotlistItemsRequest(
            hotlist_id=hotlist_id, issue_ids=checked_ids(issue_ids, "issue_ids")
        )
        return await self._call(self.hotlists.remove_hotlist_items, request, idempotent=True)

    async def rank_hotlist_item(self, hotlist_id: int, issue_id: int, position: int) -> v1.Hotlist:
        """Move one issue to a 0-based position; a negative one counts from the end (-1: last).

        The server counts from the end under the hotlist's lock, so an item
        added meanwhile does not shift the place. ``position`` further back
        than the first place is refused (InvalidArgument), nothing moved;
        so is one outside the wire's int32 (before anything is sent).
        """
        check_id(hotlist_id, "hotlist_id")
        check_id(issue_id, "issue_id")
        request = v1.RankHotlistItemRequest(
            hotlist_id=hotlist_id, issue_id=issue_id, position=_checked_position(position)
        )
        return await self._call(self.hotlists.rank_hotlist_item, request, idempotent=True)

    async def set_hotlist_item_note(
        self, hotlist_id: int, issue_id: int, note: str
    ) -> v1.HotlistItem:
        """Set (``""``: clear) the note of one item; setting the same note twice is harmless."""
        check_id(hotlist_id, "hotlist_id")
        check_id(issue_id, "issue_id")
        request = v1.SetHotlistItemNoteRequest(hotlist_id=hotlist_id, issue_id=issue_id, note=note)
        return await self._call(self.hotlists.set_hotlist_item_note, request, idempotent=True)

    async def list_hotlist_items(
        self, hotlist_id: int
    ) -> tuple[list[v1.HotlistItem], list[v1.Issue]]:
        """Every item in rank order, and the issues among them you may view."""
        check_id(hotlist_id, "hotlist_id")
        items: list[v1.HotlistItem] = []
        issues: list[v1.Issue] = []

        async def fetch(token: str, size: int) -> v1.ListHotlistItemsResponse:
            request = v1.ListHotlistItemsRequest(hotlist_id=hotlist_id, page=page(size, token))
            return await self._call(self.hotlists.list_hotlist_items, request, idempotent=True)

        async for response in follow_pages(fetch, page_size=500):
            items.extend(response.items)
            issues.extend(response.issues)
        return items, issues


class SavedSearchCalls(ClientBase):
    """``bugless.v1.SavedSearches``."""

    async def create_saved_search(
        self,
        name: str,
        query: str,
        *,
        readers: Iterable[v1.Principal] = (),
        columns: Iterable[str] = (),
    ) -> v1.SavedSearch:
        """Save a query under a name, shared with ``readers`` (users or groups).

        ``columns`` are the list column keys it is shown with (the web list's:
        :data:`bugless_core.list_columns.COLUMN_LABELS`, ``customfield<ID>``);
        none: the default columns.
        """
        request = v1.CreateSavedSearchRequest(
            name=name, query=query, readers=list(readers), columns=list(columns)
        )
        return await self._call(self.saved_searches.create_saved_search, request, idempotent=False)

    async def list_saved_searches(
        self, *, owned_only: bool = False, page_size: int = 0, page_token: str = ""
    ) -> v1.ListSavedSearchesResponse:
        """One page of your saved searches (and, unless ``owned_only``, those shared with you)."""
        request = v1.ListSavedSearchesRequest(
            owned_only=owned_only, page=page(page_size, page_token)
        )
        return await self._call(self.saved_searches.list_saved_searches, request, idempotent=True)

    async def all_saved_searches(self, *, owned_only: bool = False) -> list[v1.SavedSearch]:
        """Every saved search :meth:`list_saved_searches` pages through."""

        async def fetch(token: str, size: int) -> v1.ListSavedSearchesResponse:
            return await self.list_saved_searches(
                owned_only=owned_only, page_size=size, page_token=token
            )

        return [
            found
            async for response in follow_pages(fetch, page_size=500)
            for found in response.saved_searches
        ]

    async def update_saved_search(
        self, search: v1.SavedSearch, fields: Iterable[str], *, expected_version: int = 0
    ) -> v1.SavedSearch:
        """Set the mask paths ``fields`` (name, query, readers, columns) of ``search`` (its id)."""
        check_id(search.id, "saved_search.id")
        request = v1.UpdateSavedSearchRequest(
            saved_search=search,
            update_mask=FieldMask(paths=list(fields)),
            expected_version=expected_version,
        )
        return await self._call(self.saved_searches.update_saved_search, request, idempotent=False)

    async def delete_saved_search(self, saved_search_id: int) -> None:
        """Delete one of your saved searches."""
        check_id(saved_search_id, "saved_search_id")
        request = v1.DeleteSavedSearchRequest(saved_search_id=saved_search_id)
        await self._call(self.saved_searches.delete_saved_search, request, idempotent=False)
