"""bugless-notify: the notifier's delivery half (queue, worker, email and webhook channels)."""

from __future__ import annotations

from bugless_notify.__about__ import __version__
from bugless_notify.endpoints import WebhookEndpointStore
from bugless_notify.mail import EmailChannel, SmtpSecurity, SmtpSettings
from bugless_notify.queue import (
    ClaimedDelivery,
    DeadLetterPage,
    DeliveryQueue,
    DeliveryRecord,
    DeliveryState,
    NewDelivery,
    RetryPolicy,
)
from bugless_notify.render import ChangeNotice, Person, Reason, render_notification
from bugless_notify.webhook import (
    PayloadFormat,
    WebhookChannel,
    WebhookEndpoint,
    WebhookEndpointDirectory,
    WebhookSettings,
    verify_signature,
)
from bugless_notify.worker import DeliveryWorker, WorkerSettings

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
