"""One recipient's message about one change, showing only what they may see.

:mod:`bugless_notify._deliveries` decides who is told of a change and looks
up what that takes; this module turns one (recipient, change) into the mail
or webhook message: the issue's hotlists and components cut to those the
recipient's :class:`~bugless_proto.v1.NotificationViewer` may see, and the
component paths as *they* see them.
"""

from __future__ import annotations

import dataclasses

from bugless_core.notification_channel import NotificationMessage
from bugless_notify.queue import NewDelivery
from bugless_notify.recipients import Candidate
from bugless_notify.render import ChangeNotice, Person, render_notification
from bugless_proto import v1


def delivery(
    candidate: Candidate,
    *,
    public_url: str,
    user: v1.User,
    issue: v1.Issue,
    entry: v1.HistoryEntry,
    viewer: v1.NotificationViewer,
    people: dict[str, Person],
    paths: dict[int, str],
    hotlist_names: dict[int, str],
    unsubscribe_token: str,
) -> NewDelivery:
    """The mail for one recipient, with only what *they* may see."""
    message = rendered(
        candidate,
        public_url=public_url,
        issue=issue,
        entry=entry,
        viewer=viewer,
        people=people,
        paths=paths,
        hotlist_names=hotlist_names,
        webhook_forms=False,
        unsubscribe_url=(
            f"{public_url.rstrip('/')}/unsubscribe/{unsubscribe_token}" if unsubscribe_token else ""
        ),
    )
    return NewDelivery(
        delivery_id=f"change-{issue.id}-{entry.version}/email/{candidate.user_id}",
        channel="email",
        recipient=user.email,
        message=message,
        recipient_name=user.display_name or user.username,
    )


def rendered(
    candidate: Candidate,
    *,
    public_url: str,
    issue: v1.Issue,
    entry: v1.HistoryEntry,
    viewer: v1.NotificationViewer,
    people: dict[str, Person],
    paths: dict[int, str],
    hotlist_names: dict[int, str],
    webhook_forms: bool,
    unsubscribe_url: str = "",
) -> NotificationMessage:
    """One change rendered with only what ``viewer`` may see."""
    seen = dataclasses.replace(issue, hotlist_ids=list(viewer.hotlist_ids), starred=viewer.starred)
    shown = dataclasses.replace(
        entry,
        changes=[c for c in (visible_change(c, seen) for c in entry.changes) if c is not None],
    )
    # The paths as this viewer sees them ("…>Net" below a component they
    # may not view); a Model older than the field gives only the whole ones.
    visible = set(viewer.component_ids)
    seen_paths = dict(viewer.component_paths) or {i: p for i, p in paths.items() if i in visible}
    return render_notification(
        ChangeNotice(
            issue=seen,
            entry=shown,
            reason=candidate.reason,
            saved_search=candidate.saved_search,
            subscribed_component_id=candidate.component_id,
            former=candidate.former,
            public_url=public_url,
            people=people,
            components=seen_paths,
            hotlists={i: hotlist_names[i] for i in viewer.hotlist_ids if i in hotlist_names},
            unsubscribe_url=unsubscribe_url,
        ),
        webhook_forms=webhook_forms,
    )


def visible_change(change: v1.FieldChange, issue: v1.Issue) -> v1.FieldChange | None:
    """A change as the recipient may see it (None: not at all).

    Hotlist changes show only hotlists the recipient sees on the issue.
    """
    if change.field != "hotlist_ids":
        return change
    visible = {str(h) for h in issue.hotlist_ids}
    added = [h for h in change.added if h in visible]
    return dataclasses.replace(change, added=added, removed=[]) if added else None


def nothing_seen(entry: v1.HistoryEntry, issue: v1.Issue, viewer: v1.NotificationViewer) -> bool:
    """Whether ``entry`` changed only what ``viewer`` may not see (hotlists hidden from them).

    Such a mail would say "X commented on b/N" over nothing. A saved
    search's notice is the caller's to keep: the match is news however
    the entry reads.
    """
    if not entry.changes or entry.version == 1:
        return False
    if entry.comment or entry.attachments or entry.deleted_attachment_id:
        return False
    if entry.redaction_target or entry.caused_by_issue_id:
        return False
    seen = dataclasses.replace(issue, hotlist_ids=list(viewer.hotlist_ids))
    return all(visible_change(c, seen) is None for c in entry.changes)
