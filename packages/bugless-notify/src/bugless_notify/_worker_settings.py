"""How one delivery worker process delivers: :class:`WorkerSettings`, field by field.

Kept apart from :mod:`bugless_notify.worker` (which exports it) so the
settings a deployment reads about are not buried in the loop's code; the
notifier's :class:`~bugless_notify.settings.NotifierSettings` fills one.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import socket

from bugless_notify.retry import RetryPolicy


def default_worker_id() -> str:
    """``host:pid:random``: unique per process, readable in ``claimed_by``."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


@dataclasses.dataclass(frozen=True, kw_only=True)
class WorkerSettings:
    """How one worker process delivers, field by field.

    Attributes:
        worker_id: Written to ``claimed_by`` of the rows it holds.
        concurrency: Attempts running at once in this process.
        lease_seconds: How long a claim keeps other replicas off a row. A
            replica that dies holding claims delays those deliveries by at most
            this long. Must be longer than ``delivery_timeout_seconds``, so a
            live worker always finishes before its lease runs out.
        delivery_timeout_seconds: Bound on one attempt, from its claim:
            the check before sending (``before_send``) and the channel
            together (a channel's own timeouts should be shorter); past it,
            the attempt counts as a retryable failure.
        poll_seconds: The longest sleep while nothing is due, in case a
            wake-up notification was missed (a reconnect).
        retry: Backoff and attempt budget.
        delivered_retention_seconds: How long delivered rows (and with them
            their idempotency keys) are kept. Keep it longer than the change
            feed's retention, so a replayed change never mails twice.
        purge_interval_seconds: How often old delivered rows are deleted.
        stop_grace_seconds: How long :meth:`DeliveryWorker.stop` lets running
            attempts finish before cancelling them.
    """

    worker_id: str = dataclasses.field(default_factory=default_worker_id)
    concurrency: int = 32
    lease_seconds: float = 120.0
    delivery_timeout_seconds: float = 60.0
    poll_seconds: float = 5.0
    retry: RetryPolicy = dataclasses.field(default_factory=RetryPolicy)
    delivered_retention_seconds: float = 15 * 86400.0
    purge_interval_seconds: float = 3600.0
    stop_grace_seconds: float = 30.0

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError(f"concurrency: {self.concurrency} must be at least 1")
        if self.delivery_timeout_seconds <= 0:
            raise ValueError("delivery_timeout_seconds: must be more than 0")
        if self.lease_seconds <= self.delivery_timeout_seconds:
            raise ValueError(
                f"lease_seconds: {self.lease_seconds} must be longer than "
                f"delivery_timeout_seconds ({self.delivery_timeout_seconds}), or a slow "
                "attempt would lose its lease and be made twice"
            )
        for name in ("poll_seconds", "purge_interval_seconds", "delivered_retention_seconds"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name}: must be more than 0")
        if self.stop_grace_seconds < 0:
            raise ValueError("stop_grace_seconds: must not be negative")
