"""bugless-notify: the notifier's delivery half (queue, worker, email and webhook channels).

The names below are imported on first use (PEP 562): every bugless process
loads each installed package's plugin, which imports this package, and only
the commands that use httpx, aiosmtplib and the notifier's queue should pay for importing it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bugless_core.lazy import lazy_attribute
from bugless_notify.__about__ import __version__

if TYPE_CHECKING:
    from bugless_notify.endpoints import WebhookEndpointStore
    from bugless_notify.mail import EmailChannel, SmtpSecurity, SmtpSettings
    from bugless_notify.queue import (
        ClaimedDelivery,
        DeadLetterPage,
        DeliveryQueue,
        DeliveryRecord,
        DeliveryState,
        NewDelivery,
    )
    from bugless_notify.render import ChangeNotice, Person, Reason, render_notification
    from bugless_notify.retry import RetryPolicy
    from bugless_notify.webhook import (
        PayloadFormat,
        WebhookChannel,
        WebhookEndpoint,
        WebhookEndpointDirectory,
        WebhookSettings,
        verify_signature,
    )
    from bugless_notify.worker import DeliveryWorker, WorkerSettings

#: Public name -> the module defining it.
_LAZY = {
    "ChangeNotice": "bugless_notify.render",
    "ClaimedDelivery": "bugless_notify.queue",
    "DeadLetterPage": "bugless_notify.queue",
    "DeliveryQueue": "bugless_notify.queue",
    "DeliveryRecord": "bugless_notify.queue",
    "DeliveryState": "bugless_notify.queue",
    "DeliveryWorker": "bugless_notify.worker",
    "EmailChannel": "bugless_notify.mail",
    "NewDelivery": "bugless_notify.queue",
    "PayloadFormat": "bugless_notify.webhook",
    "Person": "bugless_notify.render",
    "Reason": "bugless_notify.render",
    "RetryPolicy": "bugless_notify.retry",
    "SmtpSecurity": "bugless_notify.mail",
    "SmtpSettings": "bugless_notify.mail",
    "WebhookChannel": "bugless_notify.webhook",
    "WebhookEndpoint": "bugless_notify.webhook",
    "WebhookEndpointDirectory": "bugless_notify.webhook",
    "WebhookEndpointStore": "bugless_notify.endpoints",
    "WebhookSettings": "bugless_notify.webhook",
    "WorkerSettings": "bugless_notify.worker",
    "render_notification": "bugless_notify.render",
    "verify_signature": "bugless_notify.webhook",
}

__all__ = [
    "ChangeNotice",
    "ClaimedDelivery",
    "DeadLetterPage",
    "DeliveryQueue",
    "DeliveryRecord",
    "DeliveryState",
    "DeliveryWorker",
    "EmailChannel",
    "NewDelivery",
    "PayloadFormat",
    "Person",
    "Reason",
    "RetryPolicy",
    "SmtpSecurity",
    "SmtpSettings",
    "WebhookChannel",
    "WebhookEndpoint",
    "WebhookEndpointDirectory",
    "WebhookEndpointStore",
    "WebhookSettings",
    "WorkerSettings",
    "__version__",
    "render_notification",
    "verify_signature",
]


def __getattr__(name: str) -> Any:
    """Import ``name``'s module on first use (:mod:`bugless_core.lazy`)."""
    return lazy_attribute(__name__, _LAZY, name)
