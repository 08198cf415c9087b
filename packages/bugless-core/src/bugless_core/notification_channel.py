"""The notification channel contract: how one notification reaches one recipient.

A channel (``email``, ``webhook``, or one a plugin adds) is registered through
``bugless_register_notification_channels`` and driven by the notifier's
delivery worker, which owns everything around a single attempt: the durable
queue, retries with backoff, leases, the dead-letter list. A channel only
answers "did this attempt work, and if not, is it worth trying again?".

Everything here is plain data so that a channel plugin needs bugless-core and
its own client library, nothing else.
"""

from __future__ import annotations

import enum
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

#: What a thread id may contain: it ends up inside an e-mail ``Message-ID``.
_THREAD_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class DeliveryStatus(enum.StrEnum):
    """How one delivery attempt ended."""

    #: The recipient's server accepted it; the delivery is done.
    DELIVERED = "delivered"
    #: A transient failure (timeout, 4xx SMTP, HTTP 5xx/408/429): try again later.
    RETRY = "retry"
    #: A failure that would repeat (SMTP 5xx, HTTP 4xx): give up now.
    REJECTED = "rejected"


@dataclass(frozen=True)
class DeliveryResult:
    """The outcome of one attempt, with the reason an admin will read.

    Attributes:
        status: Delivered, worth retrying, or rejected for good.
        reason: What went wrong, for the dead-letter list and the logs
            (``"SMTP 550 mailbox unavailable"``, ``"HTTP 503"``). Never a
            secret, never the message body.
        retry_after_seconds: The earliest sensible retry the other side asked
            for (an HTTP ``Retry-After``); the queue waits at least this long.
    """

    status: DeliveryStatus
    reason: str = ""
    retry_after_seconds: float | None = None

    @classmethod
    def delivered(cls) -> DeliveryResult:
        """The attempt worked."""
        return cls(DeliveryStatus.DELIVERED)

    @classmethod
    def retry(cls, reason: str, *, retry_after_seconds: float | None = None) -> DeliveryResult:
        """A transient failure: the queue tries again after a backoff."""
        return cls(DeliveryStatus.RETRY, reason, retry_after_seconds)

    @classmethod
    def rejected(cls, reason: str) -> DeliveryResult:
        """A permanent failure: the delivery goes to the dead-letter list."""
        return cls(DeliveryStatus.REJECTED, reason)


@dataclass(frozen=True)
class NotificationMessage:
    """What a notification says, rendered once for one recipient.

    The notifier renders a message for each recipient from what that
    recipient may see, and stores it with the delivery, so a retry sends
    exactly what was decided when the change was processed. Each channel
    picks the forms it needs.

    Attributes:
        thread_id: Groups the messages about one thing (``issue-123``): the
            e-mail channel turns it into ``In-Reply-To``/``References`` so a
            mail client shows one issue's mails as one conversation. Letters,
            digits, ``.``, ``_`` and ``-`` only.
        subject: One line (an e-mail subject).
        text: The plain-text body.
        html: The HTML body (a complete fragment, every value escaped).
        chat_text: A short form for chat webhooks (Slack/Google Chat
            ``text``, with ``<url|label>`` links).
        data: The structured form (a JSON object) for JSON webhooks.
        reason: Why this recipient gets it (``assignee``, ``cc``, ...),
            shown to them and usable for mail filters.
        reason_detail: Legacy: one string for two things, by ``reason``: the
            saved search's name (``saved_search``), or the decimal id of the
            component a subscription is on (``component``); empty for every
            other reason. Read :attr:`saved_search` and
            :attr:`subscribed_component_id` instead: this stays filled as
            before for one release, for notifiers of the earlier release
            sharing the queue during a rollout, and is then dropped.
        saved_search: For reason ``saved_search``: the search's name, kept so
            that a message rendered again (a redaction) says it again.
        subscribed_component_id: For reason ``component``: the component
            whose subscription brought it (the issue's, or an ancestor's),
            kept so that a message rendered again names it again; 0 for none.
        settings_url: The page where the recipient changes what notifies
            them (``https://bugs.example.com/settings/notifications``); the
            e-mail channel names it in ``List-Unsubscribe`` (RFC 2369), which
            mail clients offer as "unsubscribe". Empty: no such header
            (deliveries queued before it existed).
        unsubscribe_url: The recipient's one-click unsubscribe link for this
            message's issue (``https://…/unsubscribe/<signed token>``): the
            e-mail channel names it in ``List-Unsubscribe`` with
            ``List-Unsubscribe-Post: List-Unsubscribe=One-Click`` (RFC 8058)
            when it is https. Empty: the settings page is the link.
        quoted_versions: The issue's history entries (versions) whose text
            this message carries (a comment, the description). The notifier
            checks them against redactions before each attempt, so a message
            rendered before its text was redacted is rendered again instead of
            sent; channels ignore it.
    """

    thread_id: str
    subject: str
    text: str
    html: str
    chat_text: str = ""
    data: Mapping[str, Any] = field(default_factory=dict)
    reason: str = ""
    reason_detail: str = ""
    saved_search: str = ""
    subscribed_component_id: int = 0
    settings_url: str = ""
    quoted_versions: tuple[int, ...] = ()
    unsubscribe_url: str = ""

    def __post_init__(self) -> None:
        if not _THREAD_ID.match(self.thread_id):
            msg = (
                f"thread_id: {self.thread_id!r} must be 1-128 letters, digits, '.', '_' "
                "or '-', starting with a letter or digit"
            )
            raise ValueError(msg)
        if "\n" in self.subject or "\r" in self.subject:
            msg = "subject: must be one line"
            raise ValueError(msg)

    def to_json(self) -> dict[str, Any]:
        """A JSON object that :meth:`from_json` reads back unchanged."""
        return {
            "thread_id": self.thread_id,
            "subject": self.subject,
            "text": self.text,
            "html": self.html,
            "chat_text": self.chat_text,
            "data": dict(self.data),
            "reason": self.reason,
            "reason_detail": self.reason_detail,
            "saved_search": self.saved_search,
            "subscribed_component_id": self.subscribed_component_id,
            "settings_url": self.settings_url,
            "quoted_versions": list(self.quoted_versions),
            "unsubscribe_url": self.unsubscribe_url,
        }

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> NotificationMessage:
        """The message :meth:`to_json` wrote."""
        return cls(
            thread_id=value["thread_id"],
            subject=value["subject"],
            text=value["text"],
            html=value["html"],
            chat_text=value.get("chat_text", ""),
            data=value.get("data", {}),
            reason=value.get("reason", ""),
            reason_detail=value.get("reason_detail", ""),
            saved_search=value.get("saved_search", ""),
            subscribed_component_id=value.get("subscribed_component_id", 0),
            settings_url=value.get("settings_url", ""),
            quoted_versions=tuple(value.get("quoted_versions", ())),
            unsubscribe_url=value.get("unsubscribe_url", ""),
        )


@dataclass(frozen=True)
class Notification:
    """One message for one recipient on one channel: what a channel delivers.

    Attributes:
        delivery_id: The idempotency key. It is the same on every attempt of
            this delivery (a retry, or a redelivery after a notifier died
            mid-send), so the receiving side can drop a duplicate: the e-mail
            ``Message-ID`` and the webhook ``X-Bugless-Delivery`` derive from it.
        recipient: Where to: an e-mail address, a webhook endpoint's name;
            the channel defines it.
        recipient_name: Who, for display (``"Alice Smith"``); may be empty.
        message: The content.
        attempt: 1 on the first attempt, counting up.
    """

    delivery_id: str
    recipient: str
    message: NotificationMessage
    recipient_name: str = ""
    attempt: int = 1


class NotificationChannel(ABC):
    """Base of every notification channel.

    Attributes:
        name: What deliveries name in their ``channel`` (``email``).
    """

    name: ClassVar[str]

    @classmethod
    @abstractmethod
    async def open(cls, config: Mapping[str, Any]) -> Self:
        """Build the channel from its settings.

        ``config`` holds the channel's own options (strings, from flags and
        ``BUGLESS_NOTIFY_<CHANNEL>_<OPTION>`` variables) plus objects the
        notifier provides; each channel documents what it reads.

        Raises:
            bugless_core.errors.InvalidArgument: an option is missing or wrong,
                naming it.
        """

    @abstractmethod
    async def deliver(self, notification: Notification) -> DeliveryResult:
        """Make one attempt to deliver ``notification``; report how it went.

        Must not raise for a failure of the delivery itself (a refusal, a
        timeout, an unreachable host): report it, retryable or not, so one bad
        recipient never stops the others. The worker bounds each call with a
        timeout and treats an exception as a retryable failure.
        """

    async def close(self) -> None:  # noqa: B027 - optional hook, default is nothing to release
        """Release connections (SMTP sessions, HTTP clients)."""
