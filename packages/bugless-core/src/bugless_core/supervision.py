"""One supervision for every background loop: an unexpected error is seen, counted and retried.

Every service runs loops beside its requests: the Authenticator's directory
re-sync, the Model's feed pruning and attachment sweep, the CockroachDB
node-id lease, the notifier's consumer, worker and digests, the API's and
the web's users' change feed follower. Each handles the
errors it expects (the database away, a directory that does not answer). An
error it does not expect (a bug, a driver error nobody translated, a
``KeyError``) used to end the loop's task: the service went on answering
while nothing pruned, renewed or delivered, and the only trace was asyncio's
"Task exception was never retrieved", if that. What users were promised
(a notification, a lease that keeps ids unique, an account disabled in the
directory) was then silently not done.

:class:`SupervisedLoop` is the one place that decides what happens instead:

* the failure is logged **once**, at ERROR, with its traceback (on the
  ``bugless.supervision`` logger, naming the loop and the delay; a loop
  with an interval of its own waits the longer of the two, ``failed(error,
  at_least=interval)``);
* it is counted in ``bugless_background_failures_total{loop}`` and the
  streak shown in ``bugless_background_consecutive_failures{loop}`` (0 once
  a round succeeds again; a ``--workers`` web's parent serves the longest
  streak of a live worker), in the registry the service's ``/metrics``
  serves, so an alert can say "the feed pruner has failed 5 times in a row"
  rather than someone noticing a week later;
* the loop goes on after a capped exponential backoff with jitter
  (:data:`LOOP_BACKOFF`, a :class:`bugless_core.backoff.Backoff`): a step
  that keeps failing keeps being retried, never a silent exit and never a
  busy loop;
* cancellation (the service stopping) ends it at once and quietly.

Why a gauge rather than readiness: a loop that fails does not make the
service unable to answer requests (readiness follows the database, see
``bugless_core.model.runner``), and taking replicas out of rotation because
one background round hit a bug would turn a degraded feature into an outage.
The gauge is what to alert on.

Two shapes of loop use it: :meth:`SupervisedLoop.run` restarts a whole loop
body (a coroutine function that returns when the loop is asked to stop);
loops that pace themselves (a round every interval) call
:meth:`SupervisedLoop.failed` and :meth:`SupervisedLoop.succeeded` around
their round instead, and wait the delay ``failed`` returns.

The errors a loop does expect (the database, the Model, a directory away)
are an *outage*, not a bug: no traceback, no failure count, and the loop
keeps its own pace. They used to be logged on every failed round, which is a
warning a second from the notifier's consumer while the Model restarts, and
an operator scrolling past thousands of identical lines to find when it
began. :class:`OutageLog` (a loop's :attr:`SupervisedLoop.outage`, fed by
:meth:`SupervisedLoop.unavailable`) logs one WARNING with the reason when an
outage starts, a WARNING reminder at most every
:data:`OUTAGE_REMINDER_SECONDS` saying for how long, each other failed round
at DEBUG only, and one INFO line when a round works again (so the log says
how long it lasted). How long the current one has lasted is also the gauge
``bugless_background_outage_seconds{loop}`` (0: none), read from the log at
scrape time, for an alert such as "the feed consumer has been without the
Model for 5 minutes", which no log line says by itself. (A ``--workers`` web
worker is not scraped: it writes the figure for its parent every few
seconds, :meth:`BackgroundMetrics.write_outages`.)
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import random
import weakref
from collections.abc import Awaitable, Callable

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge

from bugless_core.backoff import Backoff
from bugless_core.outage import OUTAGE_REMINDER_SECONDS, OutageLog

_log = logging.getLogger("bugless.supervision")

_BY_REGISTRY: weakref.WeakKeyDictionary[CollectorRegistry, BackgroundMetrics] = (
    weakref.WeakKeyDictionary()
)


@dataclasses.dataclass(frozen=True)
class BackgroundMetrics:
    """The background loops' metrics, bound to one registry.

    Attributes:
        failures: Unexpected failures, by loop name.
        consecutive: Failures since the loop's last successful round, by loop
            name (0: healthy).
        outage_seconds: How long the loop's current expected outage has
            lasted, by loop name (0: none now), read from its
            :class:`~bugless_core.outage.OutageLog` at scrape time; in a
            process whose registry is not scraped (a ``--workers`` web
            worker), written by :meth:`write_outages`.
        outages: The outage log of each loop registered here, by loop name
            (weakly: a loop that is gone reads 0).
    """

    failures: Counter
    consecutive: Gauge
    outage_seconds: Gauge
    outages: dict[str, weakref.ref[OutageLog]] = dataclasses.field(default_factory=dict)

    @classmethod
    def for_registry(cls, registry: CollectorRegistry) -> BackgroundMetrics:
        """The metrics registered in ``registry``, registering them the first time.

        Several loops (and several services in one test process) share a
        registry; prometheus_client refuses a name registered twice.
        """
        metrics = _BY_REGISTRY.get(registry)
        if metrics is None:
            metrics = cls(
                failures=Counter(
                    "bugless_background_failures_total",
                    "Unexpected failures of a background loop (logged with a traceback; "
                    "the loop was retried), by loop.",
                    ["loop"],
                    registry=registry,
                ),
                consecutive=Gauge(
                    "bugless_background_consecutive_failures",
                    "Failures of a background loop since its last successful round, by loop "
                    "(0: healthy).",
                    ["loop"],
                    registry=registry,
                    # Merged over a --workers web's workers: the longest
                    # streak of a live one. A series per worker (the default)
                    # outlived its worker, so one that exited mid-streak kept
                    # BuglessBackgroundLoopFailing firing while the parent ran.
                    multiprocess_mode="livemax",
                ),
                outage_seconds=Gauge(
                    "bugless_background_outage_seconds",
                    "How long a background loop's current expected outage (the database, the "
                    "Model, a directory away; logged once when it starts) has lasted, by loop "
                    "(0: none now).",
                    ["loop"],
                    registry=registry,
                    # Merged over a --workers web's workers: the longest
                    # outage of a live one (a worker's value leaves with it).
                    multiprocess_mode="livemax",
                ),
            )
            _BY_REGISTRY[registry] = metrics
        return metrics

    def write_outages(self) -> None:
        """Write each loop's current outage length into the gauge's stored value.

        The gauge reads the outage logs at scrape time (a function), which
        only works where the registry is scraped. A ``--workers`` web's parent
        serves its workers' prometheus_client multiprocess files instead,
        which hold values a worker wrote and run no function: without this,
        it served 0 for an outage of any length. A worker calls this on a
        timer (``bugless_web.server``), so the parent's figure is as old as
        the last call; elsewhere it is harmless and unneeded.
        """
        for name, outage in list(self.outages.items()):
            self.outage_seconds.labels(name).set(_outage_seconds(outage))


#: The supervised loops' delays: 1 s after the first failure, doubling to a
#: minute, with a floor of half of each (a loop failing on a bug must never
#: spin, and its log says "next try in ... at the earliest").
LOOP_BACKOFF = Backoff(first_seconds=1.0, max_seconds=60.0, jitter=0.5)


def _outage_seconds(outage: weakref.ref[OutageLog]) -> float:
    """The current outage's length of a loop's outage log, or 0 (none, or the loop is gone)."""
    log = outage()
    return 0.0 if log is None else log.seconds


class SupervisedLoop:
    """The supervision of one named background loop (see the module).

    Args:
        name: The loop's name in logs and in the ``loop`` label: short, fixed,
            one per kind of loop (``"auth.directory_resync:ldap"``), never
            per request or per user.
        backoff: The delays between retries (default :data:`LOOP_BACKOFF`).
        registry: Where the metrics go: the registry the service's
            ``/metrics`` serves (the process default unless a test runs its
            own).
        draw: The jitter's random source (:meth:`Backoff.delay`).
        outage: How the loop's expected outages are logged (default: an
            :class:`OutageLog` named after the loop, on
            ``bugless.supervision``); its ``loop`` field is set to ``name``
            when it has none of its own.

    Attributes:
        consecutive_failures: Failures since the last successful round.
        last_failure: The latest unexpected exception (kept after a success,
            for a status page or a test).
        outage: See ``outage`` above; :meth:`unavailable` feeds it and
            :meth:`succeeded` ends it.
    """

    def __init__(
        self,
        name: str,
        *,
        backoff: Backoff | None = None,
        registry: CollectorRegistry = REGISTRY,
        draw: Callable[[], float] = random.random,
        outage: OutageLog | None = None,
    ) -> None:
        self.name = name
        if outage is None:
            outage = OutageLog(name)
        elif outage.loop == outage.what:
            outage.loop = name
        self.outage = outage
        self.backoff = backoff or LOOP_BACKOFF
        self._draw = draw
        metrics = BackgroundMetrics.for_registry(registry)
        self._failures = metrics.failures.labels(name)
        self._consecutive = metrics.consecutive.labels(name)
        self._consecutive.set(0)
        # Read at scrape time; weakly, so a loop that is gone reads 0 rather
        # than an outage growing for ever (a lease's renewal ends with its lease).
        reference = weakref.ref(outage)
        metrics.outage_seconds.labels(name).set_function(
            functools.partial(_outage_seconds, reference)
        )
        metrics.outages[name] = reference
        self.consecutive_failures = 0
        self.last_failure: BaseException | None = None

    def failed(self, error: BaseException, *, at_least: float = 0.0) -> float:
        """Record an unexpected failure; returns how long to wait before the next round.

        Call it from the ``except`` block that caught ``error``: the log
        record carries its traceback.

        Args:
            error: What the round raised.
            at_least: The loop's own interval, for a loop that paces itself:
                it waits the longer of that and the backoff, so a failure
                never brings its next round forward.
        """
        self.consecutive_failures += 1
        self.last_failure = error
        self._failures.inc()
        self._consecutive.set(self.consecutive_failures)
        delay = max(at_least, self.backoff.delay(self.consecutive_failures, self._draw))
        _log.error(
            "background loop %s failed (%d in a row); next try in %.1f s",
            self.name,
            self.consecutive_failures,
            delay,
            exc_info=error,
            extra={"loop": self.name, "consecutive_failures": self.consecutive_failures},
        )
        return delay

    def unavailable(self, error: BaseException | str, *, during: str = "") -> None:
        """Record a round that failed on an error the loop expects (an outage).

        Nothing is counted and no backoff is computed (the loop keeps its own
        pace); the log is :class:`OutageLog`'s: a WARNING when the outage
        starts, a reminder now and then, an INFO line at :meth:`succeeded`.
        """
        self.outage.failed(error, during=during, stacklevel=3)

    def succeeded(self) -> None:
        """Record a round that worked: the streak (and the gauge) goes back to 0, an outage ends.

        Cheap enough to call on every round (nothing is done while healthy).
        """
        if self.consecutive_failures:
            self.consecutive_failures = 0
            self._consecutive.set(0)
        self.outage.recovered(stacklevel=3)

    async def run(
        self, body: Callable[[], Awaitable[None]], *, stop: asyncio.Event | None = None
    ) -> None:
        """Run ``body()`` until it returns; after an unexpected exception, again after a backoff.

        ``body`` is the whole loop: it returns when the loop was asked to
        stop, and should call :meth:`succeeded` after each good round (else
        the streak resets only when ``body`` returns). Its own handling of
        the errors it expects stays in it; what escapes it is unexpected.

        Args:
            body: Starts the loop afresh on each call.
            stop: When set, a backoff wait ends at once and :meth:`run`
                returns instead of restarting ``body`` (the loop's own stop
                request, so a stopping service does not wait out a backoff).

        Raises:
            asyncio.CancelledError: cancelled; nothing is logged.
        """
        while stop is None or not stop.is_set():
            try:
                await body()
            except Exception as exc:
                delay = self.failed(exc)
            else:
                self.succeeded()
                return
            if stop is None:
                await asyncio.sleep(delay)
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)


__all__ = [
    "LOOP_BACKOFF",
    "OUTAGE_REMINDER_SECONDS",
    "BackgroundMetrics",
    "OutageLog",
    "SupervisedLoop",
]
