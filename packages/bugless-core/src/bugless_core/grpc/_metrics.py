"""Prometheus metrics of a gRPC server, and the side endpoint that serves them.

Metric and label names follow go-grpc-prometheus (``grpc_server_handled_total``
with ``grpc_service``/``grpc_method``/``grpc_code``, ...), the de-facto
convention, so that existing gRPC dashboards and alerts work unchanged.

The endpoint is :class:`bugless_core.metrics_endpoint.MetricsEndpoint`, shared
with the web tier.
"""

from __future__ import annotations

import dataclasses
import weakref

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from bugless_core.grpc._windows import register_connection_windows
from bugless_core.metrics_endpoint import MetricsEndpoint

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


class RunningCalls:
    """How many calls of one method are running, counted by plain increments.

    The ``grpc_server_in_flight_calls`` series of the method reads it when
    scraped (``set_function``) instead of being incremented and decremented
    under its lock on every call (0.84 µs a call, bench/JOURNAL.md "grpc25").
    One per registry and method, shared by the trackers counting in that
    registry. Counted on the event loop's thread only; a gRPC server's
    metrics are its own process's (no prometheus_client multiprocess files,
    where a function gauge would not be collected).
    """

    __slots__ = ("value",)

    def __init__(self) -> None:
        """No call running."""
        self.value = 0

    def read(self) -> float:
        """The count, for the gauge."""
        return float(self.value)


@dataclasses.dataclass(frozen=True)
class GrpcServerMetrics:
    """The server-side call metrics, bound to one registry.

    Attributes:
        handled: Finished calls, by method and final status code name.
        handling_seconds: Time from the request headers to the end of the call.
        in_flight: Calls started and not finished yet (read from
            :meth:`running`'s counts when scraped).
        unserved: Calls of a method the server does not serve, refused
            UNIMPLEMENTED before anything ran, and counted in none of the
            above. No labels: the method would be whatever path a client
            sends. A rise during an upgrade says a newer client reaches a
            server of an earlier release (docs/upgrades.md's order).
    """

    handled: Counter
    handling_seconds: Histogram
    in_flight: Gauge
    unserved: Counter
    _running: dict[tuple[str, str], RunningCalls] = dataclasses.field(default_factory=dict)

    def running(self, service: str, method: str) -> RunningCalls:
        """The count of ``service``/``method``'s running calls, which its in-flight series shows."""
        count = self._running.get((service, method))
        if count is None:
            count = self._running[service, method] = RunningCalls()
            self.in_flight.labels(service, method).set_function(count.read)
        return count

    @classmethod
    def for_registry(cls, registry: CollectorRegistry) -> GrpcServerMetrics:
        """Return the metrics registered in ``registry``, registering them once.

        The registry also serves the process's connections' flow-control
        windows (:mod:`bugless_core.grpc._windows`), its servers' and its
        channels' alike.
        """
        metrics = _METRICS_BY_REGISTRY.get(registry)
        if metrics is None:
            register_connection_windows(registry)
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
                unserved=Counter(
                    "grpc_server_unserved_total",
                    "gRPC calls of a method the server does not serve, refused UNIMPLEMENTED.",
                    registry=registry,
                ),
            )
            _METRICS_BY_REGISTRY[registry] = metrics
        return metrics


__all__ = ["GrpcServerMetrics", "MetricsEndpoint", "RunningCalls", "split_method_name"]
