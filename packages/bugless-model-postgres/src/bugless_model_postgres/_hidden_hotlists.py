"""History entries as their reader may see them: no hotlist they may not view.

Putting an issue on a hotlist, or taking it off, is an entry of the issue's
history (``hotlist_ids``, the hotlist ids in ``added``/``removed``). A
private hotlist is its owner's, its editors' and the admins' to see
(:func:`bugless_model_postgres._context.hotlist_visible`); anyone else
reading the history must learn nothing of it: not its id, not that the
issue was put on one. So the Model leaves such ids out of every entry it
hands a caller (ListHistory, Watch), for every client alike: the web's
timeline, the API and the CLI. A hotlist since deleted is left out too: its
privacy is no longer known.

An entry that changed nothing else (no other field, no comment, no
attachment) shows its reader nothing, so ListHistory leaves it out, as the
notifier sends no mail for it ("a change its recipient can see nothing of
is no mail to them"). The issue's version still counts it; a reader learns
at most that some change was made, which the version says anyway.
"""

from __future__ import annotations

from collections.abc import Iterable

from bugless_model_postgres._context import hotlist_visible
from bugless_model_postgres._convert import Conn
from bugless_proto import v1

#: The rows :func:`hotlist_visible` judges, for the hotlists among ``$1``.
HOTLIST_PRIVACY = "SELECT id, private, owner, editors FROM hotlists WHERE id = ANY ($1::bigint[])"

#: The ``FieldChange.field`` of a hotlist membership change.
HOTLIST_FIELD = "hotlist_ids"


def _named_hotlists(entries: Iterable[v1.HistoryEntry]) -> set[int]:
    named: set[int] = set()
    for entry in entries:
        for change in entry.changes:
            if change.field == HOTLIST_FIELD:
                named.update(int(h) for h in (*change.added, *change.removed) if h.isdigit())
    return named


async def hide_hotlists(
    conn: Conn, caller: v1.Caller, entries: list[v1.HistoryEntry], *, keep_empty: bool = False
) -> list[v1.HistoryEntry]:
    """``entries`` without the hotlists ``caller`` may not view (changed in place).

    Args:
        conn: The connection to read the hotlists' privacy on (one statement,
            and only when an entry names a hotlist at all).
        caller: The reader.
        entries: The entries to show them.
        keep_empty: Keep the entries left showing nothing (a Watch event
            still says the issue changed, as its version does); ListHistory
            leaves them out.
    """
    named = _named_hotlists(entries)
    if not named:
        return entries
    if caller.admin:
        return entries
    rows = await conn.fetch(HOTLIST_PRIVACY, sorted(named))
    visible = {str(row["id"]) for row in rows if hotlist_visible(caller, row)}
    kept: list[v1.HistoryEntry] = []
    for entry in entries:
        had_changes = bool(entry.changes)
        entry.changes = [c for c in (_seen(c, visible) for c in entry.changes) if c is not None]
        if had_changes and not keep_empty and not _shows_anything(entry):
            continue
        kept.append(entry)
    return kept


def _seen(change: v1.FieldChange, visible: set[str]) -> v1.FieldChange | None:
    """``change`` as its reader may see it (None: not at all)."""
    if change.field != HOTLIST_FIELD:
        return change
    change.added = [h for h in change.added if h in visible]
    change.removed = [h for h in change.removed if h in visible]
    return change if change.added or change.removed else None


def _shows_anything(entry: v1.HistoryEntry) -> bool:
    """Whether ``entry`` (its hidden hotlists gone) still has anything to show."""
    return bool(
        entry.changes
        or entry.comment
        or entry.attachments
        or entry.deleted_attachment_id
        or entry.redaction_target
        or entry.caused_by_issue_id
        or entry.edits_version
        or entry.comment_redacted
    )
