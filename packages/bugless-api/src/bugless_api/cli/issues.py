"""``bugless issue list|show|history|create|comment|watch``."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import click

from bugless_api.cli._common import (
    ID,
    Detail,
    Table,
    Text,
    client_options,
    command,
    id_or_path,
    run_with_client,
    server_usage_mistakes,
    to_plain,
)
from bugless_api.cli._option_names import ISSUE_COMMENT_OPTIONS, ISSUE_CREATE_OPTIONS
from bugless_api.cli._render import (
    ISSUE_HEADERS,
    ISSUE_ROW_FIELDS,
    comments_of,
    component_paths,
    entry_text,
    issue_detail,
    issue_row,
)
from bugless_api.cli._viewer_warnings import warn_of_hidden_people
from bugless_api.cli.custom_fields import FIELD_OPTION
from bugless_api.cli.groups import issue_group
from bugless_core.clients import follow_pages
from bugless_core.query_arguments import QueryCommand
from bugless_core.viewer_warnings import people_on

if TYPE_CHECKING:
    from bugless_api.client import BuglessClient
    from bugless_proto import v1

#: Issues fetched per search call while paging through a list.
PAGE_SIZE = 200
#: The footer of an empty list (a header alone read like output cut short).
NO_MATCH = "no issue matches"


def count_text(total: int, lower_bound: bool) -> str:
    """``175`` or, when the server stopped counting, ``more than 10000``."""
    return f"more than {total}" if lower_bound else str(total)


async def search_all(
    client: BuglessClient,
    query: str,
    limit: int | None,
    *,
    page_size: int = PAGE_SIZE,
    read_mask: Sequence[str] | None = None,
) -> tuple[list[v1.Issue], int, bool]:
    """The matching issues (every page, or the first ``limit``) and the total count.

    With ``read_mask``, each issue may come with only those fields (and its id).

    Returns:
        The issues, the total the server counted, and whether that total is
        only a lower bound (the server caps counting).
    """
    found: list[v1.Issue] = []
    counted: tuple[int, bool] | None = None  # the first page's count

    async def fetch(token: str, size: int) -> v1.SearchIssuesResponse:
        return await client.search_issues(
            query, page_size=size, page_token=token, read_mask=read_mask
        )

    with server_usage_mistakes():
        pages = follow_pages(
            fetch, page_size=page_size, limit=limit, count=lambda page: len(page.issues)
        )
        async for page in pages:
            if counted is None:
                counted = (page.total_count, page.total_is_lower_bound)
            found.extend(page.issues)
    total, lower_bound = counted or (0, False)
    return found[:limit], total, lower_bound


@issue_group.command("list", cls=QueryCommand)
@click.argument("query", default="")
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=None,
    help="Show at most this many (default: every matching issue, page by page).",
)
@click.option(
    "--page-size",
    type=click.IntRange(1, 500),
    default=PAGE_SIZE,
    show_default=True,
    help="Issues fetched per call while paging.",
)
@client_options
@command
async def list_command(
    client: BuglessClient, query: str, limit: int | None, page_size: int, as_json: bool
) -> Table:
    """List issues matching QUERY (the search language, for example "is:open a:me p<p2").

    A query the server cannot parse exits 2 (usage), with the position of
    the mistake. With --limit, the footer says how many of how many matched
    ("50 of 175").
    """
    # The table shows a few columns: ask for only those; --json prints whole issues.
    mask = None if as_json else ISSUE_ROW_FIELDS
    found, total, lower_bound = await search_all(
        client, query, limit, page_size=page_size, read_mask=mask
    )
    paths = await component_paths(client)
    shown = len(found)
    limited = lower_bound or total > shown
    footer = f"{shown} of {count_text(total, lower_bound)}" if limited else ""
    footer = footer or ("" if found else NO_MATCH)
    return Table(
        headers=ISSUE_HEADERS,
        rows=[issue_row(issue, paths) for issue in found],
        data={
            "issues": found,
            "total_count": total,
            "total_is_lower_bound": lower_bound,
            "truncated": limited,
        },
        footer=footer,
    )


@issue_group.command("show")
@click.argument("issue_id", type=ID)
@click.option(
    "--comments",
    is_flag=True,
    help="Also show the comments after the description, oldest first, each at its latest text.",
)
@client_options
@command
async def show_command(client: BuglessClient, issue_id: int, comments: bool) -> Detail:
    """Show one issue (and, with --comments, its comments)."""
    issue = await client.get_issue(issue_id)
    paths = await component_paths(client)
    if not comments:
        return issue_detail(issue, paths)
    shown, edited = comments_of([entry async for entry in client.iter_history(issue_id)])
    return issue_detail(issue, paths, comments=shown, edited=edited)


@issue_group.command("history")
@click.argument("issue_id", type=ID)
@client_options
@command
async def history_command(client: BuglessClient, issue_id: int) -> Text:
    """Show an issue's history, oldest first: every change and comment, and who made it."""
    entries = [entry async for entry in client.iter_history(issue_id)]
    return Text(text="\n".join(entry_text(entry) for entry in entries), data={"entries": entries})


@issue_group.command("create")
@click.option("--title", required=True, help="One line saying what is wrong.")
@click.option("--component", "component", required=True, help="Component id or path (A>B).")
@click.option("--description", default="", help="Markdown body.")
@click.option("--cc", multiple=True, help="Username to CC (repeatable).")
@click.option("--status", default=None, help="new, assigned, accepted, ...")
@click.option("--priority", default=None, help="P0 (most urgent) to P4.")
@click.option("--severity", default=None, help="S0 (most severe) to S4.")
@click.option("--type", default=None, help="bug, feature_request, task, ...")
@click.option("--assignee", default="", help="Username.")
@click.option("--verifier", default="", help="Username.")
@click.option("--blocking", "blocking", multiple=True, type=ID, help="Issue id (repeatable).")
@click.option("--blocked-by", "blocked_by", multiple=True, type=ID, help="Issue id (repeatable).")
@click.option("--hotlist", "hotlists", multiple=True, type=ID, help="Hotlist id (repeatable).")
@FIELD_OPTION
@click.option(
    "--idempotency-key",
    default=None,
    help="Run the command again with the same key to be sure of one issue "
    "(default: a new key per invocation, used by its own retries).",
)
@client_options
@command(option_names=ISSUE_CREATE_OPTIONS)
async def create_command(client: BuglessClient, **options: Any) -> Detail:
    """Create an issue (its retries never make a second one; see --idempotency-key).

    A "warning:" line on standard error names anyone it names (--assignee,
    --verifier, --cc) who cannot view the component: allowed, but they will
    not see the issue or get mail about it. The output (--json too) and the
    exit status are the create's; a server that cannot check prints none.
    """
    from bugless_api.client import new_idempotency_key  # noqa: PLC0415
    from bugless_api.client._custom_values import field_specs  # noqa: PLC0415
    from bugless_core.errors import Unavailable  # noqa: PLC0415

    ref = id_or_path(options["component"])
    component_id = ref if isinstance(ref, int) else (await client.get_component(ref)).id
    key = options["idempotency_key"] or new_idempotency_key()
    fields = field_specs(options["fields"])
    try:
        issue = await client.create_issue(
            options["title"],
            component_id,
            description=options["description"],
            cc=options["cc"],
            status=options["status"],
            priority=options["priority"],
            severity=options["severity"],
            type=options["type"],
            assignee=options["assignee"],
            verifier=options["verifier"],
            blocking_ids=options["blocking"],
            blocked_by_ids=options["blocked_by"],
            hotlist_ids=options["hotlists"],
            idempotency_key=key,
            fields=fields,
        )
    except Unavailable as exc:
        # The issue may have been made: the same key finds it instead of a twin.
        exc.message = f"{exc.message} (to retry without a duplicate: --idempotency-key {key})"
        raise
    await warn_of_hidden_people(
        client, issue, people_on(issue), texts=(options["title"], options["description"])
    )
    return issue_detail(issue, await component_paths(client))


@issue_group.command("comment")
@click.argument("issue_id", type=ID)
@click.argument("text")
@click.option(
    "--expected-version",
    metavar="N",
    type=ID,
    default=None,
    help="Fail (exit 4) unless the issue is still at this version.",
)
@client_options
@command(option_names=ISSUE_COMMENT_OPTIONS)
async def comment_command(
    client: BuglessClient, issue_id: int, text: str, expected_version: int | None
) -> Detail:
    """Add a comment to an issue; prints the comment as recorded (#version, author, time)."""
    reply = await client.comment(issue_id, text, expected_version=expected_version)
    assert reply.entry is not None
    assert reply.issue is not None
    await warn_of_hidden_people(client, reply.issue, [], texts=(text,))
    entry = reply.entry
    created = entry.created_at.isoformat(timespec="seconds") if entry.created_at else ""
    return Detail(
        lines=[
            ("issue", reply.issue.id),
            ("comment", f"#{entry.version}"),
            ("author", entry.author),
            ("created", created),
            ("issue version", reply.issue.version),
            ("text", entry.comment),
        ],
        data={"comment": entry, "issue": reply.issue},
    )


@issue_group.command("watch")
@click.argument("issue_id", type=ID, required=False)
@click.option("--query", default=None, help="Watch every issue matching this query instead.")
@click.option(
    "--count", type=click.IntRange(min=1), default=None, help="Stop after this many changes."
)
@click.option(
    "--after",
    "after_position",
    type=click.IntRange(min=0),
    default=None,
    metavar="POSITION",
    help="First print the matching changes made after this change feed position "
    '(a --json line\'s "position"), then live ones.',
)
@client_options
def watch_command(
    issue_id: int | None,
    query: str | None,
    count: int | None,
    after_position: int | None,
    as_json: bool,
    **options: Any,
) -> None:
    """Print each change to ISSUE_ID (or to issues matching --query) as it is committed.

    One line per change (with --json, one JSON object per line, with the
    change's feed "position"), flushed at once, until Ctrl-C or --count
    changes. "watching" on stderr says the watch is in place: any change made
    after it is printed. A lost connection (a restart of the API) is
    reconnected by itself, resuming where it stopped. To come back later, pass
    the last position printed as --after.

    A line is the issue's id and title as they are when it is printed, then
    the change: its entry number, time, author and what it changed (old and
    new values). "(now at #N)" after the title says the issue was changed
    again since, as a change printed by --after often was. With --query, a
    change that made an issue stop matching the query (closed, reassigned,
    moved away) is printed as "left the query" before the change; when you may
    no longer view the issue, the line says only its id and the change's
    number. With --json, "entry" is the change, "issue" the issue as it is
    now, and "left_query" is true on such a change (then "issue" and "entry"
    hold only their ids when you may no longer view the issue).
    """
    if (issue_id is None) == (query is None):
        raise click.UsageError("give an ISSUE_ID or --query (not both)")

    async def work(client: BuglessClient) -> None:
        seen = 0
        with server_usage_mistakes():
            async for event in client.watch(
                issue_id=issue_id, query=query, after_position=after_position
            ):
                if event.subscribed:
                    click.echo(
                        f"watching from position {event.position} (Ctrl-C to stop)", err=True
                    )
                    continue
                _print_event(event, as_json=as_json)
                seen += 1
                if count is not None and seen >= count:
                    return

    try:
        run_with_client(options, work)
    except KeyboardInterrupt:
        sys.exit(130)


def _print_event(event: v1.WatchEvent, *, as_json: bool) -> None:
    if as_json:
        data = {
            "position": event.position,
            "issue": event.issue,
            "entry": event.entry,
            "left_query": event.left_query,
        }
        click.echo(json.dumps(to_plain(data), sort_keys=True))
    else:
        click.echo(_event_line(event))
    sys.stdout.flush()


def _event_line(event: v1.WatchEvent) -> str:
    """The issue (as it is now) and the change, marked when the issue moved on since.

    A change that made the issue leave the watched query says so first; an
    issue the caller may no longer view (version 0: the event carries its id
    alone) is named by id and the change by its number, as that is all the
    event holds.
    """
    issue, entry = event.issue, event.entry
    if event.left_query and issue is not None and not issue.version:
        number = f" by change #{entry.version}" if entry is not None else ""
        return f"{issue.id}: left the query{number} (you may no longer view the issue)"
    head = ""
    if issue is not None:
        later = entry is not None and issue.version > entry.version
        head = f"{issue.id} {issue.title!r}" + (f" (now at #{issue.version})" if later else "")
        head += ": "
    if event.left_query:
        head += "left the query: "
    return head + (entry_text(entry) if entry is not None else "")
