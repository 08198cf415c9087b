"""The Prometheus ``/metrics`` side endpoint every bugless process can serve.

It runs prometheus_client's WSGI server in a thread rather than on the event
loop: a scrape then still answers while the loop is stalled, which is exactly
when the metrics are needed, and it takes no HTTP code of ours. The gRPC
services (:mod:`bugless_core.grpc`) and the web tier serve it on their own
port (``--metrics-port``), apart from their traffic, so that a NetworkPolicy
can open it to the scraper alone.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.exposition import ThreadingWSGIServer, make_wsgi_app


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

        Binding takes a name look-up, so it runs off the event loop.

        Raises:
            OSError: The address cannot be bound.
        """
        await asyncio.to_thread(self.start_blocking, host, port)

    def start_blocking(self, host: str, port: int) -> None:
        """:meth:`start` for a process without an event loop.

        Raises:
            OSError: The address cannot be bound.
        """
        self.bind(host, port)
        self.run()

    def bind(self, host: str, port: int) -> None:
        """Bind ``host:port`` without serving yet (:meth:`run` serves).

        Apart so that a parent can bind before forking workers (they learn the
        port) and have the port served by a process of its own
        (:meth:`run` there), keeping the forking process free of threads.

        Raises:
            OSError: The address cannot be bound.
        """
        family = socket.AF_INET6 if ":" in host else socket.AF_INET

        class _Server(ThreadingWSGIServer):
            address_family = family

        self._httpd = make_server(
            host, port, make_wsgi_app(self.registry), _Server, handler_class=_QuietRequestHandler
        )

    def run(self) -> None:
        """Serve the bound address in a daemon thread."""
        if self._httpd is None:
            raise RuntimeError("the metrics endpoint is not bound")
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": self._POLL_INTERVAL},
            name=f"metrics-{self.port}",
            daemon=True,
        )
        self._thread.start()

    def close_inherited(self) -> None:
        """Close this process's copy of the bound socket, which another process serves.

        A forked worker's copy (the parent's metrics server serves it), or a
        ``--workers`` parent's once its metrics server has stopped.
        """
        if self._httpd is not None:
            self._httpd.socket.close()
            self._httpd = None

    @property
    def port(self) -> int:
        """The bound port; useful when started with port 0."""
        if self._httpd is None:
            raise RuntimeError("the metrics endpoint is not started")
        return int(self._httpd.server_address[1])

    async def stop(self) -> None:
        """Stop serving and release the port; a no-op when not started."""
        await asyncio.to_thread(self.stop_blocking)

    def stop_blocking(self) -> None:
        """:meth:`stop` for a process without an event loop."""
        httpd, thread = self._httpd, self._thread
        if httpd is None or thread is None:
            return
        self._thread = None
        httpd.shutdown()
        httpd.server_close()
        thread.join()


__all__ = ["MetricsEndpoint"]
