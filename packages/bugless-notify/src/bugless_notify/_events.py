"""The webhook JSON form's words for an entry: its event type and what it removed.

One type per kind of change (``issue.created``, ``issue.changed``,
``issue.commented``, a redaction's, files attached, a file's deletion), so a
receiver that filters by type is never handed one kind as another (the notify
README's event table); and the ``entry.redaction`` and ``entry.deleted_attachment``
objects, which name what went without its content.
"""

from __future__ import annotations

import datetime
from typing import Any

from bugless_proto import v1

#: A redaction's webhook event, by what it removed: its own type, so that a
#: receiver taking ``issue.commented`` for a comment never mistakes one for it.
REDACTION_EVENTS = {
    v1.RedactionTarget.COMMENT: "issue.comment_redacted",
    v1.RedactionTarget.DESCRIPTION: "issue.description_redacted",
    v1.RedactionTarget.ATTACHMENT: "issue.attachment_redacted",
    v1.RedactionTarget.ATTACHMENT_DESCRIPTION: "issue.attachment_description_redacted",
}
#: A file's deletion's webhook event: its own type, as a redaction's is, so a
#: receiver taking ``issue.commented`` for a comment is not handed an empty one.
ATTACHMENT_DELETED_EVENT = "issue.attachment_deleted"
#: Files attached with no comment: their own type too, for the same receiver.
#: Files attached with a comment stay ``issue.commented`` (the comment is the
#: news, ``entry.attachments`` lists the files), and with field changes
#: ``issue.changed``, so a receiver following status changes misses none.
ATTACHMENT_ADDED_EVENT = "issue.attachment_added"
#: What ``entry.redaction.target`` says in the JSON form.
_REDACTION_TARGET_NAMES = {
    v1.RedactionTarget.COMMENT: "comment",
    v1.RedactionTarget.DESCRIPTION: "description",
    v1.RedactionTarget.ATTACHMENT: "attachment",
    v1.RedactionTarget.ATTACHMENT_DESCRIPTION: "attachment_description",
}


def event_type(entry: v1.HistoryEntry) -> str:
    """The ``event`` of the JSON form for ``entry``."""
    if entry.version == 1:
        return "issue.created"
    if entry.redaction_target in REDACTION_EVENTS:
        return REDACTION_EVENTS[entry.redaction_target]
    if entry.deleted_attachment_id:
        return ATTACHMENT_DELETED_EVENT
    if entry.changes:
        return "issue.changed"
    # A comment redacted since (a waiting delivery rendered again) had text:
    # its type stays the one its first rendering gave.
    if entry.attachments and not entry.comment and not entry.comment_redacted:
        return ATTACHMENT_ADDED_EVENT
    return "issue.commented"


def redaction_json(entry: v1.HistoryEntry) -> dict[str, Any] | None:
    """What a redaction entry removed (never the content), for the JSON form."""
    target = entry.redaction_target
    if target not in _REDACTION_TARGET_NAMES:
        return None
    if target in (v1.RedactionTarget.ATTACHMENT, v1.RedactionTarget.ATTACHMENT_DESCRIPTION):
        name = _REDACTION_TARGET_NAMES[target]
        return {"target": name, "attachment_id": entry.redacted_attachment_id}
    return {"target": _REDACTION_TARGET_NAMES[target], "version": entry.redacted_version}


def deleted_attachment_json(entry: v1.HistoryEntry) -> dict[str, Any] | None:
    """The file the entry deleted, for the JSON form (None: it deleted none).

    The name is what the mail says ("Deleted attachment build.log"): a
    receiver posting the event to a chat has nothing else to place the id
    by. A Model older than ``deleted_attachment_name`` gives only the id
    (``name`` null), as the mail then says the id.
    """
    if not entry.deleted_attachment_id:
        return None
    return {
        "id": entry.deleted_attachment_id,
        "name": entry.deleted_attachment_name or None,
    }


def iso(value: datetime.datetime | None) -> str | None:
    """``value`` in UTC to the second (``2026-12-07T13:05:00Z``); None stays None."""
    if value is None:
        return None
    return value.astimezone(datetime.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
