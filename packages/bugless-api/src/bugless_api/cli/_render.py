"""How issues and history entries look in the client commands' tables and lines."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from bugless_api.cli._common import Detail, to_plain

if TYPE_CHECKING:
    from collections.abc import Iterable

    from bugless_api.client import BuglessClient
    from bugless_proto import v1

ISSUE_HEADERS = ["id", "p", "status", "assignee", "component", "title"]

#: The Issue fields :func:`issue_row` reads (the id always comes): a table asks
#: the API for only these (``QuerySearchRequest.read_mask``).
ISSUE_ROW_FIELDS = ("assignee", "component_id", "priority", "status", "title")


async def component_paths(client: BuglessClient) -> dict[int, str]:
    """Path of every component the caller sees (archived too), by id.

    One listing per command: issues name their component by id, people
    read paths (``Platform>Storage``).
    """
    components = await client.list_components(include_archived=True)
    return {component.id: component.path for component in components}


def issue_row(issue: v1.Issue, paths: dict[int, str]) -> list[object]:
    """One table row of an issue."""
    return [
        issue.id,
        issue.priority,
        issue.status,
        issue.assignee or "-",
        paths.get(issue.component_id, str(issue.component_id)),
        issue.title,
    ]


def _when(entry_or_issue: v1.HistoryEntry | v1.Issue, field: str) -> str:
    value = getattr(entry_or_issue, field, None)
    return value.isoformat(timespec="seconds") if value else ""


def comments_of(history: Iterable[v1.HistoryEntry]) -> tuple[list[v1.HistoryEntry], set[int]]:
    """An issue's comments as a reader follows them, from its history (oldest first).

    Entry 1's text is the description, which the issue's fields show already
    (edits included), so it is no comment. An edit is a later entry naming the
    comment it supersedes: the comment is shown once, at its place, with its
    latest text, and the versions so edited are returned beside the comments.
    A redacted comment stays (its text is gone), so the numbering has no gap.
    Entries without text (field changes, attachments) are left out.
    """
    entries = list(history)
    latest = {entry.edits_version: entry for entry in entries if entry.edits_version}
    comments: list[v1.HistoryEntry] = []
    edited: set[int] = set()
    for entry in entries:
        if entry.version == 1 or entry.edits_version:
            continue
        edit = latest.get(entry.version)
        if edit is not None and not entry.comment_redacted:
            comments.append(dataclasses.replace(entry, comment=edit.comment))
            edited.add(entry.version)
        elif entry.comment or entry.comment_redacted:
            comments.append(entry)
    return comments, edited


def issue_detail(
    issue: v1.Issue,
    paths: dict[int, str],
    comments: list[v1.HistoryEntry] | None = None,
    edited: set[int] | frozenset[int] = frozenset(),
) -> Detail:
    """An issue as ``field: value`` lines, then its comments when asked for (:func:`comments_of`).

    ``edited``: the versions of comments shown at an edited text.
    """
    lines: list[tuple[str, object]] = [
        ("id", issue.id),
        ("title", issue.title),
        ("status", issue.status),
        ("priority", issue.priority),
        ("severity", issue.severity),
        ("type", issue.type),
        ("component", paths.get(issue.component_id, str(issue.component_id))),
        ("reporter", issue.reporter),
        ("assignee", issue.assignee or "-"),
        ("verifier", issue.verifier or "-"),
        ("cc", issue.cc),
        ("hotlists", issue.hotlist_ids),
        ("parent", issue.parent_id or "-"),
        ("duplicate of", issue.duplicate_of_id or "-"),
        ("blocking", issue.blocking_ids),
        ("blocked by", issue.blocked_by_ids),
    ]
    lines.extend((f"{value.name}", ",".join(value.values)) for value in issue.custom_fields)
    lines.extend(
        [
            ("version", issue.version),
            ("comments", issue.comment_count),
            ("created", _when(issue, "created_at")),
            ("modified", _when(issue, "modified_at")),
            ("description", issue.description),
        ]
    )
    if comments is None:
        return Detail(lines=lines, data=issue)
    for entry in comments:
        written = f"{entry.author}, {_when(entry, 'created_at')}"
        lines.append(
            (f"#{entry.version}", written + (" (edited)" if entry.version in edited else ""))
        )
        lines.append(("", "(comment redacted)" if entry.comment_redacted else entry.comment))
    # One JSON shape with or without --comments: the issue, plus a "comments" key.
    shown = to_plain(issue)
    assert isinstance(shown, dict)
    return Detail(lines=lines, data={**shown, "comments": comments})


def change_text(change: v1.FieldChange) -> str:
    """One field change as people read it: ``status: NEW -> FIXED``, ``cc: +bob -carol``."""
    name = change.field_name or change.field
    if change.added or change.removed:
        moves = [f"+{v}" for v in change.added] + [f"-{v}" for v in change.removed]
        return f"{name}: {' '.join(moves)}"
    return f"{name}: {change.old_value or '-'} -> {change.new_value or '-'}"


def entry_line(entry: v1.HistoryEntry) -> str:
    """A history entry on one line (its comment follows on the next ones, indented)."""
    parts = [f"#{entry.version}", _when(entry, "created_at"), entry.author]
    changes = "; ".join(change_text(change) for change in entry.changes)
    if changes:
        parts.append(changes)
    if entry.edits_version:
        parts.append(f"(edits the comment of #{entry.edits_version})")
    if entry.redacted_version:
        parts.append(f"(redacts #{entry.redacted_version})")
    if entry.caused_by_issue_id:
        parts.append(f"(by a change to issue {entry.caused_by_issue_id})")
    return "  ".join(part for part in parts if part)


def deleted_file(entry: v1.HistoryEntry) -> str:
    """The file an entry deleted as people know it: ``build.log (id 7)``.

    A Model older than ``deleted_attachment_name`` gives only the id, which
    is then all there is to say.
    """
    if entry.deleted_attachment_name:
        return f"{entry.deleted_attachment_name} (id {entry.deleted_attachment_id})"
    return str(entry.deleted_attachment_id)


def entry_text(entry: v1.HistoryEntry) -> str:
    """The entry line and its comment, indented."""
    text = entry_line(entry)
    for attachment in entry.attachments:
        text += f"\n    attached {attachment.name} ({attachment.size} bytes, id {attachment.id})"
    if entry.deleted_attachment_id:
        text += f"\n    deleted attachment {deleted_file(entry)}"
    if entry.comment_redacted:
        return f"{text}\n    (comment redacted)"
    if entry.comment:
        body = "\n".join(f"    {line}" for line in entry.comment.splitlines())
        return f"{text}\n{body}"
    return text
