"""Account, Components, Hotlists and SavedSearches for bots.

Same pattern as :mod:`bugless_api._issues`: caller from the certificate,
usernames in, usernames out. Creating a top-level component also needs the
global ``create_component`` permission, which the Model leaves to the
frontends (MODEL_CONTRACT.md, "Components").
"""

from __future__ import annotations

from typing import ClassVar

from bugless_api._gateway import Gateway, GatewayService, caller_of
from bugless_api._identity import current_identity
from bugless_api._users import UserRefs
from bugless_core.clients import call
from bugless_core.errors import InvalidArgument
from bugless_core.grpc import (
    ANY_CLIENT,
    AccessTable,
    current_peer_certificate,
    every_method,
)
from bugless_core.search import QuerySyntaxError, parse_query
from bugless_proto import v1

#: Global permission needed to create a component at the top of the tree.
CREATE_COMPONENT_PERMISSION = "create_component"


class AccountService(GatewayService, v1.AccountBase):
    """Serves ``bugless.v1.Account``."""

    #: Bots are people: any client certificate the client CA verified may call;
    #: the Authenticator then maps it to a user, and the Model's ACLs decide.
    ACCESS: ClassVar[AccessTable] = every_method("bugless.v1.Account", {ANY_CLIENT})

    def __init__(self, gateway: Gateway) -> None:
        """Serve through ``gateway``."""
        self.gateway = gateway

    async def who_am_i(self, message: v1.WhoAmIRequest) -> v1.Identity:
        """The identity the Authenticator maps the client certificate to."""
        identity = current_identity().identity
        # The assertion is for the Model only, never for the bot.
        return v1.Identity(
            user=identity.user,
            groups=list(identity.groups),
            authenticator=identity.authenticator,
            permissions=list(identity.permissions),
        )

    async def logout(self, message: v1.LogoutRequest) -> v1.PersonCertificate:
        """Revoke the people certificate this connection presented (``bugless logout``)."""
        current_identity()  # authenticated first: a revoked certificate cannot call
        certificate = current_peer_certificate()
        if certificate is None:
            raise InvalidArgument("this connection presented no client certificate")
        return await call(
            self.gateway.auth.revoke_person_certificate,
            v1.RevokePersonCertificateRequest(presented_certificate_der=certificate),
        )


class ComponentsService(GatewayService, v1.ComponentsBase):
    """Serves ``bugless.v1.Components``."""

    #: Bots are people: any client certificate the client CA verified may call;
    #: the Authenticator then maps it to a user, and the Model's ACLs decide.
    ACCESS: ClassVar[AccessTable] = every_method("bugless.v1.Components", {ANY_CLIENT})

    def __init__(self, gateway: Gateway) -> None:
        """Serve through ``gateway``."""
        self.gateway = gateway

    async def _component_out(self, component: v1.Component) -> v1.Component:
        out = UserRefs()
        out.component(component)
        await self.gateway.users.to_usernames(out)
        return component

    async def create_component(self, message: v1.CreateComponentRequest) -> v1.Component:
        """Create a component (top level: needs ``create_component``)."""
        caller_of(message)
        if message.parent_id == 0:
            await self.gateway.identities.require_permission(
                current_identity(), CREATE_COMPONENT_PERMISSION
            )
        refs = UserRefs()
        refs.acl(message.acl)
        refs.template(message.template)
        await self.gateway.users.to_ids(refs)
        component = await self.gateway.model_call(self.gateway.model.create_component, message)
        return await self._component_out(component)

    async def create_custom_field(self, message: v1.CreateCustomFieldRequest) -> v1.CustomField:
        """Define a custom field on a component (its admins); a USER default by username."""
        caller_of(message)
        refs = UserRefs()
        if message.type is v1.CustomFieldType.USER:
            refs.items(message.default_values, "default_values")
        await self.gateway.users.to_ids(refs)
        field = await self.gateway.model_call(self.gateway.model.create_custom_field, message)
        return await self._field_out(field)

    async def _field_out(self, field: v1.CustomField) -> v1.CustomField:
        out = UserRefs()
        out.custom_field(field)
        await self.gateway.users.to_usernames(out)
        return field

    async def list_custom_fields(
        self, message: v1.ListCustomFieldsRequest
    ) -> v1.ListCustomFieldsResponse:
        """The custom fields that apply to a component."""
        caller_of(message)
        reply = await self.gateway.model_call(self.gateway.model.list_custom_fields, message)
        out = UserRefs()
        for index, field in enumerate(reply.custom_fields):
            out.custom_field(field, f"custom_fields[{index}]")
        await self.gateway.users.to_usernames(out)
        return reply

    async def update_custom_field(self, message: v1.UpdateCustomFieldRequest) -> v1.CustomField:
        """Change a custom field's definition.

        A USER field's new default is a username when the request names the
        field's type (``custom_field.type = USER``; the type itself cannot
        change), as the client does; without it the gateway cannot know the
        value is a person and passes it on as written.
        """
        caller_of(message)
        refs = UserRefs()
        refs.custom_field(message.custom_field)
        await self.gateway.users.to_ids(refs)
        field = await self.gateway.model_call(self.gateway.model.update_custom_field, message)
        return await self._field_out(field)

    async def delete_custom_field(self, message: v1.DeleteCustomFieldRequest) -> v1.DeleteResponse:
        """Delete a custom field (its values leave the issues; history keeps them)."""
        caller_of(message)
        return await self.gateway.model_call(self.gateway.model.delete_custom_field, message)

    async def get_component(self, message: v1.GetComponentRequest) -> v1.Component:
        """One component by id or path."""
        caller_of(message)
        component = await self.gateway.model_call(self.gateway.model.get_component, message)
        return await self._component_out(component)

    async def list_components(self, message: v1.ListComponentsRequest) -> v1.ListComponentsResponse:
        """The visible part of the tree, or one component's children."""
        caller_of(message)
        reply = await self.gateway.model_call(self.gateway.model.list_components, message)
        out = UserRefs()
        for index, component in enumerate(reply.components):
            out.component(component, f"components[{index}]")
        await self.gateway.users.to_usernames(out)
        return reply

    async def update_component(self, message: v1.UpdateComponentRequest) -> v1.Component:
        """Rename, move, archive, or change the ACL or template."""
        caller_of(message)
        refs = UserRefs()
        refs.component(message.component)
        await self.gateway.users.to_ids(refs)
        component = await self.gateway.model_call(self.gateway.model.update_component, message)
        return await self._component_out(component)


class HotlistsService(GatewayService, v1.HotlistsBase):
    """Serves ``bugless.v1.Hotlists``."""

    #: Bots are people: any client certificate the client CA verified may call;
    #: the Authenticator then maps it to a user, and the Model's ACLs decide.
    ACCESS: ClassVar[AccessTable] = every_method("bugless.v1.Hotlists", {ANY_CLIENT})

    def __init__(self, gateway: Gateway) -> None:
        """Serve through ``gateway``."""
        self.gateway = gateway

    async def _hotlist_out(self, hotlist: v1.Hotlist) -> v1.Hotlist:
        out = UserRefs()
        out.hotlist(hotlist)
        await self.gateway.users.to_usernames(out)
        return hotlist

    async def create_hotlist(self, message: v1.CreateHotlistRequest) -> v1.Hotlist:
        """Create a hotlist owned by the caller."""
        caller_of(message)
        refs = UserRefs()
        refs.items(message.editors, "editors")
        await self.gateway.users.to_ids(refs)
        hotlist = await self.gateway.model_call(self.gateway.model.create_hotlist, message)
        return await self._hotlist_out(hotlist)

    async def get_hotlist(self, message: v1.GetHotlistRequest) -> v1.Hotlist:
        """One hotlist."""
        caller_of(message)
        hotlist = await self.gateway.model_call(self.gateway.model.get_hotlist, message)
        return await self._hotlist_out(hotlist)

    async def list_hotlists(self, message: v1.ListHotlistsRequest) -> v1.ListHotlistsResponse:
        """Visible hotlists, or those a member (by username) owns or edits."""
        caller_of(message)
        refs = UserRefs()
        refs.field(message, "member", "member")
        await self.gateway.users.to_ids(refs)
        reply = await self.gateway.model_call(self.gateway.model.list_hotlists, message)
        out = UserRefs()
        for index, hotlist in enumerate(reply.hotlists):
            out.hotlist(hotlist, f"hotlists[{index}]")
        await self.gateway.users.to_usernames(out)
        return reply

    async def update_hotlist(self, message: v1.UpdateHotlistRequest) -> v1.Hotlist:
        """Change name, description, editors, privacy or owner."""
        caller_of(message)
        refs = UserRefs()
        refs.hotlist(message.hotlist)
        await self.gateway.users.to_ids(refs)
        hotlist = await self.gateway.model_call(self.gateway.model.update_hotlist, message)
        return await self._hotlist_out(hotlist)

    async def delete_hotlist(self, message: v1.DeleteHotlistRequest) -> v1.DeleteResponse:
        """Delete a hotlist (owner or admin)."""
        caller_of(message)
        return await self.gateway.model_call(self.gateway.model.delete_hotlist, message)

    async def add_hotlist_items(self, message: v1.AddHotlistItemsRequest) -> v1.Hotlist:
        """Add issues at a position."""
        caller_of(message)
        hotlist = await self.gateway.model_call(self.gateway.model.add_hotlist_items, message)
        return await self._hotlist_out(hotlist)

    async def remove_hotlist_items(self, message: v1.RemoveHotlistItemsRequest) -> v1.Hotlist:
        """Remove issues."""
        caller_of(message)
        hotlist = await self.gateway.model_call(self.gateway.model.remove_hotlist_items, message)
        return await self._hotlist_out(hotlist)

    async def rank_hotlist_item(self, message: v1.RankHotlistItemRequest) -> v1.Hotlist:
        """Move one item to a position."""
        caller_of(message)
        hotlist = await self.gateway.model_call(self.gateway.model.rank_hotlist_item, message)
        return await self._hotlist_out(hotlist)

    async def set_hotlist_item_note(self, message: v1.SetHotlistItemNoteRequest) -> v1.HotlistItem:
        """Set an item's note."""
        caller_of(message)
        item = await self.gateway.model_call(self.gateway.model.set_hotlist_item_note, message)
        out = UserRefs()
        out.hotlist_item(item)
        await self.gateway.users.to_usernames(out)
        return item

    async def list_hotlist_items(
        self, message: v1.ListHotlistItemsRequest
    ) -> v1.ListHotlistItemsResponse:
        """Items in rank order, with the issues the caller may view."""
        caller_of(message)
        reply = await self.gateway.model_call(self.gateway.model.list_hotlist_items, message)
        out = UserRefs()
        for index, item in enumerate(reply.items):
            out.hotlist_item(item, f"items[{index}]")
        out.issues(reply.issues)
        await self.gateway.users.to_usernames(out)
        return reply


def _check_saved_query(text: str, path: str) -> None:
    """Refuse a saved search that would not run, with the caret rendering."""
    try:
        parse_query(text)
    except QuerySyntaxError as exc:
        raise InvalidArgument(
            f"{path}: {exc.message}\n{exc.render_caret()}",
            reason=exc.reason,
            metadata={**exc.metadata, "field": path},
        ) from exc


class SavedSearchesService(GatewayService, v1.SavedSearchesBase):
    """Serves ``bugless.v1.SavedSearches``."""

    #: Bots are people: any client certificate the client CA verified may call;
    #: the Authenticator then maps it to a user, and the Model's ACLs decide.
    ACCESS: ClassVar[AccessTable] = every_method("bugless.v1.SavedSearches", {ANY_CLIENT})

    def __init__(self, gateway: Gateway) -> None:
        """Serve through ``gateway``."""
        self.gateway = gateway

    async def _search_out(self, search: v1.SavedSearch) -> v1.SavedSearch:
        out = UserRefs()
        out.saved_search(search)
        await self.gateway.users.to_usernames(out)
        return search

    async def create_saved_search(self, message: v1.CreateSavedSearchRequest) -> v1.SavedSearch:
        """Save a query (checked to parse) for the caller."""
        caller_of(message)
        _check_saved_query(message.query, "query")
        refs = UserRefs()
        refs.principals(message.readers, "readers")
        await self.gateway.users.to_ids(refs)
        search = await self.gateway.model_call(self.gateway.model.create_saved_search, message)
        return await self._search_out(search)

    async def list_saved_searches(
        self, message: v1.ListSavedSearchesRequest
    ) -> v1.ListSavedSearchesResponse:
        """The caller's saved searches (and those shared with them)."""
        caller_of(message)
        reply = await self.gateway.model_call(self.gateway.model.list_saved_searches, message)
        out = UserRefs()
        for index, search in enumerate(reply.saved_searches):
            out.saved_search(search, f"saved_searches[{index}]")
        await self.gateway.users.to_usernames(out)
        return reply

    async def update_saved_search(self, message: v1.UpdateSavedSearchRequest) -> v1.SavedSearch:
        """Rename, change the query or the readers (owner only)."""
        caller_of(message)
        mask = message.update_mask
        if message.saved_search is not None and mask is not None and "query" in mask.paths:
            _check_saved_query(message.saved_search.query, "saved_search.query")
        refs = UserRefs()
        refs.saved_search(message.saved_search)
        await self.gateway.users.to_ids(refs)
        search = await self.gateway.model_call(self.gateway.model.update_saved_search, message)
        return await self._search_out(search)

    async def delete_saved_search(self, message: v1.DeleteSavedSearchRequest) -> v1.DeleteResponse:
        """Delete a saved search (owner only)."""
        caller_of(message)
        return await self.gateway.model_call(self.gateway.model.delete_saved_search, message)
