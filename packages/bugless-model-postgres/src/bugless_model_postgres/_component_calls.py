"""The component calls: the tree issues are filed under, and who may see each.

A mixin of :class:`~bugless_model_postgres.PostgresBackend`. Components are
written by :mod:`._components` (paths, ACL inheritance, templates); these
calls open the write transaction through the backend's ``_write`` and read the
component back as the caller sees it, with the role its effective ACL gives
them (:func:`._convert.caller_role`), and page the tree by path.
"""

from __future__ import annotations

from bugless_model_postgres import _collection_queries as cq
from bugless_model_postgres import _components
from bugless_model_postgres._calls_base import BackendCalls
from bugless_model_postgres._context import component_not_found
from bugless_model_postgres._convert import caller_role, component_from_row, principals_of
from bugless_model_postgres._database import translated_errors
from bugless_model_postgres._paging import KeysetPage, caller_key
from bugless_proto import v1


class ComponentCalls(BackendCalls):
    """Create, read, list and update components over the backend's pool."""

    async def _component(
        self, caller: v1.Caller, component_id: int, *, written: bool = False
    ) -> v1.Component:
        """The component as ``caller`` sees it (written by them: no NOT_FOUND, role 0)."""
        async with translated_errors(), self._pool.acquire() as conn:
            row = await conn.fetchrow(
                cq.COMPONENT_SEEN_BY_ID, component_id, caller.admin, principals_of(caller)
            )
        role = caller_role(caller, row["effective_acl"]) if row else None
        if row is not None and role is None and written:
            role = v1.Role.UNSPECIFIED
        if row is None or role is None:
            raise component_not_found(component_id)
        return component_from_row(row, role)

    async def create_component(self, request: v1.CreateComponentRequest) -> v1.Component:
        """Create a component (admin on the parent; anyone at the top level)."""
        component_id, _ = await self._write(
            request.caller, lambda ctx: _components.create_component(ctx, request)
        )
        return await self._component(request.caller or v1.Caller(), component_id, written=True)

    async def get_component(self, request: v1.GetComponentRequest) -> v1.Component:
        """By id or by path; NotFound when not visible."""
        caller = request.caller or v1.Caller()
        if request.component_id:
            return await self._component(caller, request.component_id)
        async with translated_errors(), self._pool.acquire() as conn:
            row, role = await _components.seen_by_path(conn, caller, request.path or "")
        return component_from_row(row, role)

    async def list_components(self, request: v1.ListComponentsRequest) -> v1.ListComponentsResponse:
        """Visible components in tree (path) order, keyset-paged by path."""
        caller = request.caller or v1.Caller()
        page = KeysetPage.of(
            self._tokens,
            request.page,
            "components",
            request.parent_id,
            request.include_archived,
            caller_key(caller),
        )
        if request.parent_id:
            await self._component(caller, request.parent_id)
        async with translated_errors(), self._pool.acquire() as conn:
            fetched = await conn.fetch(
                cq.LIST_COMPONENTS,
                caller.admin,
                principals_of(caller),
                request.parent_id,
                request.include_archived,
                page.position,
                page.size + 1,
            )
        rows, more = page.cut(fetched)
        components = []
        for row in rows:
            role = caller_role(caller, row["effective_acl"])
            if role is not None:
                components.append(component_from_row(row, role))
        return v1.ListComponentsResponse(
            components=components,
            next_page_token=page.next_token(rows, more, lambda r: list(r["path_key"])),
        )

    async def update_component(self, request: v1.UpdateComponentRequest) -> v1.Component:
        """Rename, move, archive, describe, re-template or re-ACL (admin)."""
        component_id, _ = await self._write(
            request.caller, lambda ctx: _components.update_component(ctx, request)
        )
        return await self._component(request.caller or v1.Caller(), component_id, written=True)
