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
"""

from __future__ import annotations

import datetime
import functools
import html
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
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
from bugless_core.markdown import markdown_parser
from bugless_core.notification_channel import NotificationMessage
from bugless_notify._diff import Line, Value, html_diff, json_line, text_diff
from bugless_notify.reasons import FORMER_TEXT, REASON_TEXT, Reason
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
#: What ``entry.redaction.target`` says in the JSON form.
_REDACTION_TARGET_NAMES = {
    v1.RedactionTarget.COMMENT: "comment",
    v1.RedactionTarget.DESCRIPTION: "description",
    v1.RedactionTarget.ATTACHMENT: "attachment",
    v1.RedactionTarget.ATTACHMENT_DESCRIPTION: "attachment_description",
}
#: How many characters of a comment a chat message quotes.
CHAT_COMMENT_CHARS = 500
_WHITESPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class Person:
    """A person as the recipient may see them.

    Attributes:
        display_name: The name shown ("Alice Smith").
        username: The login name, shown when there is no display name and
            given to webhooks; may be empty.
    """

    display_name: str
    username: str = ""

    @property
    def shown(self) -> str:
        """The display name, else the username."""
        return self.display_name or self.username or "unknown user"


@dataclass(frozen=True)
class ChangeNotice:
    """Everything one notification is rendered from (see the module docstring).

    Attributes:
        issue: The issue after the change, as the recipient may see it.
        entry: The history entry of the change, with only the field changes
            the recipient may see.
        reason: Why the recipient is notified.
        reason_detail: What the reason refers to, shown with it: the saved
            search's name, or the id (decimal) of the component a component
            subscription is on, named from ``components``; may be empty.
        former: The recipient held the reason's role (assignee, verifier,
            CC) until this change took it from them.
        people: User reference -> person, for the author and every person in
            the issue and the changes.
        components: Component id -> path ("Platform>Storage"), for the
            components the recipient may see.
        hotlists: Hotlist id -> name, for the hotlists the recipient may see.
        public_url: The web UI's base URL (``https://bugs.example.com``).
        unsubscribe_url: The recipient's one-click link muting this issue
            (``{public_url}/unsubscribe/<token>``, RFC 8058); empty for none
            (a webhook, a renderer's test).
    """

    issue: v1.Issue
    entry: v1.HistoryEntry
    reason: Reason
    public_url: str
    reason_detail: str = ""
    former: bool = False
    people: Mapping[str, Person] = field(default_factory=dict)
    components: Mapping[int, str] = field(default_factory=dict)
    hotlists: Mapping[int, str] = field(default_factory=dict)
    unsubscribe_url: str = ""


def settings_url(public_url: str) -> str:
    """The page where a person changes what notifies them."""
    return f"{public_url.rstrip('/')}/settings/notifications"


def issue_url(public_url: str, issue_id: int) -> str:
    """The web page of an issue (``{public_url}/issues/{id}``)."""
    return f"{public_url.rstrip('/')}/issues/{issue_id}"


def issue_ref(issue_id: int) -> str:
    """How an issue is named in a notification: ``b/123``."""
    return f"b/{issue_id}"


def one_line(text: str) -> str:
    """``text`` with every run of whitespace (newlines included) made one space."""
    return _WHITESPACE.sub(" ", text).strip()


#: A backslash escape (``\\``, ``\```, ``\]``: the character after it is
#: text; read as one, so a backtick after an escaped backslash opens code,
#: as CommonMark reads it), or inline code (a run of backticks to
#: the same run within a paragraph), both left as written; else a Markdown
#: link's target on this site (``](/attachments/3/x.log``), not one on
#: another (``](//host``).
_SITE_LINK = re.compile(
    r"(\\[\s\S]|(?<!`)(`+)(?!`)(?:(?!\n[ \t]*\n)[\s\S])*?(?<!`)\2(?!`))|\]\((/(?!/))"
)
#: A line's end as markdown-it counts lines (``map``).
_LINE_END = re.compile(r"\r\n?|\n")


@functools.lru_cache(maxsize=256)
def _code_blocks(text: str) -> tuple[tuple[int, int], ...]:
    """The lines ``[start, end)`` of ``text``'s fenced and indented code blocks.

    Read by the parse the web renders comments with, so what the issue
    page shows as code (a ```` ``` ```` or ``~~~`` fence, in a list or a
    quote too, or four spaces in) is what a mail leaves as typed. Cached: a
    change's comment is rendered once per recipient and form.
    """
    return tuple(
        (token.map[0], token.map[1])
        for token in markdown_parser().parse(text)
        if token.type in ("fence", "code_block") and token.map
    )


def with_site_links(text: str, base: str) -> str:
    """``text`` with its links to the site's own pages made absolute under ``base``.

    The web writes links into comments relative to itself (a dropped file is
    ``[x.log](/attachments/3/x.log)``, an import's reference
    ``[#1](/imported?id=trac%3A1)``): the page resolves them, a mail client
    has nothing to resolve them against. Code (blocks and spans) is left as
    it was typed: a ``](/path`` there is text the author wrote, not a link.
    """

    def absolute(match: re.Match[str]) -> str:
        return match.group(1) or f"]({base}/"

    blocks = _code_blocks(text)
    if not blocks:
        return _SITE_LINK.sub(absolute, text)
    ends = [m.end() for m in _LINE_END.finditer(text)]
    starts = [0, *ends]

    def offset(line: int) -> int:
        return starts[line] if line < len(starts) else len(text)

    out: list[str] = []
    at = 0
    for first, end in blocks:
        out.append(_SITE_LINK.sub(absolute, text[at : offset(first)]))
        out.append(text[offset(first) : offset(end)])
        at = offset(end)
    out.append(_SITE_LINK.sub(absolute, text[at:]))
    return "".join(out)


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
    def event(self) -> str:
        if self.created:
            return "issue.created"
        if self.entry.redaction_target in REDACTION_EVENTS:
            return REDACTION_EVENTS[self.entry.redaction_target]
        if self.entry.deleted_attachment_id:
            return ATTACHMENT_DELETED_EVENT
        return "issue.changed" if self.entry.changes else "issue.commented"

    def redaction(self) -> dict[str, Any] | None:
        """What a redaction entry removed (never the content), for the JSON form."""
        target = self.entry.redaction_target
        if target not in _REDACTION_TARGET_NAMES:
            return None
        if target in (v1.RedactionTarget.ATTACHMENT, v1.RedactionTarget.ATTACHMENT_DESCRIPTION):
            name = _REDACTION_TARGET_NAMES[target]
            return {"target": name, "attachment_id": self.entry.redacted_attachment_id}
        return {"target": _REDACTION_TARGET_NAMES[target], "version": self.entry.redacted_version}

    @property
    def reason_text(self) -> str:
        notice = self.notice
        if notice.reason == Reason.COMPONENT:
            return self.component_reason
        text = FORMER_TEXT[notice.reason] if notice.former else REASON_TEXT[notice.reason]
        detail = self.notice.reason_detail
        return f"{text} ({detail})" if detail else text

    @property
    def component_reason(self) -> str:
        """Which component subscription brought the mail, by name where the recipient may see it.

        A subscription on an ancestor (with its subtree) reads "you subscribed
        to Infra (this issue is in Infra>Net)": "its component" alone left
        the reader to guess which of their subscriptions to change. Without
        the component (an older Model, or one the recipient may not see), the
        general wording.
        """
        raw = self.notice.reason_detail
        on = self.notice.components.get(int(raw)) if raw.isdigit() else None
        if on is None:
            return REASON_TEXT[Reason.COMPONENT]
        if int(raw) == self.issue.component_id:
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
            "event": self.event,
            "reason": str(self.notice.reason),
            "reason_detail": self.notice.reason_detail,
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
                "created_at": _iso(self.entry.created_at),
                "comment": self.entry.comment,
                "comment_redacted": self.entry.comment_redacted,
                "redaction": self.redaction(),
                "caused_by_issue_id": self.entry.caused_by_issue_id or None,
                "changes": [json_line(line) for line in self.lines],
                "attachments": [
                    {"id": a.id, "name": a.name, "size": a.size} for a in self.entry.attachments
                ],
                "deleted_attachment": self.deleted_attachment(),
            },
        }

    def deleted_attachment(self) -> dict[str, Any] | None:
        """The file the entry deleted, for the JSON form (None: it deleted none).

        The name is what the mail says ("Deleted attachment build.log"): a
        receiver posting the event to a chat has nothing else to place the id
        by. A Model older than ``deleted_attachment_name`` gives only the id
        (``name`` null), as the mail then says the id.
        """
        if not self.entry.deleted_attachment_id:
            return None
        return {
            "id": self.entry.deleted_attachment_id,
            "name": self.entry.deleted_attachment_name or None,
        }


def _chat_escape(text: str) -> str:
    """Escape what Slack and Google Chat read as markup in ``text``."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _iso(value: datetime.datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(datetime.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


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
        reason_detail=notice.reason_detail,
        settings_url=settings_url(notice.public_url),
        quoted_versions=(notice.entry.version,) if notice.entry.comment else (),
        unsubscribe_url=notice.unsubscribe_url,
    )


#: Reason is defined in :mod:`bugless_notify.reasons` and exported here too,
#: where the consumer, the bench and the tests import it from.
__all__ = [
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
