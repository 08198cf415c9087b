"""Component and custom-field calls of the client."""

from __future__ import annotations

from collections.abc import Iterable

from bugless_api.client._base import ClientBase, enum_value, page
from bugless_core.clients import follow_pages
from bugless_core.ids import check_id
from bugless_proto import v1
from bugless_proto.google.protobuf import FieldMask


class ComponentCalls(ClientBase):
    """``bugless.v1.Components``."""

    async def list_components(
        self, *, parent_id: int = 0, include_archived: bool = False
    ) -> list[v1.Component]:
        """The visible component tree (or one component's children), every page."""
        check_id(parent_id, "parent_id", allow_zero=True)

        async def fetch(token: str, size: int) -> v1.ListComponentsResponse:
            request = v1.ListComponentsRequest(
                parent_id=parent_id, include_archived=include_archived, page=page(size, token)
            )
            return await self._call(self.components.list_components, request, idempotent=True)

        return [
            component
            async for response in follow_pages(fetch, page_size=1000)
            for component in response.components
        ]

    async def get_component(self, key: int | str) -> v1.Component:
        """A component by id or by path (``"Platform>Storage"``)."""
        if isinstance(key, int):
            check_id(key, "component_id")
        request = (
            v1.GetComponentRequest(component_id=key)
            if isinstance(key, int)
            else v1.GetComponentRequest(path=key)
        )
        return await self._call(self.components.get_component, request, idempotent=True)

    async def create_component(
        self,
        name: str,
        *,
        parent_id: int = 0,
        description: str = "",
        acl: Iterable[v1.AclEntry] = (),
    ) -> v1.Component:
        """Create a component (top level needs the create_component permission)."""
        check_id(parent_id, "parent_id", allow_zero=True)
        request = v1.CreateComponentRequest(
            parent_id=parent_id, name=name, description=description, acl=list(acl)
        )
        return await self._call(self.components.create_component, request, idempotent=False)

    async def update_component(
        self, component: v1.Component, fields: Iterable[str], *, expected_version: int = 0
    ) -> v1.Component:
        """Set the mask paths ``fields`` of ``component`` (by its id) to the values it carries.

        Paths: name, parent_id, description, archived, acl, template.

        ``expected_version`` 0 means no precondition. Not retried.
        """
        check_id(component.id, "component.id")
        request = v1.UpdateComponentRequest(
            component=component,
            update_mask=FieldMask(paths=list(fields)),
            expected_version=expected_version,
        )
        return await self._call(self.components.update_component, request, idempotent=False)

    async def create_custom_field(
        self,
        component_id: int,
        name: str,
        type: v1.CustomFieldType | str,
        *,
        description: str = "",
        options: Iterable[str] = (),
        required: bool = False,
        default_values: Iterable[str] = (),
    ) -> v1.CustomField:
        """Define a custom field on a component (component admins)."""
        check_id(component_id, "component_id")
        request = v1.CreateCustomFieldRequest(
            component_id=component_id,
            name=name,
            description=description,
            type=enum_value(v1.CustomFieldType, type, "type"),
            options=list(options),
            required=required,
            default_values=list(default_values),
        )
        return await self._call(self.components.create_custom_field, request, idempotent=False)

    async def list_custom_fields(self, component_id: int) -> list[v1.CustomField]:
        """The custom fields issues of a component have."""
        check_id(component_id, "component_id")
        request = v1.ListCustomFieldsRequest(component_id=component_id)
        response = await self._call(self.components.list_custom_fields, request, idempotent=True)
        return list(response.custom_fields)

    async def list_visible_custom_fields(self) -> list[v1.CustomField]:
        """Every custom field that applies to a component you can view, each once, by id.

        One ``ListCustomFields`` with ``all_visible`` a page of 500 fields,
        every page read: what a bot that shows fields across the whole tree
        (a column picker, an export) needs without one call per component.
        Archived components count; a field defined on a component you cannot
        view is listed when it applies to one you can.
        """

        async def fetch(token: str, size: int) -> v1.ListCustomFieldsResponse:
            request = v1.ListCustomFieldsRequest(all_visible=True, page=page(size, token))
            return await self._call(self.components.list_custom_fields, request, idempotent=True)

        return [
            field
            async for response in follow_pages(fetch, page_size=500)
            for field in response.custom_fields
        ]

    async def update_custom_field(
        self, field: v1.CustomField, fields: Iterable[str], *, expected_version: int = 0
    ) -> v1.CustomField:
        """Set the mask paths ``fields`` of custom field ``field`` (by its id). Not retried."""
        check_id(field.id, "custom_field.id")
        request = v1.UpdateCustomFieldRequest(
            custom_field=field,
            update_mask=FieldMask(paths=list(fields)),
            expected_version=expected_version,
        )
        return await self._call(self.components.update_custom_field, request, idempotent=False)

    async def delete_custom_field(self, field_id: int, *, expected_version: int = 0) -> None:
        """Delete a custom field definition. Not retried."""
        check_id(field_id, "field_id")
        request = v1.DeleteCustomFieldRequest(field_id=field_id, expected_version=expected_version)
        await self._call(self.components.delete_custom_field, request, idempotent=False)
