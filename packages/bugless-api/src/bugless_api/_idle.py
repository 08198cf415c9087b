"""Releasing a Model stream whose client stopped reading (downloads, watches).

The API passes a download's chunks and a watch's events on only as fast as
its client takes them, and HTTP/2 gives the Model more credit only for what
the API read: a client that stops reading keeps its Model stream, and that
stream's share of a channel's connection window (the transfers' or the
watches', :class:`~bugless_api._gateway.Gateway`), for as long as it holds
its own call open. Enough such clients (eight downloads, 32 watches: one
user's script may open them) would hold up every other stream of the
replica on that channel.

:class:`IdleRelease` bounds that wait, and only that wait: a handler calls
:meth:`IdleRelease.waiting` just before it yields a message and
:meth:`IdleRelease.taken` just after. The ``yield`` is where the handler
waits for its client (grpclib sends the message on, as flow control allows,
before it asks for the next), and its frame is not running then, so a timer
releases the Model call on time even if the client never reads again; the
client's next read fails with the stalled error, which it may resume from.

The same settings bound the other wait of such a stream, the Model's first
message (a download's attachment, a watch's ``subscribed`` marker), which
nothing else bounded: a Model that accepted the call and never answered held
the client's call, the Model stream and its window for good.
:func:`first_message_within` awaits the opening for at most that long; past
it the Model call is released and the client gets UNAVAILABLE (safe to try
again: a download and a watch are reads). A download's later chunks are
awaited the same way (:func:`model_message_within`): a Model that stops
sending one mid-way is as stuck; a watch's events are not, since a watch
may rightly wait for hours for its next change.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable
from typing import ClassVar, TypeVar

from grpclib.const import Status

from bugless_core.errors import BuglessError, Unavailable

_log = logging.getLogger(__name__)
T = TypeVar("T")


async def first_message_within(
    opening: Awaitable[T], seconds: float, *, unanswered: str, extra: dict[str, object]
) -> T:
    """Await ``opening``, a Model stream's opening up to its first message, ``seconds`` at most.

    Cancelling the opening releases the Model call (the failover's opening
    closes the stream it opened, :func:`~bugless_core.failover.open_again_if_refused`).

    Args:
        opening: The opening (a refused one is opened again within the same bound).
        seconds: The longest wait for the first message.
        unanswered: The message of the error, also logged as a warning.
        extra: The log record's fields.

    Raises:
        Unavailable: Nothing came within ``seconds``.
    """
    return await model_message_within(opening, seconds, unanswered=unanswered, extra=extra)


async def model_message_within(
    receiving: Awaitable[T], seconds: float, *, unanswered: str, extra: dict[str, object]
) -> T:
    """Await ``receiving``, a Model stream's next message, ``seconds`` at most.

    The caller releases the Model call when this raises (its stream is closed
    in the handler's ``finally``).

    Raises:
        Unavailable: Nothing came within ``seconds`` (``unanswered``, logged as a warning).
    """
    bound = asyncio.timeout(seconds)
    try:
        async with bound:
            return await receiving
    except TimeoutError:
        if not bound.expired():
            raise
    _log.warning(unanswered, extra=extra)
    raise Unavailable(unanswered)


class WatchStalled(BuglessError):
    """The bot read nothing of a watch for ``--watch-idle-seconds`` while events waited.

    Its Model call was released when that passed; the bot learns it at its
    next read, and resumes from the position of the last event it handled
    (the Python client does so by itself, as after any broken stream).
    """

    grpc_status: ClassVar[Status] = Status.DEADLINE_EXCEEDED
    http_status: ClassVar[int] = 408
    default_reason: ClassVar[str] = "WATCH_STALLED"


class IdleRelease:
    """Closes a Model stream once its client has taken nothing for a while (see the module)."""

    def __init__(
        self,
        stream: AsyncIterator[object],
        seconds: float,
        *,
        stalled: BuglessError,
        released: str,
        extra: dict[str, object],
    ) -> None:
        """Watch the waits on the client of ``stream`` (the Model call to release).

        Args:
            stream: The Model's stream, closed when a wait passes ``seconds``.
            seconds: The longest wait for the client to take a message.
            stalled: What the client's next read fails with after a release.
            released: The warning logged at the release, when it happens
                (the client may never read again).
            extra: The log record's fields.
        """
        self._stream = stream
        self._seconds = seconds
        self._stalled = stalled
        self._released_message = released
        self._extra = extra
        self._timer: asyncio.TimerHandle | None = None
        self._closing: asyncio.Task[None] | None = None

    def waiting(self) -> None:
        """The handler is about to yield a message: the wait on the client starts."""
        self._timer = asyncio.get_running_loop().call_later(self._seconds, self._release)

    def taken(self) -> None:
        """The client took the message.

        Raises:
            BuglessError: the ``stalled`` error, when the wait had passed.
        """
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._closing is not None:
            raise self._stalled

    async def close(self) -> None:
        """End the Model call (its stream is reset if unfinished), once however it ended."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._closing is None:
            self._closing = asyncio.ensure_future(closed(self._stream))
        await self._closing

    def _release(self) -> None:
        self._timer = None
        self._closing = asyncio.ensure_future(closed(self._stream))
        _log.warning(self._released_message, extra=self._extra)


async def closed(stream: AsyncIterator[object]) -> None:
    """End the Model call behind ``stream`` (its stream is reset if unfinished)."""
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        await aclose()
