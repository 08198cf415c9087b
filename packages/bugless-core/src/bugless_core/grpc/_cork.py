"""Fewer, larger socket writes for grpclib: one write per connection per loop turn.

grpclib hands every HTTP/2 frame it produces to the transport at once: a unary
reply is three ``write()`` calls (HEADERS, DATA, trailing HEADERS), a call's
request two, each window update one more. On a TLS connection each write is
its own TLS record and its own ``send()`` syscall, and over loopback the kernel
also runs the receiver's TCP path inside that syscall. Profiles of the API and
the Model put 22-37% of their CPU in those writes (bench/JOURNAL.md); corking
cut a bare mTLS echo server's CPU per call by 10-16% (0.37 to 0.31 ms with a
grpcio client).

:class:`CorkedTransport` sits between grpclib and the real transport and keeps
what is written during one turn of the event loop, then writes it as one
buffer on the next turn (``call_soon``). The bytes and their order are
unchanged; only their grouping into syscalls is, and the added latency is one
loop turn. Everything a connection writes goes through it, because grpclib's
connection and streams all hold the transport given to ``connection_made``.

:class:`CorkedServer` and :class:`CorkedChannel` are grpclib's ``Server`` and
``Channel`` with that transport, and with :class:`~bugless_core.grpc.UpbCodec`
as their codec unless told otherwise. They rely on grpclib's
``_protocol_factory`` hook (grpclib 0.4, reached through
:mod:`bugless_core._compat.grpclib`), which is why grpclib is pinned below 0.5.

A :class:`CorkedServer` answers a call of a method it does not serve with a
gRPC UNIMPLEMENTED naming the method (:func:`unserved`), where grpclib
answers bare headers without a content-type, which grpclib's client reads as
UNKNOWN "Missing content-type header", telling neither the caller nor the
operator what is wrong (a newer client calling a server of an earlier release).

uvloop's transports (``uvloop.loop.TCPTransport``, its SSL transport) have
every method of ``asyncio.Transport`` but do not subclass it, so the wrapper
must not insist on the class (it asserted it once, which failed every
connection under uvloop), only use the methods.
"""

from __future__ import annotations

import asyncio
import functools
import ssl as _ssl
import weakref
from collections.abc import Callable, Collection, Coroutine
from typing import Any, TypeVar, cast

from google.protobuf.empty_pb2 import Empty
from grpclib.client import Stream
from grpclib.const import Cardinality, Handler, Status
from grpclib.encoding.base import CodecBase, StatusDetailsCodecBase
from grpclib.encoding.proto import ProtoStatusDetailsCodec
from grpclib.exceptions import GRPCError, StreamTerminatedError
from grpclib.metadata import Deadline
from grpclib.protocol import H2Protocol
from grpclib.server import Stream as ServerStream
from h2.exceptions import StreamClosedError
from h2.settings import SettingCodes

from bugless_core import tracing
from bugless_core._compat import h2 as _h2_compat
from bugless_core._compat import hyperframe as _hyperframe_compat
from bugless_core._compat.grpclib import (
    CallDone,
    GracefulGoawayProcessor,
    IServable,
    ProtocolWrappingChannel,
    ProtocolWrappingServer,
    channel_protocol,
    h2_connection,
)
from bugless_core.errors import DRAINING_REASON, Unavailable, to_grpc_error
from bugless_core.grpc import _goaway, _hpack, _windows
from bugless_core.grpc._codec import UpbCodec
from bugless_core.grpc._deadlines import SteadyDeadline

# Every connection receives through h2, which renders each frame it receives
# (bugless_core._compat.hyperframe): render only what is shown, and nothing
# when the trace line it is rendered for goes nowhere (bugless_core._compat.h2).
_hyperframe_compat.install()
_h2_compat.install()


class CorkedTransport(asyncio.Transport):
    """A transport that coalesces the writes of one loop turn into one.

    Args:
        transport: The real (TCP or TLS) transport; it owns the socket, flow
            control and closing.
    """

    def __init__(self, transport: asyncio.Transport) -> None:
        """Wrap ``transport``; writes are flushed on the running loop."""
        super().__init__()
        self._transport = transport
        self._pending: list[bytes] = []
        self._scheduled = False
        self._loop = asyncio.get_running_loop()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Keep ``data`` for the flush at the next loop turn."""
        if not data:
            return
        self._pending.append(bytes(data))
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self.flush)

    def writelines(self, list_of_data: Any) -> None:
        """Keep every buffer, in order."""
        for data in list_of_data:
            self.write(data)

    def flush(self) -> None:
        """Write everything kept so far as one buffer (nothing once closing)."""
        self._scheduled = False
        if not self._pending:
            return
        data = self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)
        self._pending.clear()
        if not self._transport.is_closing():
            self._transport.write(data)

    def close(self) -> None:
        """Write what is kept, then close (the real transport drains its buffer)."""
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        """Drop what is kept and abort the connection."""
        self._pending.clear()
        self._transport.abort()

    def is_closing(self) -> bool:
        """Whether the real transport is closing."""
        return self._transport.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """The real transport's socket, peer name, SSL object and so on."""
        return self._transport.get_extra_info(name, default)

    def can_write_eof(self) -> bool:
        """Whether the real transport can half-close."""
        return self._transport.can_write_eof()

    def write_eof(self) -> None:
        """Write what is kept, then half-close."""
        self.flush()
        self._transport.write_eof()

    def get_write_buffer_size(self) -> int:
        """Bytes kept here plus the real transport's buffer."""
        return sum(map(len, self._pending)) + self._transport.get_write_buffer_size()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        """Flow-control marks of the real transport (it calls pause_writing)."""
        self._transport.set_write_buffer_limits(high, low)

    def get_write_buffer_limits(self) -> tuple[int, int]:
        """Flow-control marks of the real transport."""
        return self._transport.get_write_buffer_limits()

    def is_reading(self) -> bool:
        """Whether the real transport is reading."""
        return self._transport.is_reading()

    def pause_reading(self) -> None:
        """Stop reading from the socket."""
        self._transport.pause_reading()

    def resume_reading(self) -> None:
        """Read from the socket again."""
        self._transport.resume_reading()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        """Hand the real transport to another protocol."""
        self._transport.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        """The real transport's protocol."""
        return self._transport.get_protocol()


#: Largest HTTP/2 frame this side accepts (SETTINGS_MAX_FRAME_SIZE). HTTP/2's
#: default is 16 KiB: a 512 KiB attachment chunk then crosses as 32 DATA
#: frames, each parsed, flow-controlled and dispatched in Python on both
#: sides. With 1 MiB it is one frame (bench/JOURNAL.md: attachments).
MAX_FRAME_BYTES = 1024 * 1024

_SendType = TypeVar("_SendType")
_RecvType = TypeVar("_RecvType")
_End = Callable[[], Coroutine[Any, Any, None]]


class CorkedH2Protocol(H2Protocol):
    """grpclib's HTTP/2 protocol writing through a :class:`CorkedTransport`, big frames allowed.

    Its HPACK coder remembers the header blocks every call repeats
    (:mod:`bugless_core.grpc._hpack`). While connected, it is one of the
    connections whose windows ``/metrics`` shows (:mod:`bugless_core.grpc._windows`),
    on ``side``. A client connection lets the calls a server's graceful GOAWAY
    will answer finish, and fails the ones it did not process with the
    DRAINING refusal, which is sent again on a new connection
    (:class:`~bugless_core._compat.grpclib.GracefulGoawayProcessor`); it says
    so in its SETTINGS, so that a stopping bugless server sends it one
    (:mod:`bugless_core.grpc._goaway`).
    """

    def __init__(
        self,
        *args: Any,
        side: _windows.Side,
        on_made: Callable[[asyncio.BaseTransport], None] | None = None,
        **kwargs: Any,
    ) -> None:
        """Build grpclib's protocol for the ``side`` (server or client) it serves.

        ``on_made`` is called with the connection's transport (the one its
        calls' peers hold) once the connection is made.
        """
        super().__init__(*args, **kwargs)
        self.side: _windows.Side = side
        self._on_made = on_made
        #: Whether its frames skip rendering for h2's trace line (set once made).
        self._quiet = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Start HTTP/2 on the corked wrapper of ``transport``; offer :data:`MAX_FRAME_BYTES`.

        asyncio's transports and uvloop's (which are not ``asyncio.Transport``
        subclasses) both qualify; the wrapper only calls their methods. The
        peer sends larger frames only once it has seen the setting, and a
        peer that never does (any HTTP/2 implementation may) still works.
        This side accepts them at once (see the comment in the body).
        """
        corked = CorkedTransport(cast("asyncio.Transport", transport))
        super().connection_made(corked)
        h2 = h2_connection(self)
        settings: dict[SettingCodes | int, int] = {
            SettingCodes.MAX_FRAME_SIZE: MAX_FRAME_BYTES,
            SettingCodes.HEADER_TABLE_SIZE: _hpack.HEADER_TABLE_BYTES,
        }
        if self.side == "client":
            # This client lets a graceful GOAWAY's calls finish: a stopping
            # bugless server sends it one (bugless_core.grpc._goaway).
            settings.update(_goaway.GRACEFUL_GOAWAY_CLIENT_SETTINGS)
        h2.update_settings(settings)
        # Accept the large frames from now on, not from the peer's ACK: h2
        # applies an acknowledged size only from its next read, and a peer may
        # send a large frame right behind the ACK (a busy server answering a
        # first call), which would fail the whole connection with
        # FrameTooLargeError. Accepting more than the peer knows of is safe.
        h2.max_inbound_frame_size = MAX_FRAME_BYTES
        # The same header blocks every call: coded once, in a table that holds
        # a peer's callers' assertions (bugless_core.grpc._hpack). The larger
        # table is accepted at once too, for the same reason.
        h2.decoder.max_allowed_table_size = _hpack.HEADER_TABLE_BYTES
        _hpack.install(h2)
        self._quiet = _h2_compat.receiving_quietly(h2)
        if self.side == "client":
            _h2_compat.keep_streams_on_graceful_goaway(h2)
            self.processor = GracefulGoawayProcessor(
                self.handler, self.connection, unprocessed=_not_processed
            )
        self.connection.flush()
        _windows.track(self, self.side)
        if self._on_made is not None:
            self._on_made(corked)

    def data_received(self, data: bytes) -> None:
        """Receive as grpclib does; with h2's trace logger off, no frame is rendered for it.

        The connection says so itself (:data:`bugless_core._compat.h2.RECEIVING`),
        which spares the per-frame look at h2's locals.
        """
        if not self._quiet:
            super().data_received(data)
            return
        receiving = _h2_compat.RECEIVING
        before, receiving.quiet = receiving.quiet, True
        try:
            super().data_received(data)
        finally:
            receiving.quiet = before

    def connection_lost(self, exc: BaseException | None) -> None:
        """Close the connection's calls as grpclib does; its windows are no longer shown."""
        _windows.forget(self)
        super().connection_lost(exc)


#: What a call fails with when the server's graceful GOAWAY says it did not
#: process it: the DRAINING refusal, which every bugless client sends again
#: on a new connection (:mod:`bugless_core.failover`).
NOT_PROCESSED_MESSAGE = (
    "the server is going away (HTTP/2 GOAWAY) and did not process this call; "
    "retry, another instance will answer"
)


def _not_processed() -> Exception:
    return to_grpc_error(Unavailable(NOT_PROCESSED_MESSAGE, reason=DRAINING_REASON))


def _codecs(
    codec: CodecBase | None, status_details: StatusDetailsCodecBase | None
) -> tuple[CodecBase, StatusDetailsCodecBase | None]:
    """The codecs to use: grpclib's own rule, with :class:`UpbCodec` as the default.

    grpclib sends ``grpc-status-details-bin`` (the ``ErrorInfo`` of a DRAINING
    refusal) only when it picks the codec itself, so choosing one here must
    choose the status details codec too. Every channel and server is made
    here, so this is also where ``google.rpc.error_details_pb2`` is imported:
    grpclib's codec drops a detail whose type protobuf's default pool does not
    know, and :mod:`bugless_core.errors` imports it only on its first
    conversion (so that ``bugless --help`` loads no protobuf), which comes
    after grpclib decoded the first status a process receives.
    """
    from google.rpc import error_details_pb2  # noqa: F401, PLC0415 - registers ErrorInfo

    if codec is not None:
        return codec, status_details
    return UpbCodec(), ProtoStatusDetailsCodec() if status_details is None else status_details


def _corked(
    protocol: H2Protocol,
    side: _windows.Side,
    on_made: Callable[[asyncio.BaseTransport], None] | None = None,
) -> CorkedH2Protocol:
    return CorkedH2Protocol(
        protocol.handler, protocol.config, protocol.h2_config, side=side, on_made=on_made
    )


def unserved_message(path: str) -> str:
    """What a call of ``path`` (``/package.Service/Method``) that no servable maps is told."""
    return f"method {path} is not served by this server; is it of an earlier release?"


def unserved(path: str, counted: Callable[[], None] | None = None) -> Handler:
    """The handler of a path the server does not map: UNIMPLEMENTED naming the method.

    It answers without reading the request (whatever its kind, a stream's
    first message may never come), so the status goes out as trailers-only
    headers with the gRPC content-type that every client reads. The call
    is outside the servables' wrapping (:class:`~bugless_core.grpc._calls.CallTracker`):
    no access check (it runs nothing and names only the path the caller
    sent) and no per-method metrics, whose label would be whatever path a
    client makes up: ``counted`` is called once per such call instead (the
    runner's ``grpc_server_unserved_total``), when the call is answered.
    """
    message = unserved_message(path)

    async def refuse(_stream: ServerStream[Any, Any]) -> None:
        if counted is not None:
            counted()
        raise GRPCError(Status.UNIMPLEMENTED, message)

    return Handler(refuse, Cardinality.UNARY_UNARY, Empty, Empty)


class CorkedServer(ProtocolWrappingServer):
    """A grpclib ``Server`` whose connections write once per loop turn, encoding with upb.

    A call of a path it does not map is UNIMPLEMENTED naming the method (:func:`unserved`).
    """

    def __init__(
        self,
        handlers: Collection[IServable],
        *,
        codec: CodecBase | None = None,
        status_details_codec: StatusDetailsCodecBase | None = None,
        on_connection: Callable[[asyncio.BaseTransport], None] | None = None,
        on_call_done: CallDone | None = None,
        on_unserved: Callable[[], None] | None = None,
        **options: Any,
    ) -> None:
        """Like grpclib's ``Server``, but ``codec`` defaults to :class:`UpbCodec`.

        ``on_connection`` is told of every connection accepted, with the
        transport its calls' peers will hold, before any call on it is read
        (a draining server keeps and closes them all alike); ``on_call_done``
        of each call's task once it is done, however it ended
        (:class:`~bugless_core._compat.grpclib.ProtocolWrappingServer`);
        ``on_unserved`` of each call of a method no servable maps, as it is
        refused (:func:`unserved`).
        """
        codec, status_details_codec = _codecs(codec, status_details_codec)
        super().__init__(
            handlers,
            codec=codec,
            status_details_codec=status_details_codec,
            on_call_done=on_call_done,
            unmapped=functools.partial(unserved, counted=on_unserved),
            **options,
        )
        self._on_connection = on_connection

    def wrap_protocol(self, protocol: H2Protocol) -> H2Protocol:
        """Cork the connection."""
        return _corked(protocol, "server", self._on_connection)


class CorkedChannel(ProtocolWrappingChannel):
    """A grpclib ``Channel`` whose connection writes once per loop turn, encoding with upb.

    A call given a ``timeout`` gets a :class:`~bugless_core.grpc._deadlines.SteadyDeadline`,
    so that its ``grpc-timeout`` header is the same call after call.

    :meth:`close` closes every connection the channel opened: after a
    server's graceful GOAWAY the channel's calls move to a new connection,
    and the old one stays open for the calls it still answers
    (:class:`~bugless_core._compat.grpclib.GracefulGoawayProcessor`).
    """

    def __init__(
        self,
        host: str | None = None,
        port: int | None = None,
        *,
        ssl: _ssl.SSLContext | bool | None = None,
        codec: CodecBase | None = None,
        status_details_codec: StatusDetailsCodecBase | None = None,
        **options: Any,
    ) -> None:
        """Like grpclib's ``Channel``, but ``codec`` defaults to :class:`UpbCodec`."""
        codec, status_details_codec = _codecs(codec, status_details_codec)
        super().__init__(
            host,
            port,
            ssl=ssl,
            codec=codec,
            status_details_codec=status_details_codec,
            **options,
        )
        tracing.instrument_channel(self)
        #: Every connection opened, until it is gone (the current one and any a GOAWAY left).
        self._opened: weakref.WeakSet[H2Protocol] = weakref.WeakSet()

    def wrap_protocol(self, protocol: H2Protocol) -> H2Protocol:
        """Cork the connection."""
        corked = _corked(protocol, "client")
        self._opened.add(corked)
        return corked

    def close(self) -> None:
        """Close the channel's connections, ending the calls on them, as grpclib's ``close`` does.

        grpclib's closes only the connection its next call would take: one a
        server's GOAWAY left to its running calls stayed open, those calls
        (a ``Watch`` never ends by itself) going on after the channel was
        closed.
        """
        current = channel_protocol(self)
        super().close()
        for protocol in list(self._opened):
            processor = getattr(protocol, "processor", None)  # set once connected
            if protocol is not current and processor is not None:
                processor.close("the channel was closed")
        self._opened.clear()

    def request(
        self,
        name: str,
        cardinality: Cardinality,
        request_type: type[_SendType],
        reply_type: type[_RecvType],
        *,
        timeout: float | None = None,
        deadline: Deadline | None = None,
        metadata: Any = None,
    ) -> Stream[_SendType, _RecvType]:
        """Open a call as grpclib does, a ``timeout`` made a :class:`SteadyDeadline`.

        A client-streaming call's ``end()`` reports the server's status when
        the server has answered first (:func:`_ending_as_answered`).
        """
        if timeout is not None:
            steady = SteadyDeadline.from_timeout(timeout)
            if deadline is None or steady < deadline:
                deadline = steady
        stream = super().request(
            name, cardinality, request_type, reply_type, deadline=deadline, metadata=metadata
        )
        if cardinality.client_streaming:
            stream.end = _ending_as_answered(stream.end)  # type: ignore[method-assign]
        return stream


def _ending_as_answered(end: _End) -> _End:
    """``end`` of a request stream, failing as grpclib's sends do once the server has answered.

    A server may answer a client stream before it ends (a refusal after the
    first message), with its status and a reset. A message sent after that
    fails with grpclib's ``StreamTerminatedError``, which the call's context
    turns into the server's status; ending the stream failed with h2's
    ``StreamClosedError`` instead, which hid the status (an upload through
    the web tier became a 500). It now fails the same way as a send.
    """

    async def ending() -> None:
        try:
            await end()
        except StreamClosedError as exc:
            msg = "the server answered before the request stream ended"
            raise StreamTerminatedError(msg) from exc

    return ending
