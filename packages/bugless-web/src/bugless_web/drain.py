"""Draining: stop taking new page loads while in-flight work finishes.

On SIGTERM (Kubernetes is about to stop the pod) or an admin's action, the
replica fails ``/readyz`` so balancers stop sending it traffic, any page
load that still arrives is steered (303) to ``--steer-to`` (another instance
or another version), and every response says ``Connection: close``, so that
a balancer's or browser's kept-alive connection moves to a replica that
stays. Requests already running, and form submissions, finish normally.

After ``--drain-seconds`` the server stops accepting connections and closes
the idle ones (:mod:`bugless_web.server`); what is still running then gets
two bounds, counted from there. An ordinary request has
``--grace-seconds``. A transfer (an attachment's upload or download, a CSV
export: :meth:`InFlight.count_as_transfer`) has ``--drain-transfer-seconds``,
longer: a large file on a slow link takes minutes, and cutting it at a page's
grace is a rollout costing a person their upload. The process exits as soon
as the last request ends. A request still running at its bound is cut
(:meth:`InFlight.cut`): one that had not answered yet answers 503, one
whose body had started ends short (the connection closes), and the server
logs one line with how many it cut.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from dataclasses import dataclass, field
from typing import Any

#: The message a request's task is cancelled with when its drain bound passed.
CUT_BY_DRAIN = "cut by the server's drain"

#: Every request task a drain cut, for as long as the task lives (see :func:`cut_by_drain`).
_CUT_TASKS: weakref.WeakSet[asyncio.Task[Any]] = weakref.WeakSet()


def cut_by_drain(task: asyncio.Task[Any] | None) -> bool:
    """Whether a drain cut ``task``'s request, even after the request ended.

    For code that learns of the end elsewhere: a download's body, whose
    generator is suspended at a ``yield`` when its request is cut, is closed
    later by the event loop, in another task, where the cancellation is not
    visible; it asks about the request's task it remembered.
    """
    return task is not None and task in _CUT_TASKS


class InFlight:
    """The requests this process is running, which of them are transfers, which were cut.

    Every request runs in a task of its own (the server's); the drain
    middleware counts it from :meth:`begin` to :meth:`end`, and a transfer's route says so
    with :meth:`count_as_transfer`. The server reads the counts while it
    drains and cuts what outlasts its bound.
    """

    def __init__(self) -> None:
        #: Each running request's task: whether it is a transfer.
        self._requests: dict[asyncio.Task[Any], bool] = {}
        self._cut: set[asyncio.Task[Any]] = set()

    def begin(self) -> asyncio.Task[Any] | None:
        """Count the current task's request as running; hand the result to :meth:`end`.

        A pair of calls rather than a context manager: it runs on every
        request, and a generator-based one cost ~1 us more each.
        """
        task = asyncio.current_task()
        if task is not None:
            self._requests[task] = False
        return task

    def end(self, task: asyncio.Task[Any] | None) -> None:
        """The request :meth:`begin` counted has ended."""
        if task is not None:
            del self._requests[task]
            if self._cut:
                self._cut.discard(task)

    def count_as_transfer(self) -> None:
        """The current request is a transfer: a drain lets it run ``--drain-transfer-seconds``.

        Called by the route before the transfer starts; the mark lasts as
        long as the request (a download's body is sent by the same task).
        """
        task = asyncio.current_task()
        if task in self._requests:
            self._requests[task] = True

    def running(self) -> tuple[int, int]:
        """How many requests are running: ``(transfers, others)``."""
        transfers = sum(self._requests.values())
        return transfers, len(self._requests) - transfers

    def cut(self, *, transfers: bool) -> list[asyncio.Task[Any]]:
        """Cancel the running requests other than transfers (or, with ``transfers``, all).

        Each task is cancelled with :data:`CUT_BY_DRAIN`, which the drain
        middleware turns into an answer (:func:`was_cut`). Returns the tasks cut.
        """
        cut = [
            task
            for task, transfer in self._requests.items()
            if (transfers or not transfer) and task not in self._cut and not task.done()
        ]
        for task in cut:
            self._cut.add(task)
            _CUT_TASKS.add(task)
            task.cancel(CUT_BY_DRAIN)
        return cut

    def was_cut(self, task: asyncio.Task[Any] | None) -> bool:
        """Whether ``task``'s request was cut by :meth:`cut`."""
        return task in self._cut


@dataclass
class DrainState:
    """Whether this replica is draining, since when and why, and what it still runs.

    Attributes:
        draining: True once a drain started; never goes back by itself.
        reason: What started it ("SIGTERM", "admin alice").
        since: ``time.monotonic()`` when it started.
        requests: The requests running in this process (:class:`InFlight`).
    """

    draining: bool = False
    reason: str = ""
    since: float = 0.0
    requests: InFlight = field(default_factory=InFlight)

    def start(self, reason: str) -> None:
        """Begin draining (idempotent: the first reason is kept)."""
        if self.draining:
            return
        self.draining = True
        self.reason = reason
        self.since = time.monotonic()

    def stop(self) -> None:
        """Take traffic again (an admin cancelled the drain)."""
        self.draining = False
        self.reason = ""
        self.since = 0.0
