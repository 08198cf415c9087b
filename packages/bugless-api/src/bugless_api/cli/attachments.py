"""``bugless issue attach``, ``bugless issue attachments``, ``bugless attachment get|delete``.

Files go up and come down in chunks (:mod:`bugless_api.client._attachments`):
a command holds a chunk at a time, whatever the file's size.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from bugless_api.cli._common import ID, Detail, Table, client_options, command
from bugless_api.cli._option_names import attach_options
from bugless_api.cli._render import deleted_file
from bugless_api.cli.groups import attachment_group, issue_group
from bugless_core.errors import AlreadyExists

if TYPE_CHECKING:
    from bugless_api.client import BuglessClient
    from bugless_proto import v1

ATTACHMENT_HEADERS = ("id", "name", "size", "type", "uploader", "entry", "state")


def attachment_state(attachment: v1.Attachment) -> str:
    """``attached``, ``deleted`` or ``redacted``."""
    if attachment.redacted:
        return "redacted"
    return "deleted" if attachment.deleted_in_version else "attached"


def attachment_row(attachment: v1.Attachment) -> list[object]:
    """One table row."""
    return [
        attachment.id,
        attachment.name,
        attachment.size,
        attachment.content_type,
        attachment.uploader,
        attachment.entry_version,
        attachment_state(attachment),
    ]


def attachment_detail(attachment: v1.Attachment) -> list[tuple[str, object]]:
    """``field: value`` lines of one attachment."""
    return [
        ("id", attachment.id),
        ("issue", attachment.issue_id),
        ("name", attachment.name),
        ("size", attachment.size),
        ("type", attachment.content_type),
        ("declared type", attachment.declared_content_type),
        ("sha256", attachment.sha256),
        ("uploader", attachment.uploader),
        ("created", attachment.created_at.isoformat() if attachment.created_at else ""),
        ("entry", attachment.entry_version),
        ("state", attachment_state(attachment)),
    ]


@issue_group.command("attach")
@click.argument("issue_id", type=ID)
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--name", default=None, help="File name to show (default: the file's own).")
@click.option("--type", "content_type", default=None, help="Content type (default: guessed).")
@click.option("--comment", default="", help="Markdown comment of the entry that attaches it.")
@client_options
@command(option_names=attach_options)
async def attach_command(
    client: BuglessClient,
    issue_id: int,
    file: Path,
    *,
    name: str | None,
    content_type: str | None,
    comment: str,
) -> Detail:
    """Attach FILE to an issue (streamed; a file over the size limit is refused up front)."""
    done = await client.attach(
        issue_id, file, name=name, content_type=content_type, comment=comment
    )
    assert done.attachment is not None
    return Detail(lines=attachment_detail(done.attachment), data=done.attachment)


@issue_group.command("attachments")
@click.argument("issue_id", type=ID)
@click.option("--deleted", is_flag=True, help="Also list deleted attachments.")
@client_options
@command
async def attachments_command(client: BuglessClient, issue_id: int, deleted: bool) -> Table:
    """List an issue's attachments, oldest first."""
    found = await client.list_attachments(issue_id, include_deleted=deleted)
    return Table(
        headers=ATTACHMENT_HEADERS,
        rows=[attachment_row(a) for a in found],
        data={"attachments": found},
    )


def local_name(name: str, attachment_id: int) -> str:
    r"""The file name ``attachment get`` writes to without ``-o``: a plain name, here.

    The name comes from the server. The Model stores only a sanitised last
    path segment (:func:`bugless_core.attachments.sanitise_name`), but the
    CLI must not rely on that to keep a download in the current directory:
    only the last segment (``/`` or ``\``) is taken, and a name that is
    then empty, ``.``, ``..`` or holds a NUL becomes ``attachment-<id>``.
    """
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    if base in {"", ".", ".."} or "\0" in base:
        return f"attachment-{attachment_id}"
    return base


@attachment_group.command("get")
@click.argument("attachment_id", type=ID)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    default=None,
    help="Where to write the content, replacing any file there (default: the attachment's "
    "name without any directory, here; attachment-ID if it has none; never over an "
    "existing file without --force).",
)
@click.option(
    "--force",
    is_flag=True,
    help="Without -o, replace a file of the attachment's name here.",
)
@client_options
@command
async def get_command(
    client: BuglessClient, attachment_id: int, output: Path | None, *, force: bool
) -> Detail:
    """Download an attachment's content to a file (resumes if the connection drops).

    Without -o the file is named after the attachment, in the current
    directory; a file of that name is kept and the command fails (exit 4),
    whether it was there before any byte moved or appeared during the
    download, unless --force is given. -o names the file explicitly and
    replaces it. The content goes to a temporary file beside the target,
    put in place once whole, so an interrupted download leaves no partial
    file.
    """
    attachment, output = await download_here(client, attachment_id, output, force=force)
    return Detail(
        lines=[*attachment_detail(attachment), ("written to", str(output))], data=attachment
    )


async def download_here(
    client: BuglessClient, attachment_id: int, output: Path | None, *, force: bool
) -> tuple[v1.Attachment, Path]:
    """``attachment get``'s download: the attachment and where it was written.

    Without ``output``, whoever named the attachment would otherwise choose
    which file here gets replaced (as ``curl -O`` lets a server do): the
    client is told not to replace (``replace=False``), which it keeps both
    before the download and at its last step, so a file that appears
    meanwhile is kept too.

    Raises:
        AlreadyExists: Without ``output`` or ``force``, a file of the
            attachment's name is here (the message names it, ``-o`` and
            ``--force``).
    """
    if output is not None:
        return await client.download_attachment(attachment_id, output), output
    here = Path(local_name((await client.get_attachment(attachment_id)).name, attachment_id))
    try:
        attachment = await client.download_attachment(attachment_id, here, replace=force)
    except AlreadyExists as exc:
        if exc.metadata.get("origin") != "client":
            raise
        msg = (
            f"{here} already exists here and was left as it is; "
            "name the file to write with -o, or pass --force to replace it"
        )
        raise AlreadyExists(msg, metadata=exc.metadata) from exc
    return attachment, here


@attachment_group.command("show")
@click.argument("attachment_id", type=ID)
@client_options
@command
async def show_command(client: BuglessClient, attachment_id: int) -> Detail:
    """Show an attachment's metadata."""
    attachment = await client.get_attachment(attachment_id)
    return Detail(lines=attachment_detail(attachment), data=attachment)


@attachment_group.command("delete")
@click.argument("attachment_id", type=ID)
@client_options
@command
async def delete_command(client: BuglessClient, attachment_id: int) -> Detail:
    """Detach a file (its uploader or a component admin); history records it."""
    changed = await client.delete_attachment(attachment_id)
    assert changed.issue is not None
    assert changed.entry is not None
    lines: list[tuple[str, object]] = [
        ("deleted", deleted_file(changed.entry)),
        ("issue", changed.issue.id),
        ("entry", changed.entry.version),
    ]
    return Detail(lines=lines, data=changed)
