"""The Model servicer's handlers for components, hotlists and saved searches.

A mixin of :class:`~bugless_core.model.servicer.ModelServicer`: the calls
that organise issues rather than change them (the component tree with its
ACLs and templates, people's ranked hotlists, saved queries). Like every
handler of the servicer, each checks the request's shape
(:mod:`bugless_core.model._validation`), hands it to the backend, and has
its errors mapped by :func:`bugless_core.grpc.grpc_errors`. They live apart
from the issue, feed and attachment handlers only to keep each module
readable; who may call them is still the servicer's ``ACCESS`` table.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bugless_core import limits
from bugless_core.errors import InvalidArgument
from bugless_core.grpc import grpc_errors
from bugless_core.list_columns import check_columns
from bugless_core.model import _validation as check
from bugless_proto import v1

if TYPE_CHECKING:
    from bugless_core.model.backend import ModelBackend


class OrganisingCalls:
    """CreateComponent … DeleteSavedSearch: checked, then handed to ``self.backend``."""

    if TYPE_CHECKING:
        backend: ModelBackend

    @grpc_errors
    async def create_component(self, message: v1.CreateComponentRequest) -> v1.Component:
        """Create a component."""
        check.require_caller(message.caller)
        check.check_id(message.parent_id, "parent_id", allow_zero=True)
        check.check_component_name(message.name, "name")
        check.check_text(message.description, "description", limits.MAX_DESCRIPTION_LENGTH)
        check.check_acl(message.acl, "acl")
        _check_template(message.template, "template")
        return await self.backend.create_component(message)

    @grpc_errors
    async def get_component(self, message: v1.GetComponentRequest) -> v1.Component:
        """Fetch a component by id or path."""
        check.require_caller(message.caller)
        if message.component_id:
            check.check_id(message.component_id, "component_id")
        elif message.path:
            check.check_text(message.path, "path", limits.MAX_NAME_LENGTH * 16, required=True)
        else:
            raise InvalidArgument("key: set component_id or path")
        return await self.backend.get_component(message)

    @grpc_errors
    async def list_components(self, message: v1.ListComponentsRequest) -> v1.ListComponentsResponse:
        """List visible components."""
        check.require_caller(message.caller)
        check.check_id(message.parent_id, "parent_id", allow_zero=True)
        check.check_page(message.page, "page", limits.MAX_COMPONENT_PAGE_SIZE)
        return await self.backend.list_components(message)

    @grpc_errors
    async def update_component(self, message: v1.UpdateComponentRequest) -> v1.Component:
        """Change a component."""
        check.require_caller(message.caller)
        component = message.component
        if component is None:
            raise InvalidArgument("component: required (with its id)")
        check.check_id(component.id, "component.id")
        paths = check.check_mask(message.update_mask, "update_mask", check.COMPONENT_MASK_PATHS)
        if "name" in paths:
            check.check_component_name(component.name, "component.name")
        if "parent_id" in paths:
            check.check_id(component.parent_id, "component.parent_id", allow_zero=True)
        if "description" in paths:
            check.check_text(
                component.description, "component.description", limits.MAX_DESCRIPTION_LENGTH
            )
        if "acl" in paths:
            check.check_acl(component.acl, "component.acl")
        if "template" in paths:
            _check_template(component.template, "component.template")
        if message.expected_version < 0:
            raise InvalidArgument("expected_version: must not be negative")
        return await self.backend.update_component(message)

    # ---- hotlists ----

    @grpc_errors
    async def create_hotlist(self, message: v1.CreateHotlistRequest) -> v1.Hotlist:
        """Create a hotlist owned by the caller."""
        check.require_caller(message.caller)
        check.check_text(message.name, "name", limits.MAX_NAME_LENGTH, required=True)
        check.check_text(message.description, "description", limits.MAX_DESCRIPTION_LENGTH)
        for i, editor in enumerate(message.editors):
            check.check_user_ref(editor, f"editors[{i}]", required=True)
        return await self.backend.create_hotlist(message)

    @grpc_errors
    async def get_hotlist(self, message: v1.GetHotlistRequest) -> v1.Hotlist:
        """Fetch a hotlist."""
        check.require_caller(message.caller)
        check.check_id(message.hotlist_id, "hotlist_id")
        return await self.backend.get_hotlist(message)

    @grpc_errors
    async def list_hotlists(self, message: v1.ListHotlistsRequest) -> v1.ListHotlistsResponse:
        """List visible hotlists."""
        check.require_caller(message.caller)
        check.check_user_ref(message.member, "member")
        check.check_page(message.page, "page", limits.MAX_PAGE_SIZE)
        return await self.backend.list_hotlists(message)

    @grpc_errors
    async def update_hotlist(self, message: v1.UpdateHotlistRequest) -> v1.Hotlist:
        """Change a hotlist."""
        check.require_caller(message.caller)
        hotlist = message.hotlist
        if hotlist is None:
            raise InvalidArgument("hotlist: required (with its id)")
        check.check_id(hotlist.id, "hotlist.id")
        paths = check.check_mask(message.update_mask, "update_mask", check.HOTLIST_MASK_PATHS)
        if "name" in paths:
            check.check_text(hotlist.name, "hotlist.name", limits.MAX_NAME_LENGTH, required=True)
        if "description" in paths:
            check.check_text(
                hotlist.description, "hotlist.description", limits.MAX_DESCRIPTION_LENGTH
            )
        if "owner" in paths:
            check.check_user_ref(hotlist.owner, "hotlist.owner", required=True)
        if "editors" in paths:
            for i, editor in enumerate(hotlist.editors):
                check.check_user_ref(editor, f"hotlist.editors[{i}]", required=True)
        return await self.backend.update_hotlist(message)

    @grpc_errors
    async def delete_hotlist(self, message: v1.DeleteHotlistRequest) -> v1.DeleteResponse:
        """Delete a hotlist."""
        check.require_caller(message.caller)
        check.check_id(message.hotlist_id, "hotlist_id")
        return await self.backend.delete_hotlist(message)

    @grpc_errors
    async def add_hotlist_items(self, message: v1.AddHotlistItemsRequest) -> v1.Hotlist:
        """Add issues to a hotlist."""
        check.require_caller(message.caller)
        check.check_id(message.hotlist_id, "hotlist_id")
        check.check_ids(message.issue_ids, "issue_ids", limits.MAX_HOTLIST_ADD, required=True)
        if message.position < -1:
            raise InvalidArgument("position: use a 0-based position, or -1 to append")
        check.check_text(message.note, "note", limits.MAX_COMMENT_LENGTH)
        return await self.backend.add_hotlist_items(message)

    @grpc_errors
    async def remove_hotlist_items(self, message: v1.RemoveHotlistItemsRequest) -> v1.Hotlist:
        """Remove issues from a hotlist."""
        check.require_caller(message.caller)
        check.check_id(message.hotlist_id, "hotlist_id")
        check.check_ids(message.issue_ids, "issue_ids", limits.MAX_HOTLIST_ADD, required=True)
        return await self.backend.remove_hotlist_items(message)

    @grpc_errors
    async def rank_hotlist_item(self, message: v1.RankHotlistItemRequest) -> v1.Hotlist:
        """Move an item to a position (a negative one the backend counts from the end)."""
        check.require_caller(message.caller)
        check.check_id(message.hotlist_id, "hotlist_id")
        check.check_id(message.issue_id, "issue_id")
        return await self.backend.rank_hotlist_item(message)

    @grpc_errors
    async def set_hotlist_item_note(self, message: v1.SetHotlistItemNoteRequest) -> v1.HotlistItem:
        """Set an item's note."""
        check.require_caller(message.caller)
        check.check_id(message.hotlist_id, "hotlist_id")
        check.check_id(message.issue_id, "issue_id")
        check.check_text(message.note, "note", limits.MAX_COMMENT_LENGTH)
        return await self.backend.set_hotlist_item_note(message)

    @grpc_errors
    async def list_hotlist_items(
        self, message: v1.ListHotlistItemsRequest
    ) -> v1.ListHotlistItemsResponse:
        """Page through a hotlist in rank order."""
        check.require_caller(message.caller)
        check.check_id(message.hotlist_id, "hotlist_id")
        check.check_page(message.page, "page", limits.MAX_PAGE_SIZE)
        return await self.backend.list_hotlist_items(message)

    # ---- saved searches ----

    @grpc_errors
    async def create_saved_search(self, message: v1.CreateSavedSearchRequest) -> v1.SavedSearch:
        """Save a query."""
        check.require_caller(message.caller)
        check.check_text(message.name, "name", limits.MAX_NAME_LENGTH, required=True)
        check.check_text(message.query, "query", limits.MAX_QUERY_LENGTH)
        for i, reader in enumerate(message.readers):
            check.check_principal(reader, f"readers[{i}]")
        check_columns(message.columns, "columns")
        return await self.backend.create_saved_search(message)

    @grpc_errors
    async def list_saved_searches(
        self, message: v1.ListSavedSearchesRequest
    ) -> v1.ListSavedSearchesResponse:
        """List saved searches."""
        check.require_caller(message.caller)
        check.check_page(message.page, "page", limits.MAX_PAGE_SIZE)
        return await self.backend.list_saved_searches(message)

    @grpc_errors
    async def update_saved_search(self, message: v1.UpdateSavedSearchRequest) -> v1.SavedSearch:
        """Change a saved search."""
        check.require_caller(message.caller)
        saved = message.saved_search
        if saved is None:
            raise InvalidArgument("saved_search: required (with its id)")
        check.check_id(saved.id, "saved_search.id")
        paths = check.check_mask(message.update_mask, "update_mask", check.SAVED_SEARCH_MASK_PATHS)
        if "name" in paths:
            check.check_text(saved.name, "saved_search.name", limits.MAX_NAME_LENGTH, required=True)
        if "query" in paths:
            check.check_text(saved.query, "saved_search.query", limits.MAX_QUERY_LENGTH)
        if "readers" in paths:
            for i, reader in enumerate(saved.readers):
                check.check_principal(reader, f"saved_search.readers[{i}]")
        if "columns" in paths:
            check_columns(saved.columns, "saved_search.columns")
        return await self.backend.update_saved_search(message)

    @grpc_errors
    async def delete_saved_search(self, message: v1.DeleteSavedSearchRequest) -> v1.DeleteResponse:
        """Delete a saved search."""
        check.require_caller(message.caller)
        check.check_id(message.saved_search_id, "saved_search_id")
        return await self.backend.delete_saved_search(message)


def _check_template(template: v1.IssueTemplate | None, path: str) -> None:
    if template is None:
        return
    check.check_text(template.title, f"{path}.title", limits.MAX_TITLE_LENGTH)
    check.check_text(template.description, f"{path}.description", limits.MAX_DESCRIPTION_LENGTH)
    check.check_enum(template.priority, f"{path}.priority")
    check.check_enum(template.severity, f"{path}.severity")
    check.check_enum(template.type, f"{path}.type")
    check.check_user_ref(template.assignee, f"{path}.assignee")
