"""Request header coding with grpclib's deadlines against steady ones (session 11).

    python -m bench.deadline_headers [--calls 20000] [--rounds 3]

What a client's h2 connection spends sending a call's request HEADERS and the
server's spends receiving them, both with the HPACK memo of
:mod:`bugless_core.grpc._hpack` (installed as on every corked connection),
for the header list grpclib builds (eight fields, a 420-character
``bugless-assertion``) with a 10 s ``grpc-timeout`` written three ways:

* ``steady``: :class:`~bugless_core.grpc._deadlines.SteadyDeadline` (``9900m``
  whenever the request leaves within 0.1 s of the deadline being set);
* ``grpclib-load``: grpclib's ``Deadline``, the request leaving 0-20 ms after
  it was set for one call in ten (a loaded event loop; ``9999m`` otherwise);
* ``grpclib-churn``: grpclib's, a value never sent before on every call (the
  worst case: what a slow stream of calls under load looks like).

No socket: both ends are real ``h2`` connections in this process, the bytes
handed across. CPU microseconds per call (``time.process_time``), the best
of ``--rounds`` interleaved rounds; the 1-minute load average is printed.
"""

from __future__ import annotations

import argparse
import os
import random
import time
from collections.abc import Callable

import h2.config
import h2.connection
from grpclib.metadata import encode_timeout

from bugless_core.grpc import _hpack
from bugless_core.grpc._deadlines import SteadyDeadline

_TIMEOUT = 10.0
_ASSERTION = "eyJhbGciOiJFZERTQSJ9." + "x" * 399


def _timeouts(mode: str, calls: int) -> list[str]:
    """The ``grpc-timeout`` value of each call in ``mode``."""
    chance = random.Random(7)
    if mode == "steady":
        deadline = SteadyDeadline.from_timeout(_TIMEOUT)
        return [encode_timeout(deadline.time_remaining())] * calls
    if mode == "grpclib-load":
        gaps = [chance.uniform(0, 0.02) if chance.random() < 0.1 else 0.0002 for _ in range(calls)]
        return [encode_timeout(_TIMEOUT - gap) for gap in gaps]
    # A fresh value every call: cycle through more values than the table holds.
    return [encode_timeout(_TIMEOUT - (i % 5000) * 1e-3 - 1e-4) for i in range(calls)]


def _pair() -> tuple[h2.connection.H2Connection, h2.connection.H2Connection]:
    """A client and a server h2 connection as grpclib configures them, memo installed."""
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
        connection.local_settings.max_concurrent_streams = 2**31 - 1
        connection.initiate_connection()
        _hpack.install(connection)
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    server.receive_data(client.data_to_send())
    return client, server


def run_mode(mode: str, calls: int) -> tuple[float, float]:
    """CPU µs per call to send (client) and receive (server) a request's HEADERS."""
    client, server = _pair()
    sent = received = 0.0
    clock: Callable[[], float] = time.process_time
    for i, timeout in enumerate(_timeouts(mode, calls)):
        stream_id = 1 + 2 * i
        headers = [
            (":method", "POST"),
            (":scheme", "https"),
            (":path", "/bugless.v1.Model/GetIssue"),
            (":authority", "model.bugless:7000"),
            ("grpc-timeout", timeout),
            ("te", "trailers"),
            ("content-type", "application/grpc"),
            ("user-agent", "grpc-python-grpclib/0.4.9 (linux; x86_64)"),
            ("bugless-assertion", _ASSERTION),
        ]
        start = clock()
        client.send_headers(stream_id, headers, end_stream=True)
        data = client.data_to_send()
        middle = clock()
        server.receive_data(data)
        end = clock()
        sent += middle - start
        received += end - middle
        # Close the stream outside the timed part (the reply is the same in every mode).
        server.reset_stream(stream_id)
        client.receive_data(server.data_to_send())
    return sent / calls * 1e6, received / calls * 1e6


def main() -> None:
    """Run each mode ``--rounds`` times, interleaved; print the best round of each."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    modes = ("grpclib-churn", "grpclib-load", "steady")
    best: dict[str, tuple[float, float]] = {}
    for _ in range(options.rounds):
        for mode in modes:
            sent, received = run_mode(mode, options.calls)
            old = best.get(mode)
            if old is None or sent + received < sum(old):
                best[mode] = (sent, received)
    print(f"load {os.getloadavg()[0]:.1f}, {options.calls} calls, best of {options.rounds}")
    print(f"{'grpc-timeout':<14} {'send µs':>8} {'receive µs':>10}")
    for mode in modes:
        sent, received = best[mode]
        print(f"{mode:<14} {sent:>8.1f} {received:>10.1f}")


if __name__ == "__main__":
    main()
