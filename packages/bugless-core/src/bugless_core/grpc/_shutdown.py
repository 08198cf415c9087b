"""How a gRPC service runner stops: the drain Kubernetes needs, then the close.

On SIGTERM a runner reports NOT_SERVING and keeps serving for
``drain_seconds`` (so balancers take the pod out of rotation first), then
stops accepting, lets in-flight calls finish for up to ``grace_seconds`` (and
attachment transfers for up to ``drain_transfer_seconds``, with
:class:`~bugless_core.grpc.TransferServerSettings`), tells the clients that
honour an HTTP/2 graceful GOAWAY to take their next calls elsewhere
(:mod:`bugless_core.grpc._goaway`), keeps refusing new calls on the open
connections for at least :data:`CLOSE_LINGER_SECONDS` from the stop (so that
a call already on its way is refused, and sent elsewhere, rather than cut
off), then closes. :class:`Shutdown` is that sequence, for one runner
(:class:`~bugless_core.grpc.GrpcServiceRunner`, which starts the server and
hands it over); the listening socket it closes first is also where
:func:`listening_port` reads the port.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from grpclib.health.check import ServiceStatus
from grpclib.server import Server

from bugless_core._compat.grpclib import server_listener
from bugless_core.grpc._calls import CallTracker
from bugless_core.grpc._client_ca_reload import ClientCaReload
from bugless_core.grpc._peer import ConnectionRegistry
from bugless_core.grpc._settings import GrpcServerSettings
from bugless_core.metrics_endpoint import MetricsEndpoint

logger = logging.getLogger("bugless_core.grpc")

#: How long, from the moment a draining server stops accepting, it keeps its
#: open connections (within ``grace_seconds``) even once no call is left on
#: them, refusing every new call as DRAINING. A client learns that a
#: connection is closed only when its event loop reads the close: a call it
#: sends before then (a busy frontend's next call, or a late loop's on a
#: loaded machine) meets a closed connection and fails with "Connection
#: lost", which no client may send again (it may have run). Refused instead,
#: it is sent again on a new connection (:mod:`bugless_core.failover`), and
#: every client that calls at least once in this time has left before the
#: close. Ends early once the clients have closed every connection.
CLOSE_LINGER_SECONDS = 1.0
#: Upper bound on waiting for grpclib to finish closing once calls are
#: cancelled.
_CLOSE_TIMEOUT_SECONDS = 2.0


def _listener(server: Server) -> asyncio.Server:
    # grpclib 0.4 has no public way to stop listening without also cancelling
    # every running call (Server.close does both), so drain reaches the asyncio
    # (or uvloop) server underneath to close only the listening sockets.
    listener = server_listener(server)
    if listener is None:
        raise RuntimeError("the server is not started")
    return listener


def listening_port(server: Server) -> int:
    """The port a started grpclib ``server`` listens on (after ``start(host, 0)``).

    Tests and benchmarks bind port 0 and need the port the kernel chose;
    grpclib keeps its listener private, so this is the one public way.

    Raises:
        RuntimeError: the server is not started.
    """
    return int(_listener(server).sockets[0].getsockname()[1])


async def wait_for_any(*events: asyncio.Event, seconds: float | None) -> None:
    """Return when one of ``events`` is set or after ``seconds`` (``None``: never)."""
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        async with asyncio.timeout(seconds):
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    except TimeoutError:
        pass
    finally:
        for waiter in waiters:
            waiter.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)


class Shutdown:
    """The drain and close of one runner's server (see the module docstring).

    Attributes:
        closed: Set once the server is closed.
    """

    def __init__(
        self,
        *,
        name: str,
        settings: GrpcServerSettings,
        statuses: Sequence[ServiceStatus],
        tracker: CallTracker,
        connections: ConnectionRegistry,
        metrics_endpoint: MetricsEndpoint,
    ) -> None:
        """The sequence of the runner ``name``; nothing runs before :meth:`drain` or :meth:`close`.

        Args:
            name: The service's name in logs.
            settings: The drain timings.
            statuses: The health statuses set NOT_SERVING first.
            tracker: The calls in flight, and what refuses new ones.
            connections: The connections accepted, kept and closed alike.
            metrics_endpoint: The ``/metrics`` endpoint, stopped at the close.
        """
        self._name = name
        self._settings = settings
        self._statuses = statuses
        self._tracker = tracker
        self._connections = connections
        self._metrics_endpoint = metrics_endpoint
        self._draining = False
        self._stop_now = asyncio.Event()
        self.closed = asyncio.Event()
        #: Calls a drain cancelled at the grace to let transfers go on alone.
        self._cut_at_grace = 0
        #: Calls still running when :meth:`stop_now` cut the drain short.
        self._cut_at_signal = 0

    @property
    def draining(self) -> bool:
        """Whether a drain (or close) has begun: the server is on its way out."""
        return self._draining

    @property
    def cut_at_signal(self) -> int:
        """Calls cancelled at close because :meth:`stop_now` skipped their wait."""
        return self._cut_at_signal

    def stop_now(self) -> None:
        """Make a running :meth:`drain` skip its remaining waits and close now."""
        self._stop_now.set()

    async def drain(self, server: Server, client_cas: ClientCaReload | None) -> None:
        """Shut ``server`` down gracefully; return when it is closed.

        In order: report NOT_SERVING for every service; keep serving for
        ``drain_seconds``; stop accepting connections, send a graceful
        GOAWAY to the clients known to honour one
        (:mod:`bugless_core.grpc._goaway`), and answer new calls on
        existing connections with UNAVAILABLE; wait up to ``grace_seconds`` for
        the calls in progress; if transfers (attachment uploads and downloads)
        are still running then, cancel the other calls (each stream reset, as
        the close would end them) and wait for the transfers up to
        ``drain_transfer_seconds`` (counted from the same moment; with
        :class:`~bugless_core.grpc.TransferServerSettings`, else the grace
        ends them too); keep the connections open, refusing, until
        :data:`CLOSE_LINGER_SECONDS` (at most ``grace_seconds``) have passed
        since the stop, unless their clients closed them all; cancel what
        is left and close (:meth:`close`, which stops ``client_cas`` too), as
        soon as nothing is left to wait for. :meth:`stop_now` (a second
        signal) skips the remaining waits. Calling it again, or while it
        runs, waits for the same shutdown.
        """
        if self._draining:
            await self.closed.wait()
            return
        self._draining = True
        settings = self._settings
        for status in self._statuses:
            status.set(False)
        logger.info(
            "%s draining: NOT_SERVING for %.1fs before it stops accepting calls",
            self._name,
            settings.drain_seconds,
            extra={"service": self._name, "drain_seconds": settings.drain_seconds},
        )
        await wait_for_any(self._stop_now, seconds=settings.drain_seconds)

        self._stop_accepting(server)
        logger.info(
            "%s stopped accepting calls; waiting up to %.1fs for %d in flight",
            self._name,
            settings.grace_seconds,
            self._tracker.blocking_drain,
            extra={
                "service": self._name,
                "grace_seconds": settings.grace_seconds,
                "in_flight": self._tracker.blocking_drain,
            },
        )
        stopped = asyncio.get_running_loop().time()
        tracker = self._tracker
        await wait_for_any(tracker.idle, self._stop_now, seconds=settings.grace_seconds)
        longer = settings.transfer_bound_seconds - settings.grace_seconds
        if longer > 0 and tracker.transfers and not self._stop_now.is_set():
            # The other calls end at the grace, as they would without transfers.
            cut = await tracker.cancel_all_but_transfers()
            self._cut_at_grace += cut
            logger.info(
                "%s: %d transfer(s) still running after the grace; waiting up to %.1fs more;"
                " cancelled the %d other call(s)",
                self._name,
                tracker.transfers,
                longer,
                cut,
                extra={
                    "service": self._name,
                    "transfers": tracker.transfers,
                    "cancelled_calls": cut,
                },
            )
            await wait_for_any(tracker.transfers_idle, self._stop_now, seconds=longer)
        logger.info(
            "%s: in-flight calls waited for %.1fs",
            self._name,
            asyncio.get_running_loop().time() - stopped,
            extra={"service": self._name},
        )
        await self._linger(until=stopped + min(CLOSE_LINGER_SECONDS, settings.grace_seconds))
        await self.close(server, client_cas)

    async def _linger(self, *, until: float) -> None:
        """Keep refusing on the open connections until ``until`` (loop time), unless none is left.

        See :data:`CLOSE_LINGER_SECONDS`. :meth:`stop_now` ends it.
        """
        loop = asyncio.get_running_loop()
        began = loop.time()
        kept = self._connections.open_count()
        while (
            self._connections.open_count()
            and not self._stop_now.is_set()
            and (left := until - loop.time()) > 0
        ):
            await wait_for_any(self._stop_now, seconds=min(left, 0.05))
        if kept:
            logger.info(
                "%s: kept %d connection(s) open %.2fs more, refusing new calls, before closing",
                self._name,
                kept,
                loop.time() - began,
                extra={"service": self._name, "connections": kept},
            )

    async def close(self, server: Server, client_cas: ClientCaReload | None) -> None:
        """Stop at once: cancel calls in progress, close connections and ports.

        The drain's last step, and all of a runner's close. Idempotent.
        """
        if self.closed.is_set():
            return
        self._draining = True
        for status in self._statuses:
            status.set(False)
        self._stop_accepting(server)
        if client_cas is not None:
            await client_cas.stop()
        cancelled = self._tracker.blocking_drain + self._cut_at_grace
        if self._stop_now.is_set():
            self._cut_at_signal = self._tracker.blocking_drain
        transfers = self._tracker.transfers
        server.close()
        self._connections.close_all()
        try:
            await asyncio.wait_for(server.wait_closed(), _CLOSE_TIMEOUT_SECONDS)
        except TimeoutError:
            logger.warning(
                "%s: gRPC handlers still running %.1fs after being cancelled",
                self._name,
                _CLOSE_TIMEOUT_SECONDS,
                extra={"service": self._name},
            )
        await self._metrics_endpoint.stop()
        self.closed.set()
        log = logger.warning if cancelled else logger.info
        log(
            "%s stopped; %d calls were cancelled, %d of them transfers",
            self._name,
            cancelled,
            transfers,
            extra={
                "service": self._name,
                "cancelled_calls": cancelled,
                "cancelled_transfers": transfers,
            },
        )

    def _stop_accepting(self, server: Server) -> None:
        _listener(server).close()
        if self._tracker.refusing:
            return
        gone_away = self._tracker.refuse_new_calls()
        if gone_away:
            logger.info(
                "%s sent a graceful GOAWAY on %d connection(s): their clients open "
                "no more calls here and finish the ones running",
                self._name,
                gone_away,
                extra={"service": self._name, "goaway_connections": gone_away},
            )
