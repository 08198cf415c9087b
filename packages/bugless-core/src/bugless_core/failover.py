"""Moving off a replica that drains, when the balancer picks one per connection.

Between services every hop is mutual TLS, so whatever balances the Model or
the Authenticator (a Kubernetes Service, HAProxy in ``mode tcp``) passes TLS
through and picks a replica once per *connection*, not per call: a frontend's
long-lived HTTP/2 connection stays on the replica it first reached. When that
replica drains, it first reports NOT_SERVING, then refuses every new call on
its open connections with UNAVAILABLE tagged ``DRAINING`` (never run, so safe
to send again, writes included), and closes them once its calls in progress
end. A client therefore has to leave by itself:

* :func:`send_again_if_refused` sends a call refused while draining once more
  on a *new* connection (the balancer no longer routes new connections to a
  replica that stopped accepting them); :class:`DrainAwareModelStub` and
  :class:`DrainAwareAuthenticatorStub` do it for every unary call;
* :func:`upload_again_if_refused` does it for an upload (a client stream),
  sending again what it had already sent;
* :func:`open_again_if_refused` does it for a server stream (a download, a
  watch), whose refusal comes instead of its first message;
* :func:`serving_behind` asks whether *some* replica behind an address is
  SERVING, each time on a fresh connection, so a readiness check does not
  report the whole tier down because its one connection is pinned to the
  replica on its way out.

A server that stops with an HTTP/2 GOAWAY instead (not a bugless one: a proxy,
another gRPC implementation) says which calls it did not process; every
bugless client connection fails those with the same DRAINING refusal
(:class:`bugless_core._compat.grpclib.GracefulGoawayProcessor`), so all of
the above sends them again too.

Nothing else is retried here: a call that failed any other way may have run.
The web tier retries reads as well (``bugless_web.retries``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from betterproto2.grpclib.grpclib_client import ServiceStub
from grpclib.client import Channel
from grpclib.config import Configuration
from grpclib.const import Cardinality, Status
from grpclib.exceptions import GRPCError
from grpclib.health.v1.health_grpc import HealthStub
from grpclib.health.v1.health_pb2 import HealthCheckRequest, HealthCheckResponse

from bugless_core.backoff import Backoff
from bugless_core.clients import ServiceAddress, channel_connection, forget_connection
from bugless_core.errors import Unavailable, from_grpc_error
from bugless_proto import v1
from bugless_proto.stubs import UnaryUnaryInterceptor

_log = logging.getLogger("bugless_core.failover")
T = TypeVar("T")
_Send = Callable[..., Awaitable[T]]

#: The pause before sending a refused call again (once): drawn from 20 to
#: 100 ms, so that every client of a draining replica does not return at once.
RESEND_BACKOFF = Backoff(first_seconds=0.1, max_seconds=0.1, jitter=0.8)
#: The Model's upload method, as :func:`upload_again_if_refused` calls it by default.
MODEL_UPLOAD_ROUTE = "/bugless.v1.Model/UploadAttachment"
#: The Model's download method (a server stream: :func:`open_again_if_refused`).
MODEL_DOWNLOAD_ROUTE = "/bugless.v1.Model/DownloadAttachment"
#: The Model's change stream (likewise). The web never retries it (a live
#: page's EventSource reconnects) but counts its failures as the Model's
#: outage (``bugless_web.retries.record_call``).
MODEL_WATCH_ROUTE = "/bugless.v1.Model/Watch"
#: What a bugless server (grpclib's default configuration) lets a client send
#: on one call before the call's handler has read any of it: its HTTP/2
#: stream window. A call refused without being run was never read, so the
#: client cannot have sent it more than this.
UNREAD_WINDOW_BYTES = Configuration().http2_stream_window_size


def refused_while_draining(error: GRPCError) -> bool:
    """Whether ``error`` is a draining server's refusal of a call it never ran."""
    if error.status is not Status.UNAVAILABLE:
        return False
    mapped = from_grpc_error(error)
    return isinstance(mapped, Unavailable) and mapped.refused_while_draining


async def send_again_if_refused(
    channel: Channel, send: _Send[T], route: str, request: Any, *args: Any, **options: Any
) -> T:
    """``send(route, request, ...)``; once more on a new connection if a draining server refused it.

    The connection the refused call went down is forgotten, not closed: the
    calls still running on it finish, and the server closes it afterwards.

    Raises:
        GRPCError: The call failed (the second attempt's error if there was one).
        StreamTerminatedError: The connection dropped.
        OSError: No connection could be made.
    """
    used = channel_connection(channel)
    try:
        return await send(route, request, *args, **options)
    except GRPCError as exc:
        if not refused_while_draining(exc):
            raise
        forget_connection(channel, used)
    pause = RESEND_BACKOFF.delay(1)
    _log.info(
        "%s was refused by a draining replica; sending it again on a new connection",
        route,
        extra={"route": route},
    )
    await asyncio.sleep(pause)
    return await send(route, request, *args, **options)


async def upload_again_if_refused(
    stub: ServiceStub,
    messages: AsyncIterable[v1.UploadAttachmentRequest],
    reply_type: type[T],
    *,
    route: str = MODEL_UPLOAD_ROUTE,
    on_retry: Callable[[str], None] | None = None,
) -> T:
    """Upload ``messages`` (a ``reply_type`` answers) on ``stub``'s channel; again if refused.

    :func:`send_again_if_refused` for a client stream: a draining server
    refuses the call at its start, but the client has usually sent part of
    the upload by the time the refusal arrives, and the source (a bot's
    stream, a browser's request body) cannot be read again. So the messages
    taken from ``messages`` are kept, and on a refusal :func:`refused_while_draining`
    recognises, sent again first on the new connection, followed by the rest.

    What is kept is bounded by the server's flow control, not by the file's
    size (an attachment may be 256 MiB, and a frontend holds a chunk or two
    of a transfer, never a file): a client can send at most
    :data:`UNREAD_WINDOW_BYTES` of a call nobody reads, so once more content
    than that has gone out, the server is reading it: the call was admitted
    and can no longer be refused as draining, and the kept messages are
    dropped. At most that window, plus the message being sent and the one
    held back (5 MiB with 512 KiB chunks), is ever held. Should a drain
    refusal come later anyway (a server granting a larger window), it is
    not sent again: that error stands, as does any other error the server
    answers with, and the second attempt's.

    ``on_retry(route)`` is called before the second attempt (a caller's
    count of retries). Each attempt has the stub's timeout, deadline and
    metadata. The last message carries the end of the stream rather than a
    separate end, so ending a stream the server has already answered cannot
    hide its status.

    Raises:
        GRPCError: The server's status (the second attempt's if there was one).
        StreamTerminatedError: The connection dropped.
        OSError: No connection could be made.
        Unavailable: The server ended the call without an answer.
    """
    channel = stub.channel
    kept = _Kept()
    source = aiter(messages)
    used = channel_connection(channel)
    try:
        return await _upload(stub, route, kept.taking(source), reply_type, kept.sent)
    except GRPCError as exc:
        again = kept.messages
        if again is None or not refused_while_draining(exc):
            raise
        forget_connection(channel, used)
    _log.info(
        "%s was refused by a draining replica; sending it again on a new connection",
        route,
        extra={"route": route, "resent_messages": len(again)},
    )
    if on_retry is not None:
        on_retry(route)
    await asyncio.sleep(RESEND_BACKOFF.delay(1))
    return await _upload(stub, route, _replayed(again, source), reply_type, _ignore)


async def open_again_if_refused(
    channel: Channel, open_stream: Callable[[], AsyncIterator[T]], route: str
) -> tuple[T | None, AsyncIterator[T]]:
    """Open ``open_stream()`` on ``channel`` and take its first message; again if refused.

    A server stream (a download, a watch) is refused by a draining server
    instead of its first message, so that message is awaited here, and on a
    refusal :func:`refused_while_draining` recognises the stream is opened
    once more on a new connection (:func:`send_again_if_refused`). A frontend
    needs this for a channel that carries only streams: nothing else on it
    would ever move it off the draining replica, whose other streams keep
    the connection open for the whole drain (a download up to its
    ``drain_transfer_seconds``), so every stream opened there meanwhile
    would be refused, its client's retries included.

    Returns:
        The first message (None if the stream ended without one) and the
        stream, to read the rest from and to close.

    Raises:
        GRPCError: The server's status (the second attempt's if there was one).
        StreamTerminatedError: The connection dropped.
        OSError: No connection could be made.
    """

    async def opened(_route: str, _request: None) -> tuple[T | None, AsyncIterator[T]]:
        stream = open_stream()
        try:
            return await anext(stream, None), stream
        except BaseException:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()
            raise

    return await send_again_if_refused(channel, opened, route, None)


class _Kept:
    """The messages of an upload taken so far, while its server may still refuse it unread."""

    def __init__(self) -> None:
        self.messages: list[v1.UploadAttachmentRequest] | None = []
        self._unread = UNREAD_WINDOW_BYTES

    async def taking(
        self, source: AsyncIterator[v1.UploadAttachmentRequest]
    ) -> AsyncIterator[v1.UploadAttachmentRequest]:
        """``source``'s messages, each kept as it is taken (while keeping)."""
        async for message in source:
            if self.messages is not None:
                self.messages.append(message)
            yield message

    def sent(self, message: v1.UploadAttachmentRequest) -> None:
        """Note that ``message`` went out; stop keeping once the server must be reading."""
        if self.messages is None:
            return
        # The content is at most what flow control counted (a message's frame
        # adds its field tags and the gRPC prefix).
        self._unread -= len(message.chunk or b"")
        if self._unread < 0:
            self.messages = None


def _ignore(_: v1.UploadAttachmentRequest) -> None:
    """Nothing to note: a second attempt is never sent again."""


async def _replayed(
    kept: list[v1.UploadAttachmentRequest], source: AsyncIterator[v1.UploadAttachmentRequest]
) -> AsyncIterator[v1.UploadAttachmentRequest]:
    for message in kept:
        yield message
    async for message in source:
        yield message


async def _upload(
    stub: ServiceStub,
    route: str,
    messages: AsyncIterator[v1.UploadAttachmentRequest],
    reply_type: type[T],
    sent: Callable[[v1.UploadAttachmentRequest], None],
) -> T:
    """One attempt: each message sent as the server takes it, the last with the end."""
    async with stub.channel.request(
        route,
        Cardinality.STREAM_UNARY,
        v1.UploadAttachmentRequest,
        reply_type,
        timeout=stub.timeout,
        deadline=stub.deadline,
        metadata=stub.metadata,
    ) as stream:
        await stream.send_request()
        held: v1.UploadAttachmentRequest | None = None
        async for message in messages:
            if held is not None:
                await stream.send_message(held)
                sent(held)
            held = message
        if held is not None:
            await stream.send_message(held, end=True)
        else:
            await stream.end()
        reply = await stream.recv_message()
    if reply is None:
        raise Unavailable(f"{route} ended without an answer")
    return reply


class DrainAwareModelStub(UnaryUnaryInterceptor, v1.ModelStub):
    """The Model's stub; a unary call refused while draining goes once more, elsewhere."""

    async def intercept_unary_unary(
        self, send: _Send[T], route: str, request: Any, response_type: type[T], **options: Any
    ) -> T:
        """Send through :func:`send_again_if_refused`."""
        return await send_again_if_refused(
            self.channel, send, route, request, response_type, **options
        )


class DrainAwareAuthenticatorStub(UnaryUnaryInterceptor, v1.AuthenticatorStub):
    """The Authenticator's stub; a unary call refused while draining goes once more, elsewhere."""

    async def intercept_unary_unary(
        self, send: _Send[T], route: str, request: Any, response_type: type[T], **options: Any
    ) -> T:
        """Send through :func:`send_again_if_refused`."""
        return await send_again_if_refused(
            self.channel, send, route, request, response_type, **options
        )


async def serving_behind(
    address: ServiceAddress, service: str, *, attempts: int = 2, each_seconds: float = 1.0
) -> bool:
    """Whether a replica behind ``address`` reports ``service`` SERVING.

    Each attempt opens a connection of its own (closed afterwards), which the
    balancer may route to another replica: a replica that drains, or one cut
    off from its database, does not by itself make the answer False while
    another one serves.
    """
    for _ in range(attempts):
        channel = address.channel()
        try:
            reply = await HealthStub(channel).Check(
                HealthCheckRequest(service=service), timeout=each_seconds
            )
        except Exception:  # unreachable or erroring reads as "not serving"
            reply = None
        finally:
            channel.close()
        if reply is not None and reply.status == HealthCheckResponse.SERVING:
            return True
    return False
