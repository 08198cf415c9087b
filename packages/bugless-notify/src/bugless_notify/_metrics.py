"""The delivery worker's Prometheus metrics, registered once per registry.

Names start with ``bugless_notify_``; ``channel`` is the channel's name and
``outcome`` one of ``delivered``, ``retry``, ``dead`` or ``withdrawn`` (the
check before sending found nothing left to send: a person only
``@mentioned`` in text redacted since; no attempt is made, and the row is
gone), so "deliveries that will never arrive" is one query:
``rate(bugless_notify_deliveries_total{outcome="dead"}[5m])``, and why they will not is
``bugless_notify_dead_letters_total{channel, reason}`` (``rejected``,
``gave_up``, or ``unreadable``: a queued row no delivery could be made of,
which never reaches an attempt and so is in no ``deliveries_total``).
The feed consumer's ``bugless_notify_saved_search_seed_backlog`` is
:func:`seed_backlog_gauge`'s.
"""

from __future__ import annotations

import dataclasses
import weakref

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_BY_REGISTRY: weakref.WeakKeyDictionary[CollectorRegistry, DeliveryMetrics] = (
    weakref.WeakKeyDictionary()
)
_SEED_BACKLOG: weakref.WeakKeyDictionary[CollectorRegistry, Gauge] = weakref.WeakKeyDictionary()


def seed_backlog_gauge(registry: CollectorRegistry) -> Gauge:
    """``bugless_notify_saved_search_seed_backlog`` in ``registry``, registered the first time.

    New saved-search subscriptions the consumer's last round left unseeded
    (its seed budget spent): each mails nothing until seeded, so a backlog
    that does not shrink (a restored queue database, a script subscribing
    thousands) is mail held back. Set by the replica that consumes the feed;
    the others report 0.
    """
    gauge = _SEED_BACKLOG.get(registry)
    if gauge is None:
        gauge = Gauge(
            "bugless_notify_saved_search_seed_backlog",
            "New saved-search subscriptions the feed consumer's last round left unseeded "
            "(they mail nothing until seeded).",
            registry=registry,
        )
        _SEED_BACKLOG[registry] = gauge
    return gauge


@dataclasses.dataclass(frozen=True)
class DeliveryMetrics:
    """The worker's metrics, bound to one registry.

    Attributes:
        deliveries: Finished attempts, and deliveries withdrawn before one, by
            channel and outcome.
        attempt_seconds: How long one attempt took, by channel.
        claimed: Deliveries claimed, by channel.
        released: Claims given back unfinished (a worker stopping, a message
            the consumer rendered again during the check before sending).
        in_flight: Attempts running now.
        queue_errors: Failed queue operations (the database unreachable).
        dead_letters: Rows moved to the dead letters, by channel and reason.
    """

    deliveries: Counter
    attempt_seconds: Histogram
    claimed: Counter
    released: Counter
    in_flight: Gauge
    queue_errors: Counter
    dead_letters: Counter

    @classmethod
    def for_registry(cls, registry: CollectorRegistry) -> DeliveryMetrics:
        """The metrics registered in ``registry``, registering them the first time."""
        metrics = _BY_REGISTRY.get(registry)
        if metrics is None:
            metrics = cls(
                deliveries=Counter(
                    "bugless_notify_deliveries_total",
                    "Deliveries finished or retried, by channel and outcome "
                    "(delivered, retry, dead, withdrawn).",
                    ["channel", "outcome"],
                    registry=registry,
                ),
                attempt_seconds=Histogram(
                    "bugless_notify_attempt_seconds",
                    "Time one delivery attempt took, by channel.",
                    ["channel"],
                    registry=registry,
                ),
                claimed=Counter(
                    "bugless_notify_claimed_total",
                    "Deliveries claimed from the queue, by channel.",
                    ["channel"],
                    registry=registry,
                ),
                released=Counter(
                    "bugless_notify_released_total",
                    "Claimed deliveries given back unfinished: a worker stopping, or a message "
                    "rendered again while its attempt held it.",
                    registry=registry,
                ),
                in_flight=Gauge(
                    "bugless_notify_in_flight",
                    "Delivery attempts running now.",
                    registry=registry,
                ),
                queue_errors=Counter(
                    "bugless_notify_queue_errors_total",
                    "Queue operations that failed (database unreachable), by operation.",
                    ["operation"],
                    registry=registry,
                ),
                dead_letters=Counter(
                    "bugless_notify_dead_letters_total",
                    "Deliveries moved to the dead letters, by channel and reason "
                    "(rejected, gave_up, unreadable).",
                    ["channel", "reason"],
                    registry=registry,
                ),
            )
            _BY_REGISTRY[registry] = metrics
        return metrics
