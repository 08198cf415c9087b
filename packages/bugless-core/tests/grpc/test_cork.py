"""Corked connections: one socket write per loop turn, same bytes, same order.

Real loopback sockets throughout; gRPC over mutual TLS with the real
certificates of the ``pki`` fixture.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import h2.config
import h2.connection
import h2.events
import pytest
from grpc_test_server import Pki
from grpclib.client import UnaryUnaryMethod
from grpclib.const import Cardinality, Handler, Status
from grpclib.exceptions import GRPCError

from bugless_core._compat.grpclib import server_listener
from bugless_core.grpc import (
    CorkedChannel,
    CorkedServer,
    CorkedTransport,
    _hpack,
    build_client_ssl_context,
    build_server_ssl_context,
)
from bugless_core.grpc._cork import MAX_FRAME_BYTES
from bugless_core.grpc._settings import GrpcServerSettings
from bugless_testing.codecs import RawCodec


class _Sink(asyncio.Protocol):
    """Collects what a peer receives, and when the peer closes."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.closed = asyncio.Event()

    def data_received(self, data: bytes) -> None:
        self.data += data

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed.set()


class _Counting:
    """The real transport, with a record of every write that reaches it.

    A proxy rather than a patched method: uvloop's transports are C objects
    whose methods cannot be replaced (and which are not ``asyncio.Transport``
    subclasses, which is what the corked transport must cope with).
    """

    def __init__(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.writes: list[bytes] = []

    def write(self, data: Any) -> None:
        self.writes.append(bytes(data))
        # A uvloop transport writes, though it is typed as a BaseTransport.
        self.transport.write(data)  # type: ignore[attr-defined]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


@pytest.fixture
async def pair() -> AsyncIterator[tuple[CorkedTransport, list[bytes], _Sink]]:
    """A corked client transport, the list of its real writes, the server's sink."""
    loop = asyncio.get_running_loop()
    sink = _Sink()
    server = await loop.create_server(lambda: sink, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    transport, _ = await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)
    counting = _Counting(transport)
    yield CorkedTransport(cast("asyncio.Transport", counting)), counting.writes, sink
    transport.close()
    server.close()
    await server.wait_closed()


async def _received(sink: _Sink, size: int) -> bytes:
    for _ in range(200):
        if len(sink.data) >= size:
            break
        await asyncio.sleep(0.01)
    return bytes(sink.data)


async def test_writes_of_one_loop_turn_reach_the_socket_as_one_write_in_order(
    pair: tuple[CorkedTransport, list[bytes], _Sink],
) -> None:
    corked, writes, sink = pair
    corked.write(b"HEADERS|")
    corked.write(bytearray(b"DATA|"))
    corked.write(memoryview(b"TRAILERS"))
    corked.write(b"")
    assert writes == []  # nothing leaves before the loop turns
    assert corked.get_write_buffer_size() == len(b"HEADERS|DATA|TRAILERS")
    await asyncio.sleep(0)
    assert writes == [b"HEADERS|DATA|TRAILERS"]
    corked.write(b"|next")
    await asyncio.sleep(0)
    assert writes == [b"HEADERS|DATA|TRAILERS", b"|next"]
    assert await _received(sink, 26) == b"HEADERS|DATA|TRAILERS|next"


async def test_close_writes_what_is_kept_before_closing(
    pair: tuple[CorkedTransport, list[bytes], _Sink],
) -> None:
    corked, writes, sink = pair
    corked.writelines([b"last ", b"words"])
    corked.close()
    assert corked.is_closing()
    assert writes == [b"last words"]
    await asyncio.wait_for(sink.closed.wait(), 5)
    assert bytes(sink.data) == b"last words"


async def test_abort_drops_what_is_kept(
    pair: tuple[CorkedTransport, list[bytes], _Sink],
) -> None:
    corked, writes, sink = pair
    corked.write(b"never sent")
    corked.abort()
    await asyncio.sleep(0)
    assert writes == []
    await asyncio.wait_for(sink.closed.wait(), 5)
    assert bytes(sink.data) == b""


class _Echo:
    """A raw-bytes unary echo."""

    def __mapping__(self) -> dict[str, Handler]:
        return {
            "/test.Echo/Echo": Handler(self.echo, Cardinality.UNARY_UNARY, bytes, bytes),
        }

    async def echo(self, stream: Any) -> None:
        await stream.send_message(await stream.recv_message())


_EchoCall = UnaryUnaryMethod[bytes, bytes]


@pytest.fixture
async def tls_echo(pki: Pki) -> AsyncIterator[tuple[CorkedChannel, _EchoCall]]:
    """A corked channel to a corked :class:`_Echo` server over mutual TLS, and its echo call."""
    settings = GrpcServerSettings(
        host="127.0.0.1",
        port=0,
        tls_cert=Path(pki.server_cert),
        tls_key=Path(pki.server_key),
        client_ca=Path(pki.ca),
    )
    server = CorkedServer([_Echo()], codec=RawCodec())
    await server.start("127.0.0.1", 0, ssl=build_server_ssl_context(settings))
    listener = server_listener(server)
    assert listener is not None
    port = listener.sockets[0].getsockname()[1]
    context = build_client_ssl_context(Path(pki.ca), Path(pki.client_cert), Path(pki.client_key))
    assert isinstance(context, ssl.SSLContext)
    channel = CorkedChannel("127.0.0.1", port, ssl=context, codec=RawCodec())
    try:
        yield channel, UnaryUnaryMethod(channel, "/test.Echo/Echo", bytes, bytes)
    finally:
        channel.close()
        server.close()
        await server.wait_closed()


async def test_grpc_over_mutual_tls_with_corked_server_and_channel(
    tls_echo: tuple[CorkedChannel, _EchoCall],
) -> None:
    """Messages far above the HTTP/2 window (so window updates flow through the
    cork) and many concurrent calls on one connection come back intact."""
    channel, echo = tls_echo
    big = bytes(range(256)) * 8192  # 2 MiB
    assert await echo(big, timeout=10) == big
    # Both ends offered 1 MiB frames, and each saw the other's offer: a
    # 512 KiB attachment chunk crosses as one DATA frame, not 32.
    sent_with = channel._protocol.connection._connection  # type: ignore[union-attr]
    assert sent_with.max_outbound_frame_size == MAX_FRAME_BYTES
    assert sent_with.max_inbound_frame_size == MAX_FRAME_BYTES
    payloads = [f"call {i}".encode() * (i + 1) for i in range(64)]
    assert await asyncio.gather(*(echo(p, timeout=10) for p in payloads)) == payloads


async def test_the_header_table_holds_the_assertions_of_many_callers(
    tls_echo: tuple[CorkedChannel, _EchoCall],
) -> None:
    """Both ends offer a larger HPACK table: sixteen ~420-byte assertions stay indexed.

    With HTTP/2's 4 KiB table they evicted each other and every call sent its
    assertion as a literal (bench/JOURNAL.md, session 10).
    """
    channel, echo = tls_echo
    assertions = [f"{i:02d}".encode().hex() * 105 for i in range(16)]  # 420 characters
    for _ in range(2):
        for assertion in assertions:
            assert await echo(b"x", timeout=10, metadata={"bugless-assertion": assertion}) == b"x"
    encoder = channel._protocol.connection._connection.encoder  # type: ignore[union-attr]
    assert encoder.header_table_size == _hpack.HEADER_TABLE_BYTES
    kept = {value for name, value in encoder.header_table.dynamic_entries}
    assert {a.encode() for a in assertions} <= kept


class _OneWriteServer(asyncio.Protocol):
    """A bare HTTP/2 server that answers each call in one socket write.

    That write holds its acknowledgement of the client's SETTINGS (the 1 MiB
    frame offer) and a reply in a DATA frame over 16 KiB, as a busy server
    may send them, so the client reads both at once.
    """

    REPLY = b"\x00" + (20_000).to_bytes(4, "big") + bytes(20_000)  # one gRPC message

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast("asyncio.Transport", transport)
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        self.h2.initiate_connection()
        self.transport.write(self.h2.data_to_send())

    def data_received(self, data: bytes) -> None:
        for event in self.h2.receive_data(data):
            if isinstance(event, h2.events.StreamEnded):
                stream = event.stream_id
                self.h2.send_headers(
                    stream, [(":status", "200"), ("content-type", "application/grpc")]
                )
                self.h2.send_data(stream, self.REPLY)
                self.h2.send_headers(stream, [("grpc-status", "0")], end_stream=True)
        self.transport.write(self.h2.data_to_send())


async def test_a_large_reply_read_with_the_settings_ack_is_accepted() -> None:
    """A reply frame over 16 KiB read in one go with the ACK of the 1 MiB offer.

    h2 applies an acknowledged frame size only from its next read, so unless
    the client accepts large frames from the moment it offers them, that read
    fails the connection (FrameTooLargeError, a "Protocol error" for the call):
    a bot's or the web's first large answer on a new connection, under load.
    """
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_OneWriteServer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    channel = CorkedChannel("127.0.0.1", port, codec=RawCodec())
    try:
        method = UnaryUnaryMethod[bytes, bytes](channel, "/test.Large/Get", bytes, bytes)
        assert await method(b"first", timeout=10) == bytes(20_000)
    finally:
        channel.close()
        server.close()
        await server.wait_closed()


class _RefusingUploads:
    """A client-streaming method that answers NOT_FOUND once its first message is in."""

    def __init__(self) -> None:
        self.refused = asyncio.Event()

    def __mapping__(self) -> dict[str, Handler]:
        return {
            "/test.Files/Upload": Handler(self.upload, Cardinality.STREAM_UNARY, bytes, bytes),
        }

    async def upload(self, stream: Any) -> None:
        await stream.recv_message()
        self.refused.set()
        raise GRPCError(Status.NOT_FOUND, "no such issue")


async def test_ending_a_stream_the_server_has_answered_raises_the_servers_status() -> None:
    """The server's refusal and reset arrive after the last message, before the end.

    That is when an upload relay waits for its own caller's end of stream
    (the window takes the whole file). ``end()`` failed with h2's
    ``StreamClosedError`` there, hiding the status; sends fail as grpclib's
    ``StreamTerminatedError``, which the call turns into the status.
    """
    uploads = _RefusingUploads()
    server = CorkedServer([_Echo(), uploads], codec=RawCodec())
    await server.start("127.0.0.1", 0)
    listener = server_listener(server)
    assert listener is not None
    channel = CorkedChannel("127.0.0.1", listener.sockets[0].getsockname()[1], codec=RawCodec())
    echo: _EchoCall = UnaryUnaryMethod(channel, "/test.Echo/Echo", bytes, bytes)

    async def upload() -> None:
        async with channel.request(
            "/test.Files/Upload", Cardinality.STREAM_UNARY, bytes, bytes
        ) as stream:
            await stream.send_message(b"header")
            await stream.send_message(b"the whole file")
            await uploads.refused.wait()
            # One connection's frames arrive in order: once another call's
            # answer is in, the refusal's reset, written before it, was read.
            assert await echo(b"after") == b"after"
            await stream.end()
            await stream.recv_message()

    try:
        with pytest.raises(GRPCError) as refused:
            await upload()
        assert refused.value.status is Status.NOT_FOUND
        assert refused.value.message == "no such issue"
    finally:
        channel.close()
        server.close()
        await server.wait_closed()
