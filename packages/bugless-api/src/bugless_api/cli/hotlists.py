"""``bugless hotlist ...``: list, show, create, rename, change, delete, add, rank, note."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from bugless_api.cli._common import (
    ID,
    Detail,
    Table,
    Text,
    client_options,
    command,
    server_usage_mistakes,
)
from bugless_api.cli._option_names import (
    HOTLIST_ADD_OPTIONS,
    HOTLIST_CREATE_OPTIONS,
    HOTLIST_NOTE_OPTIONS,
    HOTLIST_RANK_OPTIONS,
    HOTLIST_REMOVE_OPTIONS,
    HOTLIST_RENAME_OPTIONS,
    HOTLIST_RERANK_OPTIONS,
    HOTLIST_UPDATE_OPTIONS,
)
from bugless_api.cli.groups import hotlist_group

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


@hotlist_group.command("list")
@click.option("--member", default="", help="Only hotlists this username owns or edits.")
@client_options
@command
async def hotlist_list(client: BuglessClient, member: str) -> Table:
    """List visible hotlists (every page)."""
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
    return await _items_table(client, hotlist_id)


async def _items_table(client: BuglessClient, hotlist_id: int) -> Table:
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
@click.option("--description", default="", help="What the hotlist is for (shown on its page).")
@click.option("--editor", "editors", multiple=True, help="Username (repeatable).")
@click.option("--private", is_flag=True, help="Visible only to owner and editors.")
@client_options
@command(option_names=HOTLIST_CREATE_OPTIONS)
async def hotlist_create(
    client: BuglessClient, name: str, description: str, editors: tuple[str, ...], private: bool
) -> Detail:
    """Create a hotlist owned by you."""
    hotlist = await client.create_hotlist(
        name, description=description, editors=editors, private=private
    )
    return _hotlist_detail(hotlist)


@hotlist_group.command("rename")
@click.argument("hotlist_id", type=ID)
@click.argument("name")
@client_options
@command(option_names=HOTLIST_RENAME_OPTIONS)
async def hotlist_rename(client: BuglessClient, hotlist_id: int, name: str) -> Detail:
    """Rename a hotlist (owner, editors or admins)."""
    from bugless_proto import v1  # noqa: PLC0415

    hotlist = await client.update_hotlist(v1.Hotlist(id=hotlist_id, name=name), ["name"])
    return _hotlist_detail(hotlist)


@hotlist_group.command("update")
@click.argument("hotlist_id", type=ID)
@click.option("--description", default=None, help="Replace the description.")
@click.option("--editor", "editors", multiple=True, help="Username; replaces the editors.")
@click.option("--no-editors", is_flag=True, help="Remove every editor.")
@click.option("--private/--public", default=None, help="Who may see it.")
@click.option("--owner", default=None, help="Hand the hotlist to this username.")
@click.option(
    "--expected-version", metavar="N", type=ID, default=None, help="Fail (exit 4) unless at it."
)
@client_options
@command(option_names=HOTLIST_UPDATE_OPTIONS)
async def hotlist_update(
    client: BuglessClient,
    *,
    hotlist_id: int,
    description: str | None,
    editors: tuple[str, ...],
    no_editors: bool,
    private: bool | None,
    owner: str | None,
    expected_version: int | None,
) -> Detail:
    """Change a hotlist's description, editors, visibility or owner."""
    from bugless_proto import v1  # noqa: PLC0415

    hotlist = v1.Hotlist(id=hotlist_id)
    fields: list[str] = []
    if description is not None:
        hotlist.description, fields = description, [*fields, "description"]
    if editors or no_editors:
        hotlist.editors, fields = list(editors), [*fields, "editors"]
    if private is not None:
        hotlist.private, fields = private, [*fields, "private"]
    if owner is not None:
        hotlist.owner, fields = owner, [*fields, "owner"]
    if not fields:
        raise click.UsageError("nothing to change: give --description, --editor, ...")
    updated = await client.update_hotlist(hotlist, fields, expected_version=expected_version or 0)
    return _hotlist_detail(updated)


@hotlist_group.command("delete")
@click.argument("hotlist_id", type=ID)
@click.option(
    "--expected-version", metavar="N", type=ID, default=None, help="Fail (exit 4) unless at it."
)
@client_options
@command
async def hotlist_delete(
    client: BuglessClient, hotlist_id: int, expected_version: int | None
) -> Text:
    """Delete a hotlist (its owner or an admin); the issues stay."""
    await client.delete_hotlist(hotlist_id, expected_version=expected_version or 0)
    return Text(text=f"deleted hotlist {hotlist_id}", data={"id": hotlist_id, "deleted": True})


@hotlist_group.command("add")
@click.argument("hotlist_id", type=ID)
@click.argument("issue_ids", type=ID, nargs=-1, required=True)
@click.option("--position", type=int, default=-1, help="0-based; default appends.")
@click.option("--note", default="", help="A note shown beside each added issue.")
@client_options
@command(option_names=HOTLIST_ADD_OPTIONS)
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
@command(option_names=HOTLIST_REMOVE_OPTIONS)
async def hotlist_remove(
    client: BuglessClient, hotlist_id: int, issue_ids: tuple[int, ...]
) -> Detail:
    """Remove issues from a hotlist."""
    return _hotlist_detail(await client.remove_from_hotlist(hotlist_id, issue_ids))


# A POSITION such as -1 (the end) would otherwise be read as an unknown option;
# a misspelt option is still refused, as an extra argument or a bad POSITION.
@hotlist_group.command("rank", context_settings={"ignore_unknown_options": True})
@click.argument("hotlist_id", type=ID)
@click.argument("issue_id", type=ID)
@click.argument("position", type=int)
@client_options
@command(option_names=HOTLIST_RANK_OPTIONS)
async def hotlist_rank(
    client: BuglessClient, hotlist_id: int, issue_id: int, position: int
) -> Detail:
    """Move ISSUE_ID to POSITION of the hotlist: 0 is the first place, -1 the last.

    A negative POSITION counts from the end (-2 is the place before the last). The
    server counts, in the same transaction as the move, so an item added
    meanwhile does not shift where it lands.
    """
    with server_usage_mistakes():
        return _hotlist_detail(await client.rank_hotlist_item(hotlist_id, issue_id, position))


@hotlist_group.command("rerank")
@click.argument("hotlist_id", type=ID)
@click.argument("issue_ids", type=ID, nargs=-1, required=True)
@client_options
@command(option_names=HOTLIST_RERANK_OPTIONS)
async def hotlist_rerank(
    client: BuglessClient, hotlist_id: int, issue_ids: tuple[int, ...]
) -> Table:
    """Put ISSUE_IDS at the top of the hotlist in the order given (the rest follow)."""
    if len(set(issue_ids)) != len(issue_ids):
        raise click.UsageError("each ISSUE_ID once")
    for position, issue_id in enumerate(issue_ids):
        await client.rank_hotlist_item(hotlist_id, issue_id, position)
    return await _items_table(client, hotlist_id)


@hotlist_group.command("note")
@click.argument("hotlist_id", type=ID)
@click.argument("issue_id", type=ID)
@click.argument("note")
@client_options
@command(option_names=HOTLIST_NOTE_OPTIONS)
async def hotlist_note(client: BuglessClient, hotlist_id: int, issue_id: int, note: str) -> Detail:
    """Set the note of an issue on a hotlist ("" clears it)."""
    item = await client.set_hotlist_item_note(hotlist_id, issue_id, note)
    return Detail(
        lines=[("hotlist", hotlist_id), ("issue", item.issue_id), ("note", item.note)], data=item
    )
