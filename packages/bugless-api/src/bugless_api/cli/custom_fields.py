"""``bugless component field list|create|update|delete``, and ``--field`` of issue commands.

Custom fields are defined on a component by its admins and apply to its
subtree; ``--field "Found In=4.2"`` on ``issue create`` and ``issue update``
names one by name (or ``customfield<ID>``) among the fields that apply to the
issue's component.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import click

from bugless_api.cli._common import (
    ID,
    ID_OR_ZERO,
    Detail,
    Table,
    client_options,
    command,
    id_or_path,
)
from bugless_api.cli._option_names import (
    FIELD_CREATE_OPTIONS,
    FIELD_DELETE_OPTIONS,
    field_update_options,
)
from bugless_api.cli.groups import component_group

if TYPE_CHECKING:
    from bugless_api.client import BuglessClient
    from bugless_proto import v1

#: The ``--field`` option of issue create and update.
FIELD_OPTION = click.option(
    "--field",
    "fields",
    multiple=True,
    metavar="NAME=VALUE",
    help='Set a custom field (repeatable): "Found In=4.2", "OS=linux,mac"; "Name=" clears it.',
)


async def component_id_of(client: BuglessClient, ref: str) -> int:
    """A component id from an id or a path (``Platform>Storage``)."""
    found = id_or_path(ref)
    return found if isinstance(found, int) else (await client.get_component(found)).id


async def field_values(
    client: BuglessClient, component_ids: Iterable[int], specs: Iterable[str]
) -> list[v1.CustomFieldValue]:
    """The values ``--field`` specs set, for issues of ``component_ids`` (a bulk update).

    Each component's fields are found and each value checked by the client
    (:meth:`BuglessClient.custom_field_values`, the path of ``fields`` in
    ``update_issue``), before the preview and before anything is written:
    a name must mean the same field in all of them, and one that no field
    of some issue's component has refuses the whole change.

    Raises:
        InvalidArgument: a client mistake (unknown name, malformed spec, a
            value that does not fit, a name meaning different fields in
            different components).
    """
    from bugless_api.client._base import client_mistake  # noqa: PLC0415
    from bugless_api.client._custom_values import field_specs  # noqa: PLC0415

    fields = field_specs(specs)
    if not fields:
        return []
    chosen: list[v1.CustomFieldValue] | None = None
    for component_id in sorted(set(component_ids)):
        values = await client.custom_field_values(component_id, fields)
        if chosen is not None and [v.field_id for v in values] != [v.field_id for v in chosen]:
            msg = (
                "field: the names mean different fields in the issues' components; "
                "use customfield<ID>"
            )
            raise client_mistake(msg)
        chosen = values
    return chosen or []


def _field_detail(field: v1.CustomField) -> Detail:
    from bugless_core.custom_fields import TYPE_NAMES  # noqa: PLC0415

    return Detail(
        lines=[
            ("id", field.id),
            ("search as", f"customfield{field.id}"),
            ("name", field.name),
            ("type", TYPE_NAMES.get(field.type, str(field.type))),
            ("component", field.component_id),
            ("options", ", ".join(field.options)),
            ("required", "yes" if field.required else "no"),
            ("default", ", ".join(field.default_values)),
            ("version", field.version),
            ("description", field.description),
        ],
        data=field,
    )


@component_group.group("field")
def field_group() -> None:
    """Custom fields of a component (defined by its admins, inherited by its subtree)."""


@field_group.command("list")
@click.argument("component_ref", metavar="ID_OR_PATH", required=False)
@click.option(
    "--all-visible",
    is_flag=True,
    help="Every field of every component you can view, each once (no ID_OR_PATH).",
)
@client_options
@command
async def field_list(client: BuglessClient, component_ref: str | None, all_visible: bool) -> Table:
    """The custom fields that apply to a component's issues (its ancestors' first).

    With --all-visible, those of every component you can view, by id, in
    one call a page rather than one per component.
    """
    from bugless_core.custom_fields import TYPE_NAMES  # noqa: PLC0415

    if all_visible == (component_ref is not None):
        raise click.UsageError("give one of a component's ID_OR_PATH or --all-visible")
    if component_ref is None:
        fields = await client.list_visible_custom_fields()
    else:
        fields = await client.list_custom_fields(await component_id_of(client, component_ref))
    return Table(
        headers=["id", "name", "type", "required", "default", "options", "component"],
        rows=[
            [
                f.id,
                f.name,
                TYPE_NAMES.get(f.type, str(f.type)),
                "yes" if f.required else "",
                ", ".join(f.default_values),
                ", ".join(f.options),
                f.component_id,
            ]
            for f in fields
        ],
        data={"custom_fields": fields},
    )


_TYPES = ("enum", "multi-enum", "text", "integer", "date", "user")


@field_group.command("create")
@click.argument("component_ref", metavar="ID_OR_PATH")
@click.argument("name")
@click.option(
    "--type", "type_name", type=click.Choice(_TYPES), required=True, help="The kind of value."
)
@click.option("--option", "options", multiple=True, help="An enum option (repeatable, in order).")
@click.option(
    "--required", is_flag=True, help="New issues must have a value (the default if none)."
)
@click.option(
    "--default", "defaults", multiple=True, help="Default value (repeatable for multi-enum)."
)
@click.option("--description", default="", help="What the field means (shown with it).")
@client_options
@command(option_names=FIELD_CREATE_OPTIONS)
async def field_create(
    client: BuglessClient,
    *,
    component_ref: str,
    name: str,
    type_name: str,
    options: tuple[str, ...],
    required: bool,
    defaults: tuple[str, ...],
    description: str,
) -> Detail:
    """Define a custom field NAME on a component (its admins)."""
    from bugless_core.custom_fields import TYPE_NAMES  # noqa: PLC0415

    kind = next(t for t, n in TYPE_NAMES.items() if n == type_name)
    field = await client.create_custom_field(
        await component_id_of(client, component_ref),
        name,
        kind,
        description=description,
        options=options,
        required=required,
        default_values=defaults,
    )
    return _field_detail(field)


async def _current(client: BuglessClient, component_ref: str, field_id: int) -> v1.CustomField:
    from bugless_api.client._base import client_mistake  # noqa: PLC0415

    for found in await client.list_custom_fields(await component_id_of(client, component_ref)):
        if found.id == field_id:
            return found
    msg = f"field_id: no custom field {field_id} applies to component {component_ref}"
    raise client_mistake(msg)


@field_group.command("update")
@click.argument("component_ref", metavar="ID_OR_PATH")
@click.argument("field_id", type=ID)
@click.option("--name", default=None, help="Rename it (any case change included).")
@click.option("--description", default=None, help="Replace the description.")
@click.option("--option", "options", multiple=True, help="The whole option list, in order.")
@click.option("--required/--optional", default=None, help="Whether new issues must have a value.")
@click.option("--default", "defaults", multiple=True, help="The new default (repeatable).")
@click.option("--no-default", is_flag=True, help="Remove the default.")
@click.option(
    "--expected-version",
    metavar="N",
    type=ID_OR_ZERO,
    default=None,
    help="Fail (exit 4) unless at it.",
)
@client_options
@command(option_names=field_update_options)
async def field_update(
    client: BuglessClient,
    *,
    component_ref: str,
    field_id: int,
    name: str | None,
    description: str | None,
    options: tuple[str, ...],
    required: bool | None,
    defaults: tuple[str, ...],
    no_default: bool,
    expected_version: int | None,
) -> Detail:
    """Change a custom field (FIELD_ID of the component ID_OR_PATH): only what is given."""
    from bugless_proto import v1  # noqa: PLC0415

    current = await _current(client, component_ref, field_id)
    # The type cannot change; naming it lets the API read a user default as a username.
    changed = v1.CustomField(id=field_id, type=current.type)
    paths: list[str] = []
    if name is not None:
        changed.name, paths = name, [*paths, "name"]
    if description is not None:
        changed.description, paths = description, [*paths, "description"]
    if options:
        changed.options, paths = list(options), [*paths, "options"]
    if required is not None:
        changed.required, paths = required, [*paths, "required"]
    if defaults or no_default:
        changed.default_values, paths = list(defaults), [*paths, "default_values"]
    if not paths:
        raise click.UsageError("nothing to change: give --name, --description, --option, ...")
    field = await client.update_custom_field(
        changed, paths, expected_version=expected_version or current.version
    )
    return _field_detail(field)


@field_group.command("delete")
@click.argument("component_ref", metavar="ID_OR_PATH")
@click.argument("field_id", type=ID)
@click.option(
    "--expected-version",
    metavar="N",
    type=ID_OR_ZERO,
    default=None,
    help="Fail (exit 4) unless at it.",
)
@client_options
@command(option_names=FIELD_DELETE_OPTIONS)
async def field_delete(
    client: BuglessClient, component_ref: str, field_id: int, expected_version: int | None
) -> Detail:
    """Delete a custom field: its values leave every issue; histories keep them by name."""
    current = await _current(client, component_ref, field_id)
    await client.delete_custom_field(field_id, expected_version=expected_version or current.version)
    return Detail(lines=[("deleted", f"customfield{field_id} ({current.name})")], data=current)
