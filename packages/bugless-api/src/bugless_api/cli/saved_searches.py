"""``bugless saved-search ...``: list, run, create, update, delete."""

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
from bugless_api.cli._option_names import SAVED_SEARCH_CREATE_OPTIONS, SAVED_SEARCH_UPDATE_OPTIONS
from bugless_api.cli._render import ISSUE_HEADERS, ISSUE_ROW_FIELDS, component_paths, issue_row
from bugless_api.cli.groups import saved_search_group
from bugless_api.cli.issues import NO_MATCH, count_text, search_all
from bugless_core.query_arguments import QueryCommand

if TYPE_CHECKING:
    from bugless_api.client import BuglessClient
    from bugless_proto import v1

_READER_HELP = "user:NAME or group:NAME who may use it (repeatable)."
_COLUMNS_HELP = (
    "List columns it is shown with, comma separated, e.g. id,priority,title,assignee "
    "(the web list's keys, customfield<ID> for a custom field); exactly the default "
    "ones store none, so it follows the defaults."
)


def _columns(
    _ctx: click.Context, _param: click.Parameter, value: str | None
) -> tuple[str, ...] | None:
    """``--columns a,b`` as keys, refused here (usage, exit 2) when one is unknown."""
    from bugless_core.errors import InvalidArgument  # noqa: PLC0415
    from bugless_core.list_columns import check_columns  # noqa: PLC0415

    if value is None:
        return None
    columns = tuple(c.strip() for c in value.split(",") if c.strip())
    try:
        check_columns(columns, "--columns")
    except InvalidArgument as exc:
        problem = exc.message.split(": ", 1)[-1]
        raise click.BadParameter(problem, param_hint="--columns") from None
    return columns


def _to_store(columns: tuple[str, ...]) -> list[str]:
    """What a saved search stores for ``--columns``: none when they are the default ones.

    As the web stores them: a search that stores none keeps following the
    default columns when a release changes them, where the defaults spelled
    out would stay the search's for good.
    """
    from bugless_core.list_columns import DEFAULT_COLUMNS  # noqa: PLC0415

    return [] if columns == DEFAULT_COLUMNS else list(columns)


def principal(text: str) -> v1.Principal:
    """``user:alice`` or ``group:eng`` as a Principal (a bare name is a user)."""
    from bugless_proto import v1  # noqa: PLC0415

    kind, _, name = text.partition(":")
    if not name:
        return v1.Principal(user=text)
    if kind == "user":
        return v1.Principal(user=name)
    if kind == "group":
        return v1.Principal(group=name)
    raise click.BadParameter(f"{text!r}: use user:NAME or group:NAME", param_hint="--reader")


def _reader_text(reader: v1.Principal) -> str:
    return f"user:{reader.user}" if reader.user is not None else f"group:{reader.group}"


def _detail(search: v1.SavedSearch) -> Detail:
    return Detail(
        lines=[
            ("id", search.id),
            ("name", search.name),
            ("query", search.query),
            ("owner", search.owner),
            ("readers", [_reader_text(r) for r in search.readers]),
            ("columns", list(search.columns) or "default"),
            ("version", search.version),
        ],
        data=search,
    )


@saved_search_group.command("list")
@click.option("--mine", is_flag=True, help="Only yours (not those shared with you).")
@client_options
@command
async def saved_search_list(client: BuglessClient, mine: bool) -> Table:
    """List your saved searches and those shared with you."""
    searches = await client.all_saved_searches(owned_only=mine)
    return Table(
        headers=["id", "name", "owner", "query", "columns"],
        rows=[[s.id, s.name, s.owner, s.query, list(s.columns) or "default"] for s in searches],
        data={"saved_searches": searches},
    )


async def find_saved_search(client: BuglessClient, saved_search_id: int) -> v1.SavedSearch:
    """One saved search you may read, by id (NotFound, exit 3, for any other)."""
    from bugless_core.errors import NotFound  # noqa: PLC0415

    for search in await client.all_saved_searches():
        if search.id == saved_search_id:
            return search
    raise NotFound(f"saved search {saved_search_id} not found")


@saved_search_group.command("run")
@click.argument("saved_search_id", type=ID)
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Show at most this many.")
@client_options
@command
async def saved_search_run(
    client: BuglessClient, saved_search_id: int, limit: int | None, as_json: bool
) -> Table:
    """List the issues a saved search finds now."""
    search = await find_saved_search(client, saved_search_id)
    mask = None if as_json else ISSUE_ROW_FIELDS  # the table's columns; --json: whole issues
    found, total, lower_bound = await search_all(client, search.query, limit, read_mask=mask)
    paths = await component_paths(client)
    limited = lower_bound or total > len(found)
    return Table(
        headers=ISSUE_HEADERS,
        rows=[issue_row(issue, paths) for issue in found],
        data={"saved_search": search, "issues": found, "total_count": total},
        footer=f"{len(found)} of {count_text(total, lower_bound)}"
        if limited
        else ("" if found else NO_MATCH),
    )


@saved_search_group.command("create", cls=QueryCommand)
@click.argument("name")
@click.argument("query")
@click.option("--reader", "readers", multiple=True, help=_READER_HELP)
@click.option("--columns", default=None, callback=_columns, help=_COLUMNS_HELP)
@client_options
@command(option_names=SAVED_SEARCH_CREATE_OPTIONS)
async def saved_search_create(
    client: BuglessClient,
    name: str,
    query: str,
    readers: tuple[str, ...],
    columns: tuple[str, ...] | None,
) -> Detail:
    """Save QUERY under NAME (shared with --reader, shown with --columns)."""
    with server_usage_mistakes("query"):  # a QUERY that does not parse: 2, as issue list's
        search = await client.create_saved_search(
            name, query, readers=[principal(r) for r in readers], columns=_to_store(columns or ())
        )
    return _detail(search)


@saved_search_group.command("update")
@click.argument("saved_search_id", type=ID)
@click.option("--name", default=None, help="Rename it.")
@click.option("--query", default=None, help="Replace its query (the search language).")
@click.option("--reader", "readers", multiple=True, help=f"{_READER_HELP} Replaces them.")
@click.option("--no-readers", is_flag=True, help="Share it with nobody.")
@click.option("--columns", default=None, callback=_columns, help=f"{_COLUMNS_HELP} Replaces them.")
@click.option("--default-columns", is_flag=True, help="Show it with the default columns.")
@click.option(
    "--expected-version", metavar="N", type=ID, default=None, help="Fail (exit 4) unless at it."
)
@client_options
@command(option_names=SAVED_SEARCH_UPDATE_OPTIONS)
async def saved_search_update(
    client: BuglessClient,
    *,
    saved_search_id: int,
    name: str | None,
    query: str | None,
    readers: tuple[str, ...],
    no_readers: bool,
    columns: tuple[str, ...] | None,
    default_columns: bool,
    expected_version: int | None,
) -> Detail:
    """Rename a saved search, change its query, who it is shared with or its columns."""
    from bugless_proto import v1  # noqa: PLC0415

    search = v1.SavedSearch(id=saved_search_id)
    fields: list[str] = []
    if name is not None:
        search.name, fields = name, [*fields, "name"]
    if query is not None:
        search.query, fields = query, [*fields, "query"]
    if readers or no_readers:
        search.readers, fields = [principal(r) for r in readers], [*fields, "readers"]
    if columns is not None or default_columns:
        search.columns, fields = _to_store(columns or ()), [*fields, "columns"]
    if not fields:
        raise click.UsageError("nothing to change: give --name, --query, --reader or --columns")
    with server_usage_mistakes("saved_search.query"):
        updated = await client.update_saved_search(
            search, fields, expected_version=expected_version or 0
        )
    return _detail(updated)


@saved_search_group.command("delete")
@click.argument("saved_search_id", type=ID)
@client_options
@command
async def saved_search_delete(client: BuglessClient, saved_search_id: int) -> Text:
    """Delete one of your saved searches."""
    await client.delete_saved_search(saved_search_id)
    return Text(
        text=f"deleted saved search {saved_search_id}",
        data={"id": saved_search_id, "deleted": True},
    )
