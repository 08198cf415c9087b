"""Deadlines on corked channels: a steady ``grpc-timeout``, never longer than asked.

The header blocks are read as the server receives them, from a recording
relay between a real corked channel and a real corked server on loopback.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from grpclib.client import UnaryUnaryMethod
from grpclib.const import Cardinality, Handler, Status
from grpclib.exceptions import GRPCError
from grpclib.metadata import encode_timeout
from hpack import Decoder

from bugless_core._compat.grpclib import server_listener
from bugless_core.grpc import CorkedChannel, CorkedServer
from bugless_core.grpc._deadlines import SteadyDeadline, step_of
from bugless_testing.codecs import RawCodec

_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_HEADERS = 0x1


class _Service:
    """``Echo`` answers at once; ``Hang`` never answers (its deadline must end it)."""

    def __mapping__(self) -> dict[str, Handler]:
        return {
            "/test.Echo/Echo": Handler(self.echo, Cardinality.UNARY_UNARY, bytes, bytes),
            "/test.Echo/Hang": Handler(self.hang, Cardinality.UNARY_UNARY, bytes, bytes),
        }

    async def echo(self, stream: Any) -> None:
        await stream.send_message(await stream.recv_message())

    async def hang(self, stream: Any) -> None:
        await stream.recv_message()
        await asyncio.Event().wait()


class _Relay:
    """Passes one connection through to the server, keeping what the client sent."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sent = bytearray()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.port)

        async def pipe(
            source: asyncio.StreamReader, sink: asyncio.StreamWriter, record: bool
        ) -> None:
            while data := await source.read(65536):
                if record:
                    self.sent += data
                sink.write(data)
            sink.close()

        await asyncio.gather(pipe(reader, up_writer, True), pipe(up_reader, writer, False))

    def header_blocks(self) -> list[bytes]:
        """The HEADERS blocks the client sent, in order (h2 sends no padding or priority)."""
        data = bytes(self.sent)
        assert data.startswith(_PREFACE)
        blocks, at = [], len(_PREFACE)
        while at + 9 <= len(data):
            length = int.from_bytes(data[at : at + 3], "big")
            if data[at + 3] == _HEADERS:
                blocks.append(data[at + 9 : at + 9 + length])
            at += 9 + length
        return blocks


@pytest.fixture
async def relayed() -> AsyncIterator[tuple[CorkedChannel, _Relay]]:
    """A corked channel to a corked echo server through a :class:`_Relay`."""
    server = CorkedServer([_Service()], codec=RawCodec())
    await server.start("127.0.0.1", 0)
    listener = server_listener(server)
    assert listener is not None
    relay = _Relay(listener.sockets[0].getsockname()[1])
    relay_server = await asyncio.start_server(relay.serve, "127.0.0.1", 0)
    channel = CorkedChannel("127.0.0.1", relay_server.sockets[0].getsockname()[1], codec=RawCodec())
    try:
        yield channel, relay
    finally:
        channel.close()
        relay_server.close()
        server.close()
        await server.wait_closed()


async def test_calls_with_the_same_timeout_send_the_same_header_block(
    relayed: tuple[CorkedChannel, _Relay],
) -> None:
    """A 10 s timeout leaves as ``9900m`` whether the request goes out at once or later.

    grpclib encodes the time left when the request is sent: it was ``9999m``
    at once and ``9994m`` 5 ms later, a new HPACK literal each time.
    """
    channel, relay = relayed
    echo: UnaryUnaryMethod[bytes, bytes] = UnaryUnaryMethod(
        channel, "/test.Echo/Echo", bytes, bytes
    )
    # The first call fills the HPACK table, the second resizes it (the server's SETTINGS).
    for warm_up in (b"first", b"second"):
        assert await echo(warm_up, timeout=10) == warm_up
    assert await echo(b"at once", timeout=10) == b"at once"
    async with channel.request(
        "/test.Echo/Echo", Cardinality.UNARY_UNARY, bytes, bytes, timeout=10
    ) as stream:
        await asyncio.sleep(0.005)  # the deadline was set; 5 ms pass before the request
        await stream.send_message(b"later", end=True)
        assert await stream.recv_message() == b"later"

    blocks = relay.header_blocks()
    assert len(blocks) == 4
    assert blocks[2] == blocks[3]
    decoder = Decoder()
    decoder.max_allowed_table_size = 1 << 20
    sent = [dict(decoder.decode(block, raw=True)) for block in blocks]
    assert [headers[b"grpc-timeout"] for headers in sent] == [b"9900m"] * 4


async def test_a_steady_deadline_still_ends_the_call(
    relayed: tuple[CorkedChannel, _Relay],
) -> None:
    """A call the server never answers ends at its deadline, locally or by the server."""
    channel, _ = relayed
    hang: UnaryUnaryMethod[bytes, bytes] = UnaryUnaryMethod(
        channel, "/test.Echo/Hang", bytes, bytes
    )
    with pytest.raises((asyncio.TimeoutError, GRPCError)) as ended:
        await hang(b"", timeout=0.2)
    if isinstance(ended.value, GRPCError):
        assert ended.value.status is Status.DEADLINE_EXCEEDED


@pytest.mark.parametrize("timeout", [0.003, 0.05, 0.5, 1.5, 9.99, 10.0, 60.0, 3600.0])
def test_a_steady_deadline_is_never_longer_than_its_timeout(timeout: float) -> None:
    """The time left is the timeout's or less, in steps of at most a hundredth of it.

    At most two steps shorter than asked, less the time that passed between
    setting the deadline and reading it: a busy machine can pause this thread
    for longer than a 3 ms timeout's two 20 µs steps (a CI run did).
    """
    step = step_of(timeout)
    assert timeout / 250 < step <= timeout / 100
    started = time.monotonic()
    left = SteadyDeadline.from_timeout(timeout).time_remaining()
    elapsed = time.monotonic() - started
    assert timeout - 2 * step - elapsed <= left <= timeout
    assert math.isclose(left / step, round(left / step), abs_tol=1e-6)


@pytest.mark.parametrize(
    ("timeout", "step", "sent"),
    [(10.0, 0.1, "9900m"), (10.001, 0.1, "9900m"), (10.05, 0.1, "9900m"),
     (9.99, 0.05, "9900m"), (9.995, 0.05, "9900m"), (2.0, 0.02, "1980m"), (30.0, 0.2, "29S")],
)  # fmt: skip
def test_the_time_left_is_one_step_short_of_a_timeout_cut_to_whole_steps(
    timeout: float, step: float, sent: str
) -> None:
    """Whatever the timeout's digits, a request sent within a step sends one value.

    Rounding only the time left, 10.001 s sent ``10000m`` within 1 ms of the
    deadline being set and ``9900m`` after; and 9.99 s got a power-of-ten
    step of 10 ms, the window a busy loop had to send the request in.
    """
    assert math.isclose(step_of(timeout), step)
    assert encode_timeout(SteadyDeadline.from_timeout(timeout).time_remaining()) == sent


@pytest.mark.parametrize("timeout", [0.0, -1.0, math.inf])
def test_a_timeout_without_steps_gives_grpclibs_own_deadline(timeout: float) -> None:
    """No step fits a timeout that is not a positive finite number: grpclib's rules apply."""
    deadline = SteadyDeadline.from_timeout(timeout)
    assert type(deadline) is not SteadyDeadline
