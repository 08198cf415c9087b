"""Per-frame and per-call costs of the gRPC runtime, each the old way and the new (grpc25).

    python -m bench.grpc_overheads [--count 200000] [--batch 200]

* ``frames``: a server h2 connection (grpclib's configuration, the HPACK memo
  installed) receiving WINDOW_UPDATE frames, one per ``receive_data`` as a
  busy connection reads them, or three at a time. ``hyperframe``: each frame
  rendered for h2's discarded trace line (no shim); ``f_locals``: the shim of
  :mod:`bugless_core._compat.h2` finding the connection's logger through h2's
  frame locals (what every connection did before, and what one that does not
  say it receives quietly still does); ``quiet``: the receiver says so around
  each ``receive_data`` (:data:`~bugless_core._compat.h2.RECEIVING`, as
  ``CorkedH2Protocol.data_received`` does), its cost counted. CPU µs per frame.
* ``call end``: a call's task done, with its stream's release
  (:class:`~bugless_core._compat.grpclib.ReleaseOnce`) and the call tracker's
  end as two done-callbacks (before) or as one (``ProtocolWrappingServer``'s
  ``on_call_done``, now); the end itself is a no-op, so only the mechanism is
  measured. CPU µs per call, task creation and run included.
* ``in-flight series``: a call counted in and out of
  ``grpc_server_in_flight_calls`` by the gauge's ``inc``/``dec`` (before) or
  by the count the gauge reads when scraped (now). CPU µs per call.

No socket, everything in this process; ``time.process_time`` per batch of
``--batch``, the ways taking turns, each way's fastest batch (on a loaded
host the slow batches are other processes' doing); the 1-minute load average
is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections.abc import Callable
from typing import Any

import h2.config
import h2.connection
from hyperframe.frame import Frame, WindowUpdateFrame
from prometheus_client import CollectorRegistry

import bugless_core.grpc._cork  # noqa: F401  (installs the shim, as every connection does)
from bugless_core._compat import h2 as h2_compat
from bugless_core._compat.grpclib import ReleaseOnce, _ReleasedThenDone
from bugless_core.grpc import _hpack
from bugless_core.grpc._metrics import GrpcServerMetrics

_FRAME_WAYS = ("hyperframe", "f_locals", "quiet")
_CALL_WAYS = ("two callbacks", "one callback")
_GAUGE_WAYS = ("gauge", "count")


def _server() -> h2.connection.H2Connection:
    """A server connection past its preface, as grpclib configures one."""
    client, server = (
        h2.connection.H2Connection(
            h2.config.H2Configuration(
                client_side=client_side,
                header_encoding="ascii",
                validate_inbound_headers=False,
                validate_outbound_headers=False,
            )
        )
        for client_side in (True, False)
    )
    for connection in (client, server):
        connection.initiate_connection()
        _hpack.install(connection)
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    server.receive_data(client.data_to_send())
    return server


def frames(count: int, per_read: int, batch: int) -> dict[str, float]:
    """CPU µs per WINDOW_UPDATE received, ``per_read`` frames per ``receive_data``, each way.

    The ways take turns, ``batch`` reads at a time, on one connection; each
    way's figure is its fastest batch (a loaded host's time slices and cache
    misses land on batches, not on a way).
    """
    server = _server()
    chunk = b"".join(WindowUpdateFrame(0, window_increment=1).serialize() for _ in range(per_read))
    rendered = h2_compat._original
    shim = h2_compat._frame_repr
    clock = time.process_time
    best = dict.fromkeys(_FRAME_WAYS, float("inf"))
    try:
        for _ in range(max(1, count // per_read // batch)):
            for way in _FRAME_WAYS:
                Frame.__repr__ = rendered if way == "hyperframe" else shim  # type: ignore[method-assign]
                started = clock()
                if way == "quiet":
                    for _ in range(batch):
                        receiving = h2_compat.RECEIVING
                        before, receiving.quiet = receiving.quiet, True
                        try:
                            server.receive_data(chunk)
                        finally:
                            receiving.quiet = before
                else:
                    for _ in range(batch):
                        server.receive_data(chunk)
                best[way] = min(best[way], clock() - started)
    finally:
        Frame.__repr__ = shim  # type: ignore[method-assign]
    return {way: spent / (batch * per_read) * 1e6 for way, spent in best.items()}


def _end(_task: asyncio.Task[Any]) -> None:
    """The tracker's end, as a no-op: only the callbacks' mechanism is measured."""


def _release() -> None:
    """A stream's release, as a no-op."""


async def _handler() -> None:
    """A call's handler that returns at once."""


async def call_ends(count: int, batch: int) -> dict[str, float]:
    """CPU µs per call task created, run and ended with its done-callbacks, each way.

    The ways take turns, ``batch`` tasks at a time; each way's figure is its
    fastest batch.
    """
    loop = asyncio.get_running_loop()
    clock = time.process_time

    def two(task: asyncio.Task[None]) -> None:
        task.add_done_callback(ReleaseOnce(_release))
        task.add_done_callback(_end)

    def one(task: asyncio.Task[None]) -> None:
        task.add_done_callback(_ReleasedThenDone(ReleaseOnce(_release), _end))

    adding: dict[str, Callable[[asyncio.Task[None]], None]] = {
        "two callbacks": two,
        "one callback": one,
    }
    best = dict.fromkeys(_CALL_WAYS, float("inf"))
    for _ in range(max(1, count // batch)):
        for way in _CALL_WAYS:
            add = adding[way]
            started = clock()
            tasks = [loop.create_task(_handler()) for _ in range(batch)]
            for task in tasks:
                add(task)
            await asyncio.gather(*tasks)
            await asyncio.sleep(0)  # the done-callbacks run
            best[way] = min(best[way], clock() - started)
    return {way: spent / batch * 1e6 for way, spent in best.items()}


def in_flight(count: int, batch: int) -> dict[str, float]:
    """CPU µs per call to count it in and out of its in-flight series, each way.

    ``gauge``: the labelled ``Gauge`` child's ``inc`` and ``dec`` (each under
    the child's lock); ``count``: :class:`~bugless_core.grpc._metrics.RunningCalls`,
    which the gauge reads when scraped.
    """
    metrics = GrpcServerMetrics.for_registry(CollectorRegistry())
    gauge = metrics.in_flight.labels("bench.v1.Bench", "Gauge")
    running = metrics.running("bench.v1.Bench", "Count")
    clock = time.process_time
    best = dict.fromkeys(_GAUGE_WAYS, float("inf"))
    for _ in range(max(1, count // batch)):
        started = clock()
        for _ in range(batch):
            gauge.inc()
            gauge.dec()
        best["gauge"] = min(best["gauge"], clock() - started)
        started = clock()
        for _ in range(batch):
            running.value += 1
            running.value -= 1
        best["count"] = min(best["count"], clock() - started)
    return {way: spent / batch * 1e6 for way, spent in best.items()}


async def run(count: int, batch: int) -> None:
    """Measure each item, its ways interleaved; print each way's fastest batch."""
    if not h2_compat.receiving_quietly(_server()):
        raise SystemExit("the frame shim is not installed on this h2 (see bugless_core._compat.h2)")
    figures: dict[str, float] = {}
    for per_read in (1, 3):
        for way, figure in frames(count, per_read, batch).items():
            figures[f"frames, {per_read} per read: {way}"] = figure
    for way, figure in (await call_ends(count, batch)).items():
        figures[f"call end: {way}"] = figure
    for way, figure in in_flight(count, batch).items():
        figures[f"in-flight series: {way}"] = figure
    print(f"load {os.getloadavg()[0]:.1f}, {count:,} each, fastest batch of {batch}")
    for name, figure in figures.items():
        print(f"{name:<36} {figure:6.2f} µs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=200_000, help="frames or calls per way")
    parser.add_argument("--batch", type=int, default=200, help="frames or calls per timed batch")
    options = parser.parse_args()
    asyncio.run(run(options.count, options.batch))


if __name__ == "__main__":
    main()
