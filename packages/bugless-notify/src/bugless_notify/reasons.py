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
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bugless_core.notification_channel import NotificationMessage


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


def legacy_detail(saved_search: str, component_id: int) -> str:
    """``reason_detail`` as notifiers wrote it before the two fields beside it.

    One string for two things: the saved search's name, or the decimal id
    of the subscribed component (which the reason tells apart). Still
    written for one release, for notifiers of the earlier release that read
    it from the queue during a rollout.
    """
    return saved_search or (str(component_id) if component_id else "")


def reason_subject(reason: str, detail: str) -> tuple[str, int]:
    """``(saved_search, subscribed_component_id)`` from a legacy ``reason_detail``.

    Read by ``reason``, as the earlier release meant it: a saved search's
    name for ``saved_search``, a component id for ``component``, nothing
    for any other reason.
    """
    if reason == Reason.SAVED_SEARCH:
        return detail, 0
    if reason == Reason.COMPONENT and detail.isdigit():
        return "", int(detail)
    return "", 0


def message_subject(message: NotificationMessage) -> tuple[str, int]:
    """``(saved_search, subscribed_component_id)`` of a queued message.

    A message an earlier notifier queued has only ``reason_detail``: read
    that by its reason (:func:`reason_subject`).
    """
    if message.saved_search or message.subscribed_component_id:
        return message.saved_search, message.subscribed_component_id
    return reason_subject(message.reason, message.reason_detail)
