"""The HTTP/2 flow-control windows of the process's gRPC connections, read at scrape time.

A connection whose window shrinks for good is wedged: once it is 0, every call
on it waits for credit that never comes and times out, while a fresh
connection to the same server answers at once. That happened (a server lost a
call's credit for each call reset before its handler started; see
:mod:`bugless_core._compat.grpclib`) and showed only as 200 s of 503s, with
nothing to say which connection was stuck. These gauges show it.

Every connection of a :class:`~bugless_core.grpc.CorkedServer` (``side="server"``)
or :class:`~bugless_core.grpc.CorkedChannel` (``side="client"``, the channels
the frontends reach the backends with) is tracked here while it lives, in a
weak set. Nothing is done per call: the collector reads h2's connection-level
windows when ``/metrics`` is scraped.

* ``bugless_grpc_connection_window_bytes{side, direction, stat="min"}``: the
  smallest window over the live connections of that side. ``inbound`` is the
  credit this process gave its peers (what they may still send it; it stays
  low while a handler holds request data it has not read, and for good when
  credit is lost); ``outbound`` is the credit the peers gave this process
  (low when a peer does not read, or lost credit on the peer's side). No
  sample for a side without a live connection.
* ``bugless_grpc_connections{side}``: the live connections of that side, so
  that a ``min`` can be told apart from "no connection at all".

Why the minimum and not a per-connection series: a process has tens to
hundreds of connections that come and go, one series each would churn, and
an alert needs only "is any connection starved, and for how long". A healthy
connection's window goes back up to at least half its initial size as soon as
its calls read their data (h2 sends WINDOW_UPDATE once half the window is
consumed and read), so a minimum that *stays* far below that for minutes is a
wedged connection, or a call that holds that much unread data for minutes,
which is worth a look too. The chart's alert (``BuglessGrpcConnectionWedged``,
deploy/helm/bugless/files/alerts.yaml) is therefore
``max_over_time(bugless_grpc_connection_window_bytes{stat="min"}[5m]) < 262144``
held for 2 minutes: below 1/16 of grpclib's 4 MiB initial window at every
scrape for 7 minutes.

A process that is not scraped itself (a ``bugless web serve --workers N``
worker: a metrics process its parent forked serves the sum of the workers'
prometheus_client multiprocess files, which carry values, not collectors)
keeps the same figures in :class:`ConnectionWindowGauges` instead, refreshed
on a timer; the metrics process merges them (:func:`without_idle_sides`)
into the same series.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Literal, cast

from grpclib.protocol import H2Protocol

from bugless_core._compat.grpclib import h2_connection

# prometheus_client only when a registry is collected or registered: every
# corked connection imports this module, and the web tier's --workers parent
# must set up its multiprocess files before prometheus_client is imported
# (bugless_web.metrics.prepare_workers refuses to start otherwise).
if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry, Gauge
    from prometheus_client.core import Metric
    from prometheus_client.registry import Collector

Side = Literal["server", "client"]

WINDOW_METRIC = "bugless_grpc_connection_window_bytes"
_WINDOW_HELP = (
    "HTTP/2 connection-level flow-control window of the process's gRPC connections "
    "(stat=min: the smallest over the live connections of that side); one that "
    "stays near 0 is a wedged connection."
)
COUNT_METRIC = "bugless_grpc_connections"
_COUNT_HELP = "Live HTTP/2 connections of the process's gRPC servers and channels."
#: What :class:`ConnectionWindowGauges` writes for a side without a live
#: connection: the largest window HTTP/2 allows (RFC 9113, section 6.9.1), so
#: it never lowers the minimum over the processes.
NO_CONNECTION_WINDOW = 2**31 - 1
_SIDES: tuple[Side, ...] = ("server", "client")

#: The live connections of each side (a connection leaves when it is lost, or
#: when it is collected without having been lost cleanly).
_LIVE: dict[Side, weakref.WeakSet[H2Protocol]] = {
    "server": weakref.WeakSet(),
    "client": weakref.WeakSet(),
}

# The collector registered in each registry, once (prometheus_client refuses
# the same names twice, and several runners may share the default registry).
_REGISTERED: weakref.WeakSet[CollectorRegistry] = weakref.WeakSet()


def track(protocol: H2Protocol, side: Side) -> None:
    """Count ``protocol``, which has just made its connection, among the live ones."""
    _LIVE[side].add(protocol)


def forget(protocol: H2Protocol) -> None:
    """Stop counting ``protocol``: its connection is lost."""
    for live in _LIVE.values():
        live.discard(protocol)


def windows(side: Side) -> list[tuple[int, int]]:
    """``(inbound, outbound)`` connection windows of each live connection of ``side``."""
    found = []
    for protocol in list(_LIVE[side]):
        h2 = h2_connection(protocol)
        found.append((int(h2.inbound_flow_control_window), int(h2.outbound_flow_control_window)))
    return found


class ConnectionWindowCollector:
    """Reads the windows of the process's connections when the registry is collected.

    A prometheus_client collector by shape (``collect``), not by base class,
    so that importing this module imports no prometheus_client.
    """

    def collect(self) -> Iterator[Metric]:
        """The smallest window of each side and direction, and the connections' count."""
        from prometheus_client.core import GaugeMetricFamily  # noqa: PLC0415

        window = GaugeMetricFamily(
            WINDOW_METRIC, _WINDOW_HELP, labels=["side", "direction", "stat"]
        )
        count = GaugeMetricFamily(COUNT_METRIC, _COUNT_HELP, labels=["side"])
        for side in _SIDES:
            found = windows(side)
            count.add_metric([side], len(found))
            if found:
                window.add_metric([side, "inbound", "min"], min(w[0] for w in found))
                window.add_metric([side, "outbound", "min"], min(w[1] for w in found))
        yield window
        yield count


def register_connection_windows(registry: CollectorRegistry) -> None:
    """Serve the windows' gauges from ``registry`` (once however often it is asked)."""
    if registry not in _REGISTERED:
        registry.register(cast("Collector", ConnectionWindowCollector()))
        _REGISTERED.add(registry)


class ConnectionWindowGauges:
    """The same figures in gauges another process merges, for a process that is not scraped.

    A collector runs in the process whose registry is scraped. A web worker's
    is not: a metrics process the parent forked serves the sum of the workers'
    prometheus_client multiprocess files, which hold values written by the
    workers and no collector. So a worker calls :meth:`refresh` on a timer, and
    the metrics process merges the workers' values: the window as ``livemin`` (the smallest over
    the live workers, i.e. over all their connections), the count as
    ``livesum``; a worker's values leave with it (the parent's
    ``mark_process_dead`` removes the live gauges' files of a worker that
    exited). The figures are as old as the last refresh, which matters
    little for an alert over minutes.

    A multiprocess gauge cannot drop a label set once written (its file keeps
    it), so a side without a live connection writes
    :data:`NO_CONNECTION_WINDOW`; the parent drops those samples
    (:func:`without_idle_sides`) so that a side no worker has a connection
    of shows no window, as in one process.

    Create it only where prometheus_client may be imported (in a worker,
    after its parent set up the multiprocess files).
    """

    def __init__(self) -> None:
        """Make the gauges, in no registry: in a worker only the files matter."""
        from prometheus_client import Gauge  # noqa: PLC0415 - see the module

        self._window: Gauge = Gauge(
            WINDOW_METRIC,
            _WINDOW_HELP,
            ["side", "direction", "stat"],
            registry=None,
            multiprocess_mode="livemin",
        )
        self._count: Gauge = Gauge(
            COUNT_METRIC, _COUNT_HELP, ["side"], registry=None, multiprocess_mode="livesum"
        )

    def refresh(self) -> None:
        """Write the process's current figures."""
        for side in _SIDES:
            found = windows(side)
            self._count.labels(side).set(len(found))
            inbound = min((w[0] for w in found), default=NO_CONNECTION_WINDOW)
            outbound = min((w[1] for w in found), default=NO_CONNECTION_WINDOW)
            self._window.labels(side, "inbound", "min").set(inbound)
            self._window.labels(side, "outbound", "min").set(outbound)


def without_idle_sides(metrics: Iterable[Metric]) -> Iterator[Metric]:
    """``metrics`` merged from :class:`ConnectionWindowGauges`, less the sides with no connection.

    The window of a side no process has a live connection of is
    :data:`NO_CONNECTION_WINDOW` after the merge (the minimum of that value
    alone); it is left out, as :class:`ConnectionWindowCollector` leaves it
    out. Every other metric passes unchanged.
    """
    for metric in metrics:
        if metric.name == WINDOW_METRIC:
            metric.samples = [s for s in metric.samples if s.value < NO_CONNECTION_WINDOW]
        yield metric


__all__ = [
    "NO_CONNECTION_WINDOW",
    "ConnectionWindowCollector",
    "ConnectionWindowGauges",
    "forget",
    "register_connection_windows",
    "track",
    "windows",
    "without_idle_sides",
]
