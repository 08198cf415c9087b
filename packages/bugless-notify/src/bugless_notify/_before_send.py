"""The check a claim passes right before its attempts: what the worker may be told.

The delivery worker asks a :data:`BeforeSend` about each claim (the
notifier's is :class:`bugless_notify._recheck.RedactionRecheck`). The answer
names, by delivery id, a message to send instead of the claimed one, or an
:class:`Unsent` saying why nothing is sent: the worker counts a withdrawn
delivery in ``bugless_notify_deliveries_total{outcome="withdrawn"}`` and
leaves a delivery it no longer holds to whoever does, and gives back one
whose stored message changed under it. Kept apart from the
worker so the check and the worker share the words without importing each
other.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Mapping, Sequence

from bugless_core.notification_channel import NotificationMessage
from bugless_notify.queue import ClaimedDelivery


class Unsent(enum.Enum):
    """Why a claimed delivery is not sent after the check.

    Attributes:
        WITHDRAWN: The row is deleted: nothing is left to send (a person only
            ``@mentioned`` in text redacted since). An outcome of the
            delivery, counted as ``withdrawn``.
        LEASE_LOST: The claim's lease ran out before the check could store
            its answer: another attempt holds the row now, and reports it.
        CHANGED: The row's message was rewritten since the claim (the feed
            consumer stored a rendering newer than the check's): the claimed
            one is stale, the check's may be too, so neither is sent nor
            stored; the worker gives the row back at once, and its next
            claim checks and sends the stored one.
    """

    WITHDRAWN = "withdrawn"
    LEASE_LOST = "lease lost"
    CHANGED = "changed"


#: The answer for one delivery: the message to send instead, or why none is.
Verdict = NotificationMessage | Unsent

#: Asked about a claim's deliveries before their attempts: by delivery id,
#: a :data:`Verdict`; a delivery not named goes as claimed. An exception
#: makes each attempt a retryable failure.
BeforeSend = Callable[[Sequence[ClaimedDelivery]], Awaitable[Mapping[str, Verdict]]]
