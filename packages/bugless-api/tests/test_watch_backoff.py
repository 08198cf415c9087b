"""How long a reconnecting watch waits when its server keeps ending the stream.

A server that ends every watch right after its ``subscribed`` marker (a
broken replica, a proxy that cuts idle streams at once) must see the client
back off further each time, not be reconnected to at the first, shortest
wait forever; a change delivered proves the stream healthy and starts the
waits over. Real gRPC over a loopback socket, to a stand-in Issues service
that answers each watch as the test says.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator

from bugless_api.client import RetryPolicy
from bugless_api.client._watch import resuming_watch
from bugless_core._compat.grpclib import server_listener
from bugless_core.grpc import CorkedChannel, CorkedServer
from bugless_proto import v1


@dataclasses.dataclass(frozen=True)
class _CountingRetry(RetryPolicy):
    """Waits almost nothing, and records which attempt each wait was for."""

    attempts_seen: list[int] = dataclasses.field(default_factory=list)

    def delay(self, attempt: int, error: Exception) -> float:
        self.attempts_seen.append(attempt)
        return 0.001


class _MarkerThenEnd(v1.IssuesBase):
    """Each watch sends its marker, waits ``hold`` seconds and ends.

    The streams numbered in ``with_change`` send a change before they end.
    """

    def __init__(self, with_change: set[int], *, hold: float = 0.0) -> None:
        self.with_change = with_change
        self.hold = hold
        self.streams = 0

    async def watch(self, message: v1.QueryWatchRequest) -> AsyncIterator[v1.WatchEvent]:
        self.streams += 1
        yield v1.WatchEvent(subscribed=True, position=10)
        await asyncio.sleep(self.hold)
        if self.streams in self.with_change:
            yield v1.WatchEvent(
                issue=v1.Issue(id=1, version=self.streams),
                entry=v1.HistoryEntry(version=self.streams),
                position=10 + self.streams,
            )


async def _waits(servicer: _MarkerThenEnd, events: int, *, max_backoff: float = 60.0) -> list[int]:
    """The attempt numbers of the client's waits until it has yielded ``events`` events."""
    server = CorkedServer([servicer])
    await server.start("127.0.0.1", 0)
    listener = server_listener(server)
    assert listener is not None
    channel = CorkedChannel("127.0.0.1", listener.sockets[0].getsockname()[1])
    retry = _CountingRetry(attempts=1, initial_backoff=0.001, max_backoff=max_backoff)
    try:
        stream = resuming_watch(
            v1.IssuesStub(channel).watch,
            v1.QueryWatchRequest(query="status:open"),
            channel=channel,
            unreachable="the test server is unreachable",
            retry=retry,
            reconnect=True,
        )
        yielded = 0
        async with asyncio.timeout(20):  # a bound only: each stream ends at once
            async for _event in stream:
                yielded += 1
                if yielded == events:
                    break
        await stream.aclose()
    finally:
        channel.close()
        server.close()
        await server.wait_closed()
    return retry.attempts_seen


async def test_streams_ending_after_their_marker_back_off_further_each_time() -> None:
    # The marker, then (on the 6th stream) one change: five waits before it.
    waits = await _waits(_MarkerThenEnd(with_change={6}), events=2)
    assert waits == [0, 1, 2, 3, 4]


async def test_a_delivered_change_starts_the_waits_over() -> None:
    waits = await _waits(_MarkerThenEnd(with_change={3, 6}), events=3)
    # Streams 1 and 2 end after the marker (waits 0, 1); stream 3 delivers a
    # change, so the wait after it is the first again; 4 and 5 go on from it.
    assert waits == [0, 1, 0, 1, 2]


async def test_a_stream_that_stayed_up_as_long_as_the_longest_wait_starts_the_waits_over() -> None:
    # Every stream is up 0.2 s (no change at all), longer than max_backoff.
    waits = await _waits(_MarkerThenEnd(with_change={4}, hold=0.2), events=2, max_backoff=0.1)
    assert waits == [0, 0, 0]
