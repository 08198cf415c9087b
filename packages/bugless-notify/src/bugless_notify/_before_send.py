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

import asyncio
import dataclasses
import enum
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence

from bugless_core.errors import BuglessError, Unavailable
from bugless_core.notification_channel import DeliveryResult, NotificationMessage
from bugless_notify.queue import ClaimedDelivery

_log = logging.getLogger("bugless.notify")


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

#: One claim's check, running: each of its attempts awaits it.
CheckedClaim = asyncio.Future[Mapping[str, Verdict]]


class ClaimChecks:
    """The worker's checks before sending: one per claim, awaited by each of its attempts.

    Args:
        before_send: The check (the notifier's ``RedactionRecheck``).
        timeout_seconds: The attempts' ``delivery_timeout_seconds``: the
            check runs inside its attempts' time, so a Model that takes the
            connection and never answers cannot hold every attempt of the
            claim, and their slots, past the lease.
    """

    def __init__(self, before_send: BeforeSend, timeout_seconds: float) -> None:
        self._before_send = before_send
        self._timeout = timeout_seconds
        self._running: set[CheckedClaim] = set()

    def start(self, claims: Sequence[ClaimedDelivery]) -> CheckedClaim:
        """Check ``claims`` once (the check's calls are per issue, not per delivery)."""
        check = asyncio.ensure_future(self._in_time(claims))
        self._running.add(check)
        check.add_done_callback(self._done)
        return check

    async def verdict(
        self, claim: ClaimedDelivery, check: CheckedClaim
    ) -> ClaimedDelivery | DeliveryResult | Unsent:
        """What the check says of ``claim``: send it (perhaps with a new message), fail, or not.

        A check that failed is each attempt's retryable failure, so nothing
        goes out unchecked. The check is shielded: one attempt cancelled
        (a worker stopping) does not cancel it for the others.
        """
        try:
            verdicts = await asyncio.shield(check)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            return DeliveryResult.retry(
                f"could not check the message against redactions before sending it: {exc}"
            )
        if claim.delivery_id not in verdicts:
            return claim
        verdict = verdicts[claim.delivery_id]
        if isinstance(verdict, Unsent):
            return verdict
        return dataclasses.replace(
            claim, notification=dataclasses.replace(claim.notification, message=verdict)
        )

    def cancel(self) -> None:
        """Cancel the checks still running (the worker stopped, its attempts are gone)."""
        for check in list(self._running):
            check.cancel()

    async def _in_time(self, claims: Sequence[ClaimedDelivery]) -> Mapping[str, Verdict]:
        """``before_send(claims)``, given up after the attempts' timeout."""
        try:
            async with asyncio.timeout(self._timeout):
                return await self._before_send(claims)
        except TimeoutError:
            raise Unavailable(f"the check took longer than {self._timeout:g} s") from None

    def _done(self, check: CheckedClaim) -> None:
        self._running.discard(check)
        if check.cancelled() or (exc := check.exception()) is None:
            return
        # Each attempt reports it as its own retryable failure; a bug also
        # shows its traceback here, once per claim.
        _log.warning(
            "could not check a claim against redactions; its attempts are retried: %s",
            exc,
            exc_info=None if isinstance(exc, BuglessError) else exc,
        )
