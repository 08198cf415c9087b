"""A watch that survives its stream: reconnect and resume from the last feed position.

A Watch stream ends whenever its connection does: the API frontend or the
Model restarts (a rollout), a network path drops, a draining replica sends
the call elsewhere. Every event carries the change feed position of its
change, and the API resumes a watch after a position with every matching
change since, so the client reconnects (with backoff) and asks for what it
has not yielded yet: the script's loop sees each change once, in order,
whatever happened underneath.

Events are the Model's as they come: each carries its change (the entry)
and the issue as it was when the event was sent, the current one for a
change replayed after a cut (the proto's ``WatchEvent.issue``); nothing here
rebuilds an older state of the issue.

One change can give several events with one position (a batch change, a
blocking link, which writes the other side's entry too), so a stream cut
between two of them resumes from the position before and drops the entries
already yielded, by issue id and entry version.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable

from grpclib.client import Channel

from bugless_api.client._base import RetryPolicy, made_again_renewed
from bugless_core.clients import call_errors, channel_connection, forget_connection
from bugless_core.errors import Unavailable
from bugless_proto import v1

_log = logging.getLogger("bugless.client")


class _Resume:
    """Where the watch stands: what to ask for after a cut, and what was already yielded."""

    def __init__(self, after_position: int | None) -> None:
        #: The position the script's stream is complete up to (None: not
        #: subscribed yet, and no position given).
        self.complete: int | None = after_position
        #: The position of the last change yielded, and its entries yielded.
        self.last: int | None = None
        self.yielded: set[tuple[int, int]] = set()

    def after_position(self) -> int | None:
        """The position to resume after: before a change yielded only in part."""
        if self.last is not None:
            return self.last - 1
        return self.complete

    def subscribed(self, event: v1.WatchEvent) -> None:
        """A fresh watch is complete up to the head it subscribed at."""
        if self.complete is None and self.last is None:
            self.complete = event.position

    def is_new(self, event: v1.WatchEvent) -> bool:
        """Record ``event``; False when it was yielded before a reconnect."""
        key = (event.issue.id if event.issue else 0, event.entry.version if event.entry else 0)
        if event.position == self.last:
            if key in self.yielded:
                return False
            self.yielded.add(key)
            return True
        if self.last is not None and event.position < self.last:
            return False  # a change the script already has (never sent by a Model)
        self.last = event.position
        self.yielded = {key}
        return True


async def resuming_watch(
    open_stream: Callable[[v1.QueryWatchRequest], AsyncIterator[v1.WatchEvent]],
    request: v1.QueryWatchRequest,
    *,
    channel: Channel,
    unreachable: str,
    retry: RetryPolicy,
    reconnect: bool,
) -> AsyncGenerator[v1.WatchEvent, None]:
    """The events of ``request``, reconnecting after UNAVAILABLE or an ended stream.

    Only once the watch was in place (its ``subscribed`` marker came): a
    first connection that fails is the script's to see (a wrong address must
    not wait forever). An opening refused as of the connection's ended
    session, which the API renewed (reason ``SESSION_RENEWED``), is no
    failure: it is made again at once, on the same connection, whether the
    watch was in place or not
    (:func:`~bugless_api.client._base.made_again_renewed`). Only the first
    marker is yielded: a reconnection is not a new watch, the stream goes on
    where it was. The waits between attempts grow as ``retry``'s (full
    jitter, capped at its ``max_backoff``) and go on for as long as it takes
    (a rollout can take minutes). They start again from the first only once
    a stream proved healthy: it delivered a change, or it stayed up for
    ``retry.max_backoff`` seconds. A marker proves nothing (a server that
    ends every stream right after it would otherwise be reconnected to at
    the first, shortest wait forever). Each wait is
    logged at WARNING on the ``bugless.client`` logger. Any other error ends the watch, a
    position older than the feed's retention included
    (:class:`~bugless_core.errors.FeedPositionPruned`: re-read the state and
    watch again without a position).
    """
    resume = _Resume(request.after_position)
    subscribed = False
    failures = renewals = 0
    loop = asyncio.get_running_loop()
    while True:
        request.after_position = resume.after_position()
        used = channel_connection(channel)
        opened = loop.time()
        try:
            with call_errors(unreachable):
                async for event in open_stream(request):
                    if event.subscribed:
                        renewals = 0  # the opening was not refused
                        resume.subscribed(event)
                        if not subscribed:
                            subscribed = True
                            yield event
                        continue
                    failures = renewals = 0
                    if resume.is_new(event):
                        yield event
            cause: Exception = Unavailable(f"{unreachable}: the watch stream ended")
        except Unavailable as exc:
            if made_again_renewed(exc, renewals):
                # Refused before it opened, as of the connection's ended
                # session: opened again at once on that connection, which has
                # a new one, a first opening and reconnect=False included.
                renewals += 1
                continue
            if not (reconnect and subscribed):
                raise
            cause = exc
        if not (reconnect and subscribed):
            return
        # The connection that ended the stream leads nowhere (a stopped or
        # draining server): the next attempt opens a new one.
        forget_connection(channel, used)
        if loop.time() - opened >= retry.max_backoff:
            failures = 0  # a stream that stayed up that long was not a failing server
        wait = retry.delay(failures, cause)
        _log.warning(
            "the watch stream ended (%s); reconnecting in %.1f s, resuming after position %s",
            cause,
            wait,
            resume.after_position(),
            extra={"after_position": resume.after_position()},
        )
        await asyncio.sleep(wait)
        failures += 1
