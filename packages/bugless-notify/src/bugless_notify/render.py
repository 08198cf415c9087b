"""What a notification says: one change of one issue, rendered for one recipient.

:func:`render_notification` turns a :class:`ChangeNotice` into the
:class:`~bugless_core.notification_channel.NotificationMessage` every channel
reads: a subject, a plain-text and an HTML body, a chat line and a JSON object.
Each shows the change as a per-field diff (``Status: New → Fixed``, ``CC: +
Bob, - Carol``) with the labels the web timeline uses, the comment, and a link
to the issue.

The contract that keeps a notification from leaking anything: **the renderer
shows exactly what it is given and looks nothing up.** The caller reads the
issue and the history entry *as the recipient* (the Model leaves out what
their ACLs hide, such as hotlists they may not view), drops changes the
recipient may not see, and resolves people, components and hotlists to names
as that recipient. A person, component or hotlist the caller did not name is
shown as "unknown user" or by its number, never by an opaque id.

This module holds the forms (mail text and HTML, chat line, JSON); what a
notice is and how an issue is named are :mod:`bugless_notify._notice`, the
JSON form's event types :mod:`bugless_notify._events`, and the site's links
in a comment :mod:`bugless_notify._site_links`. The public names stay
importable from here, where the consumer, the bench and the tests take them.
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from typing import Any

from bugless_core.blobs import describe_size
from bugless_core.issue_labels import (
    FIELD_LABELS,
    ISSUE_FIELDS,
    USER_FIELDS,
    holds_people,
    level_label,
    short_status,
    short_type,
    status_label,
    type_label,
)
from bugless_core.notification_channel import NotificationMessage
from bugless_notify._diff import Line, Value, html_diff, json_line, text_diff
from bugless_notify._events import (
    ATTACHMENT_ADDED_EVENT,
    ATTACHMENT_DELETED_EVENT,
    REDACTION_EVENTS,
    deleted_attachment_json,
    event_type,
    iso,
    redaction_json,
)
from bugless_notify._notice import (
    ChangeNotice,
    Person,
    attachment_url,
    issue_ref,
    issue_url,
    one_line,
    settings_url,
)
from bugless_notify._site_links import with_site_links
from bugless_notify.reasons import FORMER_TEXT, REASON_TEXT, Reason, legacy_detail
from bugless_proto import v1

#: What a mail says where the text of a redacted comment (or description) was.
REDACTED = "(The text was redacted by an administrator.)"
#: What a redaction entry removed, as its mail's action says it ("redacted a comment of").
_REDACTED_WHAT = {
    v1.RedactionTarget.COMMENT: "a comment",
    v1.RedactionTarget.DESCRIPTION: "the description",
    v1.RedactionTarget.ATTACHMENT: "an attachment",
    v1.RedactionTarget.ATTACHMENT_DESCRIPTION: "an attachment's description",
}
#: How many characters of a comment a chat message quotes.
CHAT_COMMENT_CHARS = 500


class _Renderer:
    """Renders one notice; holds it so the helpers need no long argument lists."""

    def __init__(self, notice: ChangeNotice) -> None:
        self.notice = notice
        self.base = notice.public_url.rstrip("/")
        self.issue = notice.issue
        self.entry = notice.entry
        self.url = issue_url(self.base, self.issue.id)
        self.created = self.entry.version == 1
        # A mail's links open the change itself on the issue page (its
        # timeline entry's anchor), not the top of a long issue; a creation
        # opens the issue. Webhook payloads keep the issue's URL.
        self.change_url = self.url if self.created else f"{self.url}#entry-{self.entry.version}"
        self.lines = [self._line(change) for change in self.entry.changes]

    # ---- values ----

    def person(self, ref: str) -> Value:
        person = self.notice.people.get(ref)
        if person is None:
            return Value("unknown user", json={"name": "unknown user", "username": ""})
        return Value(person.shown, json={"name": person.display_name, "username": person.username})

    def value(self, field_name: str, raw: str, *, people: bool = False) -> Value:
        if not raw:
            return Value("none", json=None)
        if people or field_name in USER_FIELDS:
            return self.person(raw)
        if field_name in ISSUE_FIELDS and raw.isdigit():
            return Value(issue_ref(int(raw)), issue_url(self.base, int(raw)), json=int(raw))
        if field_name == "component_id" and raw.isdigit():
            path = self.notice.components.get(int(raw), f"component {raw}")
            return Value(path, f"{self.base}/components/{raw}", json={"id": int(raw), "path": path})
        if field_name == "hotlist_ids" and raw.isdigit():
            name = self.notice.hotlists.get(int(raw), f"hotlist {raw}")
            return Value(name, f"{self.base}/hotlists/{raw}", json={"id": int(raw), "name": name})
        if field_name == "status":
            return Value(short_status(raw), json=raw)
        if field_name == "type":
            return Value(short_type(raw), json=raw)
        return Value(raw, json=raw)

    def _line(self, change: v1.FieldChange) -> Line:
        label = change.field_name or FIELD_LABELS.get(change.field, change.field)
        people = holds_people(change)
        if change.added or change.removed:
            return Line(
                change.field,
                label,
                added=tuple(self.value(change.field, v, people=people) for v in change.added),
                removed=tuple(self.value(change.field, v, people=people) for v in change.removed),
            )
        return Line(
            change.field,
            label,
            old=self.value(change.field, change.old_value, people=people),
            new=self.value(change.field, change.new_value, people=people),
        )

    # ---- sentences ----

    @property
    def author(self) -> str:
        return self.person(self.entry.author).text

    @property
    def action(self) -> str:
        if self.created:
            return "created"
        if self.entry.edits_version:
            # An edit's comment is the new text of an earlier entry's: not a new comment.
            return "edited the description of" if self.edits_description else "edited a comment on"
        if self.entry.caused_by_issue_id:
            return f"changed through {issue_ref(self.entry.caused_by_issue_id)}"
        if self.entry.redaction_target in _REDACTED_WHAT:
            return f"redacted {_REDACTED_WHAT[self.entry.redaction_target]} of"
        if not self.entry.changes and not self.entry.comment:
            if self.entry.attachments:
                return (
                    "attached files to" if len(self.entry.attachments) > 1 else "attached a file to"
                )
            if self.entry.deleted_attachment_id:
                return "deleted an attachment of"
        return "changed" if self.entry.changes else "commented on"

    @property
    def edits_description(self) -> bool:
        """The entry edits the description (the text of entry 1, the creation)."""
        return self.entry.edits_version == 1

    @property
    def text_heading(self) -> str:
        """What the entry's text is: a description (a creation's, or edited) or a comment."""
        return "Description" if self.created or self.edits_description else "Comment"

    def attachment_lines(self) -> list[str]:
        """Files the entry attached or deleted, as "name (size)" sentences."""
        lines = [
            f"Attached: {one_line(a.name)} ({describe_size(a.size)})"
            for a in self.entry.attachments
        ]
        if self.entry.deleted_attachment_id:
            # A Model older than deleted_attachment_name gives only the id.
            gone = self.entry.deleted_attachment_name
            lines.append(
                f"Deleted attachment {one_line(gone) if gone else self.entry.deleted_attachment_id}"
            )
        return lines

    @property
    def reason_text(self) -> str:
        notice = self.notice
        if notice.reason == Reason.COMPONENT:
            return self.component_reason
        text = FORMER_TEXT[notice.reason] if notice.former else REASON_TEXT[notice.reason]
        search = notice.saved_search if notice.reason == Reason.SAVED_SEARCH else ""
        return f"{text} ({search})" if search else text

    @property
    def component_reason(self) -> str:
        """Which component subscription brought the mail, by name where the recipient may see it.

        A subscription on an ancestor (with its subtree) reads "you subscribed
        to Infra (this issue is in Infra>Net)": "its component" alone left
        the reader to guess which of their subscriptions to change. Without
        the component (an older Model, or one the recipient may not see), the
        general wording.
        """
        subscribed = self.notice.subscribed_component_id
        on = self.notice.components.get(subscribed) if subscribed else None
        if on is None:
            return REASON_TEXT[Reason.COMPONENT]
        if subscribed == self.issue.component_id:
            return f"you subscribed to its component, {one_line(on)}"
        inside = self.notice.components.get(self.issue.component_id)
        if inside is None:
            return f"you subscribed to {one_line(on)}, which holds its component"
        return f"you subscribed to {one_line(on)} (this issue is in {one_line(inside)})"

    @property
    def subject(self) -> str:
        return f"[bugless] {issue_ref(self.issue.id)}: {one_line(self.issue.title)}"

    def shown_lines(self) -> Iterable[Line]:
        """The lines worth showing: a creation lists only the fields it set."""
        for line in self.lines:
            if self.created and not line.added and (line.new is None or line.new.json is None):
                continue
            yield line

    # ---- forms ----

    def text(self) -> str:
        out = [
            f"{self.author} {self.action} {issue_ref(self.issue.id)}: {one_line(self.issue.title)}",
            "",
        ]
        for line in self.shown_lines():
            out.append(f"  {line.label}: {text_diff(line, created=self.created)}")
        out += [f"  {line}" for line in self.attachment_lines()]
        if self.entry.comment:
            # The heading's blank line already separates a comment-only change.
            out += [""] if out[-1] else []
            out += [f"{self.text_heading}:", ""]
            comment = with_site_links(self.entry.comment, self.base)
            out += [f"  {row}" if row else "" for row in comment.splitlines()]
        elif self.entry.comment_redacted:
            out += ["", REDACTED]
        out += [
            "",
            self.change_url,
            "",
            f"You receive this because {self.reason_text}.",
        ]
        if self.notice.reason == Reason.SAVED_SEARCH:
            out.append(f"To stop mail from the search, unsubscribe from it: {self.searches_url}")
        out.append(
            f"To stop mail about {issue_ref(self.issue.id)}, press Mute on its page: {self.url}"
        )
        if self.notice.unsubscribe_url:
            out.append(f"or mute it with this link: {self.notice.unsubscribe_url}")
        out.append(f"Change what notifies you: {settings_url(self.base)}")
        return "\n".join(out) + "\n"

    def html(self) -> str:
        e = html.escape
        title = e(one_line(self.issue.title))
        parts = [
            '<div style="font-family:sans-serif;font-size:14px;line-height:1.4">',
            f"<p><b>{e(self.author)}</b> {e(self.action)} "
            f'<a href="{e(self.change_url)}">{e(issue_ref(self.issue.id))}</a>: {title}</p>',
        ]
        shown = list(self.shown_lines())
        files = self.attachment_lines()
        if shown or files:
            parts.append("<ul>")
            for line in shown:
                diff = html_diff(line, created=self.created)
                parts.append(f"<li><b>{e(line.label)}</b>: {diff}</li>")
            parts += [f"<li>{e(line)}</li>" for line in files]
            parts.append("</ul>")
        if self.entry.comment:
            heading = self.text_heading
            parts.append(
                f'<p><b>{heading}</b></p><div style="white-space:pre-wrap;border-left:3px solid '
                f'#ccc;padding-left:8px">{e(with_site_links(self.entry.comment, self.base))}</div>'
            )
        elif self.entry.comment_redacted:
            parts.append(f"<p><i>{e(REDACTED)}</i></p>")
        parts.append(
            f'<p><a href="{e(self.change_url)}">Open {e(issue_ref(self.issue.id))}</a></p>'
        )
        parts.append(
            f'<p style="color:#777;font-size:12px">You receive this because '
            f"{e(self.reason_text)}.{self._search_html()} To stop mail about "
            f"{e(issue_ref(self.issue.id))}, press "
            f'Mute on <a href="{e(self.url)}">its page</a>{self._one_click_html()}. '
            f'<a href="{e(settings_url(self.base))}">Change what notifies you</a>.</p></div>'
        )
        return "\n".join(parts) + "\n"

    @property
    def searches_url(self) -> str:
        """The saved searches page, where a subscription to one is stopped."""
        return f"{self.base}/searches"

    def _search_html(self) -> str:
        # Muting stops one issue; the search keeps mailing its other matches.
        if self.notice.reason != Reason.SAVED_SEARCH:
            return ""
        url = html.escape(self.searches_url)
        return f' To stop mail from the search, <a href="{url}">unsubscribe from it</a>.'

    def _one_click_html(self) -> str:
        link = self.notice.unsubscribe_url
        return f' or <a href="{html.escape(link)}">with this link</a>' if link else ""

    def chat(self) -> str:
        title = _chat_escape(one_line(self.issue.title))
        head = (
            f"<{self.url}|{issue_ref(self.issue.id)}: {title}> "
            f"{_chat_escape(self.author)} {_chat_escape(self.action)} it"
        )
        diffs = [
            f"{line.label}: {text_diff(line, created=self.created)}" for line in self.shown_lines()
        ]
        out = [head]
        if diffs:
            out.append(_chat_escape("; ".join(diffs)))
        # Which files: "deleted an attachment of it" alone left a channel
        # asking which, as the mail's first wording did.
        files = self.attachment_lines()
        if files:
            out.append(_chat_escape("; ".join(files)))
        comment = self.entry.comment.strip()
        if comment:
            clipped = comment[:CHAT_COMMENT_CHARS] + (
                "…" if len(comment) > CHAT_COMMENT_CHARS else ""
            )
            out += [f"> {_chat_escape(row)}" for row in clipped.splitlines()]
        return "\n".join(out)

    def data(self) -> dict[str, Any]:
        issue = self.issue
        component = self.value("component_id", str(issue.component_id or ""))
        return {
            "event": event_type(self.entry),
            "reason": str(self.notice.reason),
            "reason_detail": legacy_detail(
                self.notice.saved_search, self.notice.subscribed_component_id
            ),
            "issue": {
                "id": issue.id,
                "url": self.url,
                "title": issue.title,
                "status": status_label(issue.status),
                "priority": level_label(issue.priority),
                "severity": level_label(issue.severity),
                "type": type_label(issue.type),
                "component": component.json,
                "reporter": self.value("reporter", issue.reporter).json,
                "assignee": self.value("assignee", issue.assignee).json,
                "verifier": self.value("verifier", issue.verifier).json,
                "version": issue.version,
            },
            "entry": {
                "version": self.entry.version,
                "author": self.person(self.entry.author).json,
                "created_at": iso(self.entry.created_at),
                "comment": self.entry.comment,
                "comment_redacted": self.entry.comment_redacted,
                "redaction": redaction_json(self.entry),
                "caused_by_issue_id": self.entry.caused_by_issue_id or None,
                "changes": [json_line(line) for line in self.lines],
                "attachments": [self.attachment_json(a) for a in self.entry.attachments],
                "deleted_attachment": deleted_attachment_json(self.entry),
            },
        }

    def attachment_json(self, attachment: v1.Attachment) -> dict[str, Any]:
        """A file the entry attached, for the JSON form: enough to fetch or list it.

        ``url`` is the web's download link (null without a base URL): the
        receiver's reader signs in there, as for any page of the issue. Null
        too for a file deleted or redacted by the time the payload is made
        (a delivery retried later is rendered again): its content is gone,
        and a link to it would only fail for whoever follows it.
        """
        gone = bool(attachment.deleted_in_version) or attachment.redacted
        return {
            "id": attachment.id,
            "name": attachment.name,
            "size": attachment.size,
            "content_type": attachment.content_type,
            "url": None if gone else attachment_url(self.base, attachment),
        }


def _chat_escape(text: str) -> str:
    """Escape what Slack and Google Chat read as markup in ``text``."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def render_notification(notice: ChangeNotice, *, webhook_forms: bool = True) -> NotificationMessage:
    """Render ``notice`` in every form a channel may send (see the module docstring).

    The subject is ``[bugless] b/123: <title>``; the thread id ``issue-123``
    groups every notification about the issue. ``webhook_forms=False``
    leaves out the chat line and the JSON object, which only webhooks send:
    an e-mail is rendered (and queued) once per recipient, so that is work
    and queue space saved on every mail.
    """
    renderer = _Renderer(notice)
    return NotificationMessage(
        thread_id=f"issue-{notice.issue.id}",
        subject=renderer.subject,
        text=renderer.text(),
        html=renderer.html(),
        chat_text=renderer.chat() if webhook_forms else "",
        data=renderer.data() if webhook_forms else {},
        reason=str(notice.reason),
        reason_detail=legacy_detail(notice.saved_search, notice.subscribed_component_id),
        saved_search=notice.saved_search,
        subscribed_component_id=notice.subscribed_component_id,
        settings_url=settings_url(notice.public_url),
        quoted_versions=(notice.entry.version,) if notice.entry.comment else (),
        unsubscribe_url=notice.unsubscribe_url,
    )


#: Reason (:mod:`bugless_notify.reasons`), the notice and its naming helpers
#: (:mod:`._notice`), the event types (:mod:`._events`) and with_site_links
#: (:mod:`._site_links`) are defined apart and exported here too, where the
#: consumer, the bench and the tests import them from.
__all__ = [
    "ATTACHMENT_ADDED_EVENT",
    "ATTACHMENT_DELETED_EVENT",
    "CHAT_COMMENT_CHARS",
    "REDACTED",
    "REDACTION_EVENTS",
    "ChangeNotice",
    "Person",
    "Reason",
    "issue_ref",
    "issue_url",
    "one_line",
    "render_notification",
    "settings_url",
    "with_site_links",
]
