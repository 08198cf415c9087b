"""Why a recipient gets a notification, and how a mail says it.

:class:`Reason` is chosen by the recipient rules (:mod:`bugless_notify.recipients`)
and carried to the renderer, which words it with :data:`REASON_TEXT` (or
:data:`FORMER_TEXT` for a person the change took the role from). It lives
apart from :mod:`bugless_notify.render` so that the rules and the renderer
share it without the rules importing the renderer's dependencies; render
re-exports it, where callers have always imported it from.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping


class Reason(enum.StrEnum):
    """Why a recipient gets a notification (also the ``X-Bugless-Reason`` header)."""

    ASSIGNEE = "assignee"
    REPORTER = "reporter"
    VERIFIER = "verifier"
    CC = "cc"
    MENTIONED = "mentioned"
    STARRED = "starred"
    COMPONENT = "component"
    SAVED_SEARCH = "saved_search"
    WEBHOOK = "webhook"


#: What a mail says of why the recipient gets it, by reason.
REASON_TEXT: Mapping[Reason, str] = {
    Reason.ASSIGNEE: "you are the assignee",
    Reason.REPORTER: "you reported this issue",
    Reason.VERIFIER: "you are the verifier",
    Reason.CC: "you are on CC",
    Reason.MENTIONED: "you were mentioned",
    Reason.STARRED: "you starred this issue",
    Reason.COMPONENT: "you subscribed to its component",
    Reason.SAVED_SEARCH: "you subscribed to a saved search",
    Reason.WEBHOOK: "this webhook is subscribed to its component",
}
#: The reason of a person the change took the role from (ChangeNotice.former).
FORMER_TEXT: Mapping[Reason, str] = {
    Reason.ASSIGNEE: "you were the assignee until this change",
    Reason.VERIFIER: "you were the verifier until this change",
    Reason.CC: "this change removed you from CC",
}
