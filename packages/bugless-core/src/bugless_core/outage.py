"""One outage, logged as one: when it starts, rarely while it lasts, when it ends.

A background loop (:class:`~bugless_core.supervision.SupervisedLoop`) or a
request path that meets an expected outage (the database, the Model, a
directory away) must not log a line per round or per request: under traffic
that is thousands of identical warnings, and the one line an operator needs
(when it began) scrolls away. :class:`OutageLog` logs the start, a reminder
at most every :data:`OUTAGE_REMINDER_SECONDS`, and the end.

Kept apart from :mod:`bugless_core.supervision` because it imports no
``prometheus_client``: the web tier must not import that before its
multiprocess metrics are set up (:func:`bugless_web.metrics.prepare_workers`
refuses to start ``--workers`` otherwise), and it imports
:mod:`bugless_core.assertions`, whose key refresh logs its outages here, and
logs the outages its own calls meet (:mod:`bugless_web.retries`).

Request paths: the gRPC server, once per method that answers UNAVAILABLE or
DEADLINE_EXCEEDED (:mod:`bugless_core.grpc`); the web tier, once per service
its calls find unavailable; the Authenticator, once per password backend
that cannot be asked.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

_log = logging.getLogger("bugless.supervision")


#: While an outage lasts, a reminder is logged at most this often (seconds).
OUTAGE_REMINDER_SECONDS = 60.0


def _reason(error: BaseException | str) -> str:
    """``"ConnectionRefusedError: [Errno 111] ..."``: what failed, as an operator reads it."""
    if isinstance(error, str):
        return error
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


class OutageLog:
    """The log of one loop's expected outages: when it starts, rarely while it lasts, when it ends.

    A loop calls :meth:`failed` for each round an error it expects made fail
    and :meth:`recovered` after each round that worked (cheap while healthy).
    What is logged, on ``logger``:

    * the first failure of a streak: WARNING, ``"<what>: <reason>;
      <meanwhile> ..."``;
    * the next ones: DEBUG (so a debug log still shows every round), except
      one WARNING reminder every ``remind_seconds``, with the outage's
      duration, rounds and latest reason;
    * the first round that works again: INFO, with the duration and rounds.

    Records carry ``loop``, ``failed_rounds`` and ``outage_seconds`` as extra
    fields for structured logs.

    Args:
        what: What is failing, as the start of each line: a noun phrase
            that reads well before both the reason and "working again"
            (``"feed consumer"``, ``"renewing lease migrate"``).
        logger: Where to log (the loop's module logger, so existing filters
            and alerts keep matching); default ``bugless.supervision``.
        meanwhile: What the loop does during the outage, for the first line.
        loop: The loop's name for the ``loop`` field (default ``what``).
        remind_seconds: The least time between two reminders.
        unit: What failed, counted in the lines: ``"rounds"`` of a loop,
            ``"requests"`` of a request path (which calls :meth:`failed`
            per request that met the outage and :meth:`recovered` when one
            got through).
        clock: Monotonic seconds (a test may step it).

    Attributes:
        failed_rounds: Rounds failed since the outage started (0: none now).
        last_error: The latest failure's error (kept after recovery).
    """

    def __init__(
        self,
        what: str,
        *,
        logger: logging.Logger | None = None,
        meanwhile: str = "retrying",
        loop: str = "",
        remind_seconds: float = OUTAGE_REMINDER_SECONDS,
        unit: str = "rounds",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.what = what
        self.loop = loop or what
        self.meanwhile = meanwhile
        self.remind_seconds = remind_seconds
        self.unit = unit
        self._log = logger or _log
        self._clock = clock
        self.failed_rounds = 0
        self.last_error: BaseException | str | None = None
        self._started = 0.0
        self._reminded = 0.0

    @property
    def seconds(self) -> float:
        """How long the current outage has lasted (0.0 when there is none)."""
        return self._clock() - self._started if self.failed_rounds else 0.0

    def failed(self, error: BaseException | str, *, during: str = "", stacklevel: int = 2) -> None:
        """Record a round that failed on an expected error (logged as the class says).

        Args:
            error: What the round raised (or a reason, for a round that
                returned a refusal rather than raised).
            during: The step that failed, when a loop has several
                (``"claim"``): put before the reason.
            stacklevel: Whose line the record names (:meth:`logging.Logger.log`):
                the caller's by default; a wrapper adds one per level.
        """
        now = self._clock()
        reason = _reason(error)
        if during:
            reason = f"{during}: {reason}"
        self.failed_rounds += 1
        self.last_error = error
        extra = {"loop": self.loop, "failed_rounds": self.failed_rounds}
        if self.failed_rounds == 1:
            self._started = self._reminded = now
            self._log.warning(
                "%s: %s; %s (reminded every %.0f s while it lasts)",
                self.what,
                reason,
                self.meanwhile,
                self.remind_seconds,
                extra={**extra, "outage_seconds": 0.0},
                stacklevel=stacklevel,
            )
            return
        lasted = now - self._started
        if now - self._reminded >= self.remind_seconds:
            self._reminded = now
            level = logging.WARNING
        else:
            level = logging.DEBUG
        self._log.log(
            level,
            "%s: still failing after %.1f s (%d %s): %s",
            self.what,
            lasted,
            self.failed_rounds,
            self.unit,
            reason,
            extra={**extra, "outage_seconds": lasted},
            stacklevel=stacklevel,
        )

    def recovered(self, *, stacklevel: int = 2) -> None:
        """Record a round that worked: ends an outage (one INFO line), else nothing.

        Args:
            stacklevel: As for :meth:`failed`.
        """
        if not self.failed_rounds:
            return
        lasted = self._clock() - self._started
        rounds, self.failed_rounds = self.failed_rounds, 0
        self._log.info(
            "%s: working again after %.1f s (%d failed %s)",
            self.what,
            lasted,
            rounds,
            self.unit,
            extra={"loop": self.loop, "failed_rounds": rounds, "outage_seconds": lasted},
            stacklevel=stacklevel,
        )


__all__ = ["OUTAGE_REMINDER_SECONDS", "OutageLog"]
