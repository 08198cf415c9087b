"""A stopping server's graceful GOAWAY, for the clients that end only unprocessed calls on one.

When a draining server stops accepting, it tells each connection's client so
with HTTP/2's graceful GOAWAY (``NO_ERROR``, ``last_stream_id`` the highest
stream it had received): the calls up to it are answered, the ones above it
were not processed, open no more here. A gRPC client that honours it (grpcio
and the other gRPC C-core, Go and Java clients, Envoy, and bugless's own
channels) lets its running calls finish and sends its next calls on a new
connection, where another replica answers; grpcio also sends again, by
itself, a call above the id. Without the GOAWAY each of those calls was
refused as DRAINING, which only a bugless client sends again: a grpcio bot
saw UNAVAILABLE for every call it made while the server drained.

**Not every client honours it.** grpclib's (0.4) closes the connection on any
GOAWAY and fails every call on it, answered or not, with
``StreamTerminatedError``, which no client may send again (the call may have
run): a bugless client older than its GOAWAY handling, or a script on bare
grpclib, would have its running calls cut. So a connection gets the GOAWAY
only when its client is known to honour one (:func:`honours_graceful_goaway`):

* it declared so in its first SETTINGS (:data:`GRACEFUL_GOAWAY_SETTING`; every
  :class:`~bugless_core.grpc.CorkedChannel` does), or
* its first call's ``user-agent`` is not grpclib's.

The connections of other grpclib clients, and those no call came on yet, are
drained as before: new calls refused as DRAINING, the connection kept open
for the linger, then closed.

**Sending it without closing h2.** h2 moves a connection to its CLOSED state
when it sends a GOAWAY, after which it refuses every frame of the streams
still being answered: the calls the GOAWAY promised to finish could not. So
the frame is written raw (:func:`write_graceful_goaway`), behind everything h2
has produced; h2 does not know, and its streams go on. A stream the client
opens above the id anyway (sent before it read the GOAWAY) is refused as
DRAINING by the call tracker, as any call after the stop; the client has
already failed it as not processed and ignores the answer.
"""

from __future__ import annotations

import asyncio

from grpclib.protocol import H2Protocol
from h2.errors import ErrorCodes
from hyperframe.frame import GoAwayFrame

from bugless_core._compat.grpclib import h2_connection

__all__ = [
    "GRACEFUL_GOAWAY_CLIENT_SETTINGS",
    "GRACEFUL_GOAWAY_SETTING",
    "GRPCLIB_USER_AGENT",
    "honours_graceful_goaway",
    "stream_ids_received",
    "write_graceful_goaway",
]

#: The HTTP/2 SETTINGS parameter a bugless client sends, with value 1, to say
#: that it lets the calls up to a graceful GOAWAY's ``last_stream_id`` finish
#: (RFC 9113 §6.5.2: a receiver ignores a parameter it does not know). An
#: unregistered one-byte id: hyperframe (6.x) sends only the low byte of a
#: setting's id.
GRACEFUL_GOAWAY_SETTING = 0xB1

#: What every bugless client connection adds to its first SETTINGS frame.
#: A test that follows a client from before the GOAWAY (or a call racing it:
#: the DRAINING refusal) empties it (``bugless_testing.goaway``).
GRACEFUL_GOAWAY_CLIENT_SETTINGS: dict[int, int] = {GRACEFUL_GOAWAY_SETTING: 1}

#: How grpclib's client names itself (``grpc-python-grpclib/0.4.9 (linux; ...)``).
GRPCLIB_USER_AGENT = "grpc-python-grpclib/"


def honours_graceful_goaway(protocol: H2Protocol, user_agent: str | None) -> bool:
    """Whether the client of ``protocol``'s connection lets a graceful GOAWAY's calls finish.

    Args:
        protocol: A server connection's protocol (once made).
        user_agent: The ``user-agent`` of a call on it; ``None`` before its
            first call (the client is unknown, unless it declared itself).
    """
    declared = h2_connection(protocol).remote_settings.get(GRACEFUL_GOAWAY_SETTING)
    if declared == 1:
        return True
    return user_agent is not None and not user_agent.startswith(GRPCLIB_USER_AGENT)


def stream_ids_received(protocol: H2Protocol) -> int:
    """The highest stream id the client opened on ``protocol``'s connection so far (0: none)."""
    return int(h2_connection(protocol).highest_inbound_stream_id)


def write_graceful_goaway(
    protocol: H2Protocol, transport: asyncio.BaseTransport, last_stream_id: int
) -> None:
    """Write a graceful GOAWAY naming ``last_stream_id`` on the connection, h2 left open.

    ``transport`` is the one the connection writes through (the corked
    wrapper): what h2 produced before is written first, in order.
    """
    protocol.connection.flush()
    frame = GoAwayFrame(stream_id=0, last_stream_id=last_stream_id, error_code=ErrorCodes.NO_ERROR)
    if isinstance(transport, asyncio.WriteTransport) and not transport.is_closing():
        transport.write(frame.serialize())
