"""uvicorn's HTTP/1.1 protocol with a response's head and body in one socket write.

uvicorn writes the status line and headers of a response (``http.response.start``)
to the transport at once, then the body (``http.response.body``) as a second
write: two ``send()`` syscalls per page, and over loopback (a proxy or load
balancer in front, or the benchmark's client) the kernel runs the receiver's
TCP path, and wakes it, inside each. Joined, a bare uvicorn serving a 55 KB
page spent 35 us of CPU per request instead of 43 (side by side, wrk -c8),
and the client is woken once per response instead of twice. (py-spy put the
head's write at 9-17 % of the web process on a list page, but most of that
is the process being preempted inside the send, not CPU it spends.)

:class:`HeadHoldingTransport` keeps a small write (a response head) until the
next write, which it sends joined to it, or until the next turn of the event
loop, whichever comes first. Litestar sends the body in the same step of the
request's task as the head, so a page is one write. Large writes (a body, a
chunk of a download) are never held, so flow control sees them at once, and
at most one small buffer is held for at most one loop turn: the bytes and
their order are unchanged, only their grouping into syscalls is.
"""

from __future__ import annotations

import asyncio
from typing import cast

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from bugless_core.grpc import CorkedTransport

#: Writes up to this size are held for the next one (a response head is
#: well under 1 KB; a Set-Cookie or CSP header adds a few hundred bytes).
HELD_WRITE_BYTES = 8192


class HeadHoldingTransport(CorkedTransport):
    """A transport that joins a small write to the write after it.

    Args:
        transport: The real transport; it owns the socket, flow control and closing.
    """

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Send ``data`` behind what is held; hold it instead if small and nothing is."""
        if not data:
            return
        if self._pending:
            held = self._pending[0]
            self._pending.clear()
            self._transport.write(held + bytes(data))
        elif len(data) <= HELD_WRITE_BYTES:
            self._pending.append(bytes(data))
            if not self._scheduled:
                self._scheduled = True
                self._loop.call_soon(self.flush)
        else:
            self._transport.write(data)


#: The ASGI scope key of a callable that aborts the request's connection at
#: once (no flush of what is buffered): how a drain cuts a download whose body
#: started (:func:`bugless_web.middleware.drain_middleware`). Closing instead
#: would keep the connection, and the process, until a slow reader had taken
#: everything buffered.
ABORT_CONNECTION = "bugless.abort_connection"


class HeadHoldingHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol writing through a :class:`HeadHoldingTransport`.

    Each request's scope also carries :data:`ABORT_CONNECTION`.
    """

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Serve the connection through the wrapper of ``transport``.

        asyncio's transports and uvloop's (not ``asyncio.Transport``
        subclasses) both qualify: the wrapper only calls their methods.
        """
        super().connection_made(HeadHoldingTransport(cast("asyncio.Transport", transport)))

    def on_message_begin(self) -> None:
        """A request begins (its scope is made): say in it how to abort its connection."""
        super().on_message_begin()
        self.scope[ABORT_CONNECTION] = self.transport.abort  # type: ignore[literal-required]


__all__ = [
    "ABORT_CONNECTION",
    "HELD_WRITE_BYTES",
    "HeadHoldingHttpToolsProtocol",
    "HeadHoldingTransport",
]
