"""Reading a Watch stream in tests: events collected in the background.

Used by the Model's Watch contract and by the frontends' watch tests, which
all need the same four things: the ``subscribed`` marker before writing, the
next event (or a clear failure when none comes, or when the stream broke),
"nothing more arrives", and a clean cancel.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from bugless_proto import v1

#: How long a committed change (or the subscribed marker) may take to reach a
#: watching stream.
DELIVERY_TIMEOUT = 10.0


class EventStream:
    """A running Watch call whose events are queued as they arrive."""

    def __init__(self, events: AsyncIterator[v1.WatchEvent]) -> None:
        """Start reading ``events`` in a background task."""
        self.queue: asyncio.Queue[v1.WatchEvent] = asyncio.Queue()
        self._events = events
        self._task = asyncio.ensure_future(self._pump())

    async def _pump(self) -> None:
        async for event in self._events:
            await self.queue.put(event)

    async def subscribed(self) -> None:
        """Wait until the stream is subscribed: the first event, the marker.

        Changes a test makes after this returns are guaranteed to be
        delivered, so no test has to guess how long subscribing takes.
        """
        event = await self.next()
        assert event.subscribed, f"the first event is not the subscribed marker: {event}"
        assert event.issue is None, f"the subscribed marker carries an issue: {event}"
        assert event.entry is None, f"the subscribed marker carries an entry: {event}"

    async def next(self) -> v1.WatchEvent:
        """The next event; fails if none arrives in time or the stream ended."""
        getter = asyncio.ensure_future(self.queue.get())
        done, _ = await asyncio.wait(
            {getter, self._task}, timeout=DELIVERY_TIMEOUT, return_when=asyncio.FIRST_COMPLETED
        )
        if getter in done:
            return getter.result()
        getter.cancel()
        if self._task in done:
            self._task.result()  # raises the stream's error, if it ended with one
            raise AssertionError("the watch stream ended")
        raise AssertionError(f"no event within {DELIVERY_TIMEOUT} s")

    async def nothing_more(self, within_seconds: float = 0.5) -> None:
        """No (further) event arrives within a short time."""
        await asyncio.sleep(within_seconds)
        assert self.queue.empty(), f"unexpected event: {self.queue.get_nowait()}"

    async def close(self) -> None:
        """Cancel the call."""
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task
