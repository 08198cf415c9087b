"""``bugless issue list|show|create|update|comment``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from bugless_api.cli._common import ID, Detail, Table, client_options, command, id_or_path

if TYPE_CHECKING:
    from bugless_api.client import BuglessClient
    from bugless_proto import v1


def _issue_row(issue: v1.Issue) -> list[object]:
    return [
        issue.id,
        issue.priority,
        issue.status,
        issue.assignee or "-",
        issue.component_id,
        issue.title,
    ]


def _issue_detail(issue: v1.Issue) -> Detail:
    created = issue.created_at.isoformat() if issue.created_at else ""
    modified = issue.modified_at.isoformat() if issue.modified_at else ""
    return Detail(
        lines=[
            ("id", issue.id),
            ("title", issue.title),
            ("status", issue.status),
            ("priority", issue.priority),
            ("severity", issue.severity),
            ("type", issue.type),
            ("component", issue.component_id),
            ("reporter", issue.reporter),
            ("assignee", issue.assignee or "-"),
            ("verifier", issue.verifier or "-"),
            ("cc", issue.cc),
            ("hotlists", issue.hotlist_ids),
            ("blocking", issue.blocking_ids),
            ("blocked by", issue.blocked_by_ids),
            ("version", issue.version),
            ("comments", issue.comment_count),
            ("created", created),
            ("modified", modified),
            ("description", issue.description),
        ],
        data=issue,
    )


@click.group("issue")
def issue_group() -> None:
    """Find, show, create and change issues through the bugless API."""


@issue_group.command("list")
@click.argument("query", default="")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@client_options
@command
async def list_command(client: BuglessClient, query: str, limit: int) -> Table:
    """List issues matching QUERY (the search language, e.g. "is:open a:me p<p2")."""
    found = [issue async for issue in client.iter_issues(query, limit=limit)]
    return Table(
        headers=["id", "p", "status", "assignee", "component", "title"],
        rows=[_issue_row(issue) for issue in found],
        data={"issues": found},
    )


@issue_group.command("show")
@click.argument("issue_id", type=ID)
@client_options
@command
async def show_command(client: BuglessClient, issue_id: int) -> Detail:
    """Show one issue."""
    return _issue_detail(await client.get_issue(issue_id))


_ENUM_OPTIONS: list[tuple[str, str]] = [
    ("--status", "new, assigned, accepted, fixed, verified, wont_fix_*, duplicate"),
    ("--priority", "P0 (most urgent) to P4"),
    ("--severity", "S0 (most severe) to S4"),
    ("--type", "bug, feature_request, task, ..."),
]


def _field_options(fn: Any) -> Any:
    for flag, text in reversed(_ENUM_OPTIONS):
        fn = click.option(flag, default=None, help=text)(fn)
    fn = click.option("--assignee", default=None, help="Username ('' for nobody).")(fn)
    return click.option("--verifier", default=None, help="Username ('' for nobody).")(fn)


@issue_group.command("create")
@click.option("--title", required=True)
@click.option("--component", "component", required=True, help="Component id or path (A>B).")
@click.option("--description", default="", help="Markdown body.")
@click.option("--cc", multiple=True, help="Username to CC (repeatable).")
@_field_options
@client_options
@command
async def create_command(
    client: BuglessClient,
    title: str,
    component: str,
    description: str,
    cc: tuple[str, ...],
    **fields: Any,
) -> Detail:
    """Create an issue (retried safely: one issue even if the network drops)."""
    ref = id_or_path(component)
    component_id = ref if isinstance(ref, int) else (await client.get_component(ref)).id
    issue = await client.create_issue(
        title,
        component_id,
        description=description,
        cc=cc,
        status=fields["status"],
        priority=fields["priority"],
        severity=fields["severity"],
        type=fields["type"],
        assignee=fields["assignee"] or "",
        verifier=fields["verifier"] or "",
    )
    return _issue_detail(issue)


@issue_group.command("update")
@click.argument("issue_id", type=ID)
@click.option("--title", default=None)
@click.option("--component", "component_id", type=ID, default=None, help="Move to component id.")
@_field_options
@click.option("--cc-add", multiple=True, help="Username to CC (repeatable).")
@click.option("--cc-remove", multiple=True, help="Username to un-CC (repeatable).")
@click.option("--hotlist-add", multiple=True, type=ID, help="Hotlist id (repeatable).")
@click.option("--hotlist-remove", multiple=True, type=ID, help="Hotlist id (repeatable).")
@click.option("--comment", default="", help="Comment added with the change.")
@click.option(
    "--expected-version",
    type=ID,
    default=None,
    help="Fail (exit 4) unless the issue is at this version; default: its current one.",
)
@client_options
@command
async def update_command(client: BuglessClient, issue_id: int, **changes: Any) -> Detail:
    """Change fields of an issue, atomically, as one history entry."""
    reply = await client.update_issue(issue_id, **changes)
    assert reply.issue is not None
    return _issue_detail(reply.issue)


@issue_group.command("comment")
@click.argument("issue_id", type=ID)
@click.argument("text")
@click.option("--expected-version", type=ID, default=None)
@client_options
@command
async def comment_command(
    client: BuglessClient, issue_id: int, text: str, expected_version: int | None
) -> Detail:
    """Add a comment to an issue."""
    reply = await client.comment(issue_id, text, expected_version=expected_version)
    assert reply.issue is not None
    return _issue_detail(reply.issue)
