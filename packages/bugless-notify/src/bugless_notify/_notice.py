"""What a notification is rendered from, and how it names an issue and its links.

:class:`ChangeNotice` (with :class:`Person`) is the renderer's whole input
(:mod:`bugless_notify.render` says what it may hold and why); the helpers
name an issue (``b/123``), its page and the settings page the same way in
every form and in the code that fills a notice.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field

from bugless_notify.reasons import Reason
from bugless_proto import v1

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
    """Everything one notification is rendered from (see :mod:`bugless_notify.render`).

    Attributes:
        issue: The issue after the change, as the recipient may see it.
        entry: The history entry of the change, with only the field changes
            the recipient may see.
        reason: Why the recipient is notified.
        saved_search: For reason ``saved_search``: the search's name,
            shown with the reason.
        subscribed_component_id: For reason ``component``: the component
            the subscription is on (the issue's or an ancestor's), named
            from ``components``; 0 for none (an older Model).
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
    saved_search: str = ""
    subscribed_component_id: int = 0
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


def attachment_url(public_url: str, attachment: v1.Attachment) -> str | None:
    """Where the web UI serves a file (``{public_url}/attachments/{id}/{name}``).

    The web's own download route, the file's name last as the web writes it,
    so a browser saves it under that name. None without a base URL: a link
    relative to nothing is no link a receiver can follow.
    """
    base = public_url.rstrip("/")
    if not base:
        return None
    return f"{base}/attachments/{attachment.id}/{urllib.parse.quote(attachment.name, safe='')}"


def issue_ref(issue_id: int) -> str:
    """How an issue is named in a notification: ``b/123``."""
    return f"b/{issue_id}"


def one_line(text: str) -> str:
    """``text`` with every run of whitespace (newlines included) made one space."""
    return _WHITESPACE.sub(" ", text).strip()
