"""``bugless issue edit-comment`` and ``bugless issue redact``.

An edit is a new history entry superseding the comment's text (only its
author may edit; entry 1 is the description). A redaction removes a comment,
the description or an attachment's content for good, with every earlier
version of it; the history records who redacted what and when (the
component's admins only).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from bugless_api.cli._common import ID, Detail, client_options, command
from bugless_api.cli._option_names import EDIT_COMMENT_OPTIONS, redact_options
from bugless_api.cli._render import entry_text
from bugless_api.cli._viewer_warnings import replaced_text, warn_of_hidden_people
from bugless_api.cli.groups import issue_group
from bugless_core.viewer_warnings import newly_mentioned

if TYPE_CHECKING:
    from bugless_api.client import BuglessClient
    from bugless_proto import v1


def _recorded(reply: v1.ChangeIssueResponse) -> Detail:
    assert reply.entry is not None
    assert reply.issue is not None
    return Detail(
        lines=[
            ("issue", reply.issue.id),
            ("entry", f"#{reply.entry.version}"),
            ("issue version", reply.issue.version),
            ("recorded", entry_text(reply.entry)),
        ],
        data={"entry": reply.entry, "issue": reply.issue},
    )


@issue_group.command("edit-comment")
@click.argument("issue_id", type=ID)
@click.argument("entry_version", type=ID, metavar="ENTRY")
@click.argument("text")
@click.option(
    "--expected-version", metavar="N", type=ID, default=None, help="Fail (exit 4) unless at it."
)
@client_options
@command(option_names=EDIT_COMMENT_OPTIONS)
async def edit_comment_command(
    client: BuglessClient,
    issue_id: int,
    entry_version: int,
    text: str,
    expected_version: int | None,
) -> Detail:
    """Replace the text of your comment #ENTRY (1: the description) of ISSUE_ID.

    The earlier text stays in the history (`bugless issue history`).
    """
    reply = await client.edit_comment(
        issue_id, entry_version, text, expected_version=expected_version
    )
    if reply.issue is not None and reply.entry is not None and newly_mentioned((text,)):
        replaced = await replaced_text(client, issue_id, entry_version, reply.entry.version)
        await warn_of_hidden_people(client, reply.issue, [], texts=(text,), replaced=replaced)
    return _recorded(reply)


@issue_group.command("redact")
@click.argument("issue_id", type=ID)
@click.option(
    "--entry", "entry_version", metavar="N", type=ID, default=None, help="The comment #N."
)
@click.option("--description", is_flag=True, help="The description (entry 1).")
@click.option(
    "--attachment", "attachment_id", type=ID, default=None, help="An attachment's content."
)
@click.option(
    "--attachment-description",
    "described_id",
    type=ID,
    default=None,
    help="An attachment's description (its content kept).",
)
@click.option(
    "--expected-version", metavar="N", type=ID, default=None, help="Fail (exit 4) unless at it."
)
@click.option("--yes", is_flag=True, help="Do not ask: redaction cannot be undone.")
@client_options
@command(option_names=redact_options)
async def redact_command(
    client: BuglessClient,
    *,
    issue_id: int,
    entry_version: int | None,
    description: bool,
    attachment_id: int | None,
    described_id: int | None,
    expected_version: int | None,
    yes: bool,
) -> Detail:
    """Remove a leaked secret for good: --entry, --description, --attachment[-description].

    The text (or content) goes from storage, search and every earlier
    version; the history records who redacted what and when. Needs admin on
    the issue's component. Asks first unless --yes (a non-interactive run
    without --yes changes nothing and exits 2).
    """
    import sys  # noqa: PLC0415

    chosen = [
        entry_version is not None,
        description,
        attachment_id is not None,
        described_id is not None,
    ]
    if sum(chosen) != 1:
        raise click.UsageError(
            "give one of --entry, --description, --attachment or --attachment-description"
        )
    what = (
        f"comment #{entry_version}"
        if entry_version is not None
        else "the description"
        if description
        else f"attachment {attachment_id}"
        if attachment_id is not None
        else f"the description of attachment {described_id}"
    )
    if not yes and (
        not sys.stdin.isatty()
        or not click.confirm(f"Redact {what} of issue {issue_id} for good?", err=True)
    ):
        raise click.UsageError(f"nothing redacted: pass --yes to redact {what}")
    reply = await client.redact(
        issue_id,
        entry_version=1 if description else entry_version or 0,
        attachment_id=attachment_id or described_id or 0,
        expected_version=expected_version,
        description_only=described_id is not None,
    )
    return _recorded(reply)
