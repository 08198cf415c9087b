"""``bugless component ...``: list, show, create, rename, change, archive, unarchive."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import click

from bugless_api.cli._common import (
    ID_OR_ZERO,
    Detail,
    Table,
    client_options,
    command,
    id_or_path,
)
from bugless_api.cli._option_names import COMPONENT_CREATE_OPTIONS, COMPONENT_UPDATE_OPTIONS
from bugless_api.cli.groups import component_group

if TYPE_CHECKING:
    from bugless_api.client import BuglessClient
    from bugless_proto import v1


def _component_detail(component: v1.Component) -> Detail:
    return Detail(
        lines=[
            ("id", component.id),
            ("path", component.path),
            ("parent", component.parent_id),
            ("archived", component.archived),
            ("your role", component.caller_role),
            ("version", component.version),
            ("description", component.description),
        ],
        data=component,
    )


@component_group.command("list")
@click.option(
    "--parent", "parent_id", type=ID_OR_ZERO, default=0, help="Only this component's children."
)
@click.option("--archived", is_flag=True, help="Include archived components.")
@client_options
@command
async def component_list(client: BuglessClient, parent_id: int, archived: bool) -> Table:
    """List the components you can see, in path order."""
    components = await client.list_components(parent_id=parent_id, include_archived=archived)
    return Table(
        headers=["id", "path", "role", "archived"],
        rows=[[c.id, c.path, c.caller_role, "yes" if c.archived else ""] for c in components],
        data={"components": components},
    )


@component_group.command("show")
@click.argument("component_ref", metavar="ID_OR_PATH")
@client_options
@command
async def component_show(client: BuglessClient, component_ref: str) -> Detail:
    """Show a component by id or path (Platform>Storage)."""
    # Not named `key`: that is the client key option every command takes.
    component = await client.get_component(id_or_path(component_ref))
    return _component_detail(component)


@component_group.command("create")
@click.argument("name")
@click.option("--parent", "parent_id", type=ID_OR_ZERO, default=0, help="Parent id; 0 = top level.")
@click.option("--description", default="", help="What the component covers.")
@client_options
@command(option_names=COMPONENT_CREATE_OPTIONS)
async def component_create(
    client: BuglessClient, name: str, parent_id: int, description: str
) -> Detail:
    """Create a component (top level needs the create_component permission)."""
    component = await client.create_component(name, parent_id=parent_id, description=description)
    return _component_detail(component)


async def _update(
    client: BuglessClient, ref: str, changes: Mapping[str, object], expected_version: int | None
) -> Detail:
    from bugless_proto import v1  # noqa: PLC0415

    found = id_or_path(ref)
    component_id = found if isinstance(found, int) else (await client.get_component(found)).id
    component = v1.Component(id=component_id, **changes)  # type: ignore[arg-type]
    updated = await client.update_component(
        component, list(changes), expected_version=expected_version or 0
    )
    return _component_detail(updated)


@component_group.command("update")
@click.argument("component_ref", metavar="ID_OR_PATH")
@click.option("--name", default=None, help="Rename it (its path and its children's change).")
@click.option("--description", default=None, help="Replace the description.")
@click.option("--parent", "parent_id", type=ID_OR_ZERO, default=None, help="Move under this id.")
@click.option(
    "--expected-version",
    metavar="N",
    type=ID_OR_ZERO,
    default=None,
    help="Fail (exit 4) unless at it.",
)
@client_options
@command(option_names=COMPONENT_UPDATE_OPTIONS)
async def component_update(
    client: BuglessClient,
    *,
    component_ref: str,
    name: str | None,
    description: str | None,
    parent_id: int | None,
    expected_version: int | None,
) -> Detail:
    """Rename, describe or move a component (its admins)."""
    given = {"name": name, "description": description, "parent_id": parent_id}
    changes = {field: value for field, value in given.items() if value is not None}
    if not changes:
        raise click.UsageError("nothing to change: give --name, --description or --parent")
    return await _update(client, component_ref, changes, expected_version)


@component_group.command("archive")
@click.argument("component_ref", metavar="ID_OR_PATH")
@client_options
@command
async def component_archive(client: BuglessClient, component_ref: str) -> Detail:
    """Archive a component: hidden from pickers, its issues stay searchable."""
    return await _update(client, component_ref, {"archived": True}, None)


@component_group.command("unarchive")
@click.argument("component_ref", metavar="ID_OR_PATH")
@client_options
@command
async def component_unarchive(client: BuglessClient, component_ref: str) -> Detail:
    """Bring an archived component back."""
    return await _update(client, component_ref, {"archived": False}, None)
