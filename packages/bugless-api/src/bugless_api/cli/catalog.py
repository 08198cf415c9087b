"""``bugless hotlist ...`` and ``bugless component ...``."""

from __future__ import annotations

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

if TYPE_CHECKING:
    from bugless_api.client import BuglessClient
    from bugless_proto import v1


def _hotlist_detail(hotlist: v1.Hotlist) -> Detail:
    return Detail(
        lines=[
            ("id", hotlist.id),
            ("name", hotlist.name),
            ("owner", hotlist.owner),
            ("editors", hotlist.editors),
            ("private", hotlist.private),
            ("items", hotlist.item_count),
            ("version", hotlist.version),
            ("description", hotlist.description),
        ],
        data=hotlist,
    )


@click.group("hotlist")
def hotlist_group() -> None:
    """List, show, create and rank hotlists."""


@hotlist_group.command("list")
@click.option("--member", default="", help="Only hotlists this username owns or edits.")
@client_options
@command
async def hotlist_list(client: BuglessClient, member: str) -> Table:
    """List visible hotlists."""
    hotlists = await client.list_hotlists(member=member)
    return Table(
        headers=["id", "name", "owner", "items"],
        rows=[[h.id, h.name, h.owner, h.item_count] for h in hotlists],
        data={"hotlists": hotlists},
    )


@hotlist_group.command("show")
@click.argument("hotlist_id", type=ID)
@client_options
@command
async def hotlist_show(client: BuglessClient, hotlist_id: int) -> Table:
    """Show a hotlist's items in rank order."""
    hotlist = await client.get_hotlist(hotlist_id)
    items, issues = await client.list_hotlist_items(hotlist_id)
    titles = {issue.id: issue.title for issue in issues}
    return Table(
        headers=["rank", "issue", "title", "note"],
        rows=[[i.rank, i.issue_id, titles.get(i.issue_id, ""), i.note] for i in items],
        data={"hotlist": hotlist, "items": items, "issues": issues},
        footer=f"{hotlist.name} (owner {hotlist.owner}, {hotlist.item_count} items)",
    )


@hotlist_group.command("create")
@click.argument("name")
@click.option("--description", default="")
@click.option("--editor", "editors", multiple=True, help="Username (repeatable).")
@click.option("--private", is_flag=True, help="Visible only to owner and editors.")
@client_options
@command
async def hotlist_create(
    client: BuglessClient, name: str, description: str, editors: tuple[str, ...], private: bool
) -> Detail:
    """Create a hotlist owned by you."""
    hotlist = await client.create_hotlist(
        name, description=description, editors=editors, private=private
    )
    return _hotlist_detail(hotlist)


@hotlist_group.command("add")
@click.argument("hotlist_id", type=ID)
@click.argument("issue_ids", type=ID, nargs=-1, required=True)
@click.option("--position", type=int, default=-1, help="0-based; default appends.")
@click.option("--note", default="")
@client_options
@command
async def hotlist_add(
    client: BuglessClient, hotlist_id: int, issue_ids: tuple[int, ...], position: int, note: str
) -> Detail:
    """Add issues to a hotlist."""
    hotlist = await client.add_to_hotlist(hotlist_id, issue_ids, position=position, note=note)
    return _hotlist_detail(hotlist)


@hotlist_group.command("remove")
@click.argument("hotlist_id", type=ID)
@click.argument("issue_ids", type=ID, nargs=-1, required=True)
@client_options
@command
async def hotlist_remove(
    client: BuglessClient, hotlist_id: int, issue_ids: tuple[int, ...]
) -> Detail:
    """Remove issues from a hotlist."""
    return _hotlist_detail(await client.remove_from_hotlist(hotlist_id, issue_ids))


@hotlist_group.command("rank")
@click.argument("hotlist_id", type=ID)
@click.argument("issue_id", type=ID)
@click.argument("position", type=int)
@client_options
@command
async def hotlist_rank(
    client: BuglessClient, hotlist_id: int, issue_id: int, position: int
) -> Detail:
    """Move ISSUE_ID to the 0-based POSITION of the hotlist."""
    return _hotlist_detail(await client.rank_hotlist_item(hotlist_id, issue_id, position))


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


@click.group("component")
def component_group() -> None:
    """List, show and create components."""


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
        headers=["id", "path", "role"],
        rows=[[c.id, c.path, c.caller_role] for c in components],
        data={"components": components},
    )


@component_group.command("show")
@click.argument("component_ref", metavar="ID_OR_PATH")
@client_options
@command
async def component_show(client: BuglessClient, component_ref: str) -> Detail:
    """Show a component by id or path (Platform>Storage)."""
    # Not named `key`: that is the client key option every command takes.
    ref = id_or_path(component_ref)
    component = await client.get_component(ref)
    return _component_detail(component)


@component_group.command("create")
@click.argument("name")
@click.option("--parent", "parent_id", type=ID_OR_ZERO, default=0, help="Parent id; 0 = top level.")
@click.option("--description", default="")
@client_options
@command
async def component_create(
    client: BuglessClient, name: str, parent_id: int, description: str
) -> Detail:
    """Create a component (top level needs the create_component permission)."""
    component = await client.create_component(name, parent_id=parent_id, description=description)
    return _component_detail(component)
