"""The runner every bugless gRPC service is served with.

It puts together what DESIGN §6 asks of every service (health, reflection,
Prometheus metrics, structured logs, TLS/mTLS, access checks) and starts the
server; its shutdown sequence, the drain Kubernetes needs and the close, is
:mod:`bugless_core.grpc._shutdown`'s, which it hands the server to.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from google.protobuf.descriptor_pool import DescriptorPool
from grpclib.health.check import CheckBase, ServiceStatus
from grpclib.health.service import Health
from grpclib.server import Server
from prometheus_client import REGISTRY, CollectorRegistry

from bugless_core import tracing
from bugless_core._compat.grpclib import IServable
from bugless_core.exit_status import EXIT_CUT_AT_SIGNAL
from bugless_core.garbage_collector import settle_garbage_collector
from bugless_core.grpc._access import AccessRules
from bugless_core.grpc._calls import CallTracker
from bugless_core.grpc._client_ca_reload import ClientCaReload
from bugless_core.grpc._cork import CorkedServer
from bugless_core.grpc._metrics import GrpcServerMetrics, MetricsEndpoint, split_method_name
from bugless_core.grpc._peer import ConnectionRegistry
from bugless_core.grpc._reflection import with_reflection
from bugless_core.grpc._settings import GrpcServerSettings
from bugless_core.grpc._shutdown import Shutdown, listening_port, wait_for_any
from bugless_core.grpc._tls import build_server_ssl_context
from bugless_core.ready_file import write_ready_file
from bugless_core.service_address import host_port
from bugless_proto import DESCRIPTOR_POOL

logger = logging.getLogger("bugless_core.grpc")

#: Calls that never end on their own: a drain does not wait for them (they get
#: the NOT_SERVING update, for ``Watch``, and are cancelled at close).
_LONG_LIVED_METHODS = frozenset(
    {
        "/grpc.health.v1.Health/Watch",
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
    }
)

#: How long a readiness check's answer (a database's, a backend's) is reused
#: by the health service (grpclib's ``check_ttl``): short, so a balancer sees
#: an outage within seconds, long enough that probes from several balancers
#: cost one query. Every service's readiness checks use it.
READINESS_TTL_SECONDS = 2.0


def _service_name(servable: IServable) -> str:
    first_method = next(iter(servable.__mapping__()), None)
    if first_method is None:
        raise ValueError(f"{servable!r} has no methods to serve")
    return split_method_name(first_method)[0]


class GrpcServiceRunner:
    """Serves a process's gRPC services with health, reflection, metrics and drain.

    Typical use, in a service's ``serve`` command::

        runner = GrpcServiceRunner([ModelServicer(backend)], settings, name="model")
        return await runner.serve_until_signalled()  # the process's exit status

    Health (``grpc.health.v1.Health``) answers for each served service by its
    full name and for ``""`` (the whole server). A service is SERVING when the
    runner has started and is not draining (see :meth:`set_serving`) *and*
    every readiness check passes; ``""`` is SERVING when all services are.
    Readiness checks are grpclib health checks: ``ServiceStatus`` for a state
    the caller pushes (``status.set(False)`` when the database connection
    drops), or ``ServiceCheck(async_fn, check_ttl=...)`` for one that is polled
    when asked. A ``ServiceStatus`` starts unknown, which reads NOT_SERVING,
    until it is first set.

    With client certificates (``client_ca``), the CA files are re-read while
    serving (:mod:`bugless_core.grpc._client_ca_reload`): a CA added to or
    removed from the bundle takes effect for new connections without a restart.

    Attributes:
        name: The service's name in logs (``model``, ``auth``, ...).
        settings: What the runner was configured with.
        client_cas: What re-reads the client CA files, once started with
            ``client_ca`` (None before, and without it).
        health: The health servable, served by the runner already.
        metrics_registry: The Prometheus registry the call metrics are in, and
            the one ``/metrics`` serves; services add their own metrics to it.
    """

    def __init__(
        self,
        servables: Sequence[IServable],
        settings: GrpcServerSettings,
        *,
        name: str,
        readiness_checks: Sequence[CheckBase] = (),
        descriptor_pool: DescriptorPool | None = None,
        metrics_registry: CollectorRegistry = REGISTRY,
        more_client_cas: Sequence[Path] = (),
    ) -> None:
        """Prepare the runner; nothing is bound until :meth:`start`.

        Args:
            servables: The application services (betterproto2 ``*Base``
                subclasses or any grpclib servable). Health and reflection are
                added by the runner.
            settings: Where to listen, TLS, metrics, drain timings.
            name: The service's name in logs.
            readiness_checks: Checks every service's health depends on.
            descriptor_pool: Descriptors reflection serves; defaults to
                ``bugless_proto.DESCRIPTOR_POOL``.
            metrics_registry: Where call metrics are registered; the process
                default registry unless a caller (a test) wants its own.
            more_client_cas: CA certificate files whose client certificates
                the handshake accepts beside ``settings.client_ca``'s
                (:func:`build_server_ssl_context`).

        Raises:
            ValueError: No servables, or two of them serve the same service.
        """
        if not servables:
            raise ValueError("a gRPC server needs at least one service to serve")
        self.name = name
        self.settings = settings
        self.metrics_registry = metrics_registry
        self._more_client_cas = tuple(more_client_cas)
        self._servables = list(servables)
        self._statuses: dict[str, ServiceStatus] = {}
        for servable in self._servables:
            service = _service_name(servable)
            if service in self._statuses:
                raise ValueError(f"two servables both serve {service}; pass each service once")
            self._statuses[service] = ServiceStatus()
        self.health = Health(
            {
                servable: [self._statuses[_service_name(servable)], *readiness_checks]
                for servable in self._servables
            }
        )
        self._descriptor_pool = DESCRIPTOR_POOL if descriptor_pool is None else descriptor_pool
        self._connections = ConnectionRegistry()
        # Checked on mutual TLS only: on --insecure-local plaintext no caller
        # has a certificate to check (start() warns about that every time).
        access = AccessRules(self._servables, roles=settings.access_roles)
        self._metrics = GrpcServerMetrics.for_registry(metrics_registry)
        self._tracker = CallTracker(
            access=access if settings.mutual_tls else None,
            service_name=name,
            metrics=self._metrics,
            connections=self._connections,
            drain_exempt_methods=_LONG_LIVED_METHODS,
        )
        self._metrics_endpoint = MetricsEndpoint(metrics_registry)
        self._server: Server | None = None
        #: With client certificates (``client_ca``), what re-reads their CAs while serving.
        self.client_cas: ClientCaReload | None = None
        self._port: int | None = None
        self._shutdown = Shutdown(
            name=name,
            settings=settings,
            statuses=list(self._statuses.values()),
            tracker=self._tracker,
            connections=self._connections,
            metrics_endpoint=self._metrics_endpoint,
        )

    @property
    def service_names(self) -> tuple[str, ...]:
        """Full names of the application services served (``bugless.v1.Model``)."""
        return tuple(self._statuses)

    @property
    def port(self) -> int:
        """The port gRPC listens on, known once :meth:`start` has returned."""
        if self._port is None:
            raise RuntimeError("the gRPC server is not started: no port yet")
        return self._port

    @property
    def metrics_port(self) -> int | None:
        """The port of ``/metrics``; ``None`` when the settings ask for no endpoint."""
        if self.settings.metrics_port is None or self._server is None:
            return None
        return self._metrics_endpoint.port

    @property
    def in_flight(self) -> int:
        """Number of calls being handled now."""
        return self._tracker.in_flight

    @property
    def cut_at_signal(self) -> int:
        """Calls cancelled at close because :meth:`stop_now` skipped their wait.

        0 until the runner closes, and after a drain that ran its course (calls
        cut at its own bounds are not counted: that is the configured policy).
        """
        return self._shutdown.cut_at_signal

    @property
    def draining(self) -> bool:
        """Whether a drain (or close) has begun: the server is on its way out."""
        return self._shutdown.draining

    async def start(self) -> None:
        """Bind the gRPC port (and the metrics port) and report SERVING.

        Returns once the sockets listen, so that callers can read :attr:`port`.

        Raises:
            RuntimeError: The runner was started before.
            OSError: A port cannot be bound, or a TLS file cannot be read.
            ssl.SSLError: A TLS file is invalid.
        """
        if self._server is not None:
            raise RuntimeError("the gRPC server is already started; a runner starts once")
        settings = self.settings
        ssl_context = build_server_ssl_context(settings, more_client_cas=self._more_client_cas)
        if ssl_context is not None and settings.client_ca is not None:
            self.client_cas = ClientCaReload(
                ssl_context, settings, self._more_client_cas, name=self.name
            )
        server = CorkedServer(
            self._tracker.track(
                with_reflection([*self._servables, self.health], self._descriptor_pool)
            ),
            on_connection=self._connections.accepted,
            on_call_done=self._tracker.call_ended,
            on_unserved=self._metrics.unserved.inc,
        )
        tracing.instrument_server(server)
        await server.start(
            settings.host,
            settings.port,
            ssl=ssl_context,
            reuse_port=settings.reuse_port or None,
        )
        self._server = server
        self._port = listening_port(server)
        if settings.metrics_port is not None:
            try:
                await self._metrics_endpoint.start(settings.metrics_host, settings.metrics_port)
            except BaseException:
                server.close()
                await server.wait_closed()
                self._server = self._port = None
                raise
        for status in self._statuses.values():
            status.set(True)
        if self.client_cas is not None:
            self.client_cas.start()
        if not settings.mutual_tls:
            logger.warning(
                "%s runs with --insecure-local: no mutual TLS, so no caller's service "
                "identity is checked and anyone who can reach %s may call any method; "
                "debugging on one machine only",
                self.name,
                host_port(settings.host, self._port),
                extra={"service": self.name, "insecure_local": True},
            )
        logger.info(
            "%s serving gRPC on %s",
            self.name,
            host_port(settings.host, self._port),
            extra={
                "service": self.name,
                "host": settings.host,
                "port": self._port,
                "tls": settings.tls,
                "mutual_tls": settings.mutual_tls,
                "metrics_port": self.metrics_port,
                "grpc_services": list(self._statuses),
            },
        )
        if settings.ready_file is not None:
            write_ready_file(settings.ready_file, port=self._port, metrics_port=self.metrics_port)

    def set_serving(self, serving: bool, *, service: str | None = None) -> None:
        """Report ``service`` (by default every service) as SERVING or NOT_SERVING.

        The runner reports SERVING on start and NOT_SERVING on drain; callers
        flip it to take the server out of rotation without stopping it, e.g.
        during maintenance. Readiness checks still apply on top.

        Raises:
            RuntimeError: Asked to report SERVING while draining.
            ValueError: ``service`` is not served here.
        """
        if serving and self._shutdown.draining:
            raise RuntimeError("the server is draining: it cannot report SERVING again")
        if service is None:
            statuses = list(self._statuses.values())
        elif service in self._statuses:
            statuses = [self._statuses[service]]
        else:
            raise ValueError(f"{service!r} is not served here; served: {', '.join(self._statuses)}")
        for status in statuses:
            status.set(serving)

    async def drain(self) -> None:
        """Shut down gracefully; return when the server is closed.

        The sequence is :meth:`bugless_core.grpc._shutdown.Shutdown.drain`'s:
        NOT_SERVING for ``drain_seconds``, then stop accepting (a graceful
        GOAWAY to the clients that honour one, new calls refused), wait up
        to ``grace_seconds`` for the calls in progress (transfers up to
        ``drain_transfer_seconds``), keep the connections refusing for
        :data:`~bugless_core.grpc._shutdown.CLOSE_LINGER_SECONDS` from the
        stop unless their clients closed them, then close. :meth:`stop_now`
        (a second signal) skips the remaining waits. Calling it again, or
        while it runs, waits for the same shutdown.

        Raises:
            RuntimeError: The runner was not started.
        """
        if self._server is None:
            raise RuntimeError("the gRPC server is not started: nothing to drain")
        await self._shutdown.drain(self._server, self.client_cas)

    def stop_now(self) -> None:
        """Make a running :meth:`drain` skip its remaining waits and close now."""
        self._shutdown.stop_now()

    async def close(self) -> None:
        """Stop at once: cancel calls in progress, close connections and ports.

        Prefer :meth:`drain`; this is its last step, and what leaving an
        ``async with`` block does. Idempotent.
        """
        if self._server is None:
            return
        await self._shutdown.close(self._server, self.client_cas)

    async def serve_until_signalled(
        self, signals: Sequence[signal.Signals] = (signal.SIGTERM, signal.SIGINT)
    ) -> int:
        """Serve (starting if needed) until a signal arrives, then drain.

        A second signal during the drain stops at once (:meth:`stop_now`), for
        an operator who does not want to wait; if that cut calls still running,
        the status returned, for the process to exit with, is
        :data:`~bugless_core.exit_status.EXIT_CUT_AT_SIGNAL` (the web tier's
        too), else 0. The handlers are installed on the running loop, so this
        must run in the main thread, and are removed before returning. Being a
        whole process's serving loop, it also tunes that process's garbage
        collector once started
        (:func:`bugless_core.garbage_collector.settle_garbage_collector`).
        """
        if self._server is None:
            await self.start()
        settle_garbage_collector()
        loop = asyncio.get_running_loop()
        signalled = asyncio.Event()

        def on_signal(signum: signal.Signals) -> None:
            if not signalled.is_set():
                logger.info(
                    "%s received %s; draining",
                    self.name,
                    signum.name,
                    extra={"service": self.name, "signal": signum.name},
                )
                signalled.set()
            else:
                logger.warning(
                    "%s received %s again; stopping now",
                    self.name,
                    signum.name,
                    extra={"service": self.name, "signal": signum.name},
                )
                self.stop_now()

        for signum in signals:
            loop.add_signal_handler(signum, on_signal, signum)
        try:
            await wait_for_any(signalled, self._shutdown.closed, seconds=None)
            await self.drain()
        finally:
            for signum in signals:
                loop.remove_signal_handler(signum)
        return EXIT_CUT_AT_SIGNAL if self._shutdown.cut_at_signal else 0

    async def __aenter__(self) -> GrpcServiceRunner:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()
