"""Prometheus metrics of a gRPC server, and the side endpoint that serves them.

Metric and label names follow go-grpc-prometheus (``grpc_server_handled_total``
with ``grpc_service``/``grpc_method``/``grpc_code``, ...), the de-facto
convention, so that existing gRPC dashboards and alerts work unchanged.

The endpoint runs prometheus_client's WSGI server in a thread rather than on
the event loop: a scrape then still answers while the loop is stalled, which
is exactly when the metrics are needed, and it takes no HTTP code of ours.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import threading
import weakref
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import ThreadingWSGIServer, make_wsgi_app

_LABELS = ("grpc_service", "grpc_method")

# One set of metric objects per registry: prometheus_client refuses to register a
# name twice, and several runners may share the process-wide default registry.
_METRICS_BY_REGISTRY: weakref.WeakKeyDictionary[CollectorRegistry, GrpcServerMetrics] = (
    weakref.WeakKeyDictionary()
)


def split_method_name(method_name: str) -> tuple[str, str]:
    """Split ``/bugless.v1.Model/GetIssue`` into ``("bugless.v1.Model", "GetIssue")``."""
    _, _, path = method_name.partition("/")
    service, _, method = path.rpartition("/")
    return service, method


@dataclasses.dataclass(frozen=True)
class GrpcServerMetrics:
    """The server-side call metrics, bound to one registry.

    Attributes:
        handled: Finished calls, by method and final status code name.
        handling_seconds: Time from the request headers to the end of the call.
        in_flight: Calls started and not finished yet.
    """

    handled: Counter
    handling_seconds: Histogram
    in_flight: Gauge

    @classmethod
    def for_registry(cls, registry: CollectorRegistry) -> GrpcServerMetrics:
        """Return the metrics registered in ``registry``, registering them once."""
        metrics = _METRICS_BY_REGISTRY.get(registry)
        if metrics is None:
            metrics = cls(
                handled=Counter(
                    "grpc_server_handled_total",
                    "gRPC calls completed on the server, whatever their status.",
                    [*_LABELS, "grpc_code"],
                    registry=registry,
                ),
                handling_seconds=Histogram(
                    "grpc_server_handling_seconds",
                    "Time the server took to complete a gRPC call.",
                    _LABELS,
                    registry=registry,
                ),
                in_flight=Gauge(
                    "grpc_server_in_flight_calls",
                    "gRPC calls started on the server and not completed yet.",
                    _LABELS,
                    registry=registry,
                ),
            )
            _METRICS_BY_REGISTRY[registry] = metrics
        return metrics


class _QuietRequestHandler(WSGIRequestHandler):
    """Keeps a scrape every few seconds out of the logs."""

    def log_message(self, format: str, *args: object) -> None:
        """Log nothing."""


class MetricsEndpoint:
    """An HTTP server for ``/metrics`` running in its own thread.

    Attributes:
        registry: What the endpoint exposes.
    """

    #: How often the serving thread checks for shutdown: bounds how long
    #: :meth:`stop` takes (the standard library default is half a second).
    _POLL_INTERVAL = 0.05

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.registry = registry
        self._httpd: ThreadingWSGIServer | None = None
        self._thread: threading.Thread | None = None

    async def start(self, host: str, port: int) -> None:
        """Bind ``host:port`` (0 for a free port) and start serving in a thread.

        Raises:
            OSError: The address cannot be bound.
        """
        family = socket.AF_INET6 if ":" in host else socket.AF_INET

        class _Server(ThreadingWSGIServer):
            address_family = family

        self._httpd = await asyncio.to_thread(
            make_server,
            host,
            port,
            make_wsgi_app(self.registry),
            _Server,
            handler_class=_QuietRequestHandler,
        )
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": self._POLL_INTERVAL},
            name=f"metrics-{self.port}",
            daemon=True,
        )
        self._thread.start()

    @property
    def port(self) -> int:
        """The bound port; useful when started with port 0."""
        if self._httpd is None:
            raise RuntimeError("the metrics endpoint is not started")
        return int(self._httpd.server_address[1])

    async def stop(self) -> None:
        """Stop serving and release the port; a no-op when not started."""
        httpd, thread = self._httpd, self._thread
        if httpd is None or thread is None:
            return
        self._thread = None
        await asyncio.to_thread(httpd.shutdown)
        httpd.server_close()
        await asyncio.to_thread(thread.join)
