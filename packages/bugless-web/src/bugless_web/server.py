"""Serving the app with uvicorn, with a drain phase before shutdown.

uvicorn alone stops accepting connections the moment SIGTERM arrives; a
Kubernetes rollout wants more: first fail readiness while the endpoint is
removed from the Service (and steer page loads elsewhere), then stop
accepting, then let in-flight requests finish: ordinary ones within
``--grace-seconds``, transfers (uploads, downloads) within the longer
``--drain-transfer-seconds`` (:mod:`bugless_web.drain`). This module
installs its own signal handlers to do exactly that; a second SIGTERM (or
SIGINT) ends the wait, cutting what still runs as its bound would, and the
process then exits with ``EXIT_CUT_AT_SIGNAL`` (:mod:`bugless_core.exit_status`,
the gRPC services' status too) if that cut any request.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import math
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import uvicorn

from bugless_core import tracing
from bugless_core.exit_status import EXIT_CUT_AT_SIGNAL
from bugless_core.garbage_collector import settle_garbage_collector
from bugless_core.metrics_endpoint import MetricsEndpoint
from bugless_core.networks import IPNetwork
from bugless_core.ready_file import write_ready_file
from bugless_core.service_address import host_port
from bugless_web.app import create_app
from bugless_web.frontend import Frontend
from bugless_web.http_protocol import HeadHoldingHttpToolsProtocol
from bugless_web.metrics import default_registry, workers_registry
from bugless_web.settings import WebSettings

_log = logging.getLogger("bugless.web")

#: How often a worker under a ``--workers N`` parent writes its connections'
#: flow-control windows and its loops' outage lengths for the parent's
#: ``/metrics`` (a single process reads them at scrape time instead): often
#: enough for an alert over minutes, rare enough to cost nothing.
WINDOWS_REFRESH_SECONDS = 5.0
#: How long past the transfer bound uvicorn itself cancels what is left: only
#: a request that ignored being cut (:meth:`DrainingServer.shutdown`) meets it.
BACKSTOP_SECONDS = 5
#: After a second SIGTERM/SIGINT, how long the requests it cut get to answer
#: (a 503 takes a loop turn or two), and then the app to shut down (it closes
#: its channels), before the process exits regardless.
FORCED_CUT_SECONDS = 1.0


def forwarded_allow_ips(networks: tuple[IPNetwork, ...]) -> list[str]:
    """The value of uvicorn's ``forwarded_allow_ips`` for the trusted proxies' ``networks``.

    uvicorn (0.31 and later) believes ``X-Forwarded-For`` and
    ``X-Forwarded-Proto`` only from a peer in these networks, and takes as
    the client the rightmost address of ``X-Forwarded-For`` outside them, so
    no middleware of ours is needed. Two things it does not do are done
    here: every value is a network (an address as a ``/32`` or ``/128``; a
    text it could not parse it would keep as a literal that never matches,
    silently, which the settings refuse before this), and an IPv4 network
    also names its IPv4-mapped IPv6 form (``::ffff:10.0.0.0/104``), the
    address a proxy has when the replica listens on ``::`` (dual stack);
    uvicorn compares an IPv6 address with IPv4 networks as unequal.
    """
    allowed: list[str] = []
    for network in networks:
        allowed.append(str(network))
        if isinstance(network, ipaddress.IPv4Network):
            mapped = ipaddress.IPv6Address(f"::ffff:{network.network_address}")
            allowed.append(str(ipaddress.IPv6Network((mapped, 96 + network.prefixlen))))
    return allowed


class StartupSignals:
    """SIGTERM and SIGINT that arrive before the server handles them, for it to handle then.

    uvicorn installs its handlers only once it runs, after the app is made;
    a signal before that, with Python's default handlers, killed the process
    (SIGTERM: by the signal; SIGINT: a KeyboardInterrupt traceback), so a
    replica stopped while starting, or a ``--workers`` worker started again
    just before the pod's SIGTERM, ended as a crash. Installed first thing,
    these handlers only record the signal; :class:`DrainingServer` handles
    what they recorded as soon as its own handlers are in place (a drain,
    or an exit now for a second signal), so no signal falls in between.
    """

    def __init__(self) -> None:
        #: The signals received so far, in order.
        self.received: list[int] = []

    def install(self) -> None:
        """Record SIGTERM and SIGINT from now on (until the server installs its handlers)."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._record)

    def _record(self, sig: int, _frame: FrameType | None) -> None:
        self.received.append(sig)


class DrainingServer(uvicorn.Server):
    """A uvicorn server whose SIGTERM starts a drain instead of an exit.

    Once it listens it settles the process's garbage collector
    (:func:`bugless_core.garbage_collector.settle_garbage_collector`) and
    writes the ready file, if one is configured.
    """

    def __init__(
        self,
        config: uvicorn.Config,
        frontend: Frontend | None,
        drain_seconds: float,
        *,
        grace_seconds: float = 0.0,
        transfer_seconds: float = 0.0,
        ready_file: Path | None = None,
        metrics_port: int | None = None,
        metrics_endpoint: MetricsEndpoint | None = None,
        worker_windows: bool = False,
        startup_signals: StartupSignals | None = None,
        ready_pipe: int | None = None,
    ) -> None:
        """A server that drains; ``metrics_*`` say where ``/metrics`` is.

        ``metrics_port`` goes in the ready file; ``metrics_endpoint`` is this
        process's own, stopped after the last request (none under a parent).
        ``worker_windows``: a worker whose parent serves ``/metrics`` writes
        its connections' windows and its loops' outage lengths for it every
        :data:`WINDOWS_REFRESH_SECONDS`. ``startup_signals``: the signals
        received before it runs, handled as soon as it does. ``ready_pipe``: a
        ``--workers`` worker's, to tell its parent that it serves (a byte, once
        it listens; then closed).
        Once it stops accepting, ordinary requests have ``grace_seconds`` and
        transfers ``transfer_seconds`` (not less) to finish; ``config``'s
        ``timeout_graceful_shutdown`` is set past both, as a backstop.
        """
        transfer_seconds = max(grace_seconds, transfer_seconds)
        config.timeout_graceful_shutdown = math.ceil(transfer_seconds) + BACKSTOP_SECONDS
        super().__init__(config)
        self._frontend = frontend
        self._drain_seconds = drain_seconds
        self._grace_seconds = grace_seconds
        self._transfer_seconds = transfer_seconds
        self._ready_file = ready_file
        self._metrics_port = metrics_port
        self._metrics_endpoint = metrics_endpoint
        self._timer: threading.Timer | None = None
        self._worker_windows = worker_windows
        self._windows_task: asyncio.Task[None] | None = None
        self._startup_signals = startup_signals
        self._ready_pipe = ready_pipe
        #: How many requests the second signal cut (:meth:`_cut_at_once`).
        self.cut_at_signal = 0

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Install uvicorn's SIGTERM/SIGINT handlers, then handle the signals received before."""
        with super().capture_signals():
            if self._startup_signals is not None:
                for sig in self._startup_signals.received[:2]:
                    _log.info(
                        "%s arrived while the server was starting; handling it now",
                        signal.Signals(sig).name,
                    )
                    self.handle_exit(sig, None)
            yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """Listen (uvicorn), then say where: the log line and the ready file."""
        await super().startup(sockets=sockets)
        if not self.started:
            return
        settle_garbage_collector()
        if self._worker_windows:
            self._windows_task = asyncio.create_task(_write_connection_windows())
        host, port = self.servers[0].sockets[0].getsockname()[:2]
        metrics_port = self._metrics_port
        _log.info(
            "serving HTTP on %s",
            host_port(host, port),
            extra={"port": port, "metrics_port": metrics_port},
        )
        if self._ready_file is not None:
            write_ready_file(self._ready_file, port=port, metrics_port=metrics_port)
        if self._ready_pipe is not None:
            os.write(self._ready_pipe, b"1")
            os.close(self._ready_pipe)
            self._ready_pipe = None

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """Stop accepting, finish the requests within their bounds, then stop serving ``/metrics``.

        uvicorn closes the listener and the idle connections, and waits for
        the busy ones to answer and close; meanwhile :meth:`_cut_when_due`
        cuts an ordinary request still running ``grace_seconds`` later and a
        transfer ``transfer_seconds`` later. Returns as soon as the last
        request ended.
        """
        cutting = None
        if self._frontend is not None and not self.force_exit:
            cutting = asyncio.create_task(self._cut_when_due(self._frontend))
        try:
            await super().shutdown(sockets=sockets)
        finally:
            if cutting is not None:
                cutting.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await cutting
            if self.force_exit and self._frontend is not None:
                await self._cut_at_once(self._frontend)
                # uvicorn skips the app's shutdown on a forced exit, leaving
                # its lifespan task to be cancelled (a traceback); the
                # requests are cut, so it has nothing to wait for.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(FORCED_CUT_SECONDS):
                        await self.lifespan.shutdown()
            if self._windows_task is not None:
                self._windows_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._windows_task
            if self._metrics_endpoint is not None:
                await self._metrics_endpoint.stop()

    async def _cut_when_due(self, frontend: Frontend) -> None:
        """Cut what outlasts its bound, counted from now (stopping accepting); log it once each."""
        requests = frontend.drain.requests
        started = time.monotonic()
        transfers, others = requests.running()
        _log.info(
            "stopped accepting; waiting up to %gs for %d transfer(s), %gs for %d other request(s)",
            self._transfer_seconds,
            transfers,
            self._grace_seconds,
            others,
            extra={"transfers": transfers, "requests": others},
        )
        try:
            await asyncio.sleep(self._grace_seconds)
            cut = requests.cut(transfers=False)
            if cut:
                _log.warning(
                    "cut %d request(s) still running %gs after the server stopped accepting",
                    len(cut),
                    self._grace_seconds,
                    extra={"cut_requests": len(cut)},
                )
            await asyncio.sleep(self._transfer_seconds - self._grace_seconds)
            cut = requests.cut(transfers=True)
            if cut:
                _log.warning(
                    "cut %d transfer(s) still running %gs after the server stopped accepting "
                    "(--drain-transfer-seconds)",
                    len(cut),
                    self._transfer_seconds,
                    extra={"cut_transfers": len(cut)},
                )
            # Wait to be cancelled (by shutdown) once uvicorn saw them end.
            await asyncio.Event().wait()
        finally:
            if not self.force_exit:  # else they did not end: _cut_at_once cuts them
                _log.info(
                    "the last request ended %.1fs after the server stopped accepting",
                    time.monotonic() - started,
                    extra={"drained_seconds": round(time.monotonic() - started, 3)},
                )

    async def _cut_at_once(self, frontend: Frontend) -> None:
        """After a second signal: cut every request still running, transfers too; log it once.

        uvicorn stops waiting for them, and the process would end with them
        cancelled mid-way: a 500 from uvicorn and a traceback in the log for
        each. Cut by the drain instead, each answers as at its bound (a 503
        saying why, or a body ended short), within :data:`FORCED_CUT_SECONDS`.
        """
        cut = frontend.drain.requests.cut(transfers=True)
        self.cut_at_signal = len(cut)
        if not cut:
            return
        _log.warning(
            "cut %d request(s) still running at the second signal",
            len(cut),
            extra={"cut_requests": len(cut)},
        )
        await asyncio.wait(cut, timeout=FORCED_CUT_SECONDS)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """SIGTERM/SIGINT: drain, then exit gracefully; a second signal exits now.

        After a second signal the server waits for nothing: what still runs
        is cut at once (:meth:`_cut_at_once`), transfers too, and the process
        exits. uvicorn calls this from its signal handler. Stopping is a flag its
        main loop polls, so a timer thread may set it after the drain period.
        """
        name = signal.Signals(sig).name
        if self._timer is not None:
            _log.warning("second %s: exiting now", name)
            self.force_exit = True
            self.should_exit = True
            return
        _log.info(
            "%s: draining for %.1fs, then finishing in-flight requests", name, self._drain_seconds
        )
        if self._frontend is not None:
            self._frontend.drain.start(name)
        self._timer = threading.Timer(self._drain_seconds, self._stop_accepting)
        self._timer.daemon = True
        self._timer.start()

    def _stop_accepting(self) -> None:
        self.should_exit = True


async def _write_connection_windows() -> None:
    """Write this worker's scrape-time figures for its parent's ``/metrics``, until cancelled.

    The parent serves the workers' multiprocess files, which carry no
    collector and run no gauge function: the connection windows
    (:class:`bugless_core.grpc.ConnectionWindowGauges`) and the background
    loops' outage lengths (``bugless_background_outage_seconds``,
    :meth:`bugless_core.supervision.BackgroundMetrics.write_outages`) are
    written every :data:`WINDOWS_REFRESH_SECONDS`. Supervised: a bug here is
    logged and counted, and the writing retried.
    """
    from prometheus_client import REGISTRY  # noqa: PLC0415 - after prepare_workers

    from bugless_core.grpc import ConnectionWindowGauges  # noqa: PLC0415
    from bugless_core.supervision import BackgroundMetrics, SupervisedLoop  # noqa: PLC0415

    supervision = SupervisedLoop("web.connection_windows")
    loops = BackgroundMetrics.for_registry(REGISTRY)

    async def write() -> None:
        gauges = ConnectionWindowGauges()
        while True:
            gauges.refresh()
            loops.write_outages()
            supervision.succeeded()
            await asyncio.sleep(WINDOWS_REFRESH_SECONDS)

    await supervision.run(write)


def bind_metrics(
    settings: WebSettings, metrics_directory: Path | None = None
) -> MetricsEndpoint | None:
    """Bind the ``/metrics`` port ``settings`` ask for (serving starts later); None if none.

    Bound before any page is served, so that a port in use stops the start
    with the reason. ``metrics_directory``: the workers' files
    (:func:`bugless_web.metrics.prepare_workers`), whose sum the parent serves;
    ``None`` for a process of its own, which serves its own values.

    Raises:
        OSError: The address cannot be bound.
    """
    if settings.metrics_port is None:
        return None
    if metrics_directory is None:
        registry = default_registry()
        # This process's channels to the Model and Authenticator: their
        # flow-control windows, read at scrape time (a wedged connection shows
        # as a minimum stuck near 0). A --workers N parent serves the windows
        # its workers write (DrainingServer's worker_windows). Imported here:
        # prometheus_client must not be imported before a --workers parent
        # has set up the workers' metrics files.
        from bugless_core.grpc import register_connection_windows  # noqa: PLC0415

        register_connection_windows(registry)
    else:
        registry = workers_registry(metrics_directory)
    endpoint = MetricsEndpoint(registry)
    endpoint.bind(settings.metrics_host, settings.metrics_port)
    return endpoint


def serve(
    settings: WebSettings,
    listener: socket.socket | None = None,
    *,
    metrics: MetricsEndpoint | None = None,
    parent_metrics_port: int | None = None,
    early_signals: StartupSignals | None = None,
    ready_pipe: int | None = None,
) -> int:
    """Run one replica until SIGTERM (then drain) or SIGINT; the exit status.

    The status is 0, or :data:`~bugless_core.exit_status.EXIT_CUT_AT_SIGNAL`
    when a second signal cut requests still running.

    Args:
        settings: The replica's settings.
        listener: The listening socket (:func:`listen`); one is bound from
            ``settings`` when not given.
        metrics: This process's bound ``/metrics`` (:func:`bind_metrics`),
            served from here on and stopped after the last request.
        parent_metrics_port: In a worker: the port on which the parent serves
            every worker's metrics (:func:`bugless_web.workers.serve_workers`).
        early_signals: Installed by the caller before anything that takes
            time (a forked worker's first step); else installed here. A
            SIGTERM from then on drains the replica once it serves.
        ready_pipe: In a worker: where it tells the parent that it serves.
    """
    if early_signals is None:
        early_signals = StartupSignals()
        early_signals.install()
    if listener is None:
        listener = listen(settings.host, settings.port, reuse_port=settings.reuse_port)
    tracing.configure("web")
    app = create_app(settings)
    frontend: Frontend = app.state["frontend"]
    trusted = forwarded_allow_ips(settings.proxy_networks)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        # Forwarding headers only from --trusted-proxy peers (none: not read
        # at all); never uvicorn's own default, which reads FORWARDED_ALLOW_IPS.
        proxy_headers=bool(trusted),
        forwarded_allow_ips=trusted,
        log_config=None,
        server_header=False,
        # uvloop and httptools: the C event loop every bugless process runs on
        # (bugless_core.eventloop) and the C HTTP/1.1 parser, writing a
        # response's head and body as one write (bugless_web.http_protocol).
        loop="uvloop",
        http=HeadHoldingHttpToolsProtocol,
    )
    metrics_port = parent_metrics_port
    if metrics is not None:
        metrics.run()
        metrics_port = metrics.port
    server = DrainingServer(
        config,
        frontend,
        settings.drain_seconds,
        grace_seconds=settings.grace_seconds,
        transfer_seconds=settings.drain_transfer_seconds,
        # A worker tells its parent instead, which writes the file once all serve.
        ready_file=settings.ready_file if ready_pipe is None else None,
        metrics_port=metrics_port,
        metrics_endpoint=metrics,
        worker_windows=parent_metrics_port is not None,
        startup_signals=early_signals,
        ready_pipe=ready_pipe,
    )
    server.run(sockets=[listener])
    return EXIT_CUT_AT_SIGNAL if server.cut_at_signal else 0


def listen(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: one the kernel picks).

    The web tier binds its socket itself and hands it to uvicorn, so that the
    port is known once bound (uvicorn reports none it chose) and so that
    ``SO_REUSEPORT`` can be set, which uvicorn has no option for: with it,
    several processes bind the same port and the kernel spreads new
    connections over them.

    Raises:
        OSError: the address cannot be bound (in use, not local, ...).
    """
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock
