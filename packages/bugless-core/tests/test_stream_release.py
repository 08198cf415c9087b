"""A bugless server releases each call's stream once: run, reset before it started, or mid-way.

Releasing a stream is what gives its unread request bytes back to the
connection's flow-control window (``bugless_core._compat.grpclib``). A raw
HTTP/2 client over a real socket drives each case exactly, on a
:class:`~bugless_core.grpc.CorkedServer` whose windows are HTTP/2's smallest
(64 KiB), so the server acknowledges a call's 40 KB at once and the client
sees its window whole again only if the stream was released. Released twice,
grpclib's release raises ``KeyError`` in the server's loop, which the strict
plugin and the loop's exception handler below would report.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpclib.server
import h2.config
import h2.connection
import h2.events
import pytest
from grpclib.config import Configuration
from grpclib.const import Cardinality, Handler
from grpclib.server import Stream
from h2.errors import ErrorCodes

from bugless_core._compat import grpclib as compat
from bugless_core.grpc import CorkedServer
from bugless_testing.codecs import RawCodec

#: HTTP/2's initial window, which the server is told to keep (no larger window).
SMALLEST_WINDOW = 65_535
#: Bytes of a call's request body: more than half the window, so acknowledged at once.
BODY = 40_000


class _Calls:
    """``Echo`` answers its message; ``Hold`` reads one message, answers headers, then waits."""

    def __init__(self) -> None:
        self.holding = 0
        self.handlers_run = 0

    def __mapping__(self) -> dict[str, Handler]:
        return {
            "/test.Calls/Echo": Handler(self.echo, Cardinality.UNARY_UNARY, bytes, bytes),
            "/test.Calls/Hold": Handler(self.hold, Cardinality.STREAM_UNARY, bytes, bytes),
        }

    async def echo(self, stream: Stream[bytes, bytes]) -> None:
        self.handlers_run += 1
        await stream.send_message(await stream.recv_message() or b"")

    async def hold(self, stream: Stream[bytes, bytes]) -> None:
        self.handlers_run += 1
        await stream.recv_message()
        await stream.send_initial_metadata()
        self.holding += 1
        await asyncio.Event().wait()  # until the call is reset


class _RawClient:
    """An HTTP/2 client whose writes go out exactly as the test groups them."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.h2 = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding="ascii")
        )
        self.events: list[h2.events.Event] = []

    async def start(self) -> None:
        self.h2.initiate_connection()
        self.flush()
        await self.until(
            lambda: any(isinstance(e, h2.events.SettingsAcknowledged) for e in self.events)
        )

    def flush(self) -> None:
        """Write all the frames prepared since the last flush, in one write."""
        self.writer.write(self.h2.data_to_send())

    def open_call(self, method: str) -> int:
        stream_id: int = self.h2.get_next_available_stream_id()
        self.h2.send_headers(
            stream_id,
            [
                (":method", "POST"),
                (":scheme", "http"),
                (":path", method),
                (":authority", "127.0.0.1"),
                ("te", "trailers"),
                ("content-type", "application/grpc"),
            ],
        )
        return stream_id

    def send_message(self, stream_id: int, payload: bytes, *, end: bool = False) -> None:
        frame = b"\0" + len(payload).to_bytes(4, "big") + payload
        self.h2.send_data(stream_id, frame, end_stream=end)

    async def until(self, condition: Callable[[], bool]) -> None:
        """Read from the server (answering its pings and settings) until ``condition`` holds."""
        async with asyncio.timeout(10):  # a bound: each case holds at once when it works
            while not condition():
                data = await self.reader.read(65_536)
                assert data, "the server closed the connection"
                self.events.extend(self.h2.receive_data(data))
                self.flush()

    def window_whole(self) -> bool:
        window: int = self.h2.outbound_flow_control_window
        return window == SMALLEST_WINDOW


@pytest.fixture
async def served() -> AsyncIterator[tuple[_Calls, Callable[[], Any]]]:
    calls = _Calls()
    config = Configuration(
        http2_connection_window_size=SMALLEST_WINDOW, http2_stream_window_size=SMALLEST_WINDOW
    )
    server = CorkedServer([calls], codec=RawCodec(), config=config)
    await server.start("127.0.0.1", 0)
    listener = compat.server_listener(server)
    assert listener is not None
    port = listener.sockets[0].getsockname()[1]
    loop = asyncio.get_running_loop()
    loop_errors: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: loop_errors.append(context))
    clients: list[_RawClient] = []

    async def connect() -> _RawClient:
        client = _RawClient(*await asyncio.open_connection("127.0.0.1", port))
        clients.append(client)
        await client.start()
        return client

    try:
        yield calls, connect
    finally:
        for client in clients:
            client.writer.close()
        server.close()
        await server.wait_closed()
        loop.set_exception_handler(None)
    assert loop_errors == []


async def test_a_call_that_ran_is_released(served: tuple[_Calls, Any]) -> None:
    calls, connect = served
    client: _RawClient = await connect()
    stream_id = client.open_call("/test.Calls/Echo")
    client.send_message(stream_id, bytes(BODY), end=True)
    client.flush()
    await client.until(
        lambda: any(
            isinstance(e, h2.events.StreamEnded) and e.stream_id == stream_id for e in client.events
        )
    )
    await client.until(client.window_whole)
    assert calls.handlers_run == 1


async def test_a_call_reset_before_its_handler_started_is_released(
    served: tuple[_Calls, Any],
) -> None:
    """HEADERS, DATA and RST_STREAM in one write: the handler's task never takes a step."""
    calls, connect = served
    client: _RawClient = await connect()
    stream_id = client.open_call("/test.Calls/Echo")
    client.send_message(stream_id, bytes(BODY))
    client.h2.reset_stream(stream_id, ErrorCodes.CANCEL)
    client.flush()
    await client.until(client.window_whole)
    assert calls.handlers_run == 0
    # The connection goes on: a call after it is answered.
    next_id = client.open_call("/test.Calls/Echo")
    client.send_message(next_id, b"again", end=True)
    client.flush()
    await client.until(
        lambda: any(
            isinstance(e, h2.events.StreamEnded) and e.stream_id == next_id for e in client.events
        )
    )
    assert calls.handlers_run == 1


async def test_a_call_reset_mid_way_is_released(served: tuple[_Calls, Any]) -> None:
    """The handler has read a message and waits; the body it has not read is given back."""
    calls, connect = served
    client: _RawClient = await connect()
    stream_id = client.open_call("/test.Calls/Hold")
    client.send_message(stream_id, b"first")
    client.flush()
    await client.until(
        lambda: any(
            isinstance(e, h2.events.ResponseReceived) and e.stream_id == stream_id
            for e in client.events
        )
    )
    assert calls.holding == 1
    client.send_message(stream_id, bytes(BODY))
    client.h2.reset_stream(stream_id, ErrorCodes.CANCEL)
    client.flush()
    await client.until(client.window_whole)


def test_release_once_releases_on_the_first_call_only() -> None:
    released: list[object] = []
    release = compat.ReleaseOnce(lambda: released.append(None))
    assert not release.released
    release()
    release(object())  # as a done-callback, with the task
    release()
    assert released == [None]
    assert release.released


def test_a_changed_handler_accept_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    def accept(self: grpclib.server.Handler, stream: Any, headers: Any) -> None:
        raise AssertionError("never called")

    monkeypatch.setattr(grpclib.server.Handler, "accept", accept)
    with pytest.raises(compat.GrpclibSurfaceChanged, match=r"Handler\.accept no longer takes"):
        compat.verify()


async def test_a_renamed_handler_tasks_attribute_fails_the_connection_loudly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without ``Handler._tasks``, a connection is refused, never served without the release."""
    built = grpclib.server.Handler.__init__

    def handler_init(self: grpclib.server.Handler, *args: Any) -> None:
        built(self, *args)
        vars(self)["_calls"] = vars(self).pop("_tasks")  # as a 0.5 might

    monkeypatch.setattr(grpclib.server.Handler, "__init__", handler_init)
    server = CorkedServer([_Calls()], codec=RawCodec())
    with pytest.raises(compat.GrpclibSurfaceChanged, match=r"Handler\._tasks does not hold"):
        server._protocol_factory()
