"""Prometheus metrics of the web tier: the pages it serves and the calls it makes.

An operator of a replicated tier needs two views the backends cannot give:
what people got (requests by route, method and status, and how long they
took, error pages included) and what the backends cost each page, seen from
the caller (calls by service, method and code, with the retries
:mod:`bugless_web.retries` made). Names follow the conventions dashboards
already know: OpenTelemetry's HTTP server semantic names in Prometheus form
(``http_server_requests_total``, ``http_server_request_duration_seconds``)
and go-grpc-prometheus' client side (``grpc_client_handled_total`` with
``grpc_service``/``grpc_method``/``grpc_code``).

The route label is Litestar's path template (``/issues/{issue_id:int}``),
never the path: one series per route however many issues exist; a request no
route matched is counted as ``(unmatched)``.

With ``--workers N`` the workers are separate processes, so their values live
in prometheus_client's multiprocess files (``PROMETHEUS_MULTIPROC_DIR``, set
by :func:`prepare_workers` before anything creates a metric) and the parent
serves their sum (:func:`workers_registry`): one scrape target per pod, as for
one process. That is also why this module imports prometheus_client only
inside its functions.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import time
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, cast

from litestar.enums import ScopeType

from bugless_core.user_cache import feed_read_recorder

if TYPE_CHECKING:
    from litestar.types import ASGIApp, Message, Receive, Scope, Send
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
    from prometheus_client.core import Metric
    from prometheus_client.registry import Collector

#: The route label of a request no route matched (a 404, a probe of a bad path).
UNMATCHED = "(unmatched)"
#: Where the workers' values go; also prometheus_client's own switch to them.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

_BY_REGISTRY: weakref.WeakKeyDictionary[CollectorRegistry, WebMetrics] = weakref.WeakKeyDictionary()


@dataclasses.dataclass(frozen=True)
class WebMetrics:
    """The web tier's metrics, bound to one registry.

    Attributes:
        requests: Finished HTTP requests by method, route and status code.
        request_seconds: Time from the request to the end of its response.
        in_flight: Requests started and not finished (summed over workers).
        calls: Finished calls to a backend, by method and final code: the
            unary calls, the uploads and the downloads (``UploadAttachment``,
            ``DownloadAttachment``, whose own limits count as
            ``DEADLINE_EXCEEDED``: :mod:`bugless_web.transfers`; a download
            ends with its response's body). The ``Watch`` stream is not counted.
        call_seconds: Time of each such call, its retry included.
        retries: Calls tried a second time (a replica went away; an upload
            only when a draining Model refused it).
        feed_read: The users' change feed was just read, by a read begun
            that many seconds ago (sets
            ``bugless_user_feed_last_read_timestamp_seconds``: with
            ``--workers``, the worker that read it the longest ago).
    """

    requests: Counter
    request_seconds: Histogram
    in_flight: Gauge
    calls: Counter
    call_seconds: Histogram
    retries: Counter
    feed_read: Callable[[float], None]

    @classmethod
    def for_registry(cls, registry: CollectorRegistry) -> WebMetrics:
        """Return the metrics registered in ``registry``, registering them once."""
        from prometheus_client import Counter, Gauge, Histogram  # noqa: PLC0415 - see the module

        metrics = _BY_REGISTRY.get(registry)
        if metrics is None:
            grpc_labels = ("grpc_service", "grpc_method")
            metrics = cls(
                requests=Counter(
                    "http_server_requests",
                    "HTTP requests the web tier answered, whatever their status.",
                    ["method", "route", "status"],
                    registry=registry,
                ),
                request_seconds=Histogram(
                    "http_server_request_duration_seconds",
                    "Time from an HTTP request to the end of its response.",
                    ["method", "route"],
                    registry=registry,
                ),
                in_flight=Gauge(
                    "http_server_requests_in_flight",
                    "HTTP requests being answered now.",
                    registry=registry,
                    multiprocess_mode="livesum",
                ),
                calls=Counter(
                    "grpc_client_handled",
                    "gRPC calls (unary, uploads, downloads) the web tier made to a backend, "
                    "by final status code.",
                    [*grpc_labels, "grpc_code"],
                    registry=registry,
                ),
                call_seconds=Histogram(
                    "grpc_client_handling_seconds",
                    "Time of a gRPC call (unary, an upload, a download) to a backend, "
                    "its retry included.",
                    grpc_labels,
                    registry=registry,
                ),
                retries=Counter(
                    "bugless_web_backend_retries",
                    "Backend calls tried a second time because a replica went away.",
                    grpc_labels,
                    registry=registry,
                ),
                feed_read=feed_read_recorder(registry, multiprocess_mode="livemin"),
            )
            _BY_REGISTRY[registry] = metrics
        return metrics

    def call_finished(self, route: str, code: str, seconds: float) -> None:
        """Count one call to ``route`` (``/pkg.Service/Method``) ending in ``code``."""
        service, _, method = route[1:].rpartition("/")
        self.calls.labels(service, method, code).inc()
        self.call_seconds.labels(service, method).observe(seconds)

    def retried(self, route: str) -> None:
        """Count a second try of a call to ``route``."""
        service, _, method = route[1:].rpartition("/")
        self.retries.labels(service, method).inc()


def metrics_middleware(app: ASGIApp, metrics: WebMetrics) -> ASGIApp:
    """Wrap ``app`` so that every HTTP request is counted and timed.

    It is the outermost wrapper, so error pages, steered requests and 404s
    count too; websockets and lifespan events pass through uncounted.
    """

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        status = 500  # the app raised before starting a response: uvicorn sends a 500
        started = time.perf_counter()
        counted = False

        def count() -> None:
            nonlocal counted
            counted = True
            metrics.in_flight.dec()
            method = scope["method"]
            route = scope.get("path_template") or UNMATCHED
            metrics.requests.labels(method, route, str(status)).inc()
            metrics.request_seconds.labels(method, route).observe(time.perf_counter() - started)

        async def send_counted(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                # Counted before the last byte leaves: whoever has the whole
                # response (a scrape right after, a test) finds it counted.
                count()
            await send(message)

        metrics.in_flight.inc()
        try:
            await app(scope, receive, send_counted)
        finally:
            if not counted:
                count()

    return middleware


def prepare_workers() -> Path:
    """Make the workers about to be forked keep their values in files; the directory.

    Call it in the parent before the fork and before anything in the process
    creates a metric: prometheus_client picks where values live when it is
    first imported.

    Raises:
        RuntimeError: prometheus_client was already imported without the
            multiprocess files, so the workers would each count alone.
    """
    import sys  # noqa: PLC0415

    directory = Path(tempfile.mkdtemp(prefix="bugless-web-metrics-"))
    os.environ[MULTIPROC_ENV] = str(directory)
    if "prometheus_client.values" in sys.modules:
        from prometheus_client import values  # noqa: PLC0415

        if values.ValueClass.__name__ != "MmapedValue":
            shutil.rmtree(directory, ignore_errors=True)
            msg = "prometheus_client was imported before the web workers' metrics were set up"
            raise RuntimeError(msg)
    return directory


class _WorkersCollector:
    """The merge of the workers' files, their connection windows' idle sides left out.

    A prometheus_client collector by shape (``collect``); see
    :class:`bugless_core.grpc.ConnectionWindowGauges` for why the windows
    need more than the merge.
    """

    def __init__(self, directory: Path) -> None:
        self._directory = directory

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.multiprocess import MultiProcessCollector  # noqa: PLC0415

        from bugless_core.grpc import without_idle_sides  # noqa: PLC0415

        files = [str(path) for path in self._directory.glob("*.db") if _initialised(path)]
        return without_idle_sides(MultiProcessCollector.merge(files, accumulate=True))  # type: ignore[no-untyped-call]


def _initialised(path: Path) -> bool:
    """Whether a worker's values file can be read yet.

    prometheus_client creates a file empty and only then sizes it
    (``MmapedDict.__init__``: open, then truncate); a scrape that reads it in
    between fails on the missing length header (``struct.error``), and the
    parent answered ``/metrics`` with a 500. A worker creates a file when it
    first sets a metric of a new kind, e.g. its first background loop round,
    so this happened while workers started (seen in CI). A file not sized yet
    holds no value; one removed meanwhile (a worker marked dead) neither.
    """
    try:
        return path.stat().st_size >= _LENGTH_HEADER
    except FileNotFoundError:
        return False


#: prometheus_client's values file starts with the length in use (8 bytes).
_LENGTH_HEADER = 8


def workers_registry(directory: Path) -> CollectorRegistry:
    """A registry that reads the merge of every worker's values in ``directory``.

    Counters and histograms are summed; each gauge is merged its own way
    (``http_server_requests_in_flight`` summed over the live workers, the
    connection windows' minimum over them).
    """
    from prometheus_client import CollectorRegistry  # noqa: PLC0415

    registry = CollectorRegistry()
    registry.register(cast("Collector", _WorkersCollector(directory)))
    return registry


def worker_exited(directory: Path, pid: int) -> None:
    """Drop a worker's live gauge values (its counters stay in the sum)."""
    from prometheus_client import multiprocess  # noqa: PLC0415

    multiprocess.mark_process_dead(pid, path=str(directory))  # type: ignore[no-untyped-call]


def default_registry() -> CollectorRegistry:
    """prometheus_client's process-wide registry (the one the workers' files feed)."""
    from prometheus_client import REGISTRY  # noqa: PLC0415

    return REGISTRY


__all__ = [
    "MULTIPROC_ENV",
    "UNMATCHED",
    "WebMetrics",
    "default_registry",
    "metrics_middleware",
    "prepare_workers",
    "worker_exited",
    "workers_registry",
]
